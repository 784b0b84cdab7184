"""Soft-classifier radius (Salman et al. Lemma 2, as used in Moutaouakil 2024 eq. 3; docs/methods.md section 7): pure functions.

The smoothed soft classifier is ``H(x) = E[p(x + d)]``; each ``x -> Phi^-1(H_j(x))``
is 1/sigma-Lipschitz, so if ``H_c(x) >= lower_c`` and ``H_j(x) <= pB`` for every
``j != c``, then c stays the argmax of H within
``sigma/2 (Phi^-1(lower_c) - Phi^-1(pB))``.

Departures from Moutaouakil 2024, on purpose (the spec wins): every other class j is
bounded, at alpha/(2(m-1)) each (Bonferroni), not only the runner-up of the S0
mean (which over-claimed in 38% of simulated stores); the empirical Bernstein
constant is the published ln(2/d) of Maurer and Pontil's Thm 4, not ln(1/d).
Where the spec is silent: entries of stored rows are clipped to [0, 1]
before averaging (a no-op for softmax rows, which the store validates as
non-negative and summing to 1 up to 1e-3).
"""
from __future__ import annotations

import numba as nb
import numpy as np
from scipy import special

from ..stats.bounds import bernstein_mean_bounds, hoeffding_mean_bounds

SOFT_BOUNDS = ("bernstein", "hoeffding")


@nb.njit(nogil=True, cache=True)
def _mean_var(rows, start, stops, mean, var):
    B, _, m = rows.shape
    for i in range(B):
        n = stops[i] - start
        for j in range(m):
            mean[i, j] = 0.0
            var[i, j] = 0.0
        if n <= 0:
            continue
        for r in range(start, stops[i]):
            for j in range(m):
                mean[i, j] += min(max(np.float64(rows[i, r, j]), 0.0), 1.0)
        for j in range(m):
            mean[i, j] /= n
        for r in range(start, stops[i]):
            for j in range(m):
                d = min(max(np.float64(rows[i, r, j]), 0.0), 1.0) - mean[i, j]
                var[i, j] += d * d
        for j in range(m):
            var[i, j] = var[i, j] / (n - 1) if n > 1 else np.nan


def mean_var(rows: np.ndarray, start: int, stop) -> tuple[np.ndarray, np.ndarray]:
    """Per input and class, the mean and unbiased variance (two-pass, float64) of rows ``start:stop[b]``.

    ``rows`` (B, R, m); entries clipped to [0, 1]; variance NaN when fewer than 2 rows.
    """
    rows = np.ascontiguousarray(rows)
    B, R, m = rows.shape
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,)).copy()
    mean = np.empty((B, m), np.float64)
    var = np.empty((B, m), np.float64)
    _mean_var(rows, int(start), stops, mean, var)
    return mean, var


def mean_bounds(mean, var, n, delta, bound: str):
    """``(lower, upper)`` on E of a [0, 1] variable from its mean (and variance) over n rows; each side w.p. >= 1 - delta."""
    if bound == "bernstein":
        return bernstein_mean_bounds(mean, var, n, delta)
    if bound == "hoeffding":
        return hoeffding_mean_bounds(mean, n, delta)
    raise ValueError(f"--bound: {bound!r} is not one of {', '.join(SOFT_BOUNDS)} for --method soft")


def soft_certify(mean: np.ndarray, var: np.ndarray, n, cls: np.ndarray, sigma: float, alpha: float, bound: str):
    """With prob. >= 1 - alpha (over S), c = argmax of E[p(x + d)] for every ||d|| < radius; (-1, 0) on abstain.

    ``mean``/``var`` (B, m) over S; ``cls`` (B,) chosen on S0. ``lower_c`` at
    alpha/2, ``upper_j`` for every j != c at alpha/(2(m-1)), ``pB = min(1 - lower_c,
    max_j upper_j)`` (both hold on the same event), ``radius = sigma/2
    (Phi^-1(lower_c) - Phi^-1(pB))``, abstain if <= 0. Returns
    ``(predict, radius, p_lower = lower_c, p_upper = pB)``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    B, m = mean.shape
    cls = np.asarray(cls, dtype=np.int64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), (B,))
    rows = np.arange(B)
    lower_c, _ = mean_bounds(mean[rows, cls], var[rows, cls], n, alpha / 2, bound)
    lower_c = np.atleast_1d(lower_c)
    if m > 1:
        _, upper = mean_bounds(mean, var, n[:, None], alpha / (2 * (m - 1)), bound)
        upper = np.array(upper, dtype=np.float64, copy=True)
        upper[rows, cls] = -np.inf
        max_other = upper.max(axis=1)
    else:
        max_other = np.zeros(B)
    pB = np.minimum(1.0 - lower_c, max_other)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = sigma / 2 * (special.ndtri(lower_c) - special.ndtri(pB))
    ok = radius > 0  # NaN (both infinite) abstains too
    predict = np.where(ok, cls, -1).astype(np.int64)
    return predict, np.where(ok, radius, 0.0).astype(np.float64), lower_c, pB
