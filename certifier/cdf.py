"""Certified confidence (Kumar et al. 2020; docs/methods.md section 4): pure functions.

For one input, class c and measure z (``score``: p_c in [0, 1]; ``margin``:
p_c - max_{j != c} p_j in [-1, 1]) the smoothed confidence E[z(x + d)] has a
lower bound ``lower(R)`` valid for every perturbation of L2 norm <= R:

- ``hoeffding`` (Thm 1): ``a + (b - a) Phi(Phi^-1(q) - R/sigma)`` with
  ``q = (mean(z) - (b - a) eps - a) / (b - a)`` clipped to [0, 1];
- ``cdf`` (Thm 2): ``a + sum_i w_i Phi(u_i - R/sigma)`` with ``w_i = s_i - s_{i-1}``
  (``s_{-1} = a``), ``u_i = Phi^-1(q_i)``, thresholds ``s_i`` every
  ``gap = ceil(n/K)``-th order statistic of z and ``q_i = max(#{z >= s_i}/n - eps, 0)``.

``eps = sqrt(ln(1/alpha) / (2n))`` as in the reference code. That is the
one-sided Dvoretzky-Kiefer-Wolfowitz band with Massart's constant, valid for
alpha <= 1/2 (CertifyOptions requires alpha < 0.5); only the lower side of the
band is used, so no factor 2. The same eps makes Hoeffding's mean bound hold.

Both bounds are represented the same way, as terms ``(w, u)`` over a base ``a``
(Hoeffding is the single term ``w = b - a``, ``u = Phi^-1(q)``), so one Numba
kernel evaluates either and one bisection finds the radius
``sup{R >= 0 : lower(R) >= t}``.

Deviations from the reference code, all in the direction of soundness:
counts use the exact number of scores ``>= s_i`` (the reference assumes
``(K - i)/K``, which over-claims when K does not divide n or scores tie);
a Hoeffding ``q`` below 0 is clipped (the reference returns NaN); scores are
clipped to the measure's range [a, b] (a no-op on valid probability rows;
clipping from above can only lower the bound). The class c is the argmax of
the mean S0 row for both measures, as the spec says (the reference code takes,
for ``margin``, the argmax of the mean S0 margin); either choice is sound
because it is made on S0 only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy import special

_JIT = dict(nogil=True, cache=True)
TOL = 1e-4           # absolute precision of every certified radius
_SLACK = 1e-12       # floating-point slack when re-checking lower(R) >= t at a closed-form bracket end
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class Measure:
    """A confidence measure: its range [a, b] and the cutoff that guarantees the class (lower >= cutoff)."""

    name: str
    a: float
    b: float
    cutoff: float


MEASURES = {
    "score": Measure("score", 0.0, 1.0, 0.5),
    "margin": Measure("margin", -1.0, 1.0, 0.0),
}
BOUNDS = ("cdf", "hoeffding")


def get_measure(name: str) -> Measure:
    """The Measure called ``name``; ValueError naming the known ones otherwise."""
    try:
        return MEASURES[name]
    except KeyError:
        raise ValueError(f"--measure: unknown measure {name!r}; available: {', '.join(MEASURES)}") from None


def check_thresholds(measure: Measure, thresholds) -> np.ndarray:
    """Thresholds as float64; ValueError naming the measure if one is NaN or at or below the measure's minimum a."""
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    bad = np.isnan(t) | (t <= measure.a)
    if bad.any():
        v = float(t[np.flatnonzero(bad)[0]])
        raise ValueError(f"--threshold {v!r} is at or below the minimum {measure.a:g} of measure {measure.name!r} "
                         f"(range [{measure.a:g}, {measure.b:g}]): the measure never goes below it, so it holds trivially at every radius")
    return t


# ----------------------------------------------------------------------------- measures
@nb.njit(**_JIT)
def _measure_kernel(rows, start, stops, cls, kind, a, b, out):
    B, _, m = rows.shape
    for i in range(B):
        c = cls[i]
        for r in range(start, stops[i]):
            pc = np.float64(rows[i, r, c])
            if kind == 0:
                v = pc
            else:
                mx = -np.inf
                for j in range(m):
                    if j != c:
                        pj = np.float64(rows[i, r, j])
                        if pj > mx:
                            mx = pj
                v = pc - mx
            out[i, r - start] = min(max(v, a), b)


