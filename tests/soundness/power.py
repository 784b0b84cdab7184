"""The statistics of the power checks (test_power.py): limits, power, and exact violation rates of each bound.

A power check is a one-sided binomial test of H0 "the violation rate is at
most the level" on ``trials`` independent trials: it fails when the
violations exceed ``limit(trials, level)``, the 1 - SIZE quantile of
Binomial(trials, level), so a method whose rate is exactly its level fails
it with probability at most SIZE. Its power is the probability that a
mutant, the same code run at twice alpha, exceeds that limit:
``power(trials, level, rate)`` with the mutant's violation rate.

The rates below are exact (sums of binomial probabilities, the one-sided
Kolmogorov-Smirnov law, small dynamic programmes), written with scipy from
the textbook definitions of each bound and sharing no code with the
certifier. test_power.py takes every trial count, limit and power it states
from these functions and checks them (``test_the_documented_designs``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

SIZE = 1e-4  # probability that a check fails a method whose violation rate is exactly its level


def limit(trials: int, level: float) -> int:
    """Largest violation count a check accepts: the 1 - SIZE quantile of Binomial(trials, level)."""
    return int(stats.binom.ppf(1 - SIZE, trials, level))


def power(trials: int, level: float, rate: float) -> float:
    """Probability that Binomial(trials, rate) violations exceed ``limit(trials, level)``."""
    return float(stats.binom.sf(limit(trials, level), trials, rate))


# ------------------------------------------------------------------ Clopper-Pearson
def _cp_lower(k, n, a):
    k = np.asarray(k)
    return np.where(k > 0, stats.beta.ppf(a, np.maximum(k, 1), n - k + 1), 0.0)


def _cp_upper(k, n, a):
    k = np.asarray(k)
    return np.where(k < n, stats.beta.ppf(1 - a, k + 1, np.maximum(n - k, 1)), 1.0)


def cp_lower_rate(n: int, q: float, a: float) -> float:
    """P(CP_lower(K, n, a) > q) for K ~ Binomial(n, q): how often the lower bound is above the truth."""
    k = np.arange(n + 1)
    return float(stats.binom.pmf(k, n, q)[_cp_lower(k, n, a) > q].sum())


def cp_upper_rate(n: int, q: float, a: float) -> float:
    """P(CP_upper(K, n, a) < q) for K ~ Binomial(n, q): how often the upper bound is below the truth."""
    k = np.arange(n + 1)
    return float(stats.binom.pmf(k, n, q)[_cp_upper(k, n, a) < q].sum())


def cp_gap(n: int, q: float, levels) -> float:
    """Distance from q to the nearest CP bound value at any count and level: no rounding decides a violation."""
    k = np.arange(n + 1)
    return float(min(min(np.abs(_cp_lower(k, n, a) - q).min(), np.abs(_cp_upper(k, n, a) - q).min())
                     for a in levels))


# ------------------------------------------------------------------ DKW (the cdf bound)
def dkw_rate(n: int, a: float) -> float:
    """P(sup_t (P_hat(z >= t) - P(z >= t)) > sqrt(ln(1/a) / (2n))) for n continuous i.i.d. scores.

    The one-sided Kolmogorov-Smirnov statistic's exact law (scipy.stats.ksone);
    Massart's bound exp(-2 n eps^2) = a is its limit as n grows.
    """
    return float(stats.ksone.sf(math.sqrt(math.log(1 / a) / (2 * n)), n))


# ------------------------------------------------------------------ adaptive (CERTIFYADP)
def adaptive_rate(q: float, stages, alpha: float, beta: float) -> float:
    """P(certify) for CERTIFYADP with target radius sigma Phi^-1(q) when the true P(cA) is q (every certificate over-claims).

    Stage i certifies when CP_lower(k_i, n_i, alpha/s) >= q and aborts (i < s)
    when CP_upper(k_i, n_i, beta/(s-1)) < q; k_i are nested prefix counts,
    propagated exactly stage by stage.
    """
    s = len(stages)
    alive = np.array([1.0])            # P(k, undecided) over k = 0..n_{i-1}
    prev, certified = 0, 0.0
    for i, n_i in enumerate(stages):
        step = stats.binom.pmf(np.arange(n_i - prev + 1), n_i - prev, q)
        dist = np.convolve(alive, step)
        k = np.arange(n_i + 1)
        cert = _cp_lower(k, n_i, alpha / s) >= q
        certified += dist[cert].sum()
        stop = cert.copy()
        if i < s - 1:
            stop |= _cp_upper(k, n_i, beta / (s - 1)) < q
        alive = np.where(stop, 0.0, dist)
        prev = n_i
    return float(certified)


# ------------------------------------------------------------------ the confidence sequence
def cs_upper_rate(p: float, T: int, a: float) -> float:
    """P(exists t <= T: CS_upper(k_t, t, a) < p) for a Bernoulli(p) sequence, by dynamic programming over (t, k_t).

    CS_upper(k, t, a) < p exactly when k/t < p and log M_t(p) > ln(1/a), with
    log M_t(p) = ln B(k + 1/2, t - k + 1/2) - ln B(1/2, 1/2) - k ln p - (t - k) ln(1 - p).
    """
    alive = np.array([1.0])            # P(k_t = k, no crossing yet)
    crossed = 0.0
    for t in range(1, T + 1):
        nxt = np.zeros(t + 1)
        nxt[1:] += alive * p
        nxt[:-1] += alive * (1 - p)
        k = np.arange(t + 1)
        log_m = (special.betaln(k + 0.5, t - k + 0.5) - special.betaln(0.5, 0.5) - k * math.log(p)
                 - (t - k) * math.log1p(-p))
        out = (k < p * t) & (log_m > math.log(1 / a))
        crossed += nxt[out].sum()
        alive = np.where(out, 0.0, nxt)
    return float(crossed)


def cs_gap(p: float, T: int, levels) -> float:
    """Distance of log M_t(p) from every ln(1/a) over all (k, t), t <= T: no rounding decides a crossing."""
    gap = math.inf
    for t in range(1, T + 1):
        k = np.arange(t + 1)
        log_m = (special.betaln(k + 0.5, t - k + 0.5) - special.betaln(0.5, 0.5) - k * math.log(p)
                 - (t - k) * math.log1p(-p))
        for a in levels:
            gap = min(gap, float(np.abs(log_m[k < p * t] - math.log(1 / a)).min(initial=math.inf)))
    return gap


# ------------------------------------------------------------------ Hoeffding on one row
def hoeffding_one_row_rate(mean: float, delta: float) -> float:
    """P(z - sqrt(ln(1/delta)/2) > mean) for one z in {0, 1} with P(z = 1) = mean: Hoeffding's lower bound from one row."""
    return mean if 1 - math.sqrt(math.log(1 / delta) / 2) > mean else 0.0


