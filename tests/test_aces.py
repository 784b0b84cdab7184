"""aces and aces-predict against an independent computation written here (docs/methods.md section 5).

The reference follows section 5 line by line in plain Python with scipy.stats
(entropy, Clopper-Pearson, binomial test), on real stores built with the
import path; it shares no code with certifier/.
"""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from smoothcert.certifier import CertifyOptions, certify

M = 4


# ---------------------------------------------------------------- references
def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_binom(k, n, alt="two-sided"):
    return 1.0 if n == 0 else stats.binomtest(int(k), int(n), 0.5, alternative=alt).pvalue


def ref_top(counts, k):
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    return order[:k], [counts[c] for c in order[:k]]


def ref_entropy(row):
    p = np.asarray(row, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(row)))


def ref_aces_certify(rows, n0, core, theta, sigma, alpha):
    """Alg. 1 of Horváth et al. 2022, ACES as section 5 pins it: (predict, radius, selection)."""
    S0, S = rows[:n0], rows[n0:]
    n = len(S)
    lab0 = [int(np.argmax(r)) for r in S0]
    lab = [int(np.argmax(r)) for r in S]
    sel0 = sum(ref_entropy(r) <= theta for r in S0)
    sel = sum(ref_entropy(r) <= theta for r in S)
    counts0_S = [n0 - sel0, sel0]
    s_hat = 0 if counts0_S[0] > counts0_S[1] else 1
    counts0 = [lab0.count(c) for c in range(M)]
    counts = [lab.count(c) for c in range(M)]
    cA = ref_top(counts0, 1)[0][0]
    counts_S = [n - sel, sel]
    pS = ref_cp_lower(counts_S[s_hat], n, alpha / 2)
    pA = ref_cp_lower(counts[cA], n, alpha / 2)
    p = min(pA, pS)
    if s_hat == 1 and p > 0.5:
        return cA, sigma * stats.norm.ppf(p), 1
    if s_hat == 0 and pS >= 0.5:
        return core, 0.0, 0
    if cA == core and pA >= 0.5:
        return cA, 0.0, -1
    return -1, 0.0, -1


def ref_aces_predict(rows, n0, core, theta, alpha, alt="two-sided"):
    """Alg. 4 of Horváth et al. 2022, ACES on S only, second branch read as "and": (predict, selection)."""
    S = rows[n0:]
    n = len(S)
    lab = [int(np.argmax(r)) for r in S]
    counts = [lab.count(c) for c in range(M)]
    k1 = sum(ref_entropy(r) <= theta for r in S)
    k0 = n - k1
    (cA, _), (nA, nB) = ref_top(counts, 2)
    rho = ref_binom(nA, nA + nB, alt)
    if k1 > k0 and ref_binom(k1, n, alt) <= alpha / 2 and rho <= alpha / 2:
        return cA, 1
    if k0 > k1 and ref_binom(k0, n, alt) <= alpha / 2:
        return core, 0
    if cA == core and rho <= alpha / 2:
        return cA, -1
    return -1, -1


# ---------------------------------------------------------------- stores
def make_rows(rng, labels, peaked):
    """Rows with the given hard labels; peaked rows have normalised entropy < 0.35, flat ones > 0.75."""
    R = len(labels)
    rows = np.empty((R, M), np.float64)
    for r in range(R):
        top = rng.uniform(0.9, 0.99) if peaked[r] else rng.uniform(0.3, 0.42)
        rest = rng.dirichlet(np.ones(M - 1) * 20) * (1 - top)
        rest = np.minimum(rest, top - 0.02)
        rest = rest / rest.sum() * (1 - top)
        row = np.insert(rest, labels[r], top)
        rows[r] = row
    return rows.astype(np.float32)


def input_rows(rng, n0, n, sel0, sel, cls0, cls):
    """One input: S0 with ``sel0`` peaked rows and labels drawn from ``cls0`` (a list), S likewise."""
    lab0 = rng.choice(cls0, n0)
    lab = rng.choice(cls, n)
    pk0 = rng.permutation(np.arange(n0) < sel0)
    pk = rng.permutation(np.arange(n) < sel)
    return np.concatenate([make_rows(rng, lab0, pk0), make_rows(rng, lab, pk)])


