"""Soundness simulations of robust conformal sets (docs/methods.md section 12), vectorised over many draws.

Each simulation draws ``DRAWS`` = 500 independent calibration sets of
``N_CAL`` = 49 inputs and, per draw, ``TESTS`` = 20 test inputs, each input
with ``N`` = 100 noisy rows, and calls the pure functions of
``certifier.conformal`` (scores from rows, the calibration quantile, the CDF
score of ``cas``, the upper bound, the set rule) exactly as the method does.
Coverage is the share of test inputs whose set holds their label, per draw;
the check is ``mean >= 1 - m - 3 se`` with ``se`` the standard error of the
per-draw coverage over the 500 draws (about 0.002-0.01 here): a rule whose
true coverage is 1 - m - 0.03 or lower fails it with probability above 0.99
(the negative control below is caught by a margin of more than 10 se).

Robust coverage needs the worst case to be known. A linear classifier on
Gaussian inputs has it exactly: an input at signed distance ``d`` sigma from
the boundary on its label's side gets its label on a noisy copy with
probability Phi(d), and moving it by eps towards the boundary makes that
Phi(d - eps/sigma), exactly the (1/sigma)-Lipschitz drop of Phi^-1 of the
smoothed score that the guarantee allows. The test inputs are moved there
and their noisy copies drawn there; the calibration inputs stay clean.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from smoothcert.certifier import conformal as C

DRAWS, N_CAL, TESTS, N = 500, 49, 20, 100
SIGMA = 0.25
MISCOVERAGE = 0.1


def linear_rows(rng, d, N=N):
    """(B, N, 2) one-hot rows of f(z) = [z_1 > 0] around inputs at signed distance ``d`` (in sigma) from the boundary
    on the side of their label, and their labels (B,): label y's class when the copy stays on its side."""
    B = d.size
    y = rng.integers(0, 2, B)
    keep = (d[:, None] + rng.standard_normal((B, N))) > 0          # the copy is on the label's side
    rows = np.zeros((B, N, 2), np.float32)
    cls = np.where(keep, y[:, None], 1 - y[:, None])
    np.put_along_axis(rows, cls[..., None], 1.0, axis=2)
    return rows, y


def soft_rows(rng, B, m=3, N=N):
    """(B, N, m) softmax rows with an input-specific strength of the label (heterogeneous), and the labels."""
    y = rng.integers(0, m, B)
    logits = rng.standard_normal((B, N, m))
    logits[np.arange(B), :, y] += rng.uniform(0.0, 8.0, B)[:, None]
    p = np.exp(logits)
    return (p / p.sum(-1, keepdims=True)).astype(np.float32), y


def calibration_scores(rows, y, variant, eps, alpha):
    """(B,) each calibration input's score: the label's mean score (rscp+) or the CDF-aware L (cas)."""
    z = C.label_scores(rows, y, 0, rows.shape[1])
    if variant == "rscp+":
        return z.mean(axis=1)
    return np.array([C.cas_lower(zi, [eps / SIGMA], alpha)[0] for zi in z])


def coverage(cal_rows, cal_y, test_rows, test_y, variant, eps, alpha, bound, sizes=False):
    """(DRAWS,) per-draw coverage of the robust sets (inputs of draw k are rows k*size:(k+1)*size); with ``sizes``
    also the mean set size over every draw and test input."""
    E = calibration_scores(cal_rows, cal_y, variant, eps, alpha).reshape(DRAWS, N_CAL)
    mean, var = C.score_mean_var(test_rows, 0, test_rows.shape[1], "hps")
    m = mean.shape[1]
    U = C.upper_mean(mean, var, test_rows.shape[1], alpha, bound).reshape(DRAWS, TESTS, m)
    y = test_y.reshape(DRAWS, TESTS)
    out, size = np.empty(DRAWS), 0.0
    for k in range(DRAWS):
        tau = C.calibration_threshold(E[k], MISCOVERAGE, alpha)
        inside = C.in_set(U[k], tau, variant, eps, SIGMA, test_rows.shape[1], alpha)
        out[k] = inside[np.arange(TESTS), y[k]].mean()
        size += inside.sum() / (DRAWS * TESTS)
    return (out, size) if sizes else out


def assert_covers(cov, what):
    se = cov.std(ddof=1) / np.sqrt(cov.size)
    assert cov.mean() >= 1 - MISCOVERAGE - 3 * se, f"{what}: coverage {cov.mean():.4f} < 1 - m - 3 se ({se:.4f})"


