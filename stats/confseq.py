"""A confidence sequence for a proportion: bounds that hold for every prefix length at once.

The beta-binomial mixture of Robbins (1970), as in Howard, Ramdas,
McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences" (Annals of Statistics 2021, arXiv 1810.08240), with
prior Beta(1/2, 1/2). For k successes in the first t of an i.i.d.
Bernoulli(p) sequence,

    log M_t(p) = ln B(k + 1/2, t - k + 1/2) - ln B(1/2, 1/2) - k ln p - (t - k) ln(1 - p)

is the log of a nonnegative martingale in t (at the true p) with M_0 = 1, so
by Ville's inequality ``P(exists t: M_t(p) >= 1/a) <= a``. Hence

    CS_lower(k, t, a) = inf { p : log M_t(p) < ln(1/a) }   (0 when k = 0)
    CS_upper(k, t, a) = sup { p : log M_t(p) < ln(1/a) }   (1 when k = t)

satisfy ``P(CS_lower(k_t, t, a) <= p for every t = 1, 2, ...) >= 1 - a``
(and likewise for the upper bound): a user may look at any number of
prefixes, chosen in any data-dependent way, and stop at the first one that
suits them. ``CS_upper(k, t, a) = 1 - CS_lower(t - k, t, a)`` by symmetry.

Computation (docs/methods.md section 11): ``log M_t`` is convex in p with its
minimum (<= 0) at p = k/t, so each bound is the single root of
``log M_t(p) = ln(1/a)`` on (0, k/t] (lower) or [k/t, 1) (upper). A Numba
kernel brackets that root by bisection until the bracket is at most 1e-12
wide and returns the bracket's OUTER end (the lower end for the lower bound,
the upper end for the upper bound): a bound is never rounded towards the
estimate. ``ln B`` is evaluated through Stirling's remainder, so that for
t = 10^6 the large terms cancel analytically rather than in floating point.

Every function is pure and vectorised over k, t and a (numpy broadcasting).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

TOL = 1e-12  # width of the final bracket, in p
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)  # ln B(1/2, 1/2)


@nb.njit(nogil=True, cache=True)
def _stirling_remainder(x):
    """omega(x) = ln Gamma(x) - ((x - 1/2) ln x - x + ln(2 pi)/2), accurate to ~1e-16 for x > 0."""
    if x < 15.0:
        return math.lgamma(x) - ((x - 0.5) * math.log(x) - x + _HALF_LOG_2PI)
    r = 1.0 / x
    r2 = r * r
    # Stirling's series; the first omitted term is below 691 / (360360 x^11) < 3e-16 for x >= 15
    return r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 * (1.0 / 1680.0 - r2 / 1188.0))))


@nb.njit(nogil=True, cache=True)
def _log_m(p, k, t, c0):
    """log M_t(p) with ``c0`` from ``_log_m_const``; +inf at an end of [0, 1] where a term diverges."""
    a = k + 0.5
    b = t - k + 0.5
    s = t + 1.0
    out = c0
    if k > 0.0:
        if p <= 0.0:
            return np.inf
        out += k * math.log(a / (s * p))
    if t - k > 0.0:
        q = 1.0 - p
        if q <= 0.0:
            return np.inf
        out += (t - k) * math.log(b / (s * q))
    return out


@nb.njit(nogil=True, cache=True)
def _log_m_const(k, t):
    """The p-free part of log M_t: ln B(k+1/2, t-k+1/2) - ln B(1/2, 1/2) less its k ln(a/s) + (t-k) ln(b/s) terms.

    With a = k + 1/2, b = t - k + 1/2, s = a + b = t + 1 and omega Stirling's remainder,
    ln B(a, b) = (a - 1/2) ln a + (b - 1/2) ln b - (s - 1/2) ln s + ln(2 pi)/2 + omega(a) + omega(b) - omega(s),
    so log M_t(p) = c0 + k ln(a / (s p)) + (t - k) ln(b / (s (1 - p))) with c0 returned here.
    """
    a = k + 0.5
    b = t - k + 0.5
    s = t + 1.0
    return (_HALF_LOG_2PI - _LOG_PI - 0.5 * math.log(s)
            + _stirling_remainder(a) + _stirling_remainder(b) - _stirling_remainder(s))


@nb.njit(nogil=True, cache=True)
def _cs_bounds(k, t, a, upper, out):
    """Kernel: out[i] = CS_lower (upper=False) or CS_upper (upper=True) of (k[i], t[i], a[i]) by bisection."""
    for i in range(k.shape[0]):
        ki, ti = k[i], t[i]
        level = -math.log(a[i])  # ln(1/a) > 0
        c0 = _log_m_const(ki, ti)
        phat = ki / ti
        if not upper:
            if ki <= 0.0:
                out[i] = 0.0
                continue
            lo, hi = 0.0, phat  # log M(lo) >= level (lo = 0: +inf), log M(hi) <= 0 < level
            for _ in range(200):
                if hi - lo <= TOL:
                    break
                mid = 0.5 * (lo + hi)
                if _log_m(mid, ki, ti, c0) >= level:
                    lo = mid
                else:
                    hi = mid
            out[i] = lo  # outside the set: lo <= the infimum
        else:
            if ki >= ti:
                out[i] = 1.0
                continue
            lo, hi = phat, 1.0  # log M(lo) <= 0 < level, log M(hi) >= level (hi = 1: +inf)
            for _ in range(200):
                if hi - lo <= TOL:
                    break
                mid = 0.5 * (lo + hi)
                if _log_m(mid, ki, ti, c0) >= level:
                    hi = mid
                else:
                    lo = mid
            out[i] = hi  # outside the set: hi >= the supremum


@nb.njit(nogil=True, cache=True)
def _log_m_array(p, k, t, out):
    for i in range(p.shape[0]):
        out[i] = _log_m(p[i], k[i], t[i], _log_m_const(k[i], t[i]))


def _prepare(k, t, a):
    k = np.asarray(k, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    shape = np.broadcast_shapes(k.shape, t.shape, a.shape)
    # C-ordered writable copies: the kernel reads flat arrays (a broadcast view would be neither)
    k, t, a = (np.array(np.broadcast_to(x, shape), dtype=np.float64, order="C") for x in (k, t, a))
    if k.size:
        if not (np.all(t >= 1) and np.all(k >= 0) and np.all(k <= t)):
            raise ValueError("confidence sequence: expected 0 <= k <= t and t >= 1 "
                             f"(got k in [{k.min():g}, {k.max():g}], t in [{t.min():g}, {t.max():g}])")
        if not (np.all(k == np.floor(k)) and np.all(t == np.floor(t))):
            raise ValueError("confidence sequence: k and t must be whole numbers")
        if not np.all((a > 0) & (a < 1)):
            raise ValueError(f"confidence sequence: level a must be in (0, 1), got values in [{a.min():g}, {a.max():g}]")
    return k, t, a


def _bound(k, t, a, upper: bool):
    k, t, a = _prepare(k, t, a)
    shape = k.shape
    out = np.empty(k.size, dtype=np.float64)
    _cs_bounds(k.ravel(), t.ravel(), a.ravel(), upper, out)
    out = out.reshape(shape)
    return out if out.ndim else float(out)


def cs_lower(k, t, a):
    """Lower confidence-sequence bound: ``P(cs_lower(k_t, t, a) <= p for all t at once) >= 1 - a``.

    ``inf { p : log M_t(p) < ln(1/a) }`` of the beta-binomial (Beta(1/2, 1/2))
    mixture martingale, 0 when k = 0; the returned value is the lower end
    of a bracket at most 1e-12 wide, so it is never above the exact bound.
    Vectorised over k (successes), t (trials, >= 1) and a (in (0, 1)).
    """
    return _bound(k, t, a, upper=False)


def cs_upper(k, t, a):
    """Upper confidence-sequence bound: ``P(cs_upper(k_t, t, a) >= p for all t at once) >= 1 - a``.

    ``sup { p : log M_t(p) < ln(1/a) } = 1 - cs_lower(t - k, t, a)``, 1 when
    k = t; the upper end of a bracket at most 1e-12 wide (never below the
    exact bound).
    """
    return _bound(k, t, a, upper=True)


def log_martingale(p, k, t):
    """log M_t(p) of the beta-binomial mixture (vectorised; for tests and plots)."""
    p = np.asarray(p, dtype=np.float64)
    k, t, _ = _prepare(k, t, 0.5)
    shape = np.broadcast_shapes(p.shape, k.shape, t.shape)
    p, k, t = (np.array(np.broadcast_to(x, shape), dtype=np.float64, order="C") for x in (p, k, t))
    out = np.empty(p.size, dtype=np.float64)
    _log_m_array(p.ravel(), k.ravel(), t.ravel(), out)
    out = out.reshape(p.shape)
    return out if out.ndim else float(out)
