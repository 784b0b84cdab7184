"""Numba kernels of the uncertainty certificates: one pass over the rows, many thresholds.

``theta_bins`` reads each stored row once (or a compact store's per-row
entropy and top-2 values), computes every requested uncertainty value u(p)
and files it under the number of thresholds at or below it, so that a row
is confident exactly from that threshold on. From the bins and the hard labels, ``selection_ranks`` ranks
the extended selection counts for every theta (what PREDICT reads) and
``estimation_counts`` counts on the estimation rows only the classes those
ranks picked, and V; ``class_histogram`` counts every class (calibration).
``ncl_strict_r2`` is the bisection of the ``ncl-strict`` radius R2 for many
(input, theta) pairs. Pure functions of their arrays (parallel over inputs,
GIL released).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)

# Codes of the uncertainty functions inside the kernels (order of uncertainty.FUNCTIONS).
ENTROPY, CONFIDENCE, MARGIN = 0, 1, 2


@nb.njit(inline="always", **_JIT)
def _bin(u, thetas, fi, T, bstart, L, lo, inv_w):
    """Number of thetas[fi, :T] <= u (T for NaN): a bucket guess corrected by exact scans, or a binary search."""
    if u != u:
        return T  # NaN uncertainty: never below a threshold, always V
    if L > 0:
        x = (u - lo) * inv_w
        k = 0 if not (x > 0.0) else (L - 1 if x >= L - 1 else int(x))
        j = bstart[fi, k]
        j += thetas[fi, j] <= u  # the guess is mostly right to within two: two steps without a branch
        j += thetas[fi, j] <= u  # (the table has two +inf columns past its thresholds)
        j = min(j, T)
        if (j < T and thetas[fi, j] <= u) or (j > 0 and thetas[fi, j - 1] > u):
            while j > 0 and thetas[fi, j - 1] > u:  # else exact scans from there
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
    return base + (1 if T > 0 and thetas[fi, base] <= u else 0)


@nb.njit(parallel=True, **_JIT)
def _row_bins(rows, starts, stops, funcs, thetas, tcount, bstart, nbk, lo, inv_w, width):
    B = rows.shape[0]
    m = rows.shape[2]
    F = funcs.shape[0]
    need_ent = False
    need_max = False
    for fi in range(F):
        if funcs[fi] == ENTROPY:
            need_ent = True
        else:
            need_max = True
    out = np.empty((F, B, width), dtype=np.int32)
    for b in nb.prange(B):
        for fi in range(F):
            out[fi, b, stops[b] - starts[b]:] = tcount[fi]
        for r in range(starts[b], stops[b]):
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
                u = ent if f == ENTROPY else (-p1 if f == CONFIDENCE else -(p1 - p2))
                out[fi, b, r - starts[b]] = _bin(u, thetas, fi, tcount[fi], bstart, nbk[fi], lo[fi], inv_w[fi])
    return out


@nb.njit(parallel=True, **_JIT)
def _stat_bins(entropy, topk_p, starts, stops, funcs, thetas, tcount, bstart, nbk, lo, inv_w, width):
    B = entropy.shape[0]
    F = funcs.shape[0]
    out = np.empty((F, B, width), dtype=np.int32)
    for b in nb.prange(B):
        for fi in range(F):
            out[fi, b, stops[b] - starts[b]:] = tcount[fi]
        for r in range(starts[b], stops[b]):
            p1 = np.float64(topk_p[b, r, 0])  # the float32 of the stored value, then float64: as _row_bins
            for fi in range(F):
                f = funcs[fi]
                if f == ENTROPY:
                    u = entropy[b, r]
                elif f == CONFIDENCE:
                    u = -p1
                else:
                    u = -(p1 - np.float64(topk_p[b, r, 1]))
                out[fi, b, r - starts[b]] = _bin(u, thetas, fi, tcount[fi], bstart, nbk[fi], lo[fi], inv_w[fi])
    return out


def _ranges(start, stop, B: int):
    """(starts, stops): per-input row ranges (scalars or (B,) arrays) as int64 arrays of B entries."""
    return tuple(np.broadcast_to(np.asarray(x, dtype=np.int64), (B,)).copy() for x in (start, stop))


def _theta_table(thetas_sorted):
    """The kernels' form of one ascending array of distinct thresholds per function, with its buckets."""
    per_f = [np.asarray(t, dtype=np.float64) for t in thetas_sorted]
    F = len(per_f)
    Tmax = max([len(t) for t in per_f] + [1])
    thetas = np.full((F, Tmax + 2), np.inf)  # two columns of +inf past the last threshold: see _bin
    tcount = np.zeros(F, np.int64)
    buckets = [theta_buckets(t) for t in per_f]
    Lmax = max([1] + [len(bk[0]) for bk in buckets])
    bstart = np.zeros((F, Lmax), np.int64)
    nbk = np.zeros(F, np.int64)
    lo = np.zeros(F)
    inv_w = np.zeros(F)
    for fi, (t, bk) in enumerate(zip(per_f, buckets)):
        thetas[fi, : len(t)] = t
        tcount[fi] = len(t)
        bstart[fi, : len(bk[0])] = bk[0]
        nbk[fi], lo[fi], inv_w[fi] = len(bk[0]), bk[1], bk[2]
    return thetas, tcount, bstart, nbk, lo, inv_w


