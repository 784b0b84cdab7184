"""soft (docs/methods.md section 7) against an independent numpy/scipy computation written here."""
import math

import numpy as np
import pytest
from scipy import stats

from smoothcert.certifier import CertifyOptions, certify


# ---------------------------------------------------------------- reference
def ref_bounds(x, d, bound):
    """(lower, upper) on E[x] for x in [0, 1] at level d each side, clipped to [0, 1]."""
    n = len(x)
    mean = float(np.mean(x))
    if bound == "hoeffding":
        half = math.sqrt(math.log(1 / d) / (2 * n))
    else:  # Maurer and Pontil 2009, Thm 4, with the published ln(2/d)
        var = float(np.var(x, ddof=1))
        half = math.sqrt(2 * var * math.log(2 / d) / n) + 7 * math.log(2 / d) / (3 * (n - 1))
    return min(max(mean - half, 0.0), 1.0), min(max(mean + half, 0.0), 1.0)


def ref_soft(rows0, rows, sigma, alpha, bound):
    rows0 = np.asarray(rows0, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.float64)
    m = rows.shape[1]
    c = int(np.argmax(rows0.mean(axis=0)))
    lower_c = ref_bounds(rows[:, c], alpha / 2, bound)[0]
    uppers = [ref_bounds(rows[:, j], alpha / (2 * (m - 1)), bound)[1] for j in range(m) if j != c]
    pB = min(1 - lower_c, max(uppers))
    with np.errstate(divide="ignore"):
        r = sigma / 2 * (stats.norm.ppf(lower_c) - stats.norm.ppf(pB))
    if not r > 0:
        return -1, 0.0, lower_c, pB
    return c, r, lower_c, pB


def rows_dirichlet(rng, n, conc):
    return rng.dirichlet(conc, size=n).astype(np.float32)


# ---------------------------------------------------------------- tests
def test_soft_matches_independent_computation(make_store):
    rng = np.random.default_rng(4)
    n0, n, sigma = 30, 800, 0.5
    concs = [[8, 1, 1, 1], [3, 2.5, 1, 1], [1, 1, 1, 1], [1, 5, 7, 1], [20, 0.2, 0.2, 0.2]]
    probs = np.stack([rows_dirichlet(rng, n0 + n, np.array(c, float)) for c in concs])
    # input 3: S0 picks class 2 with runner-up 3; on S class 1 is the close competitor, not the S0 runner-up
    probs[3, :n0] = rows_dirichlet(rng, n0, np.array([1, 1, 6, 4.0]))
    labels = np.array([0, 0, 1, 2, 0])
    store = make_store(probs, labels, n0, sigma=sigma)
    for alpha in (0.001, 0.1):
        tab, meta = certify(store, "soft", CertifyOptions(alpha=alpha, bound=["bernstein", "hoeffding"]),
                            progress=False)
        assert meta["confidence"] == pytest.approx(1 - alpha) and "Bonferroni" in meta["confidence_statement"]
        assert list(tab.columns[:9]) == ["idx", "label", "method", "bound", "predict", "radius", "correct",
                                         "p_lower", "p_upper"]
        assert len(tab) == 2 * len(concs)
        for i in range(len(concs)):
            for bound in ("bernstein", "hoeffding"):
                row = tab[(tab["idx"] == i) & (tab["bound"] == bound)].iloc[0]
                pred, r, lo, pb = ref_soft(probs[i, :n0], probs[i, n0:], sigma, alpha, bound)
                assert row["predict"] == pred
                assert row["radius"] == pytest.approx(r, abs=1e-12)
                assert row["p_lower"] == pytest.approx(lo, abs=1e-12)
                assert row["p_upper"] == pytest.approx(pb, abs=1e-12)
    # input 2 (uniform) abstains at both levels
    assert (tab[tab["idx"] == 2]["predict"] == -1).all()
    # input 3: bounding only the S0 runner-up (Moutaouakil 2024) would claim a much larger radius than the sound one
    row = tab[(tab["idx"] == 3) & (tab["bound"] == "bernstein")].iloc[0]
    s0_runner = int(np.argsort(-probs[3, :n0].astype(np.float64).mean(axis=0), kind="stable")[1])
    assert s0_runner == 3 and row["predict"] == 2
    up_runner = ref_bounds(probs[3, n0:, s0_runner].astype(np.float64), alpha / 2, "bernstein")[1]
    r_runner_only = sigma / 2 * (stats.norm.ppf(row["p_lower"]) - stats.norm.ppf(min(1 - row["p_lower"], up_runner)))
    assert r_runner_only > row["radius"] + 0.1


