"""Bounds and binomial tests against statsmodels and scipy (independent implementations)."""
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from smoothcert.stats.bounds import bernstein_mean_bounds, cp_lower, cp_upper, hoeffding_mean_bounds
from smoothcert.stats.hypotheses import binom_p


def test_cp_lower_equals_statsmodels():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 200_000, size=400)
    k = (rng.random(400) * (n + 1)).astype(np.int64)
    k[:20] = 0
    k[20:40] = n[20:40]
    a = 10 ** rng.uniform(-6, -1, size=400)
    ours = cp_lower(k, n, a)
    ref = np.array([proportion_confint(int(ki), int(ni), alpha=2 * ai, method="beta")[0] for ki, ni, ai in zip(k, n, a)])
    ref = np.nan_to_num(ref, nan=0.0)  # statsmodels returns nan for k = 0 in some versions
    assert np.max(np.abs(ours - ref)) < 1e-12


def test_cp_upper_equals_beta_ppf():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 50_000))
        k = int(rng.integers(0, n + 1))
        a = float(10 ** rng.uniform(-6, -1))
        ref = 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)
        assert abs(cp_upper(k, n, a) - ref) < 1e-12


def test_cp_edges():
    assert cp_lower(0, 10, 0.01) == 0.0
    assert cp_upper(10, 10, 0.01) == 1.0
    assert cp_lower(10, 10, 0.01) == pytest.approx(0.01 ** (1 / 10), abs=1e-14)
    # CP duality: lower(kA) + upper(n - kA) == 1
    assert cp_lower(70, 100, 0.005) + cp_upper(30, 100, 0.005) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_binom_p_equals_scipy(alternative):
    rng = np.random.default_rng(2)
    for _ in range(500):
        n = int(rng.integers(0, 400))
        k = int(rng.integers(0, n + 1))
        ref = stats.binomtest(k, n, 0.5, alternative=alternative).pvalue if n else 1.0
        assert binom_p(k, n, alternative) == pytest.approx(ref, rel=1e-12, abs=1e-300)


def test_binom_p_rejects_unknown_alternative():
    with pytest.raises(ValueError, match="alternative"):
        binom_p(3, 10, "less")


def test_mean_bounds_formulas():
    lo, hi = hoeffding_mean_bounds(0.7, 1000, 0.01)
    half = np.sqrt(np.log(100) / 2000)
    assert lo == pytest.approx(0.7 - half) and hi == pytest.approx(0.7 + half)
    lo, hi = bernstein_mean_bounds(0.7, 0.04, 1000, 0.01)
    half = np.sqrt(2 * 0.04 * np.log(200) / 1000) + 7 * np.log(200) / (3 * 999)
    assert lo == pytest.approx(0.7 - half) and hi == pytest.approx(0.7 + half)