def theta_bins(rows, start, stop, funcs, thetas_sorted, stats=None) -> np.ndarray:
    """(F, B, W) int32: for rows ``start[b]:stop[b]`` of input b, how many of function f's thresholds are at or below
    the row's u_f, at [f, b, r - start[b]] (T_f past stop).

    A row in bin j is confident (u < theta_t) exactly for t >= j; NaN u gets
    bin T_f (never confident). ``thetas_sorted``: one ascending array of
    distinct thresholds per function. u is computed in float64 from the
    stored values ``rows`` (B, R, m): entropy ``-sum_c p_c ln p_c`` summed in
    class order with ``0 ln 0 = 0`` (p <= 0 contributes 0), confidence ``-max
    p``, margin ``-(p_(1) - p_(2))``; or, with ``stats = (entropy, topk_p)``
    of a compact store (``rows`` None), from the stored entropy and top-2
    values, the very floats the row computation gives. Each row is read
    once, whatever the number of functions and thresholds.
    """
    B = len(stats[0]) if rows is None else rows.shape[0]
    starts, stops = _ranges(start, stop, B)
    width = max(int((stops - starts).max()) if B else 0, 0)
    funcs = np.ascontiguousarray(funcs, dtype=np.int64)
    table = _theta_table(thetas_sorted)
    if rows is not None:
        return _row_bins(np.ascontiguousarray(rows, dtype=np.float32), starts, stops, funcs, *table, width)
    entropy, topk_p = stats
    return _stat_bins(np.ascontiguousarray(entropy, dtype=np.float64), np.ascontiguousarray(topk_p, dtype=np.float32),
                      starts, stops, funcs, *table, width)


@nb.njit(parallel=True, **_JIT)
def _class_hist(bins, labels, starts, stops, tcount, m):
    F, B, _ = bins.shape
    hist = np.zeros((B, F, m, tcount.max() + 1), dtype=np.int64)
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            lab = labels[b, r]
            if lab < 0 or lab >= m:
                continue  # the reader refuses such inputs; never counted as a real class
            for fi in range(F):
                hist[b, fi, lab, bins[fi, b, r - starts[b]]] += 1
    return hist


def class_histogram(bins, labels, start, stop, tcount, m: int) -> np.ndarray:
    """(B, F, m, Tmax + 1) int64: rows ``start[b]:stop[b]`` of input b by function, hard label and theta bin."""
    B = labels.shape[0]
    starts, stops = _ranges(start, stop, B)
    return _class_hist(bins, np.ascontiguousarray(labels, dtype=np.int64), starts, stops,
                       np.asarray(tcount, np.int64), int(m))