def test_default_bound_is_bernstein_and_bad_bounds_are_refused(make_store):
    rng = np.random.default_rng(0)
    store = make_store(np.stack([rows_dirichlet(rng, 120, np.array([5.0, 1, 1]))]), np.array([0]), 20)
    tab, _ = certify(store, "soft", CertifyOptions(), progress=False)
    assert list(tab["bound"]) == ["bernstein"]
    with pytest.raises(ValueError, match="bound"):
        certify(store, "soft", CertifyOptions(bound=["cdf"]), progress=False)


def test_one_observed_class_and_zero_probabilities(make_store):
    """One-hot rows (variance 0, other classes exactly 0) and a store with two classes: finite radii, no error."""
    n0, n, sigma, alpha = 10, 500, 0.25, 0.001
    onehot = np.zeros((n0 + n, 3), np.float32)
    onehot[:, 1] = 1.0
    two = np.zeros((n0 + n, 3), np.float32)
    two[:, 0], two[:, 2] = 0.9, 0.1
    store = make_store(np.stack([onehot, two]), np.array([1, 0]), n0, sigma=sigma)
    tab, _ = certify(store, "soft", CertifyOptions(bound=["bernstein", "hoeffding"]), progress=False)
    assert np.isfinite(tab["radius"]).all() and (tab["radius"] > 0).all()
    for i, rows in enumerate((onehot, two)):
        for bound in ("bernstein", "hoeffding"):
            row = tab[(tab["idx"] == i) & (tab["bound"] == bound)].iloc[0]
            pred, r, lo, pb = ref_soft(rows[:n0], rows[n0:], sigma, alpha, bound)
            assert (row["predict"], row["radius"]) == (pred, pytest.approx(r, abs=1e-12))
    # the Bernstein bound of a constant class: mean -/+ 7 ln(2/d) / (3 (n - 1)), exactly
    b = tab[(tab["idx"] == 0) & (tab["bound"] == "bernstein")].iloc[0]
    assert b["p_lower"] == pytest.approx(1 - 7 * math.log(4 / alpha) / (3 * (n - 1)), abs=1e-12)
    upper_j = 7 * math.log(2 / (alpha / (2 * 2))) / (3 * (n - 1))  # the two zero classes, at alpha/(2(m-1)) each
    assert b["p_upper"] == pytest.approx(min(1 - b["p_lower"], upper_j), abs=1e-12)
    assert b["p_upper"] < upper_j  # here 1 - lower_c is the smaller of the two (both hold on the same event)


def test_two_classes_and_pure_function_edges():
    from smoothcert.certifier.soft import soft_certify

    mean = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    var = np.zeros_like(mean)
    pred, rad, lo, pb = soft_certify(mean, var, 1000, np.array([0, 0, 0]), 0.5, 0.001, "hoeffding")
    assert list(pred) == [-1, -1, 0]  # lower_c = 0 (Phi^-1 = -inf) abstains without a warning-turned-error
    assert rad[0] == 0 and rad[1] == 0 and np.isfinite(rad[2]) and rad[2] > 0
    # m = 2: the single other class is bounded at alpha/2, and pB = min(1 - lower_c, upper_j)
    half = math.sqrt(math.log(2 / 0.001) / 2000)
    assert lo[2] == pytest.approx(1 - half) and pb[2] == pytest.approx(half)
    # n = 1: Bernstein is vacuous ([0, 1]) and abstains
    pred, rad, lo, pb = soft_certify(np.array([[0.9, 0.1]]), np.array([[np.nan, np.nan]]), 1, np.array([0]), 0.5,
                                     0.001, "bernstein")
    assert pred[0] == -1 and rad[0] == 0.0 and lo[0] == 0.0


def test_soft_soundness_simulation():
    """Known class means (Dirichlet rows): the joint event lower_c <= E[p_c] and p_upper >= max_{j != c} E[p_j]
    fails at rate <= alpha; bounding only the S0 runner-up is not what is computed (every class is). A necessary
    check (both bounds are far from exact at n = 200); soundness/test_power.py::test_soft_power has power."""
    from smoothcert.certifier.soft import mean_var, soft_certify

    rng = np.random.default_rng(9)
    alpha, n, trials = 0.2, 200, 300
    conc = np.array([3.0, 2.0, 2.0, 2.0, 2.0])
    truth = conc / conc.sum()
    for bound in ("bernstein", "hoeffding"):
        rows = rng.dirichlet(conc, size=(trials, n)).astype(np.float32)
        mean, var = mean_var(rows, 0, n)
        cls = np.zeros(trials, np.int64)
        _, _, lo, pb = soft_certify(mean, var, n, cls, 0.5, alpha, bound)
        fail = (lo > truth[0]) | (pb < truth[1:].max())
        assert fail.mean() <= alpha
