"""Sound values for ``cdf`` and ``soft`` from the top K of each estimation row (docs/methods.md section 9).

A compact store keeps, per estimation row i, the K largest stored
probabilities ``topk_p[i, 0..K-1]`` (descending) and their classes
``topk_c[i, ..]``. With ``t_i = topk_p[i, K-1]``, the stored probability of a
class c is ``p_c(i)`` exactly when c is among ``topk_c[i, ..]``; otherwise it
is only known to lie in ``[0, t_i]``. Everything here is a pure function of
``(topk_p, topk_c)`` and never builds an (n, m) array: ``soft`` at m = 1,000
and n = 100,000 costs O(n K + m log n) time and O(n K + m) memory per input.

**cdf** (section 4), per row of S, for the class c picked on the full S0 rows:

- ``score``: ``L_i = p_c(i)`` if exact, else ``0``;
- ``margin``: ``p_c - max_{j != c} p_j`` if exact (the largest other class is
  then in the top K too: ``topk_p[i, 1]`` when c ranks first, else
  ``topk_p[i, 0]``), else ``L_i = -topk_p[i, 0]``.

``L_i`` never exceeds the full row's value and equals it (as the same float64
``measure_values`` computes) when c is in the row's top K. ``rows_bounded``
counts the rows of S in which c is outside the top K.

Two rules (``--compact-rule``) turn these values into a certificate:

- ``spec`` (default): section 4's procedure unchanged on the L values
  (``cdf.input_terms``, with its exact tie counting). Sound: ``L_i <=`` the
  full value, so the bound holds, at the same confidence, for a quantity at
  or below the smoothed measure. But not monotone in the values: with
  thresholds every ``gap = ceil(n/K) > 1`` order statistics, the exact count
  ``#{z >= s_i}`` can rise when a value drops onto a threshold (n = 5, K = 2
  thresholds, alpha = 0.3: full scores (0, 1/8, 1/8, 1/4, 1/2), the 1/4 row
  bounded to 0, give lower(0) = 0.0316 against the full 0.0133), so the
  compact certificate can, rarely, exceed the full store's.
- ``dominated``: when a row was bounded (``rows_bounded > 0``) the bound
  counts without crediting ties, ``q_i = (n - i gap)/n - eps``, a count never
  above the exact one (so still a valid DKW band); for values pointwise at or
  below the full ones this lower bound is pointwise at or below the full
  tie-free one, which is at or below the full exact one, at every radius. It
  loses at most ``1/K`` (``gap/n``) in any ``q_i``, and nothing when ``gap =
  1`` (n at most K), where the two counts coincide.

Without bounded rows both rules are the full store's procedure on the full
store's values, so the certificate is identical.

**soft** (section 7), per class j and input, with ``L_ij`` (exact or 0) and
``U_ij`` (exact or ``t_i``): the lower bound on ``E[p_c]`` uses the mean of
L, each upper bound on ``E[p_j]`` the mean of U (summed so that a class in
every row's top K gets the full-row kernel's floats). ``hoeffding`` needs
nothing else, and is monotone: never above the full store's certificate.
For ``bernstein`` the variance:

- ``spec`` (default, ``soft_stats_spec``): the unbiased sample variance of L
  (for c) and of U (for the others), section 7 unchanged on the replaced
  values. Sound, but the empirical Bernstein bound ``mean +/- (sqrt(2 V
  ln(2/d)/n) + ...)`` is not monotone in the values: replacing values by
  ``t_i`` can lower V more than it raises the mean (n = 1,000, m = 3, top 2:
  990 rows (0.6, 0.3, 0.1) and 10 rows (0.6, 0.1, 0.3): U of class 1 is 0.3
  in every row, variance 0, and its upper bound 0.3210 is below the full
  column's 0.3217), so the compact certificate can, rarely, exceed the
  full store's.
- ``dominated`` (``soft_stats_dominated``): an upper bound on the unbiased
  variance of **every** column consistent with the top K. For any centre c0,
  ``(n - 1) V(x) <= sum_i (x_i - c0)^2 <= sum_exact (p_i - c0)^2 +
  sum_bounded max(c0, t_i - c0)^2`` for every x in the box; c0 is the mean of
  the box midpoints. With ``mean_upper`` and this V the upper bound is at or
  above the full row's upper bound, and with ``mean_lower`` and this V the
  lower bound is at or below the full row's lower bound, deterministically:
  the compact certificate holds on the very event on which the full-row
  bounds hold, and is never larger. Sums over bounded rows are formed by
  subtraction (all rows minus exact rows); a rounding slack of a few ``n u``
  relative (``u = 2^-53``) is added to ``mean_upper`` and the variance bound
  of such classes so that the floats, not only the real numbers, stay on
  the conservative side.

A class in the top K of every row of S gets the full-row kernel's floats
exactly under either rule (same sums, same order), so with K = m the
certificate is the full store's bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from . import cdf as C
from . import soft as S

_JIT = dict(nogil=True, cache=True)
_U = 2.0 ** -53  # unit roundoff of float64


def _check_parts(topk_p, topk_c):
    """``(topk_p float32 (B, R, K), topk_c (B, R, K))`` contiguous; ValueError naming the part otherwise."""
    topk_p = np.ascontiguousarray(topk_p, dtype=np.float32)
    topk_c = np.ascontiguousarray(topk_c)
    if topk_p.ndim != 3 or topk_c.shape != topk_p.shape:
        raise ValueError(f"top-k parts: topk_p and topk_c must both have shape (B, R, K), got {topk_p.shape} "
                         f"and {topk_c.shape}")
    if topk_p.shape[2] < 2:
        raise ValueError(f"top-k parts: K must be at least 2 (the margin needs the runner-up), got {topk_p.shape[2]}")
    return topk_p, topk_c


def _stops(stop, B, R):
    return np.broadcast_to(np.asarray(R if stop is None else stop, dtype=np.int64), (B,)).copy()


# ------------------------------------------------------------------------------------------- cdf
@nb.njit(**_JIT)
def _measure_kernel(topk_p, topk_c, start, stops, cls, kind, a, b, out, bounded):
    B, _, K = topk_p.shape
    for i in range(B):
        c = cls[i]
        nbd = 0
        for r in range(start, stops[i]):
            pos = -1
            for k in range(K):
                if topk_c[i, r, k] == c:
                    pos = k
                    break
            if pos < 0:  # c outside the top K: p_c in [0, t_i]
                nbd += 1
                if kind == 0:
                    v = 0.0
                else:  # the largest other class is topk_p[0] (not c), and p_c >= 0
                    v = -np.float64(topk_p[i, r, 0])
            else:
                pc = np.float64(topk_p[i, r, pos])
                if kind == 0:
                    v = pc
                else:
                    v = pc - np.float64(topk_p[i, r, 1] if pos == 0 else topk_p[i, r, 0])
            out[i, r - start] = min(max(v, a), b)
        bounded[i] = nbd


def measure_lower_values(topk_p, topk_c, cls, measure: str, start: int = 0, stop=None):
    """``(z, rows_bounded)``: section 9's values of ``measure`` for class ``cls[b]`` on rows ``start:stop[b]``.

    ``topk_p``/``topk_c`` are (B, R, K) in store row order; ``z`` is (B,
    n_max) float64 clipped to the measure's range, +inf past an input's own
    stop (as ``cdf.measure_values``). Each value is at or below the full
    row's and equal to its float64 value where c is in the row's top K;
    ``rows_bounded`` (B,) counts the rows where it is not.
    """
    ms = C.get_measure(measure)
    topk_p, topk_c = _check_parts(topk_p, topk_c)
    B, R, _ = topk_p.shape
    stops = _stops(stop, B, R)
    n_max = int(stops.max() - start) if B else 0
    out = np.full((B, max(n_max, 0)), np.inf, dtype=np.float64)
    bounded = np.zeros(B, np.int64)
    _measure_kernel(topk_p, topk_c, int(start), stops, np.asarray(cls, dtype=np.int64),
                    0 if ms.name == "score" else 1, ms.a, ms.b, out, bounded)
    return out, bounded


def tie_free_cdf_terms(z_sorted: np.ndarray, K: int, eps: float):
    """``cdf.cdf_terms`` with the count ``n - i gap`` in place of ``#{z >= s_i}``: never above it, monotone in z.

    Thresholds ``s_i = z_(i gap)`` as in ``cdf_terms``; ``q_i = max((n - i
    gap)/n - eps, 0)``. For ``z' <= z`` pointwise (sorted), every ``s`` gets
    a ``q`` no larger, so the bound is no larger at any radius.
    """
    z = np.asarray(z_sorted, dtype=np.float64)
    n = z.size
    if n == 0:
        return np.zeros(0), np.zeros(0)
    K = max(1, min(int(K), n))
    gap = -(-n // K)
    at = np.arange(0, n, gap)
    return z[at], np.maximum((n - at) / n - eps, 0.0)


def input_terms(z_sorted: np.ndarray, bound: str, measure, K: int, alpha: float, bounded: bool):
    """Terms ``(w, u)`` of ``bound`` for one input's section-9 values: ``cdf.input_terms`` unchanged unless
    ``bounded`` (some row of S was bounded) and ``bound == "cdf"``, where the count credits no ties."""
    if bound == "cdf" and bounded:
        eps = float(C.dkw_eps(z_sorted.size, alpha))
        s, q = tie_free_cdf_terms(z_sorted, K, eps)
        return C.compact_terms(s, q, measure.a)
    return C.input_terms(z_sorted, bound, measure, K, alpha)


# ------------------------------------------------------------------------------------------ soft
@nb.njit(**_JIT)
def _clip01(v):
    return min(max(v, 0.0), 1.0)


@nb.njit(**_JIT)
def _exact_sums(topk_p, topk_c, start, stop, i, m):
    """Pass 1 over rows ``start:stop`` of input i, in row order: per class the sum of its exact values (the full
    kernel's order), how many rows hold it and the sum of t_r over those rows; t_r of each row and their sum."""
    K = topk_p.shape[2]
    cnt = np.zeros(m, np.int64)
    s_exact = np.zeros(m)
    t_exact = np.zeros(m)
    t = np.empty(stop - start)
    t_all = 0.0
    for r in range(start, stop):
        tr = _clip01(np.float64(topk_p[i, r, K - 1]))
        t[r - start] = tr
        t_all += tr
        for k in range(K):
            j = topk_c[i, r, k]
            s_exact[j] += _clip01(np.float64(topk_p[i, r, k]))
            cnt[j] += 1
            t_exact[j] += tr
    return cnt, s_exact, t_exact, t, t_all


@nb.njit(**_JIT)
def _dominated_stats(topk_p, topk_c, start, n, i, m, cnt, s_exact, t_exact, t, t_all, mean_lower, mean_upper, var):
    """``dominated``: the means of L and U and one variance bound over the box, for input i after pass 1."""
    K = topk_p.shape[2]
    centre = np.empty(m)
    for j in range(m):
        ml = s_exact[j] / n
        mean_lower[i, j] = ml
        if cnt[j] == n:
            mean_upper[i, j] = ml
            centre[j] = ml
        else:
            bt = max(t_all - t_exact[j], 0.0)  # sum of t_i over the bounded rows
            slack = 4.0 * (n + 2) * _U * (s_exact[j] + t_all + t_exact[j])
            mean_upper[i, j] = (s_exact[j] + bt + slack) / n
            centre[j] = (s_exact[j] + 0.5 * bt) / n
    # second pass: squared deviations of the exact values (the full kernel's order), and the box term
    # max(c0, t_i - c0)^2 over the rows where the class is exact (to subtract from the all-rows sum)
    dev = np.zeros(m)
    box_exact = np.zeros(m)
    for r in range(start, start + n):
        tr = t[r - start]
        for k in range(K):
            j = topk_c[i, r, k]
            d = _clip01(np.float64(topk_p[i, r, k])) - centre[j]
            dev[j] += d * d
            if cnt[j] < n:
                c0 = centre[j]
                box_exact[j] += (tr - c0) * (tr - c0) if tr >= 2.0 * c0 else c0 * c0
    ts = np.sort(t)
    suf1 = np.zeros(n + 1)  # sums from the top (largest first): small relative error on any tail
    suf2 = np.zeros(n + 1)
    for r in range(n - 1, -1, -1):
        suf1[r] = suf1[r + 1] + ts[r]
        suf2[r] = suf2[r + 1] + ts[r] * ts[r]
    for j in range(m):
        if cnt[j] == n:
            var[i, j] = dev[j] / (n - 1) if n > 1 else np.nan
            continue
        c0 = centre[j]
        at = np.searchsorted(ts, 2.0 * c0)  # rows with t >= 2 c0 take (t - c0)^2, the others c0^2
        hi = n - at
        box_all = (suf2[at] - 2.0 * c0 * suf1[at] + hi * c0 * c0) + at * c0 * c0
        box_bounded = max(box_all - box_exact[j], 0.0)
        mag = suf2[at] + 2.0 * c0 * suf1[at] + n * c0 * c0 + box_exact[j] + dev[j]
        slack = 16.0 * (n + 4) * _U * mag + 4.0 * n * n * n * _U * _U
        var[i, j] = (dev[j] + box_bounded + slack) / (n - 1) if n > 1 else np.nan


@nb.njit(**_JIT)
def _sum_over_other_rows(t, rows_of, lo, hi, mu, square):
    """Sum, in row order, of ``t[r]`` (``square``: of ``(t[r] - mu)^2``) over the rows r not listed in the
    ascending ``rows_of[lo:hi]``."""
    q = lo
    out = 0.0
    for r in range(t.shape[0]):
        if q < hi and rows_of[q] == r:
            while q < hi and rows_of[q] == r:
                q += 1
        elif square:
            out += (t[r] - mu) * (t[r] - mu)
        else:
            out += t[r]
    return out


@nb.njit(**_JIT)
def _spec_stats(topk_p, topk_c, start, n, i, m, cnt, s_exact, t_exact, t, t_all, walk, mean_lower, var_lower,
                mean_upper, var_upper):
    """``spec``: the means and unbiased sample variances of L and of U, for input i after pass 1."""
    K = topk_p.shape[2]
    t_bar = t_all / n
    m2_t = 0.0
    for r in range(n):
        m2_t += (t[r] - t_bar) * (t[r] - t_bar)
    # classes held by at least half the rows but not all ("frequent"; at most 2K of them): their bounded rows
    # are walked one by one, since "all rows minus the exact rows" would cancel; rows listed per class (CSR)
    freq = np.zeros(m, np.bool_)
    off = np.zeros(m + 1, np.int64)
    for j in range(m):
        freq[j] = walk and 2 * cnt[j] >= n and cnt[j] < n
        off[j + 1] = off[j] + (cnt[j] if freq[j] else 0)
    rows_of = np.empty(off[m], np.int64)
    fill = off[:m].copy()
    if off[m] > 0:
        for r in range(start, start + n):
            for k in range(K):
                j = topk_c[i, r, k]
                if freq[j]:
                    rows_of[fill[j]] = r - start
                    fill[j] += 1
    # means: L (exact or 0) and U (exact or t_r)
    for j in range(m):
        mean_lower[i, j] = s_exact[j] / n
        if cnt[j] == n:
            mean_upper[i, j] = s_exact[j] / n
        elif freq[j]:
            mean_upper[i, j] = (s_exact[j] + _sum_over_other_rows(t, rows_of, off[j], off[j + 1], 0.0, False)) / n
        else:
            mean_upper[i, j] = (s_exact[j] + max(t_all - t_exact[j], 0.0)) / n
    # pass 2, row order: squared deviations of the exact values from each mean, and of t_r over the exact rows
    dev_l = np.zeros(m)
    dev_u = np.zeros(m)
    dev_t = np.zeros(m)
    for r in range(start, start + n):
        tr = t[r - start]
        for k in range(K):
            j = topk_c[i, r, k]
            x = _clip01(np.float64(topk_p[i, r, k]))
            d = x - mean_lower[i, j]
            dev_l[j] += d * d
            d = x - mean_upper[i, j]
            dev_u[j] += d * d
            if cnt[j] < n and not freq[j]:
                d = tr - mean_upper[i, j]
                dev_t[j] += d * d
    for j in range(m):
        if n < 2:
            var_lower[i, j] = np.nan
            var_upper[i, j] = np.nan
            continue
        ml = mean_lower[i, j]
        var_lower[i, j] = (dev_l[j] + (n - cnt[j]) * ml * ml) / (n - 1)
        mu = mean_upper[i, j]
        if cnt[j] == n:
            var_upper[i, j] = dev_u[j] / (n - 1)
        elif freq[j]:
            var_upper[i, j] = (dev_u[j] + _sum_over_other_rows(t, rows_of, off[j], off[j + 1], mu, True)) / (n - 1)
        else:  # sum over all rows of (t_r - mu)^2 = m2_t + n (t_bar - mu)^2, less the exact rows'
            every = m2_t + n * (t_bar - mu) * (t_bar - mu)
            var_upper[i, j] = (dev_u[j] + max(every - dev_t[j], 0.0)) / (n - 1)


@nb.njit(**_JIT)
def _soft_stats_kernel(topk_p, topk_c, start, stops, m, dominated, walk, mean_lower, var_lower, mean_upper,
                       var_upper, bounded):
    """Both rules' statistics per input: pass 1 shared, then ``_dominated_stats`` (one variance bound, written to
    ``var_lower``; the caller passes the same array as ``var_upper``) or ``_spec_stats``."""
    B = topk_p.shape[0]
    for i in range(B):
        n = stops[i] - start
        if n <= 0:  # as soft._mean_var: zeros
            for j in range(m):
                mean_lower[i, j] = 0.0
                var_lower[i, j] = 0.0
                mean_upper[i, j] = 0.0
                var_upper[i, j] = 0.0
                bounded[i, j] = 0
            continue
        cnt, s_exact, t_exact, t, t_all = _exact_sums(topk_p, topk_c, start, stops[i], i, m)
        for j in range(m):
            bounded[i, j] = n - cnt[j]
        if dominated:
            _dominated_stats(topk_p, topk_c, start, n, i, m, cnt, s_exact, t_exact, t, t_all, mean_lower, mean_upper,
                             var_lower)
        else:
            _spec_stats(topk_p, topk_c, start, n, i, m, cnt, s_exact, t_exact, t, t_all, walk, mean_lower,
                        var_lower, mean_upper, var_upper)


@dataclass(frozen=True)
class SoftStats:
    """Per input and class (B, m), what ``soft.soft_certify`` gets on a compact block.

    ``mean_lower``/``var_lower``: for the lower bound on E[p_j] when j is
    the certified class; ``mean_upper``/``var_upper``: for the upper bound on
    E[p_j] of every other class; ``bounded``: the rows of S where the class
    is outside the top K. All are the full rows' floats for a class in every
    row's top K.
    """

    mean_lower: np.ndarray
    var_lower: np.ndarray
    mean_upper: np.ndarray
    var_upper: np.ndarray
    bounded: np.ndarray

    def for_class(self, cls) -> tuple[np.ndarray, np.ndarray]:
        """(B, m) means and variances for ``soft.soft_certify``: the upper statistics with each input's class
        ``cls[b]`` at its lower ones (soft_certify takes the lower bound from column c, upper bounds from the rest)."""
        mean, var = self.mean_upper.copy(), self.var_upper.copy()
        rows = np.arange(mean.shape[0])
        cls = np.asarray(cls, dtype=np.int64)
        mean[rows, cls] = self.mean_lower[rows, cls]
        var[rows, cls] = self.var_lower[rows, cls]
        return mean, var


def _soft_parts(topk_p, topk_c, m, start, stop):
    topk_p, topk_c = _check_parts(topk_p, topk_c)
    B, R, _ = topk_p.shape
    stops = _stops(stop, B, R)
    used = topk_c[:, int(start):int(stops.max())] if B else topk_c
    if used.size and int(used.max()) >= m:
        raise ValueError(f"top-k parts: a class {int(used.max())} outside 0..{m - 1}")
    return topk_p, topk_c, stops


def _soft_stats(topk_p, topk_c, m: int, start, stop, dominated: bool, walk: bool = True) -> SoftStats:
    topk_p, topk_c, stops = _soft_parts(topk_p, topk_c, m, start, stop)
    B = topk_p.shape[0]
    ml, vl, mu = (np.empty((B, m), np.float64) for _ in range(3))
    vu = vl if dominated else np.empty((B, m), np.float64)  # dominated: one variance bound serves both bounds
    bd = np.empty((B, m), np.int64)
    _soft_stats_kernel(topk_p, topk_c, int(start), stops, int(m), bool(dominated), bool(walk), ml, vl, mu, vu, bd)
    return SoftStats(ml, vl, mu, vu, bd)


def soft_stats_spec(topk_p, topk_c, m: int, start: int = 0, stop=None, walk: bool = True) -> SoftStats:
    """Section 9's values for ``soft`` under ``--compact-rule spec``: the mean and the unbiased sample variance of
    L (exact or 0) and of U (exact or t_i) per class, over rows ``start:stop[b]``.

    O(n K + m) time and O(n K + m) memory per input; no (n, m) array. The
    means and variances of L, and those of U for a class held by every row,
    are summed in row order as ``soft.mean_var`` sums the full rows (so they
    are its floats where the values are the full ones). For a class held by
    some rows only, the sum of ``(t_i - mean)^2`` over the rows that do not
    hold it is ``sum_all (t_i - t_bar)^2 + n (t_bar - mean)^2`` less the
    exact rows' part, or, for a class held by half the rows or more (at
    most 2K classes, where that difference would cancel), a walk over those
    rows. ``walk=False`` skips the walks and takes the difference for those
    classes too (its absolute error, about n u t_max^2 in the sum of squares
    with u = 2^-53, is far below any bound's width): about twice as fast at
    K = 5, where a few classes are held by most rows.
    """
    return _soft_stats(topk_p, topk_c, m, start, stop, dominated=False, walk=walk)


def soft_stats_dominated(topk_p, topk_c, m: int, start: int = 0, stop=None) -> SoftStats:
    """Section 9's values for ``soft`` under ``--compact-rule dominated``, in O(n K + m log n) per input.

    Means of L and of U, and for both bounds the variance bound over the
    box (module docstring): every upper bound that ``soft.mean_bounds``
    computes from ``(mean_upper, var_upper)`` is at or above the one it
    computes from the full rows, every lower bound from ``(mean_lower,
    var_lower)`` at or below; both are the full rows' floats for a class in
    every row's top K.
    """
    return _soft_stats(topk_p, topk_c, m, start, stop, dominated=True)


SOFT_STATS = {"spec": soft_stats_spec, "dominated": soft_stats_dominated}


def soft_stats(topk_p, topk_c, m: int, start: int = 0, stop=None, rule: str = "spec") -> SoftStats:
    """``soft``'s statistics of rows ``start:stop[b]`` under ``rule`` (``spec`` or ``dominated``)."""
    return SOFT_STATS[rule](topk_p, topk_c, m, start, stop)


def binding_class(stats: SoftStats, n, cls, alpha: float, bound: str) -> np.ndarray:
    """(B,) the class j != c whose upper bound is ``max_j upper_j`` in ``soft_certify`` (lowest index on ties)."""
    B, m = stats.mean_upper.shape
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), (B,))
    _, upper = S.mean_bounds(stats.mean_upper, stats.var_upper, n[:, None], alpha / (2 * (m - 1)), bound)
    upper = np.array(upper, dtype=np.float64, copy=True)
    upper[np.arange(B), np.asarray(cls, dtype=np.int64)] = -np.inf
    return np.argmax(upper, axis=1).astype(np.int64)


