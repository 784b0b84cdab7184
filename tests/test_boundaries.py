"""Every integer rule and comparison docs/methods.md pins, tested on its boundary and one step either side.

Each test puts a value exactly on the boundary (a count, or a float made
exact: a Clopper-Pearson bound of 1 success in 1 trial is its level itself,
``Beta(1, 1).ppf(a) = a``; the two-sided binomial p-value of 10 successes in
10 trials is 2^-9) and one count or one ulp on either side, and writes the
expected outcome by hand or with scipy, never with the project's functions.
A mutant that moves a comparison by one (``<`` for ``<=``, ``n - 1`` for
``n``) changes at least one expected value below. tests/README.md lists each
pinned comparison of the spec with the test that pins it (here or
elsewhere).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats


def up(x):
    return float(np.nextafter(x, np.inf))


def down(x):
    return float(np.nextafter(x, -np.inf))


P_10_OF_10 = 2.0 ** -9  # two-sided binomial p-value of 10 successes in 10 trials: 2 * 0.5^10


def test_the_exact_values_the_boundaries_rest_on():
    """The constructions below, checked with scipy: Beta(1, 1).ppf(a) = a, binomtest(10, 10).pvalue = 2^-9."""
    from scipy.special import betainccinv, betaincinv

    for a in (0.5, down(0.5), up(0.5), 0.8, 0.25):
        assert stats.beta.ppf(a, 1, 1) == a and betaincinv(1.0, 1.0, a) == a
    assert betainccinv(1.0, 1.0, 0.25) == 0.75 and stats.beta.ppf(0.75, 1, 1) == 0.75
    assert stats.binomtest(10, 10, 0.5).pvalue == P_10_OF_10
    assert stats.binomtest(10, 10, 0.5, alternative="greater").pvalue == P_10_OF_10 / 2


# ======================================================================= section 0
def test_top_k_ties_go_to_the_lowest_index():
    from smoothcert.stats.counts import top_k

    cls, vals = top_k(np.array([[3, 5, 5, 1], [2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 7, 7]]), 3)
    assert cls.tolist() == [[1, 2, 0], [0, 1, 2], [0, 1, 2], [2, 3, 0]]
    assert vals.tolist() == [[5, 5, 3], [2, 2, 2], [0, 0, 0], [7, 7, 0]]


def test_row_argmax_ties_go_to_the_lowest_index():
    """The sampler's hard label of a row with tied maxima (logits 1, 1, 0 and 0, 2, 2) is the lower class."""
    from smoothcert.sampler.kernels import softmax_argmax_at

    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]], np.float32)
    rows, arg = np.zeros((3, 3), np.float32), np.full(3, -1, np.int64)
    assert softmax_argmax_at(logits, rows, arg, 0) == -1
    assert arg.tolist() == [0, 1, 0]


def test_binomial_test_of_no_trials_is_one_and_clopper_pearson_ends():
    from smoothcert.stats.bounds import cp_lower, cp_upper
    from smoothcert.stats.hypotheses import binom_p

    for alt in ("two-sided", "greater"):
        assert float(binom_p(0, 0, alt)) == 1.0
    assert float(binom_p(10, 10)) == P_10_OF_10
    assert cp_lower(0, 7, 0.01) == 0.0 and cp_upper(7, 7, 0.01) == 1.0
    assert cp_lower(1, 7, 0.01) > 0.0 and cp_upper(6, 7, 0.01) < 1.0


# ======================================================================= section 1
@pytest.mark.parametrize("alpha,predict,positive", [(0.5, 0, False), (down(0.5), -1, False), (up(0.5), 0, True)])
def test_cohen_pA_exactly_one_half_gives_radius_zero_one_ulp_below_abstains(alpha, predict, positive):
    """pA = CP_lower(1, 1, alpha) = alpha: pA == 0.5 certifies at radius 0, one ulp below abstains, above certifies."""
    from smoothcert.certifier.cohen import certify

    pred, rad, pA = certify(np.array([[1, 0]]), np.array([[1, 0]]), 1, 0.5, alpha)
    assert pA[0] == alpha
    assert pred[0] == predict
    if positive:
        assert rad[0] == pytest.approx(0.5 * stats.norm.ppf(alpha), rel=1e-12) and rad[0] > 0
    else:
        assert rad[0] == 0.0


