"""The beta-binomial confidence sequence (docs/methods.md section 11) against independent computations.

References here are written separately from the Numba kernel: scipy's
brentq on the log-martingale built from scipy.special.betaln, and closed
forms where the martingale has one (t = 1, k = t).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

from smoothcert.stats.bounds import cp_lower, cp_upper
from smoothcert.stats.confseq import cs_lower, cs_upper, log_martingale

LEVELS = (0.1, 1e-3, 1e-6)


def scipy_log_m(p, k, t):
    return betaln(k + 0.5, t - k + 0.5) - betaln(0.5, 0.5) - xlogy(k, p) - xlog1py(t - k, -p)


def scipy_cs_lower(k, t, a):
    if k == 0:
        return 0.0
    return brentq(lambda p: scipy_log_m(p, k, t) - math.log(1 / a), 1e-300, k / t, xtol=1e-15, rtol=1e-15)


def scipy_cs_upper(k, t, a):
    if k == t:
        return 1.0
    return brentq(lambda p: scipy_log_m(p, k, t) - math.log(1 / a), k / t, 1.0 - 1e-17, xtol=1e-15, rtol=1e-15)


CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (1, 100), (50, 100), (99, 100), (100, 100),
         (0, 10**6), (1, 10**6), (3, 10**6), (500_000, 10**6), (900_000, 10**6), (999_990, 10**6), (10**6, 10**6),
         (123_457, 200_000), (99_000, 100_000)]


@pytest.mark.parametrize("a", LEVELS)
def test_lower_bound_matches_scipy_root_and_is_never_above_it(a):
    for k, t in CASES:
        got, ref = cs_lower(k, t, a), scipy_cs_lower(k, t, a)
        assert ref - 1.5e-12 <= got <= ref + 1e-13, (k, t, a, got, ref)


@pytest.mark.parametrize("a", LEVELS)
def test_upper_bound_matches_scipy_root_and_is_never_below_it(a):
    for k, t in CASES:
        got, ref = cs_upper(k, t, a), scipy_cs_upper(k, t, a)
        assert ref - 1e-13 <= got <= ref + 1.5e-12, (k, t, a, got, ref)


@pytest.mark.parametrize("a", LEVELS)
def test_one_success_in_one_trial_gives_half_the_level(a):
    # M_1(p) = B(3/2, 1/2) / (pi p) = 1 / (2 p), so M < 1/a exactly when p > a / 2
    assert abs(cs_lower(1, 1, a) - a / 2) <= 1e-12
    assert cs_lower(1, 1, a) <= a / 2


@pytest.mark.parametrize("t", [1, 7, 1000, 10**6])
def test_all_successes_has_a_closed_form_lower_bound(t):
    # k = t: log M(p) = ln B(t + 1/2, 1/2) - ln(pi) - t ln p, so the root is exp((lnB - ln pi - ln(1/a)) / t)
    for a in LEVELS:
        exact = math.exp((betaln(t + 0.5, 0.5) - math.log(math.pi) - math.log(1 / a)) / t)
        got = cs_lower(t, t, a)
        assert exact - 1.5e-12 <= got <= exact + 1e-13
        assert cs_upper(t, t, a) == 1.0


def test_no_successes_gives_zero_and_no_failures_gives_one():
    assert cs_lower(0, 5, 0.01) == 0.0
    assert cs_upper(5, 5, 0.01) == 1.0
    assert np.all(cs_lower(np.zeros(3), [1, 10, 10**6], 1e-6) == 0.0)


def test_upper_bound_is_one_minus_lower_bound_of_the_failures():
    rng = np.random.default_rng(0)
    t = rng.integers(1, 10**6, 500)
    k = (rng.random(500) * (t + 1)).astype(np.int64).clip(0, t)
    for a in LEVELS:
        assert np.max(np.abs(cs_upper(k, t, a) - (1 - cs_lower(t - k, t, a)))) <= 2e-12


def test_log_martingale_matches_betaln_and_is_at_most_zero_at_the_estimate():
    rng = np.random.default_rng(1)
    t = rng.integers(1, 10**6, 300)
    k = (rng.random(300) * (t + 1)).astype(np.int64).clip(0, t)
    p = rng.uniform(0.01, 0.99, 300)
    ours, ref = log_martingale(p, k, t), scipy_log_m(p, k, t)
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-8)
    assert np.all(log_martingale(k / t, k, t) <= 1e-9)  # the mixture never beats the maximum likelihood


def test_confidence_sequence_is_wider_than_clopper_pearson_at_the_same_level():
    t = np.concatenate([np.repeat(np.arange(1, 61), np.arange(1, 61) + 1), [10**4] * 5, [10**6] * 5])
    k = np.concatenate([np.arange(n + 1) for n in range(1, 61)] + [[0, 10, 5000, 9990, 10**4], [0, 1, 5 * 10**5, 999_999, 10**6]])
    for a in LEVELS:
        assert np.all(cs_lower(k, t, a) <= cp_lower(k, t, a))
        assert np.all(cs_upper(k, t, a) >= cp_upper(k, t, a))
    assert np.mean(cs_lower(k, t, 1e-3) < cp_lower(k, t, 1e-3)) > 0.9  # strictly wider where k > 0


def test_bounds_are_monotone_in_the_level_and_in_the_count():
    levels = np.array([0.4, 0.1, 0.01, 1e-3, 1e-6, 1e-12])  # decreasing a: wider bounds
    for k, t in CASES:
        lo = cs_lower(k, t, levels)
        up = cs_upper(k, t, levels)
        assert np.all(np.diff(lo) <= 0) and np.all(np.diff(up) >= 0), (k, t)
    t = 1000
    lo = cs_lower(np.arange(t + 1), t, 1e-3)
    assert np.all(np.diff(lo) > 0)


def test_vectorised_call_equals_elementwise_calls_and_broadcasts():
    k = np.array([[0, 3], [7, 10]])
    t = np.array([10, 10])
    out = cs_lower(k, t, 0.01)
    assert out.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            assert out[i, j] == cs_lower(int(k[i, j]), int(t[j]), 0.01)
    assert isinstance(cs_upper(3, 10, 0.01), float)


@pytest.mark.parametrize("k,t,a,word", [(5, 4, 0.1, "k <= t"), (1, 0, 0.1, "t >= 1"), (1.5, 4, 0.1, "whole"),
                                        (1, 4, 0.0, "(0, 1)"), (1, 4, 1.0, "(0, 1)")])
def test_bad_arguments_are_refused_in_one_line(k, t, a, word):
    with pytest.raises(ValueError) as e:
        cs_lower(k, t, a)
    assert word in str(e.value) and "\n" not in str(e.value)
