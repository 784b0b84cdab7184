"""Confidence bounds on a proportion and on a mean (pure, vectorised scipy).

Every function here is a pure function over numpy arrays: no I/O, no state.
Levels are one-sided: ``CP_lower(k, n, a)`` is below the true proportion with
probability at least ``1 - a``.
"""
from __future__ import annotations

import numpy as np
from scipy import special


def _as_counts(k, n):
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return np.broadcast_arrays(k, n)


def cp_lower(k, n, alpha):
    """One-sided Clopper-Pearson lower bound: P(p >= bound) >= 1 - alpha.

    ``Beta.ppf(alpha, k, n - k + 1)``, 0 when k = 0; equals statsmodels'
    ``proportion_confint(k, n, alpha=2*alpha, method="beta")[0]``.
    Vectorised over k, n and alpha.
    """
    k, n = _as_counts(k, n)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), k.shape)
    out = np.zeros(k.shape, dtype=np.float64)
    pos = k > 0
    if np.any(pos):
        out[pos] = special.betaincinv(k[pos], n[pos] - k[pos] + 1.0, alpha[pos])
    return out if out.ndim else float(out)


def cp_upper(k, n, alpha):
    """One-sided Clopper-Pearson upper bound: P(p <= bound) >= 1 - alpha.

    ``Beta.ppf(1 - alpha, k + 1, n - k)``, 1 when k = n.
    """
    k, n = _as_counts(k, n)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), k.shape)
    out = np.ones(k.shape, dtype=np.float64)
    lt = k < n
    if np.any(lt):
        # betainccinv(a, b, y) solves 1 - I_x(a, b) = y, i.e. ppf(1 - y) without
        # the cancellation of computing 1 - alpha in floating point.
        out[lt] = special.betainccinv(k[lt] + 1.0, n[lt] - k[lt], alpha[lt])
    return out if out.ndim else float(out)


def hoeffding_mean_bounds(mean, n, delta):
    """Hoeffding bounds on the mean of values in [0, 1]: each side holds w.p. >= 1 - delta.

    Returns ``(lower, upper)`` = ``mean -/+ sqrt(ln(1/delta) / (2 n))`` clipped to [0, 1].
    """
    mean = np.asarray(mean, dtype=np.float64)
    half = np.sqrt(np.log(1.0 / np.asarray(delta, dtype=np.float64)) / (2.0 * np.asarray(n, dtype=np.float64)))
    return np.clip(mean - half, 0.0, 1.0), np.clip(mean + half, 0.0, 1.0)


def bernstein_mean_bounds(mean, var, n, delta):
    """Empirical Bernstein bounds (Maurer and Pontil 2009, Thm 4) on a mean of values in [0, 1].

    ``mean -/+ (sqrt(2 V ln(2/delta) / n) + 7 ln(2/delta) / (3 (n - 1)))`` with V the
    unbiased sample variance; each side holds w.p. >= 1 - delta. Clipped to [0, 1].
    """
    mean = np.asarray(mean, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    log_term = np.log(2.0 / np.asarray(delta, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(2.0 * np.asarray(var, dtype=np.float64) * log_term / n) + 7.0 * log_term / (3.0 * (n - 1.0))
    half = np.where(n > 1, half, np.inf)
    return np.clip(mean - half, 0.0, 1.0), np.clip(mean + half, 0.0, 1.0)