@pytest.fixture(scope="module")
def linear():
    """Heterogeneous inputs (distance ~ N(2.5, 1) sigma, a few on the wrong side): calibration rows at x, test rows
    at x and at x moved by eps = 0.125 and 0.25 towards the boundary (the worst case)."""
    rng = np.random.default_rng(0)
    d_cal = rng.normal(2.5, 1.0, DRAWS * N_CAL)
    d_test = rng.normal(2.5, 1.0, DRAWS * TESTS)
    cal = linear_rows(rng, d_cal)
    tests = {}
    for eps in (0.0, 0.125, 0.25):
        r = np.random.default_rng(1)
        tests[eps] = linear_rows(r, d_test - eps / SIGMA)
    for eps in (0.125, 0.25):   # the same inputs and labels, moved: only the copies differ
        assert (tests[eps][1] == tests[0.0][1]).all()
    return cal, tests, d_test


@pytest.mark.parametrize("variant", ["rscp+", "cas"])
@pytest.mark.parametrize("bound", ["bernstein", "hoeffding"])
def test_clean_coverage_over_500_calibration_draws(variant, bound):
    rng = np.random.default_rng(2)
    cal_rows, cal_y = soft_rows(rng, DRAWS * N_CAL)
    test_rows, test_y = soft_rows(rng, DRAWS * TESTS)
    cov, size = coverage(cal_rows, cal_y, test_rows, test_y, variant, 0.0, 0.01, bound, sizes=True)
    assert_covers(cov, f"{variant} {bound} clean")
    assert size < 1.8   # informative sets (of 3 classes), not the trivial full ones


@pytest.mark.parametrize("variant", ["rscp+", "cas"])
@pytest.mark.parametrize("eps", [0.125, 0.25])
def test_robust_coverage_at_the_worst_case_perturbation(linear, variant, eps):
    (cal_rows, cal_y), tests, d = linear
    test_rows, test_y = tests[eps]
    # the copies were drawn at the moved input: the label's rate is Phi(d - eps/sigma), below the clean Phi(d)
    moved = C.label_scores(test_rows, test_y, 0, N).mean()
    assert moved == pytest.approx(stats.norm.cdf(d - eps / SIGMA).mean(), abs=0.003)
    assert moved < C.label_scores(tests[0.0][0], test_y, 0, N).mean() - 0.02
    for bound in ("bernstein", "hoeffding"):
        cov, size = coverage(cal_rows, cal_y, test_rows, test_y, variant, eps, 0.01, bound, sizes=True)
        assert_covers(cov, f"{variant} eps {eps}")
        assert size < 1.6   # of 2 classes
        # on 0/1 scores L = Phi(Phi^-1(mean - e) - eps/sigma) with e = b_H, a monotone map of the mean: cas's rule
        # U >= tau_L is then rscp+'s, set for set
        other = "cas" if variant == "rscp+" else "rscp+"
        assert np.array_equal(cov, coverage(cal_rows, cal_y, test_rows, test_y, other, eps, 0.01, bound))


def test_the_uncorrected_rscp_rule_is_caught_where_the_corrected_ones_cover():
    """Negative control: Gendler et al.'s RSCP rule applied to Monte Carlo means as if they were the smoothed score
    (no Hoeffding term at calibration, no upper bound at the test input, the plain (n_cal + 1) m quantile), on
    inputs that are almost always right (Phi(d) = 0.999): most calibration means are exactly 1, so the threshold
    is often 1, and at the moved input (0.99) a set then holds the label only if all 100 copies agree.
    Measured coverage 0.68 (se 0.015) against 0.9: caught by this test; rscp+ and cas cover there."""
    rng = np.random.default_rng(3)
    d = stats.norm.ppf(0.999)
    eps = SIGMA * (d - stats.norm.ppf(0.99))
    cal_rows, cal_y = linear_rows(rng, np.full(DRAWS * N_CAL, d))
    test_rows, test_y = linear_rows(rng, np.full(DRAWS * TESTS, d - eps / SIGMA))
    # uncorrected: alpha = 1 switches both corrections off (b_H = sqrt(ln(1/1)/2N) = 0) and U = the mean itself
    E = calibration_scores(cal_rows, cal_y, "rscp+", eps, 1.0).reshape(DRAWS, N_CAL)
    mean = C.label_scores(test_rows, test_y, 0, N).mean(axis=1).reshape(DRAWS, TESTS)
    naive = np.array([C.in_set(mean[k], C.calibration_threshold(E[k], MISCOVERAGE, 0.0), "rscp+", eps, SIGMA, N,
                               1.0).mean() for k in range(DRAWS)])
    with pytest.raises(AssertionError, match="coverage"):
        assert_covers(naive, "uncorrected RSCP")
    assert naive.mean() < 1 - MISCOVERAGE - 0.15
    for variant in ("rscp+", "cas"):
        assert_covers(coverage(cal_rows, cal_y, test_rows, test_y, variant, eps, 0.001, "bernstein"), variant)
