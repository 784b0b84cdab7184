"""Bounds and binomial tests against statsmodels and scipy (independent implementations)."""
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from smoothcert.stats.bounds import bernstein_mean_bounds, cp_lower, cp_upper, hoeffding_mean_bounds
from smoothcert.stats.hypotheses import binom_p
from smoothcert.stats.normal import norm_ppf


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


def _grid(n_max: int):
    """Every (k, n) with 0 <= k <= n <= n_max."""
    n = np.concatenate([np.full(i + 1, i) for i in range(n_max + 1)])
    k = np.concatenate([np.arange(i + 1) for i in range(n_max + 1)])
    return k, n


def _scipy_stats_binom_p(k, n, alternative):
    """binom_p as computed through scipy.stats.binom (what smoothcert used before it dropped the scipy.stats import)."""
    out = np.ones(k.shape)
    pos = n > 0
    kk, nn = k[pos], n[pos]
    if alternative == "greater":
        out[pos] = stats.binom.sf(kk - 1, nn, 0.5)
    else:
        lo = np.minimum(kk, nn - kk)
        out[pos] = np.minimum(np.where(2 * kk == nn, 1.0, 2.0 * stats.binom.cdf(lo, nn, 0.5)), 1.0)
    return out


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_binom_p_is_bit_identical_to_scipy_stats_binom(alternative):
    k, n = _grid(1000)  # every (k, n) up to n = 1000, then random large n, many near n / 2
    rng = np.random.default_rng(3)
    nl = rng.integers(1001, 20_000_000, 50_000)
    kl = np.concatenate([(rng.random(25_000) * (nl[:25_000] + 1)).astype(np.int64),
                         np.clip(nl[25_000:] // 2 + rng.integers(-5000, 5000, 25_000), 0, nl[25_000:])])
    k, n = np.concatenate([k, kl]), np.concatenate([n, nl])
    ours = binom_p(k, n, alternative)
    assert np.array_equal(ours.view(np.int64), _scipy_stats_binom_p(k, n, alternative).view(np.int64))


def test_binom_p_two_sided_is_scipys_exact_test_by_its_definition():
    """binomtest's two-sided p-value sums P(X = j) over every j with P(X = j) <= P(X = k) (1 + 1e-7); at p = 1/2
    that is sum C(n, j) / 2^n over C(n, j) 1e7 <= C(n, k) (1e7 + 1), computed here in exact integers."""
    from fractions import Fraction
    from math import comb

    k, n = _grid(160)
    ours = binom_p(k, n)
    for kk, nn, p in zip(k.tolist(), n.tolist(), ours.tolist()):
        c = [comb(nn, j) for j in range(nn + 1)]
        ref = Fraction(sum(x for x in c if x * 10**7 <= c[kk] * (10**7 + 1)), 2**nn)
        assert p == pytest.approx(float(min(ref, 1)), rel=1e-12, abs=1e-300)


def test_norm_ppf_is_bit_identical_to_scipy_stats_norm_ppf():
    rng = np.random.default_rng(4)
    edges = [0.0, 1.0, 0.5, -0.0, 5e-324, 2**-1022, 1 - 2**-53, 0.5 - 2**-54, 0.5 + 2**-53, -0.1, 1.1, np.nan,
             np.inf, -np.inf]
    p = np.concatenate([edges, rng.random(200_000), 10 ** -rng.uniform(0, 320, 100_000)])
    for x in (p, p.astype(np.float32)):
        assert np.array_equal(norm_ppf(x).view(np.int64), stats.norm.ppf(x).view(np.int64))
    for v in (0.0, 0.5, 0.975, 1.0, 2.0):
        got, ref = norm_ppf(v), stats.norm.ppf(v)
        assert type(got) is type(ref) and np.array_equal(np.float64(got).view(np.int64), np.float64(ref).view(np.int64))


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