@pytest.mark.parametrize("alpha,predict", [(P_10_OF_10, 0), (down(P_10_OF_10), -1)])
def test_cohen_predict_abstains_only_when_the_p_value_exceeds_alpha(alpha, predict):
    from smoothcert.certifier.cohen import predict as cohen_predict

    pred, p = cohen_predict(np.array([[10, 0, 0]]), alpha)
    assert p[0] == P_10_OF_10 and pred[0] == predict


# ======================================================================= section 2
@pytest.mark.parametrize("alpha,top,runner", [(P_10_OF_10, 0, 1), (down(P_10_OF_10), -1, -1)])
def test_two_step_tests_on_S0_pass_at_p_value_equal_to_alpha(alpha, top, runner):
    """PREDICT: abstain if binom_p(nA, nA + nB) > alpha; keep cB if binom_p(nB, nB + nC) <= alpha (nC = 0 when missing)."""
    from smoothcert.certifier.two_step import predict

    cA, _ = predict(np.array([[10, 0, 0]]), alpha)                  # p_top = binom_p(10, 10)
    assert cA[0] == top
    cA, cB = predict(np.array([[40, 10, 0]]), alpha)                # p_run = binom_p(10, 10)
    assert cA[0] == 0 and cB[0] == runner
    cA, cB = predict(np.array([[40, 10]]), alpha)                   # two classes: the missing third counts 0
    assert cA[0] == 0 and cB[0] == runner


def _two_step_reference(kA, kB, n, sigma, a):
    """Section 2's CERTIFY with cB found, written with scipy: the integer rule kA + kB == n picks the levels."""
    if kA + kB == n:
        pA = stats.beta.ppf(a, kA, n - kA + 1)
        pB = 1 - pA
    else:
        pA = stats.beta.ppf(a / 2, kA, n - kA + 1)
        pB = stats.beta.ppf(1 - a / 2, kB + 1, n - kB)
    return sigma / 2 * (stats.norm.ppf(pA) - stats.norm.ppf(pB))


@pytest.mark.parametrize("counts,expected", [
    ([600, 400, 0, 0], 0.0641895),   # kA + kB = n: pA at alpha, pB = 1 - pA (radius sigma Phi^-1(pA))
    ([600, 399, 1, 0], 0.0608333),   # n - 1: both at alpha/2 (the mutant kA + kB >= n - 1 gives 0.0642)
    ([600, 398, 2, 0], 0.0614735),   # n - 2
])
def test_two_step_integer_rule_at_n_n_minus_1_and_n_minus_2(counts, expected):
    from smoothcert.certifier.two_step import certify

    n, sigma, alpha = 1000, 0.5, 0.001
    pred, rad, _, _ = certify(np.array([counts]), np.array([0]), np.array([1]), n, sigma, alpha)
    assert pred[0] == 0
    assert rad[0] == pytest.approx(_two_step_reference(counts[0], counts[1], n, sigma, alpha), rel=1e-10)
    assert rad[0] == pytest.approx(expected, abs=5e-8)


@pytest.mark.parametrize("alpha,predict", [(0.5, -1), (up(0.5), 0)])
def test_two_step_radius_exactly_zero_abstains(alpha, predict):
    """No runner-up: pA = CP_lower(1, 1, alpha) = alpha and pB = 1 - pA; at alpha = 0.5 the radius is 0: abstain."""
    from smoothcert.certifier.two_step import certify

    pred, rad, pA, pB = certify(np.array([[1, 0]]), np.array([0]), np.array([-1]), 1, 0.5, alpha)
    assert pA[0] == alpha and pB[0] == 1 - alpha
    assert pred[0] == predict and (rad[0] == 0.0 if predict < 0 else rad[0] > 0)