def measure_values(rows: np.ndarray, cls: np.ndarray, measure: str, start: int = 0, stop=None) -> np.ndarray:
    """(B, n_max) float64 measure of class ``cls[b]`` on rows ``start:stop[b]`` of each input, clipped to [a, b].

    ``rows`` is (B, R, m); ``stop`` an int or per-input array (default R).
    Positions past an input's own stop are +inf (they sort to the end).
    ``margin`` is ``p_c - max_{j != c} p_j``, whether or not c is the row's argmax.
    """
    ms = get_measure(measure)
    rows = np.ascontiguousarray(rows)
    B, R, _ = rows.shape
    stops = np.broadcast_to(np.asarray(R if stop is None else stop, dtype=np.int64), (B,)).copy()
    n_max = int(stops.max() - start) if B else 0
    out = np.full((B, max(n_max, 0)), np.inf, dtype=np.float64)
    _measure_kernel(rows, int(start), stops, np.asarray(cls, dtype=np.int64), 0 if ms.name == "score" else 1,
                    ms.a, ms.b, out)
    return out


def predicted_class(s0_rows: np.ndarray) -> np.ndarray:
    """(B,) argmax of the mean S0 row per input (float64 mean, ties to the lowest index): never looks at S."""
    return np.argmax(np.asarray(s0_rows).mean(axis=1, dtype=np.float64), axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- bounds as terms
def dkw_eps(n, alpha: float):
    """``sqrt(ln(1/alpha) / (2n))``: with prob. >= 1 - alpha, P(z >= s) >= P_hat(z >= s) - eps for all s at once."""
    return np.sqrt(np.log(1.0 / alpha) / (2.0 * np.asarray(n, dtype=np.float64)))


def cdf_terms(z_sorted: np.ndarray, K: int, eps: float):
    """Thresholds ``s_i`` and probabilities ``q_i`` of the CDF bound from one input's ascending scores.

    K is capped at n; ``gap = ceil(n/K)``; ``s_i = z_(i*gap)`` for ``i*gap < n``;
    ``q_i = max(#{z >= s_i}/n - eps, 0)`` with exact counts (ties included).
    With prob. >= 1 - alpha (over S) every ``P(z >= s_i) >= q_i``.
    """
    z = np.asarray(z_sorted, dtype=np.float64)
    n = z.size
    if n == 0:
        return np.zeros(0), np.zeros(0)
    K = max(1, min(int(K), n))
    gap = -(-n // K)
    s = z[::gap]
    cnt = n - np.searchsorted(z, s, side="left")
    q = np.maximum(cnt / n - eps, 0.0)
    return s, q


def compact_terms(s: np.ndarray, q: np.ndarray, a: float):
    """Terms ``(w, u)`` of ``a + sum w_i Phi(u_i - R/sigma)``: drops terms that are 0 for every R (w = 0 or q = 0)."""
    s = np.asarray(s, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    w = np.diff(s, prepend=a)
    keep = (w > 0) & (q > 0)
    return np.ascontiguousarray(w[keep]), np.ascontiguousarray(special.ndtri(np.minimum(q[keep], 1.0)))


def hoeffding_q(mean, n, alpha: float, a: float, b: float):
    """``q = (mean - (b - a) eps - a) / (b - a)`` clipped to [0, 1]: with prob. >= 1 - alpha, E[z] >= a + (b - a) q."""
    q = (np.asarray(mean, dtype=np.float64) - (b - a) * dkw_eps(n, alpha) - a) / (b - a)
    return np.clip(q, 0.0, 1.0)


def hoeffding_terms(q: float, a: float, b: float):
    """The Hoeffding bound as one term: ``w = b - a``, ``u = Phi^-1(q)`` (no term when q = 0)."""
    if q <= 0:
        return np.zeros(0), np.zeros(0)
    return np.array([b - a], dtype=np.float64), np.array([special.ndtri(min(q, 1.0))], dtype=np.float64)


# ----------------------------------------------------------------------------- evaluation and radius
@nb.njit(**_JIT)
def _lower(R, a, w, u, inv_sigma):
    x = R * inv_sigma
    acc = 0.0
    for i in range(w.size):
        acc += w[i] * (0.5 * math.erfc((x - u[i]) / _SQRT2))
    return a + acc


@nb.njit(**_JIT)
def _lower_many(R, a, w, u, inv_sigma, out):
    for k in range(R.size):
        out[k] = _lower(R[k], a, w, u, inv_sigma)


@nb.njit(**_JIT)
def _bisect(a, w, u, inv_sigma, thresholds, lo, hi, tol, slack, out):
    for k in range(thresholds.size):
        t = thresholds[k]
        l = lo[k]
        h = hi[k]
        if l > 0.0 and not (_lower(l, a, w, u, inv_sigma) >= t - slack):
            l = 0.0  # closed-form bracket failed in floating point: fall back to R = 0 (checked by the caller)
        if h < l:
            h = l
        if h - l > tol:
            n_it = int(math.ceil(math.log2((h - l) / tol)))
            for _ in range(n_it):
                mid = 0.5 * (l + h)
                if _lower(mid, a, w, u, inv_sigma) >= t:
                    l = mid
                else:
                    h = mid
        out[k] = l


def lower_bound(R, a: float, w: np.ndarray, u: np.ndarray, sigma: float) -> np.ndarray:
    """``a + sum_i w_i Phi(u_i - R/sigma)`` at each R: a lower bound on E[z(x + d)] for every ||d|| <= R."""
    R = np.atleast_1d(np.asarray(R, dtype=np.float64))
    out = np.empty(R.size, dtype=np.float64)
    _lower_many(np.ascontiguousarray(R.ravel()), float(a), np.ascontiguousarray(w, dtype=np.float64),
                np.ascontiguousarray(u, dtype=np.float64), 1.0 / sigma, out)
    return out.reshape(R.shape)


def certified_radii(a: float, w: np.ndarray, u: np.ndarray, sigma: float, thresholds, tol: float = TOL):
    """Radii ``sup{R >= 0 : lower(R) >= t}`` to absolute ``tol`` (never above the sup) and ``lower0 = lower(0)``.

    Returns ``(radius (T,), lower0)``; radius is 0 where ``lower0 < t``
    (the caller abstains there). The returned R always satisfies
    ``lower(R) >= t`` as evaluated (up to 1e-12 of rounding at a closed-form
    bracket end). Bisection runs a fixed ``ceil(log2((hi - lo)/tol))`` steps
    inside a proven bracket: lower(R) is a Gaussian-shift of a distribution
    with mass ``W = sum w`` above a, so by convexity of
    ``q -> Phi(Phi^-1(q) - r)`` it is at least
    ``a + W Phi(Phi^-1((lower0 - a)/W) - R/sigma)`` (gives ``lo``), and at most
    ``a + W Phi(max u - R/sigma)`` (gives ``hi``). For Hoeffding (one term)
    both ends coincide: the radius is the closed form, no bisection step.
    """
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    w = np.ascontiguousarray(w, dtype=np.float64)
    u = np.ascontiguousarray(u, dtype=np.float64)
    inv = 1.0 / float(sigma)
    lower0 = float(_lower(0.0, float(a), w, u, inv))
    ok = lower0 >= t
    radius = np.zeros(t.size, dtype=np.float64)
    if not ok.any():
        return radius, lower0
    W = float(w.sum())
    umax = float(u.max())
    tt = t[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.clip((tt - a) / W, 0.0, 1.0)
        zp = special.ndtri(p)
        qbar = min(max((lower0 - a) / W, 0.0), 1.0)
        lo = sigma * (special.ndtri(qbar) - zp)
        hi = sigma * (umax - zp)
    lo = np.where(np.isfinite(lo) & (lo > 0), lo, 0.0)
    out = np.empty(tt.size, dtype=np.float64)
    if not np.isfinite(hi).all():
        # only when some q_i == 1, impossible for eps > 0: the bound never drops below t
        out[:] = np.inf
    else:
        _bisect(float(a), w, u, inv, tt, lo, hi, float(tol), _SLACK, out)
    radius[ok] = out
    return radius, lower0


# ----------------------------------------------------------------------------- one input
def input_terms(z_sorted: np.ndarray, bound: str, measure: Measure, K: int, alpha: float):
    """Terms ``(w, u)`` of ``bound`` for one input's ascending scores on S (n = len(z_sorted))."""
    n = z_sorted.size
    eps = float(dkw_eps(n, alpha))
    if bound == "cdf":
        s, q = cdf_terms(z_sorted, K, eps)
        return compact_terms(s, q, measure.a)
    if bound == "hoeffding":
        q = float(hoeffding_q(float(np.mean(z_sorted)), n, alpha, measure.a, measure.b))
        return hoeffding_terms(q, measure.a, measure.b)
    raise ValueError(f"--bound: {bound!r} is not one of {', '.join(BOUNDS)} for --method cdf")