N0, N = 20, 400
CERTIFY_CASES = {
    # name: (S0 peaked, S peaked, S0 classes, S classes, core, label) at theta = 0.5
    "branch1-certified-model": (20, 400, [2], [2], 0, 2),
    "branch2-core": (0, 0, [1], [1, 2], 3, 3),
    "branch3-agree": (10, 200, [1], [1], 1, 1),
    "abstain-disagree": (10, 200, [1], [1], 2, 1),
    "abstain-selected-but-no-class": (20, 400, [0, 1], [0, 1], 2, 0),
    "branch3-s_hat0-unsure": (12, 200, [3], [3], 3, 3),
}
PREDICT_CASES = {
    "p-branch1": (20, 400, [2], [2], 0, 2),
    "p-branch2": (0, 0, [1], [1, 2], 3, 3),
    "p-branch3": (10, 200, [1], [1], 1, 1),
    "p-abstain-disagree": (10, 200, [1], [1], 2, 1),
    "p-abstain-no-class": (20, 400, [0, 1], [0, 1], 2, 0),
    # k0 > k1 but not significant: the seed's "or" would return core; "and" goes on and abstains
    "p-and-not-or": (10, 190, [1], [1], 3, 1),
}


def build(make_store, cases, seed=0, sigma=0.5):
    rng = np.random.default_rng(seed)
    probs, core, labels = [], [], []
    for s0, s, c0, c, cp, lab in cases.values():
        probs.append(input_rows(rng, N0, N, s0, s, c0, c))
        core.append(cp)
        labels.append(lab)
    probs = np.stack(probs)
    store = make_store(probs, np.array(labels), N0, sigma=sigma, core_predict=np.array(core))
    return store, probs, core


def run(store, method, **kw):
    return certify(store, method, CertifyOptions(**kw), progress=False)


