"""Sound values for ``cdf`` and ``soft`` from the top K of each estimation row (docs/methods.md section 9).

A compact store keeps, per estimation row i, the K largest stored
probabilities ``topk_p[i, 0..K-1]`` (descending) and their classes
``topk_c[i, ..]``. With ``t_i = topk_p[i, K-1]``, the stored probability of a
class c is ``p_c(i)`` exactly when c is among ``topk_c[i, ..]``; otherwise it
is only known to lie in ``[0, t_i]``. Everything here is a pure function of
``(topk_p, topk_c)`` and never builds an (n, m) array: ``soft`` at m = 1,000
and n = 100,000 costs O(n K + m log n) time and O(n + m) memory per input.

**cdf** (section 4), per row of S, for the class c picked on the full S0 rows:

- ``score``: ``L_i = p_c(i)`` if exact, else ``0``;
- ``margin``: ``p_c - max_{j != c} p_j`` if exact (the largest other class is
  then in the top K too: ``topk_p[i, 1]`` when c ranks first, else
  ``topk_p[i, 0]``), else ``L_i = -topk_p[i, 0]``.

``L_i`` never exceeds the full row's value and equals it (as the same float64
``measure_values`` computes) when c is in the row's top K. ``rows_bounded``
counts the rows of S in which c is outside the top K.

The ``cdf`` bound of section 4 counts ties exactly (``q_i = #{z >= s_i}/n -
eps``). With thresholds every ``gap = ceil(n/K) > 1`` order statistics that
count is not monotone in the values: lowering one value onto a threshold can
raise the count of that threshold (n = 5, K = 2 thresholds, z = (0, .2, .8,
.9, 1) gives lower(0) = .048 at alpha = 0.3; lowering 1 to .8 gives .202).
So when a row was bounded (``rows_bounded > 0``) the bound counts without
crediting ties, ``q_i = (n - i gap)/n - eps``, a count never above the exact
one (so still a valid DKW band); for values pointwise at or below the full
ones this lower bound is pointwise at or below the full tie-free one, which is
at or below the full exact one, at every radius. It loses at most ``1/K``
(``gap/n``) in any ``q_i``, and nothing when ``gap = 1`` (n at most K), where
the two counts coincide. Without bounded rows the values and the procedure
are the full store's, so the certificate is identical.

**soft** (section 7), per class j and input, with ``L_ij`` (exact or 0) and
``U_ij`` (exact or ``t_i``):

- ``mean_lower[j] = mean_i L_ij`` (summed in row order, as the full-row
  kernel sums: float addition is monotone, so it is never above the full
  mean) is what the lower bound on ``E[p_c]`` uses;
- ``mean_upper[j] = mean_i U_ij`` is what the upper bound on ``E[p_j]`` uses;
- ``var[j]``: for ``bernstein``, an upper bound on the unbiased variance of
  **every** column consistent with the top K, not the variance of U. The
  empirical Bernstein bound ``mean +/- (sqrt(2 V ln(2/d)/n) + ...)`` is not
  monotone in the values (replacing values by ``t_i`` can lower V more than it
  raises the mean: 90 rows at 0.3 and 10 rows at 0 bounded by 0.3, at n = 100
  and d = alpha/(2 (m - 1)) with alpha = 0.001 and m = 10, gives an upper
  bound of .547 from U against .559 from the full column), so a bound on U
  could exceed the full-row certificate. Instead, for any centre c0,
  ``(n - 1) V(x) <= sum_i (x_i - c0)^2 <= sum_exact (p_i - c0)^2 +
  sum_bounded max(c0, t_i - c0)^2`` for every x in the box; c0 is the mean of
  the box midpoints. With ``mean_upper`` and this V the upper bound is at or
  above the full row's upper bound, and with ``mean_lower`` and this V the
  lower bound is at or below the full row's lower bound, deterministically:
  the compact certificate holds on the very event on which the full-row
  bounds hold, and is never larger. ``hoeffding`` uses the means only, as
  section 9 says.

A class in the top K of every row of S gets the full-row kernel's floats
exactly (same sums, same order), so with K = m the certificate is the full
store's bit for bit. Sums over bounded rows are formed by subtraction (all
rows minus exact rows); a rounding slack of a few ``n u`` relative (``u =
2^-53``) is added to ``mean_upper`` and ``var`` of such classes so that the
floats, not only the real numbers, stay on the conservative side.
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
def _soft_stats_kernel(topk_p, topk_c, start, stops, m, mean_lower, mean_upper, var, bounded):
    B, _, K = topk_p.shape
    for i in range(B):
        n = stops[i] - start
        if n <= 0:  # as soft._mean_var: zeros
            for j in range(m):
                mean_lower[i, j] = 0.0
                mean_upper[i, j] = 0.0
                var[i, j] = 0.0
                bounded[i, j] = 0
            continue
        cnt = np.zeros(m, np.int64)
        s_exact = np.zeros(m)   # sum of exact values, in row order (the full kernel's order)
        s_t = np.zeros(m)       # sum of t_i over the rows where the class is exact
        t = np.empty(n)
        t_all = 0.0
        for r in range(start, stops[i]):
            tr = _clip01(np.float64(topk_p[i, r, K - 1]))
            t[r - start] = tr
            t_all += tr
            for k in range(K):
                j = topk_c[i, r, k]
                s_exact[j] += _clip01(np.float64(topk_p[i, r, k]))
                cnt[j] += 1
                s_t[j] += tr
        centre = np.empty(m)
        for j in range(m):
            nb_j = n - cnt[j]
            bounded[i, j] = nb_j
            ml = s_exact[j] / n
            mean_lower[i, j] = ml
            if nb_j == 0:
                mean_upper[i, j] = ml
                centre[j] = ml
            else:
                bt = max(t_all - s_t[j], 0.0)  # sum of t_i over the bounded rows
                slack = 4.0 * (n + 2) * _U * (s_exact[j] + t_all + s_t[j])
                mean_upper[i, j] = (s_exact[j] + bt + slack) / n
                centre[j] = (s_exact[j] + 0.5 * bt) / n
        # second pass: squared deviations of the exact values (the full kernel's order), and the box term
        # max(c0, t_i - c0)^2 over the rows where the class is exact (to subtract from the all-rows sum)
        dev = np.zeros(m)
        box_exact = np.zeros(m)
        for r in range(start, stops[i]):
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


@dataclass(frozen=True)
class SoftStats:
    """Per input and class (B, m): ``mean_lower`` (exact or 0), ``mean_upper`` (exact or t_i), ``var`` (an upper
    bound on the variance of every column the top K allow; exact for a class in every row's top K) and
    ``bounded``, the rows of S where the class is outside the top K."""

    mean_lower: np.ndarray
    mean_upper: np.ndarray
    var: np.ndarray
    bounded: np.ndarray

    def means_for(self, cls) -> np.ndarray:
        """(B, m) means for ``soft.soft_certify``: ``mean_upper`` with each input's class ``cls[b]`` at its
        ``mean_lower`` (soft_certify takes the lower bound from column c and upper bounds from the others)."""
        out = self.mean_upper.copy()
        rows = np.arange(out.shape[0])
        cls = np.asarray(cls, dtype=np.int64)
        out[rows, cls] = self.mean_lower[rows, cls]
        return out


def soft_stats(topk_p, topk_c, m: int, start: int = 0, stop=None) -> SoftStats:
    """Section 9's statistics of rows ``start:stop[b]`` for ``soft``, in O(n K + m log n) per input.

    Every upper bound that ``soft.mean_bounds`` computes from ``(mean_upper,
    var)`` is at or above the one it computes from the full rows, every lower
    bound from ``(mean_lower, var)`` at or below (module docstring); both
    are the full rows' floats for a class in every row's top K.
    """
    topk_p, topk_c = _check_parts(topk_p, topk_c)
    B, R, _ = topk_p.shape
    if topk_c.size and int(topk_c.max()) >= m:
        raise ValueError(f"top-k parts: a class {int(topk_c.max())} outside 0..{m - 1}")
    stops = _stops(stop, B, R)
    ml, mu, v = (np.empty((B, m), np.float64) for _ in range(3))
    bd = np.empty((B, m), np.int64)
    _soft_stats_kernel(topk_p, topk_c, int(start), stops, int(m), ml, mu, v, bd)
    return SoftStats(ml, mu, v, bd)


def binding_class(stats: SoftStats, n, cls, alpha: float, bound: str) -> np.ndarray:
    """(B,) the class j != c whose upper bound is ``max_j upper_j`` in ``soft_certify`` (lowest index on ties)."""
    B, m = stats.mean_upper.shape
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), (B,))
    _, upper = S.mean_bounds(stats.mean_upper, stats.var, n[:, None], alpha / (2 * (m - 1)), bound)
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