# ------------------------------------------------------------------ one check
@dataclass(frozen=True)
class Design:
    """One power check: ``trials`` trials at ``level``; the exact violation rates at alpha and at 2 alpha."""

    trials: int
    level: float
    nominal_rate: float
    mutant_rate: float

    @property
    def limit(self) -> int:
        return limit(self.trials, self.level)

    @property
    def power(self) -> float:
        return power(self.trials, self.level, self.mutant_rate)

    def text(self) -> str:
        return (f"{self.trials:,} trials at level {self.level:.4g}: limit {self.limit}, exact rates "
                f"{self.nominal_rate:.4f} (alpha) and {self.mutant_rate:.4f} (2 alpha), power {self.power:.4f}")


def check(name: str, design: Design, nominal: int, mutant: int, trials: int | None = None) -> str:
    """Assert that the nominal run passes and the 2x-alpha mutant fails the check; return the line that says so."""
    trials = design.trials if trials is None else trials
    assert trials == design.trials, f"{name}: {trials} trials, the design has {design.trials}"
    lim = design.limit
    line = (f"{name}: violations {nominal}/{trials} at alpha, {mutant}/{trials} at 2 alpha; limit {lim} "
            f"(level {design.level:.4g}, size {SIZE:g}, power {design.power:.4f})")
    print(line)
    assert nominal <= lim, f"UNSOUND? {line}"
    assert mutant > lim, f"NO POWER: the 2x-alpha mutant passed. {line}"
    return line