# ------------------------------------------- what the certificates read: the selection rows' few classes
SELECTION_FIELDS = ("top", "second", "n_top", "n_second", "n_third", "ncl_runner", "n_ncl_runner", "n_ncl_third")


@nb.njit(**_JIT)
def _rank(cls, cnt, d, nv, m, skip, out_c, out_v, k):
    """The k largest of counts ``cnt[:d]`` (classes ``cls[:d]``, ascending) and V (count nv, class m) if positive,
    ties towards the lower class, leaving out class ``skip``; missing places are class -1 with count 0."""
    for i in range(k):
        out_c[i] = -1
        out_v[i] = 0
    for i in range(d + 1):
        c = cls[i] if i < d else m
        v = cnt[i] if i < d else nv
        if v <= 0 or c == skip:
            continue
        for p in range(k):  # classes come in ascending order: strictly greater goes in front of an equal count
            if v > out_v[p]:
                for q in range(k - 1, p, -1):
                    out_c[q] = out_c[q - 1]
                    out_v[q] = out_v[q - 1]
                out_c[p] = c
                out_v[p] = v
                break


@nb.njit(parallel=True, **_JIT)
def _selection(bins, labels, starts, stops, tcount, m):
    F, B, W = bins.shape
    out = np.zeros((8, B, F, tcount.max()), dtype=np.int64)
    for b in nb.prange(B):
        n = stops[b] - starts[b]
        # the distinct real classes of the selection rows, ascending, and each row's place among them
        labs = labels[b, starts[b]:stops[b]]
        valid = (labs >= 0) & (labs < m)
        cls = np.unique(labs[valid])
        d = cls.shape[0]
        where = np.searchsorted(cls, labs)
        cnt = np.zeros(d, np.int64)
        top_c = np.empty(3, np.int64)
        top_v = np.empty(3, np.int64)
        run_c = np.empty(2, np.int64)
        run_v = np.empty(2, np.int64)
        for fi in range(F):
            T = tcount[fi]
            jj = bins[fi, b, :n]
            order = np.argsort(jj)
            cnt[:] = 0
            added = 0  # confident rows of a real class so far; the rest of the n rows are V
            p = 0
            for t in range(T):
                changed = t == 0
                while p < n and jj[order[p]] <= t:
                    r = order[p]
                    if valid[r]:
                        cnt[where[r]] += 1
                        added += 1
                        changed = True
                    p += 1
                if changed:
                    _rank(cls, cnt, d, n - added, m, -1, top_c, top_v, 3)
                    tc = top_c[0]
                    if tc >= 0 and tc < m:  # ncl: the runner-up among real classes other than the top one
                        _rank(cls, cnt, d, 0, m, tc, run_c, run_v, 2)
                    else:
                        run_c[0] = -1
                        run_v[0] = 0
                        run_v[1] = 0
                out[0, b, fi, t] = top_c[0]
                out[1, b, fi, t] = top_c[1]
                out[2, b, fi, t] = top_v[0]
                out[3, b, fi, t] = top_v[1]
                out[4, b, fi, t] = top_v[2]
                out[5, b, fi, t] = run_c[0]
                out[6, b, fi, t] = run_v[0]
                out[7, b, fi, t] = run_v[1]
    return out


