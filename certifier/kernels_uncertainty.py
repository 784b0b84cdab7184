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


@nb.njit(**_JIT)
def _n_at_or_below(thetas, fi, T, u, bstart, L, lo, inv_w):
    """Number of thetas[fi, :T] <= u: a bucket guess corrected by exact scans, or a branchless binary search."""
    if L > 0:
        x = (u - lo) * inv_w
        k = 0 if not (x > 0.0) else (L - 1 if x >= L - 1 else int(x))
        j = bstart[fi, k]
        while j > 0 and thetas[fi, j - 1] > u:
            j -= 1
        while j < T and thetas[fi, j] <= u:
            j += 1
        return j
    base = 0
    n = T
    while n > 1:
        half = n >> 1
        base = base + half if thetas[fi, base + half] <= u else base
        n -= half
    return base + (1 if thetas[fi, base] <= u else 0)


@nb.njit(parallel=True, **_JIT)
def _theta_hist(rows, labels, starts, stops, funcs, thetas, tcount, m, bstart, nbk, lo, inv_w):
    B = rows.shape[0]
    F = funcs.shape[0]
    Tmax = thetas.shape[1]
    need_ent = False
    need_max = False
    for fi in range(F):
        if funcs[fi] == ENTROPY:
            need_ent = True
        else:
            need_max = True
    hist = np.zeros((B, F, m, Tmax + 1), dtype=np.int64)
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            lab = labels[b, r]
            if lab < 0 or lab >= m:
                continue  # the reader refuses such inputs; never counted as a real class
            ent = 0.0
            p1 = -1.0
            p2 = -1.0
            if need_ent and need_max:  # one pass for both
                for c in range(m):
                    p = np.float64(rows[b, r, c])
                    if p > 0.0:
                        ent -= p * math.log(p)
                    # branchless top two (a tie keeps both: margin 0)
                    p2 = max(p2, min(p1, p))
                    p1 = max(p1, p)
            elif need_ent:
                for c in range(m):
                    p = np.float64(rows[b, r, c])
                    if p > 0.0:
                        ent -= p * math.log(p)
            else:
                for c in range(m):
                    p = np.float64(rows[b, r, c])
                    p2 = max(p2, min(p1, p))
                    p1 = max(p1, p)
            for fi in range(F):
                f = funcs[fi]
                if f == ENTROPY:
                    u = ent
                elif f == CONFIDENCE:
                    u = -p1
                else:
                    u = -(p1 - p2)
                if u != u:
                    j = Tmax  # NaN uncertainty: never below a threshold, always V
                else:
                    j = _n_at_or_below(thetas, fi, tcount[fi], u, bstart, nbk[fi], lo[fi], inv_w[fi])
                hist[b, fi, lab, j] += 1
    return hist


def theta_histogram(rows, labels, start, stop, funcs, thetas_sorted, m: int) -> np.ndarray:
    """(B, F, m, Tmax + 1) int64: rows ``start[b]:stop[b]`` of input b by function, hard label and bin.

    ``thetas_sorted``: one ascending array of distinct thresholds per function
    (or one array for all). Bin j of function f holds the rows whose u_f has
    exactly j of f's thresholds at or below it, so a row is confident
    (u < theta_t) exactly for t >= j. u is computed in float64 from the
    stored values: entropy ``-sum_c p_c ln p_c`` summed in class order with
    ``0 ln 0 = 0`` (p <= 0 contributes 0), confidence ``-max p``, margin
    ``-(p_(1) - p_(2))``. Each row is read once, whatever F and T.
    """
    B = labels.shape[0]
    F = len(funcs)
    starts = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,)).copy()
    per_f = thetas_sorted if isinstance(thetas_sorted, (list, tuple)) else [thetas_sorted] * F
    per_f = [np.asarray(t, dtype=np.float64) for t in per_f]
    Tmax = max(len(t) for t in per_f)
    thetas = np.full((F, Tmax), np.inf)
    tcount = np.zeros(F, np.int64)
    buckets = [theta_buckets(t) for t in per_f]
    Lmax = max(1, max(len(bk[0]) for bk in buckets))
    bstart = np.zeros((F, Lmax), np.int64)
    nbk = np.zeros(F, np.int64)
    lo = np.zeros(F)
    inv_w = np.zeros(F)
    for fi, (t, bk) in enumerate(zip(per_f, buckets)):
        thetas[fi, : len(t)] = t
        tcount[fi] = len(t)
        bstart[fi, : len(bk[0])] = bk[0]
        nbk[fi], lo[fi], inv_w[fi] = len(bk[0]), bk[1], bk[2]
    return _theta_hist(np.ascontiguousarray(rows, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int64),
                       starts, stops, np.ascontiguousarray(funcs, dtype=np.int64), thetas, tcount, int(m),
                       bstart, nbk, lo, inv_w)


def theta_buckets(thetas: np.ndarray, max_per_bucket: int = 8):
    """Equal-width buckets over the finite thetas for an O(1) first guess of a row's bin.

    Returns (bstart, lo, 1/width): ``bstart[k]`` = thetas <= the left edge of
    bucket k. The kernel corrects the guess with exact comparisons, so the
    buckets only decide speed, never the result. Empty ``bstart`` (few or
    clustered thresholds) selects the binary search.
    """
    fin = thetas[np.isfinite(thetas)]
    none = (np.zeros(0, np.int64), 0.0, 0.0)
    if len(fin) < 16:
        return none
    lo, hi = float(fin[0]), float(fin[-1])
    L = len(fin)
    w = (hi - lo) / L
    if not (w > 0 and np.isfinite(w)):
        return none
    edges = lo + w * np.arange(L + 1)
    counts = np.searchsorted(thetas, edges, side="right")
    if np.diff(counts).max() > max_per_bucket:
        return none
    return counts[:L].astype(np.int64), lo, 1.0 / w


@nb.njit(parallel=True, **_JIT)
def _top3(counts, exclude):
    P, M = counts.shape
    cls = np.full((P, 3), -1, dtype=np.int64)
    vals = np.zeros((P, 3), dtype=np.int64)
    for i in nb.prange(P):
        for c in range(M):
            if c == exclude[i]:
                continue
            v = counts[i, c]
            # strictly greater: an equal count keeps the earlier (lower) class in front
            if cls[i, 0] < 0 or v > vals[i, 0]:
                cls[i, 2], vals[i, 2] = cls[i, 1], vals[i, 1]
                cls[i, 1], vals[i, 1] = cls[i, 0], vals[i, 0]
                cls[i, 0], vals[i, 0] = c, v
            elif cls[i, 1] < 0 or v > vals[i, 1]:
                cls[i, 2], vals[i, 2] = cls[i, 1], vals[i, 1]
                cls[i, 1], vals[i, 1] = c, v
            elif cls[i, 2] < 0 or v > vals[i, 2]:
                cls[i, 2], vals[i, 2] = c, v
    return cls, vals


def top3(counts, exclude=None):
    """Classes and counts of the three largest entries per row, ties towards the lowest index.

    Entries ``exclude[i]`` (a class per row, -1 for none) are skipped; missing
    places are class -1 with count 0 (as ``kernels.top_k``).
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if exclude is None:
        exclude = np.full(counts.shape[0], -1, dtype=np.int64)
    return _top3(counts, np.ascontiguousarray(exclude, dtype=np.int64))


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