# ======================================================================= section 3
@pytest.mark.parametrize("func,row,u", [
    ("confidence", [0.5, 0.25, 0.25], -0.5),
    ("entropy", [1.0, 0.0, 0.0], 0.0),
    ("margin", [0.5, 0.5, 0.0], 0.0),
])
def test_uncertainty_label_needs_u_strictly_below_theta(func, row, u):
    """A row is labelled when u(p) < theta and V otherwise: at theta = u it is V, one ulp above it is its class."""
    from smoothcert.certifier.uncertainty import extended_counts

    rows = np.array([[row]], np.float32)
    labels = np.array([[0]], np.int64)
    c = extended_counts(labels, rows, 0, 1, [func], [u, up(u), math.inf, -math.inf])[0, 0]
    assert c.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def test_calibration_majority_ties_and_the_stop_rule():
    """Majority ties go to the lowest index (V, index m, loses them); the walk stops at acc < (1 - loss) A0, strictly."""
    from smoothcert.certifier.calibrate import choose_theta, majority_correct

    counts = np.array([[3, 0, 3], [0, 3, 3], [0, 3, 4], [2, 2, 0]])       # m = 2 real classes, V = index 2
    assert majority_correct(counts, np.array([0, 1, 1, 1])).tolist() == [True, True, False, False]
    grid = np.array([3.0, 2.0, 1.0, 0.0])
    assert (1 - 0.25) * 1.0 == 0.75
    assert choose_theta(grid, np.array([1.0, 0.75, 0.5, 0.5]), 1.0, 0.25)[:2] == (1, 2.0)    # 0.75 is kept
    assert choose_theta(grid, np.array([1.0, down(0.75), 0.5, 0.5]), 1.0, 0.25)[:2] == (0, 3.0)
    assert choose_theta(grid, np.array([down(0.75), 1.0, 1.0, 1.0]), 1.0, 0.25)[:2] == (None, math.inf)
    assert choose_theta(grid, np.array([1.0, 0.75, 0.75, 0.75]), 1.0, 0.25)[:2] == (3, 0.0)


# ======================================================================= section 4
def test_cdf_threshold_at_the_minimum_is_refused_and_one_ulp_above_accepted():
    from smoothcert.certifier.cdf import check_thresholds, get_measure

    for name, a in (("score", 0.0), ("margin", -1.0)):
        ms = get_measure(name)
        with pytest.raises(ValueError, match=f"at or below the minimum .* of measure '{name}'"):
            check_thresholds(ms, [0.5, a])
        assert check_thresholds(ms, [up(a)]).tolist() == [up(a)]


def test_cdf_lower0_equal_to_the_threshold_certifies_and_one_ulp_above_abstains():
    """predict = c when lower(0) >= t (radius 0 there); the threshold set to the table's own lower0, then one ulp up."""
    from soundness import sim

    names, bank = ["c0", "c1"], np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    sc = sim.Scenario(bank=bank, dists=[sim.weights(names, {"c0": 0.5, "c1": 0.5})], n0=3, n=40, sigma=0.5, names=names)
    data = sc.sample(4, seed=0)
    first = sim.certify_arrays(sc, data, "cdf", sim.options(dict(alpha=0.2, measure=["score"], bound=["hoeffding"])))
    for i, lower0 in enumerate(first["lower0"].to_numpy()):
        if lower0 <= 0:
            continue
        t = sim.certify_arrays(sc, data, "cdf", sim.options(dict(alpha=0.2, measure=["score"], bound=["hoeffding"],
                                                                 threshold=[lower0, up(lower0)])))
        at, above = t[t["idx"] == i].itertuples()
        assert at.predict >= 0 and at.radius == 0.0
        assert above.predict == -1 and above.radius == 0.0


# ======================================================================= section 5
def test_aces_selection_at_theta_equal_to_the_normalised_entropy():
    """s = 1 iff H(p)/ln m <= theta: a one-hot row (entropy 0) selects at theta = 0."""
    from smoothcert.certifier.aces import selection_counts

    rows = np.zeros((1, 3, 3), np.float32)
    rows[0, np.arange(3), [0, 1, 2]] = 1.0
    assert selection_counts(rows, 0, 3, [0.0, 0.5]).tolist() == [[3, 3]]