def selection_ranks(bins, labels, start, stop, tcount, m: int) -> dict:
    """What PREDICT reads of the extended selection counts, per (input, function, theta), without an m-sized count.

    ``bins`` (F, B, W) from ``theta_bins`` for rows ``start[b]:stop[b]`` of
    ``labels``. Returns ``SELECTION_FIELDS``, each (B, F, Tmax) int64: the
    classes and counts of the three largest extended counts (V = class m, a
    class like any other; ties towards the lower class; missing places class
    -1, count 0) and, when the top class is a real one, the class and count of
    the largest real class other than it and the count of the next (``ncl``'s
    runner-up; else -1, 0, 0). Equal to ranking the full (m + 1)-entry
    counts wherever a class with a zero count cannot matter (its place has
    count 0). As theta grows, selection rows only join the confident ones, so
    the ranking is recomputed only when a row joins: O(n0 x distinct classes)
    per input and function, whatever m and the number of thresholds.
    """
    B = labels.shape[0]
    starts, stops = _ranges(start, stop, B)
    out = _selection(bins, np.ascontiguousarray(labels, dtype=np.int64), starts, stops,
                     np.asarray(tcount, np.int64), int(m))
    return dict(zip(SELECTION_FIELDS, out))


@nb.njit(**_JIT)
def _slots(classes, m):
    K, B, F, T = classes.shape
    slot = np.full((B, F, m), -1, np.int32)
    nslot = np.zeros((B, F), np.int64)
    for b in range(B):
        for fi in range(F):
            for k in range(K):
                for t in range(T):
                    c = classes[k, b, fi, t]
                    if c >= 0 and c < m and slot[b, fi, c] < 0:
                        slot[b, fi, c] = nslot[b, fi]
                        nslot[b, fi] += 1
    return slot, nslot


@nb.njit(parallel=True, **_JIT)
def _estimation(bins, labels, starts, stops, slot, Q, tcount, classes, m):
    F, B, _ = bins.shape
    K = classes.shape[0]
    Tmax = classes.shape[3]
    counts = np.zeros((K + 1, B, F, Tmax), dtype=np.int64)
    for b in nb.prange(B):
        hist = np.zeros((F, Q + 1, Tmax + 1), dtype=np.int64)  # slot Q: every real class (V is the rest)
        for r in range(starts[b], stops[b]):
            lab = labels[b, r]
            if lab < 0 or lab >= m:
                continue  # the reader refuses such inputs; never counted as a real class
            for fi in range(F):
                j = bins[fi, b, r - starts[b]]
                hist[fi, Q, j] += 1
                s = slot[b, fi, lab]
                if s >= 0:
                    hist[fi, s, j] += 1
        n = stops[b] - starts[b]
        run = np.zeros(Q + 1, np.int64)
        for fi in range(F):
            run[:] = 0
            for t in range(tcount[fi]):
                for s in range(Q + 1):
                    run[s] += hist[fi, s, t]
                for k in range(K):
                    c = classes[k, b, fi, t]
                    if c == m:
                        counts[k, b, fi, t] = n - run[Q]
                    elif c >= 0:
                        counts[k, b, fi, t] = run[slot[b, fi, c]]
                counts[K, b, fi, t] = n - run[Q]
    return counts


def estimation_counts(bins, labels, start, stop, tcount, classes, m: int) -> np.ndarray:
    """Counts on the estimation rows of the few classes each (input, function, theta) asks for, and of V.

    ``classes`` (K, B, F, Tmax): per setting, K classes (V = m; -1 for
    none, count 0). Returns (K + 1, B, F, Tmax) int64: entry [k, b, f, t] the
    rows of input b labelled classes[k, b, f, t] at theta t (hard label and
    u < theta_t, V for the rest), entry [K, ...] the rows labelled V. Only
    the classes some setting asks for are counted (a histogram over theta
    bins per input, function and asked class), never all m.
    """
    B = labels.shape[0]
    starts, stops = _ranges(start, stop, B)
    classes = np.ascontiguousarray(classes, dtype=np.int64)
    slot, nslot = _slots(classes, int(m))
    Q = int(nslot.max()) if nslot.size else 0
    return _estimation(bins, np.ascontiguousarray(labels, dtype=np.int64), starts, stops, slot, Q,
                       np.asarray(tcount, np.int64), classes, int(m))


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
