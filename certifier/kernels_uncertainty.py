"""Numba kernels of the uncertainty certificates: one pass over the rows, many thresholds.

``theta_histogram`` reads each stored row once, computes every requested
uncertainty value u(p) from it, and files the row under its hard label and
the number of thresholds it does not pass; cumulative sums of that histogram
are the extended counts for every theta at once. ``ncl_strict_r2`` is the
bisection of the ``ncl-strict`` radius R2 for many (input, theta) pairs.
Pure functions of their arrays (parallel over inputs, GIL released).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)

# Codes of the uncertainty functions inside the kernels (order of uncertainty.FUNCTIONS).
ENTROPY, CONFIDENCE, MARGIN = 0, 1, 2


@nb.njit(parallel=True, **_JIT)
def _theta_hist(rows, labels, starts, stops, funcs, thetas, m):
    B = rows.shape[0]
    F = funcs.shape[0]
    T = thetas.shape[0]
    hist = np.zeros((B, F, m, T + 1), dtype=np.int64)
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            lab = labels[b, r]
            if lab < 0 or lab >= m:
                continue  # the reader refuses such inputs; never counted as a real class
            ent = 0.0
            p1 = -1.0
            p2 = -1.0
            for c in range(m):
                p = np.float64(rows[b, r, c])
                if p > 0.0:
                    ent -= p * math.log(p)
                if p > p1:
                    p2 = p1
                    p1 = p
                elif p > p2:
                    p2 = p
            for fi in range(F):
                f = funcs[fi]
                if f == ENTROPY:
                    u = ent
                elif f == CONFIDENCE:
                    u = -p1
                else:
                    u = -(p1 - p2)
                if u != u:
                    j = T  # NaN uncertainty: never below a threshold, always V
                else:
                    lo = 0
                    hi = T
                    while lo < hi:  # j = number of thresholds <= u
                        mid = (lo + hi) // 2
                        if thetas[mid] <= u:
                            lo = mid + 1
                        else:
                            hi = mid
                    j = lo
                hist[b, fi, lab, j] += 1
    return hist


def theta_histogram(rows, labels, start, stop, funcs, thetas_sorted, m: int) -> np.ndarray:
    """(B, F, m, T + 1) int64: rows ``start[b]:stop[b]`` of input b by function, hard label and bin.

    Bin j holds the rows whose u value has exactly j of the (ascending,
    distinct) thresholds at or below it, so a row is confident (u < theta_t)
    exactly for t >= j. u is computed in float64 from the stored values:
    entropy ``-sum_c p_c ln p_c`` summed in class order with ``0 ln 0 = 0``
    (p <= 0 contributes 0), confidence ``-max p``, margin ``-(p_(1) - p_(2))``.
    """
    B = labels.shape[0]
    starts = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,)).copy()
    return _theta_hist(np.ascontiguousarray(rows, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int64),
                       starts, stops, np.ascontiguousarray(funcs, dtype=np.int64),
                       np.ascontiguousarray(thetas_sorted, dtype=np.float64), int(m))


@nb.njit(**_JIT)
def _phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@nb.njit(parallel=True, **_JIT)
def _r2_bisect(z_av, z_b, lo0, sigma, tol):
    P = z_av.shape[0]
    out = np.full(P, -np.inf)
    for i in nb.prange(P):
        a = z_av[i]
        bb = z_b[i]
        lo = lo0[i]
        # f(r) = Phi(a - r/sigma)/2 - Phi(b + r/sigma) is strictly decreasing in r, and
        # f(sigma/2 (a - b)) = Phi(mid)/2 - Phi(mid) < 0: that is the upper end of the bracket.
        hi = 0.5 * sigma * (a - bb)
        if not (math.isfinite(a) and math.isfinite(bb)) or not (hi > lo):
            continue
        if 0.5 * _phi(a - lo / sigma) < _phi(bb + lo / sigma):
            continue  # f(lo) < 0: R2 < lo, it cannot raise the radius
        it = 0
        while hi - lo > tol and it < 200:
            mid = 0.5 * (lo + hi)
            if 0.5 * _phi(a - mid / sigma) >= _phi(bb + mid / sigma):
                lo = mid
            else:
                hi = mid
            it += 1
        out[i] = lo
    return out


def ncl_strict_r2(z_av, z_b, lo, sigma: float, tol: float = 1e-9) -> np.ndarray:
    """R2 = sup{r : Phi(z_av - r/sigma)/2 >= Phi(z_b + r/sigma)} where it exceeds ``lo``, else -inf.

    Bisection on [lo, sigma/2 (z_av - z_b)] until the bracket is at most
    ``tol`` wide; returns its lower end, a value that satisfies the
    inequality (never above the true supremum). Pairs whose R2 cannot exceed
    ``lo`` (the inequality already fails at lo) get -inf, which is all the
    caller needs for ``max(R1, R2)`` with ``lo = max(R1, 0)``.
    """
    z_av = np.ascontiguousarray(z_av, dtype=np.float64)
    z_b = np.ascontiguousarray(z_b, dtype=np.float64)
    lo = np.ascontiguousarray(np.broadcast_to(np.asarray(lo, dtype=np.float64), z_av.shape))
    return _r2_bisect(z_av, z_b, lo, float(sigma), float(tol))