# (n0, rows of S0 selecting, alpha, core): pA = pS = CP_lower(1, 1, alpha/2) = alpha/2 (n = 1, class 0 and its row selects)
ACES_CASES = [
    # s_hat = 1 (S0 selection tie: n0 - sel0 = sel0), p = min(pA, pS) = 0.5: not > 1/2; cA = core, pA >= 1/2
    ((2, 1, 1.0, 0), dict(predict=0, radius=0.0, selection=-1)),
    ((2, 1, 1.0, 1), dict(predict=-1, radius=0.0, selection=-1)),     # cA != core: abstain
    ((2, 1, up(1.0), 1), dict(predict=0, selection=1)),               # p one ulp above 1/2: certified, selection 1
    # s_hat = 0 (n0 - sel0 = 2 > 1): pS = 0.5 >= 1/2 gives the core model's class
    ((3, 1, 1.0, 2), dict(predict=2, radius=0.0, selection=0)),
    ((3, 1, down(1.0), 0), dict(predict=-1, radius=0.0, selection=-1)),  # pS, pA one ulp below 1/2: abstain
]


@pytest.mark.parametrize("case,want", ACES_CASES)
def test_aces_certify_comparisons(case, want):
    from smoothcert.certifier.aces import certify_counts

    n0, sel0, alpha, core = case
    s_hat_zero = n0 - sel0 > sel0
    sel = np.array([[0 if s_hat_zero else 1]])          # the one row of S selects; kS counts the s_hat side
    res = certify_counts(np.array([[n0, 0, 0]]), np.array([[1, 0, 0]]), np.array([[sel0]]), sel, n0, 1,
                         np.array([core]), 0.5, alpha)
    assert res["p_lower"][0, 0] == alpha / 2 and res["p_select"][0, 0] == alpha / 2
    for k, v in want.items():
        assert res[k][0, 0] == v, (k, res[k][0, 0])
    if want["selection"] == 1:
        assert res["radius"][0, 0] > 0
        assert res["radius"][0, 0] == pytest.approx(0.5 * stats.norm.ppf(alpha / 2), rel=1e-12)


@pytest.mark.parametrize("n,sel,alpha,want", [
    (20, 10, 0.5, (0, -1)),                # k1 = k0: neither selection branch; cA = core with rho <= alpha/2
    (10, 10, 2 * P_10_OF_10, (0, 1)),      # k1 > k0, binom_p(10, 10) = alpha/2 exactly: selection 1
    (10, 10, down(2 * P_10_OF_10), (-1, -1)),
    (10, 0, 2 * P_10_OF_10, (2, 0)),       # k0 > k1, binom_p(10, 10) = alpha/2: the core model's class
])
def test_aces_predict_comparisons(n, sel, alpha, want):
    from smoothcert.certifier.aces import predict_counts

    core = 0 if want[1] != 0 else 2
    pred, selection = predict_counts(np.array([[n, 0, 0]]), np.array([[sel]]), n, np.array([core]), alpha)
    assert (pred[0, 0], selection[0, 0]) == want


# ======================================================================= section 6
@pytest.mark.parametrize("alpha,r,outcome", [
    (0.8, 0.5 * stats.norm.ppf(0.8), "certified"),           # sigma Phi^-1(pA) >= r at equality
    (0.8, up(0.5 * stats.norm.ppf(0.8)), "abstained"),
    (0.5, 0.0, "abstained"),                                 # pA = 0.5 is not > 0.5, even with r = 0
    (up(0.5), 0.0, "certified"),
])
def test_adaptive_certifies_when_pA_above_half_and_radius_at_least_r(alpha, r, outcome):
    """One stage of 1 row, k = 1: pA = CP_lower(1, 1, alpha / s) = alpha."""
    from smoothcert.stats.adaptive import replay

    res = replay(np.array([[1]]), [1], 1, 0.5, alpha, 0.1, r)
    assert res["outcome"][0] == outcome and res["p_lower"][0] == alpha
    assert res["radius"][0] == (0.5 * stats.norm.ppf(alpha) if outcome == "certified" else 0.0)


