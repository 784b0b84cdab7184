"""cohen, cohen-predict and two-step against an independent scipy computation written here.

The reference functions below follow docs/methods.md sections 1-2 line by
line with plain Python and scipy.stats; they share no code with certifier/.
"""

import numpy as np
import pytest
from scipy import stats

from smoothcert.certifier import CertifyOptions, certify


# ---------------------------------------------------------------- references
def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_cp_upper(k, n, a):
    return 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)


def ref_binom(k, n, alt="two-sided"):
    return 1.0 if n == 0 else stats.binomtest(int(k), int(n), 0.5, alternative=alt).pvalue


def ref_top(counts, k):
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    order = order + [-1] * max(0, k - len(order))
    return order[:k], [counts[c] if c >= 0 else 0 for c in order[:k]]


def ref_cohen(c0, c, sigma, alpha):
    n = sum(c)
    cA = ref_top(c0, 1)[0][0]
    pA = ref_cp_lower(c[cA], n, alpha)
    if pA < 0.5:
        return -1, 0.0
    return cA, sigma * stats.norm.ppf(pA)


def ref_cohen_predict(c, alpha, alt="two-sided"):
    (cA, _), (nA, nB) = ref_top(c, 2)
    return -1 if ref_binom(nA, nA + nB, alt) > alpha else cA


def ref_two_step(c0, c, sigma, alpha, alt="two-sided", joint=False):
    a = alpha / 2 if joint else alpha
    n = sum(c)
    (cA, cB, _), (nA, nB, nC) = ref_top(c0, 3)
    runner = cB if ref_binom(nB, nB + nC, alt) <= a else -1
    if ref_binom(nA, nA + nB, alt) > a:
        return -1, 0.0, runner
    kA = c[cA]
    if runner >= 0:
        if kA + c[runner] == n:
            pA = ref_cp_lower(kA, n, a)
            pB = 1 - pA
        else:
            pA = ref_cp_lower(kA, n, a / 2)
            pB = ref_cp_upper(c[runner], n, a / 2)
    else:
        pA = ref_cp_lower(kA, n, a)
        pB = 1 - pA
    r = sigma / 2 * (stats.norm.ppf(pA) - stats.norm.ppf(pB))
    if not r > 0:
        return -1, 0.0, runner
    return cA, r, runner


# ---------------------------------------------------------------- helpers
def random_counts(rng, N, m, n0, n):
    c0, c = [], []
    for _ in range(N):
        p = rng.dirichlet(np.ones(m) * rng.choice([0.1, 0.5, 2.0]))
        c0.append(rng.multinomial(n0, p))
        c.append(rng.multinomial(n, p))
    return np.array(c0), np.array(c)


def run(store, method, **kw):
    table, meta = certify(store, method, CertifyOptions(**kw), progress=False)
    return table, meta


EDGE_CASES = [
    # (counts0, counts): ties, one observed class, fallback kA + kB == n, no runner-up
    ([50, 50, 0, 0], [500, 500, 0, 0]),            # exact tie on top
    ([100, 0, 0, 0], [1000, 0, 0, 0]),             # a single observed class
    ([0, 0, 0, 100], [0, 0, 0, 1000]),             # single class, not index 0
    ([80, 20, 0, 0], [900, 100, 0, 0]),            # two-step fallback: kA + kB == n
    ([90, 5, 5, 0], [950, 25, 25, 0]),             # runner-up not significant: NONE
    ([60, 30, 10, 0], [600, 300, 100, 0]),         # runner-up kept, split bounds
    ([40, 40, 20, 0], [400, 400, 200, 0]),         # tie between top two
    ([34, 33, 33, 0], [334, 333, 333, 0]),         # near-uniform
    ([0, 70, 0, 30], [0, 700, 0, 300]),            # zero-count classes around
]