# ---------------------------------------------------------------- tests
def test_certify_branches_match_reference(make_store):
    store, probs, core = build(make_store, CERTIFY_CASES)
    table, meta = run(store, "aces", theta=[0.5])
    assert meta["confidence"] == pytest.approx(0.999)
    assert list(table.columns[:5]) == ["idx", "label", "method", "theta", "predict"]
    expect_sel = {"branch1-certified-model": 1, "branch2-core": 0, "branch3-agree": -1}
    for i, name in enumerate(CERTIFY_CASES):
        row = table.iloc[i]
        p, r, s = ref_aces_certify(probs[i], N0, core[i], 0.5, 0.5, 0.001)
        assert (row["predict"], row["selection"]) == (p, s), name
        assert row["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12), name
        if name in expect_sel:
            assert row["selection"] == expect_sel[name] and row["predict"] >= 0, name
        if name.startswith("abstain"):
            assert row["predict"] == -1 and row["radius"] == 0.0, name
    assert table.iloc[0]["radius"] > 0
    assert table.iloc[2]["predict"] == 1 and table.iloc[2]["radius"] == 0.0


def test_predict_branches_match_reference(make_store):
    store, probs, core = build(make_store, PREDICT_CASES, seed=1)
    table, meta = run(store, "aces-predict", theta=[0.5])
    assert (table["radius"] == 0).all()
    got = [(int(r.predict), int(r.selection)) for r in table.itertuples()]
    want = [ref_aces_predict(probs[i], N0, core[i], 0.5, 0.001) for i in range(len(PREDICT_CASES))]
    assert got == want
    names = list(PREDICT_CASES)
    assert got[names.index("p-branch1")] == (2, 1)
    assert got[names.index("p-branch2")] == (3, 0)
    assert got[names.index("p-branch3")] == (1, -1)
    assert got[names.index("p-abstain-disagree")] == (-1, -1)
    assert got[names.index("p-and-not-or")] == (-1, -1)


@pytest.mark.parametrize("alt", ["two-sided", "greater"])
def test_random_stores_many_thetas_match_reference(make_store, alt):
    rng = np.random.default_rng(7)
    n0, n, B = 15, 120, 12
    probs, core, labels = [], [], []
    for _ in range(B):
        f0, f = rng.uniform(0, 1), rng.uniform(0, 1)
        cls = list(rng.choice(M, rng.integers(1, 3), replace=False))
        probs.append(input_rows(rng, n0, n, int(f0 * n0), int(f * n), cls, cls))
        core.append(int(rng.integers(0, M)))
        labels.append(int(cls[0]))
    probs = np.stack(probs)
    store = make_store(probs, np.array(labels), n0, sigma=0.25, core_predict=np.array(core))
    thetas = [0.0, 0.2, 0.33, 0.5, 0.61, 0.8, 0.95, 1.0]
    for alpha in (0.001, 0.1):
        t1, _ = run(store, "aces", theta=thetas, alpha=alpha)
        t2, _ = run(store, "aces-predict", theta=thetas, alpha=alpha, binom_test=alt)
        assert len(t1) == len(t2) == B * len(thetas)
        for i in range(B):
            for j, th in enumerate(thetas):
                a = t1.iloc[i * len(thetas) + j]
                b = t2.iloc[i * len(thetas) + j]
                assert a["idx"] == i and a["theta"] == th and b["theta"] == th
                p, r, s = ref_aces_certify(probs[i], n0, core[i], th, 0.25, alpha)
                assert (a["predict"], a["selection"]) == (p, s), (i, th)
                assert a["radius"] == pytest.approx(r, rel=1e-10, abs=1e-12)
                assert (b["predict"], b["selection"]) == ref_aces_predict(probs[i], n0, core[i], th, alpha, alt), (i, th)


def test_theta_sweep_equals_single_thetas(make_store):
    store, _, _ = build(make_store, CERTIFY_CASES, seed=3)
    grid, _ = run(store, "aces", theta=[i / 40 for i in range(41)])
    for th in (0.0, 0.325, 0.5, 1.0):
        one, _ = run(store, "aces", theta=[th])
        sub = grid[grid["theta"] == th].reset_index(drop=True)
        pd.testing.assert_frame_equal(sub, one)


def test_theta_outside_unit_interval_is_refused(make_store):
    store, _, _ = build(make_store, {"x": CERTIFY_CASES["branch2-core"]})
    for bad in ([1.5], [-0.1], [float("inf")]):
        with pytest.raises(ValueError, match="theta"):
            run(store, "aces", theta=bad)
    table, _ = run(store, "aces")  # default: the reference grid 0, 0.01, ..., 1
    assert len(table) == 101 and table["theta"].iloc[-1] == 1.0


def test_needs_core_predict(make_store):
    rng = np.random.default_rng(0)
    store = make_store(input_rows(rng, N0, N, 5, 5, [0], [0])[None], np.array([0]), N0)
    with pytest.raises(ValueError, match="core_predict"):
        run(store, "aces", theta=[0.5])


def test_report_table_and_pareto_plot(make_store, tmp_path):
    from click.testing import CliRunner

    from smoothcert.cli import main

    store, _, _ = build(make_store, CERTIFY_CASES, seed=4)
    r = CliRunner()
    a, p = tmp_path / "a.csv", tmp_path / "p.csv"
    res = r.invoke(main, ["certify", str(store), "--method", "aces", "--theta", "0:1:5", "--out", str(a), "-q"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["certify", str(store), "--method", "aces-predict", "--theta", "0:1:5", "--out", str(p), "-q"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["report", str(a), str(p), "--radii", "0,0.5", "--plot", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert "ACES per threshold" in res.output and "NAC" in res.output and "sel@0.5" in res.output
    assert (tmp_path / "f-aces-pareto.png").exists()
    # NAC equals the aces-predict accuracy, certified accuracy and selection rate as defined
    from smoothcert.certifier.report_aces import aces_summary
    from smoothcert.certifier.table import read_table

    df = pd.concat([read_table(a), read_table(p)])
    s = aces_summary(df, [0.0, 0.5])
    ta, tp = read_table(a), read_table(p)
    for _, row in s.iterrows():
        ga, gp = ta[ta["theta"] == row["theta"]], tp[tp["theta"] == row["theta"]]
        assert row["NAC"] == pytest.approx((gp["correct"] == 1).mean())
        assert row["ACR"] == pytest.approx((ga["radius"] * ga["correct"]).mean())
        assert row["acc@0.5"] == pytest.approx(((ga["correct"] == 1) & (ga["radius"] >= 0.5)).mean())
        assert row["sel@0.5"] == pytest.approx(((ga["select_radius"] > 0) & (ga["select_radius"] >= 0.5)).mean())
    # only one table: says what is missing
    res = r.invoke(main, ["report", str(a)])
    assert res.exit_code == 0 and "NAC needs an aces-predict table" in res.output


# ---------------------------------------------------------------- soundness
def test_certify_soundness_simulation():
    """Known probabilities: a returned class differs from F_ACES(x), or a radius exceeds the one the true
    probabilities allow, in at most alpha of the runs (each configuration sits near a decision boundary). A
    necessary check of the decisions; the bounds' power check is soundness/test_power.py::test_aces_power."""
    from smoothcert.certifier.aces import certify_counts, predict_counts

    rng = np.random.default_rng(2024)
    alpha, sigma, n0, n, trials = 0.1, 1.0, 10, 100, 6000
    # joint probabilities of (selection s, class c), c in 0..2; core model predicts 2
    configs = [
        np.array([[0.03, 0.02, 0.42], [0.45, 0.05, 0.03]]),  # P(s=1) 0.53, class 0 top at 0.48
        np.array([[0.20, 0.05, 0.27], [0.40, 0.05, 0.03]]),  # P(s=1) 0.48: core; class 0 at 0.60
        np.array([[0.02, 0.02, 0.20], [0.06, 0.10, 0.60]]),  # P(s=1) 0.76, class 2 (= core) 0.80
        np.array([[0.10, 0.10, 0.28], [0.31, 0.10, 0.11]]),  # P(s=1) 0.52, class 0 at 0.41, core 0.39
        np.array([[0.01, 0.01, 0.01], [0.52, 0.44, 0.01]]),  # P(s=1) 0.97, class 0 at 0.53
    ]
    core = 2
    for P in configs:
        ps = P[1].sum()
        pc = P.sum(0)
        true_out = int(np.argmax(pc)) if ps > 0.5 else core
        d0 = rng.multinomial(n0, P.ravel(), size=trials).reshape(trials, 2, 3)
        d = rng.multinomial(n, P.ravel(), size=trials).reshape(trials, 2, 3)
        res = certify_counts(d0.sum(1), d.sum(1), d0[:, 1].sum(1)[:, None], d[:, 1].sum(1)[:, None], n0, n,
                             np.full(trials, core), sigma, alpha)
        pred, rad = res["predict"][:, 0], res["radius"][:, 0]
        true_rad = np.where(pred >= 0, sigma * np.minimum(stats.norm.ppf(ps), stats.norm.ppf(pc[np.maximum(pred, 0)])), 0)
        bad = (pred >= 0) & ((pred != true_out) | ((rad > 0) & (rad > true_rad + 1e-12)))
        limit = alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
        assert bad.mean() <= limit, (P, bad.mean())
        # PREDICT on the same draws
        pp, _ = predict_counts(d.sum(1), d[:, 1].sum(1)[:, None], n, np.full(trials, core), alpha)
        badp = (pp[:, 0] >= 0) & (pp[:, 0] != true_out)
        assert badp.mean() <= limit, (P, badp.mean())


def test_selection_counts_equal_brute_force():
    """The bucketed binary search counts exactly the rows with H/ln m <= theta, for any threshold list."""
    from smoothcert.certifier.aces import selection_counts

    rng = np.random.default_rng(8)
    rows = rng.dirichlet(np.ones(M) * 0.3, size=(3, 500)).astype(np.float32)
    rows[0, :5] = np.eye(M, dtype=np.float32)[rng.integers(0, M, 5)]  # entropy exactly 0
    rows[1, :5] = 1.0 / M                                              # entropy (about) 1
    H = np.array([[ref_entropy(r) for r in rows[b]] for b in range(3)])
    thetas = np.concatenate([[0.0, 1.0, 1.0, 0.5], rng.random(50), 0.3 + rng.random(40) * 1e-9,
                             H[2, :20] + 1e-12, H[2, 20:30] - 1e-12])  # just around row entropies
    got = selection_counts(rows, np.array([0, 10, 3]), np.array([500, 400, 480]), thetas)
    for b, (a, z) in enumerate([(0, 500), (10, 400), (3, 480)]):
        want = [(H[b, a:z] <= t).sum() for t in thetas]
        assert list(got[b]) == want