@pytest.mark.parametrize("r,outcome,rows", [
    (0.5 * stats.norm.ppf(0.75), "abstained", 2),   # sigma Phi^-1(pU) = r: not < r, go on; stage 2 abstains
    (up(0.5 * stats.norm.ppf(0.75)), "aborted", 1),  # one ulp more: abort after stage 1
])
def test_adaptive_aborts_early_only_when_the_upper_bound_falls_below_r(r, outcome, rows):
    """Stages 1 and 2, no success: pU = CP_upper(0, 1, beta/(s-1)) = 1 - beta = 0.75 at beta 0.25; the last stage never aborts."""
    from smoothcert.stats.adaptive import replay

    res = replay(np.array([[0, 0]]), [1, 2], 2, 0.5, 0.1, 0.25, r)
    assert res["outcome"][0] == outcome and res["rows_used"][0] == rows
    last = replay(np.array([[0]]), [1], 1, 0.5, 0.1, 0.25, 10.0)
    assert last["outcome"][0] == "abstained"


# ======================================================================= section 8
def test_certified_accuracy_counts_a_radius_equal_to_r():
    from smoothcert.certifier.report import certified_accuracy

    rad, cor = np.array([0.5, down(0.5), 0.5, 0.0]), np.array([1, 1, 0, 1])
    assert certified_accuracy(rad, cor, 0.5) == 0.25
    assert certified_accuracy(rad, cor, 0.0) == 0.75          # at r = 0: correct and not abstained


def test_cdf_thresholds_every_ceil_n_over_K_with_K_capped_at_n_and_ties_counted():
    """gap = ceil(n/K), K capped at n, s_i = z_(i*gap) while i*gap < n; q_i counts z >= s_i, ties included."""
    from smoothcert.certifier.cdf import cdf_terms

    z = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    for K, want in ((10, z), (11, z), (10_000, z), (9, z[::2]), (5, z[::2]), (4, z[::3]), (1, z[:1])):
        s, q = cdf_terms(z, K, 0.0)
        assert s.tolist() == want.tolist(), K
    s, q = cdf_terms(z, 10, 0.25)
    counts = np.array([10, 9, 9, 7, 6, 5, 4, 3, 2, 1])        # #{z >= 0.2} = 9 for both tied values
    assert q == pytest.approx(np.maximum(counts / 10 - 0.25, 0.0), abs=1e-15)
    assert q[-2:].tolist() == [0.0, 0.0] and q[-3] > 0        # max(count / n - eps, 0)


# ======================================================================= section 11
def test_n_use_accepts_every_prefix_up_to_n_and_refuses_n_plus_one():
    from smoothcert.certifier import CertifyOptions, get_method
    from smoothcert.certifier.prefixes import check

    cohen = get_method("cohen")
    assert check(cohen, CertifyOptions(n_use=[1, 400]), 400) == 400
    assert check(cohen, CertifyOptions(n_use=400), 400) == 400
    with pytest.raises(ValueError, match="--n-use 401 exceeds the store's n = 400"):
        check(cohen, CertifyOptions(n_use=[1, 401]), 400)
    with pytest.raises(ValueError, match="at least 1"):
        CertifyOptions(n_use=[0, 400]).validate()


def test_every_test_the_readme_table_names_exists():
    """tests/README.md's table of pinned comparisons names real tests (``file::name`` or a boundaries name)."""
    import ast
    import re
    from pathlib import Path

    here = Path(__file__).parent
    table = [ln for ln in (here / "README.md").read_text().splitlines() if re.match(r"\| \d", ln)]
    assert len(table) >= 35
    defined = {}
    for path in here.glob("test_*.py"):
        defined[path.name] = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
    for row in table:
        cell, current, named = row.split(" | ")[-1], "test_boundaries.py", 0
        for m in re.finditer(r"boundaries|`([^`]+)`", cell):   # a bare name belongs to the file named last
            span = m.group(1)
            if span is None:
                current = "test_boundaries.py"
                continue
            file, _, name = span.rpartition("::")
            current = file or current
            assert name in defined[current], (row, current, name)
            named += 1
        assert named, row