@pytest.mark.parametrize("method", ["cohen", "cohen-predict", "two-step"])
def test_random_stores_match_reference(counts_store, method):
    rng = np.random.default_rng(11)
    m = 5
    c0, c = random_counts(rng, 25, m, 60, 700)
    labels = rng.integers(0, m, 25)
    store = counts_store(c0, c, labels, sigma=0.5)
    for alpha in (0.001, 0.05):
        table, _ = run(store, method, alpha=alpha)
        for i in range(25):
            row = table.iloc[i]
            if method == "cohen":
                p, r = ref_cohen(list(c0[i]), list(c[i]), 0.5, alpha)
            elif method == "cohen-predict":
                p, r = ref_cohen_predict(list(c[i]), alpha), 0.0
            else:
                p, r, runner = ref_two_step(list(c0[i]), list(c[i]), 0.5, alpha)
                assert row["runner_up"] == runner
            assert row["predict"] == p, (i, c0[i], c[i])
            assert row["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12)
            assert row["correct"] == int(p == labels[i])
            assert row["idx"] == i and row["label"] == labels[i]


@pytest.mark.parametrize("method", ["cohen", "two-step"])
def test_edge_cases_match_reference(counts_store, method):
    c0 = np.array([e[0] for e in EDGE_CASES])
    c = np.array([e[1] for e in EDGE_CASES])
    store = counts_store(c0, c, np.zeros(len(c0), int), sigma=0.25)
    for alpha in (0.001, 0.1):
        table, _ = run(store, method, alpha=alpha)
        for i, (a0, a1) in enumerate(EDGE_CASES):
            if method == "cohen":
                p, r = ref_cohen(a0, a1, 0.25, alpha)
            else:
                p, r, runner = ref_two_step(a0, a1, 0.25, alpha)
                assert table.iloc[i]["runner_up"] == runner, (a0, a1)
            assert table.iloc[i]["predict"] == p, (a0, a1)
            assert table.iloc[i]["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12), (a0, a1)


def test_cohen_pA_just_above_and_below_half(counts_store):
    """pA crosses 0.5 between two neighbouring counts: below abstains, at/above certifies."""
    n, alpha = 1000, 0.001
    ks = [k for k in range(450, 650) if ref_cp_lower(k, n, alpha) < 0.5 <= ref_cp_lower(k + 1, n, alpha)]
    assert ks, "no crossing found"
    k = ks[0]
    c0 = np.array([[10, 0], [10, 0]])
    c = np.array([[k, n - k], [k + 1, n - k - 1]])
    store = counts_store(c0, c, [0, 0])
    table, _ = run(store, "cohen", alpha=alpha)
    assert table.iloc[0]["predict"] == -1 and table.iloc[0]["radius"] == 0.0
    assert table.iloc[1]["predict"] == 0
    assert table.iloc[1]["radius"] == pytest.approx(0.25 * stats.norm.ppf(ref_cp_lower(k + 1, n, alpha)), rel=1e-12)
    assert 0 <= table.iloc[1]["radius"] < 0.01


def test_cohen_pA_at_one_half_from_real_counts_follows_the_rule_on_either_side():
    """alpha = I_0.5(k, n - k + 1) puts CP_lower(k, n, alpha) at 0.5 up to rounding: whichever side of 0.5 the bound
    lands on, the certificate is the rule's (class and radius 0 at or above, abstain below); test_boundaries.py pins
    0.5 exactly and one ulp either side."""
    from scipy.special import betainc

    from smoothcert.certifier.cohen import certify as cohen_certify

    k, n = 60, 100
    alpha = float(betainc(k, n - k + 1, 0.5))
    pred, rad, pA = cohen_certify(np.array([[5, 0]]), np.array([[k, n - k]]), n, 1.0, alpha)
    assert pA[0] == pytest.approx(0.5, abs=1e-12)
    assert pred[0] == (0 if pA[0] >= 0.5 else -1)
    assert rad[0] == (1.0 * stats.norm.ppf(pA[0]) if pA[0] >= 0.5 else 0.0) and 0.0 <= rad[0] < 1e-9


def test_cohen_predict_uses_only_estimation_block(counts_store):
    # S0 says class 1, S says class 0: PREDICT must follow S.
    store = counts_store(np.array([[0, 100]]), np.array([[1000, 0]]), [0])
    table, _ = run(store, "cohen-predict")
    assert table.iloc[0]["predict"] == 0 and table.iloc[0]["radius"] == 0.0


def test_cohen_picks_class_on_selection_block_only(counts_store):
    # S0 says class 1, S says class 0: CERTIFY bounds class 1 on S and abstains.
    store = counts_store(np.array([[0, 100]]), np.array([[1000, 0]]), [0])
    table, _ = run(store, "cohen")
    assert table.iloc[0]["predict"] == -1


@pytest.mark.parametrize("alt", ["two-sided", "greater"])
def test_two_step_binom_test_and_joint_alpha(counts_store, alt):
    rng = np.random.default_rng(5)
    c0, c = random_counts(rng, 20, 4, 40, 500)
    store = counts_store(c0, c, np.zeros(20, int))
    for joint in (False, True):
        table, meta = run(store, "two-step", alpha=0.01, binom_test=alt, joint_alpha=joint)
        for i in range(20):
            p, r, runner = ref_two_step(list(c0[i]), list(c[i]), 0.25, 0.01, alt, joint)
            assert table.iloc[i]["predict"] == p
            assert table.iloc[i]["runner_up"] == runner
            assert table.iloc[i]["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12)
        assert meta["confidence"] == pytest.approx(0.99 if joint else 0.98)


def test_n_use_and_n0_use_take_prefixes(counts_store, make_store):
    rng = np.random.default_rng(3)
    m, n0, n = 3, 30, 300
    probs = rng.dirichlet(np.ones(m) * 0.4, size=(4, n0 + n)).astype(np.float32)
    store = make_store(probs, [0, 1, 2, 0], n0)
    table, meta = run(store, "cohen", n0_use=10, n_use=120, alpha=0.05)
    hard = probs.argmax(-1)
    for i in range(4):
        c0 = np.bincount(hard[i, :10], minlength=m)
        c = np.bincount(hard[i, n0:n0 + 120], minlength=m)
        p, r = ref_cohen(list(c0), list(c), 0.25, 0.05)
        assert table.iloc[i]["predict"] == p and table.iloc[i]["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12)
    assert meta["n_use"] == 120 and meta["n0_use"] == 10
    with pytest.raises(ValueError, match="n-use"):
        run(store, "cohen", n_use=301)
    with pytest.raises(ValueError, match="n0-use"):
        run(store, "cohen", n0_use=31)


def test_float16_and_float32_stores_give_identical_hard_label_certificates(make_store):
    """Rows whose float16 rounding flips the argmax: the stored full-precision argmax keeps them identical."""
    rng = np.random.default_rng(8)
    m, n0, n, N = 4, 20, 400, 6
    probs = rng.dirichlet(np.ones(m), size=(N, n0 + n)).astype(np.float32)
    # make many near-ties that float16 cannot resolve
    near = rng.random((N, n0 + n)) < 0.3
    top = probs.argmax(-1)
    other = (top + 1) % m
    ii, rr = np.nonzero(near)
    probs[ii, rr, other[ii, rr]] = probs[ii, rr, top[ii, rr]] - 1e-5
    probs /= probs.sum(-1, keepdims=True)
    flips = (probs.astype(np.float16).argmax(-1) != probs.argmax(-1)).sum()
    assert flips > 0, "the test needs rows whose float16 argmax differs"
    s32 = make_store(probs, np.arange(N) % m, n0, dtype="float32", name="f32")
    s16 = make_store(probs, np.arange(N) % m, n0, dtype="float16", name="f16")
    for method in ("cohen", "cohen-predict", "two-step"):
        t32, _ = run(s32, method, alpha=0.05)
        t16, _ = run(s16, method, alpha=0.05)
        assert t32.equals(t16), method


def test_results_do_not_depend_on_block_size(counts_store):
    rng = np.random.default_rng(9)
    c0, c = random_counts(rng, 17, 6, 50, 400)
    store = counts_store(c0, c, rng.integers(0, 6, 17))
    ref, _ = certify(store, "two-step", CertifyOptions(alpha=0.05), progress=False)
    for bs in (1, 4, 17):
        t, _ = certify(store, "two-step", CertifyOptions(alpha=0.05), progress=False, block_size=bs)
        assert t.equals(ref)


def test_blocks_come_in_whole_rounds_of_the_parallel_slots():
    from math import ceil

    from smoothcert.certifier.engine import balanced_blocks

    assert len(balanced_blocks(500, 22, 1)) == 23                        # one slot: the memory bound alone
    assert [b - a for a, b in balanced_blocks(500, 22, 2)].count(21) == 20  # 24 tasks of 20 or 21: 12 per worker
    assert balanced_blocks(12, 256, 2) == [(0, 3), (3, 6), (6, 9), (9, 12)]  # a small store: two rounds of two
    assert balanced_blocks(0, 22, 2) == []
    for n in (1, 2, 3, 5, 14, 17, 100, 499, 500, 4096):
        for mb in (1, 3, 22, 256):
            for slots in (1, 2, 3, 8):
                blocks = balanced_blocks(n, mb, slots)
                sizes = [b - a for a, b in blocks]
                assert [a for a, _ in blocks[1:]] == [b for _, b in blocks[:-1]], "contiguous"
                assert blocks[0][0] == 0 and blocks[-1][1] == n and min(sizes) >= 1
                assert max(sizes) <= mb and max(sizes) - min(sizes) <= 1
                assert len(blocks) >= ceil(n / mb)
                assert len(blocks) % slots == 0 or len(blocks) == n, (n, mb, slots)


def test_table_columns_in_interface_order(counts_store):
    store = counts_store(np.array([[10, 0]]), np.array([[100, 0]]), [0])
    t, _ = run(store, "two-step", alpha=0.05)
    assert list(t.columns) == ["idx", "label", "method", "predict", "radius", "correct", "runner_up", "p_lower", "p_upper"]
    t, _ = run(store, "cohen", alpha=0.05)
    assert list(t.columns)[:6] == ["idx", "label", "method", "predict", "radius", "correct"]