@nb.njit(**_JIT)
def _rows_without_both(topk_c, start, stops, c1, c2, out):
    B, _, K = topk_c.shape
    for i in range(B):
        cnt = 0
        for r in range(start, stops[i]):
            f1 = False
            f2 = False
            for k in range(K):
                v = topk_c[i, r, k]
                if v == c1[i]:
                    f1 = True
                if v == c2[i]:
                    f2 = True
            if not (f1 and f2):
                cnt += 1
        out[i] = cnt


def rows_bounded_soft(topk_c, cls, other, start: int = 0, stop=None) -> np.ndarray:
    """(B,) rows of ``start:stop[b]`` in which class ``cls[b]`` or class ``other[b]`` is outside the top K.

    ``soft``'s ``rows_bounded``, with ``other`` the binding class: when it is
    0, ``lower_c`` and ``max_j upper_j`` are the full rows' own floats (every
    other class's upper bound is at or above its full-row value and at or
    below the binding one), so the certificate equals the full store's.
    """
    topk_c = np.ascontiguousarray(topk_c)
    B, R, _ = topk_c.shape
    out = np.zeros(B, np.int64)
    _rows_without_both(topk_c, int(start), _stops(stop, B, R), np.asarray(cls, dtype=np.int64),
                       np.asarray(other, dtype=np.int64), out)
    return out
