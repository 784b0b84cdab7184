"""Robust conformal prediction sets from stored rows (docs/methods.md section 12): pure functions.

A conformal set holds every class whose score is "typical enough" next to
the scores of labelled calibration inputs. Here the score is smoothed (the
mean of a per-row conformity score over the estimation rows of an input), and
the set keeps its coverage after any L2 perturbation of norm <= eps of the
test input:

- ``rscp+`` (Yan, Romano and Weng, "Provably Robust Conformal Prediction with
  Improved Efficiency", ICLR 2024, arXiv:2404.19651): calibrate on the Monte
  Carlo means themselves (they are exchangeable), pay a Hoeffding term for
  the mean at the clean test input and an upper bound at the perturbed one,
  and move by eps/sigma on the Phi^-1 scale, where every smoothed score is
  (1/sigma)-Lipschitz (Salman et al. 2019, Lemma 2);
- ``cas`` (after Zargarbashi, Akhondzadeh and Bojchevski, "Robust Yet
  Efficient Conformal Prediction Sets", ICML 2024, arXiv:2407.09165): the
  same argument applied to every level set of the score's empirical CDF
  (one-sided DKW band with Massart's constant), integrated: the worst-case
  smoothed score within the ball, which is tighter than one Lipschitz step
  when the score is concentrated.

Departures from the papers' code, on purpose: both variants calibrate on the
Monte Carlo statistics of the calibration inputs (RSCP+'s proof structure);
RSCP+'s code interpolates quantiles and CAS's code splits alpha over every
calibration point. RSCP (Gendler et al., ICLR 2022) is not offered: with
Monte Carlo estimates in place of the smoothed score it is not valid.

Scores (conformity: higher = more typical), of the stored values as float64,
clipped to [0, 1]: ``hps`` ``c(y) = p(y)``; ``aps`` ``c(y) = 1 - (sum of the
p(c) ranked before y + u p(y))``, ranked by p descending, ties to the lower
class, ``u = numpy.random.default_rng([aps_seed, idx]).random()`` per input
(Romano, Sesia and Candès, NeurIPS 2020, randomised).

Everything here works on plain arrays (rows, labels, statistics), so the
soundness simulations call it without a store. The per-input statistics of
compact stores come from ``compact_bounds`` (lower values for calibration,
upper values for the test side).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from scipy import special

_JIT = dict(nogil=True, cache=True)


# ------------------------------------------------------------------------------------------ scores
def aps_u(aps_seed: int, idx) -> np.ndarray:
    """(B,) the aps randomisation of each input: ``numpy.random.default_rng([aps_seed, idx]).random()``."""
    return np.array([np.random.default_rng([int(aps_seed), int(i)]).random() for i in np.asarray(idx)], np.float64)


@nb.njit(**_JIT)
def _clip01(v):
    return min(max(v, 0.0), 1.0)


@nb.njit(**_JIT)
def _aps_row(row, u, out):
    """``out[c]`` = aps score of class c in ``row`` (float32 values as float64, clipped to [0, 1])."""
    m = row.shape[0]
    neg = np.empty(m, np.float64)
    for c in range(m):
        neg[c] = -np.float64(row[c])
    order = np.argsort(neg, kind="mergesort")  # p descending, ties: lower class first (stable)
    acc = 0.0
    for k in range(m):
        c = order[k]
        p = np.float64(row[c])
        out[c] = _clip01(1.0 - (acc + u * p))
        acc += p


@nb.njit(**_JIT)
def _aps_mean_var(rows, start, stop, u, mean, var):
    B, _, m = rows.shape
    n = stop - start
    s = np.empty(m, np.float64)
    for i in range(B):
        for c in range(m):
            mean[i, c] = 0.0
            var[i, c] = 0.0
        for r in range(start, stop):
            _aps_row(rows[i, r], u[i], s)
            for c in range(m):
                mean[i, c] += s[c]
        for c in range(m):
            mean[i, c] /= n
        for r in range(start, stop):     # second pass: the scores again (an (n, m) buffer could be 800 MB)
            _aps_row(rows[i, r], u[i], s)
            for c in range(m):
                d = s[c] - mean[i, c]
                var[i, c] += d * d
        for c in range(m):
            var[i, c] = var[i, c] / (n - 1) if n > 1 else 0.0


@nb.njit(**_JIT)
def _label_scores(rows, labels, start, stop, aps, u, out):
    B, _, m = rows.shape
    s = np.empty(m, np.float64)
    for i in range(B):
        y = labels[i]
        for r in range(start, stop):
            if aps:
                _aps_row(rows[i, r], u[i], s)
                out[i, r - start] = s[y]
            else:
                out[i, r - start] = _clip01(np.float64(rows[i, r, y]))


def _rows(rows) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.dtype != np.float32:  # numba has no float16; float16 -> float32 is exact
        rows = rows.astype(np.float32)
    return np.ascontiguousarray(rows)


def score_mean_var(rows, start: int, stop: int, score: str = "hps", u=None) -> tuple[np.ndarray, np.ndarray]:
    """(B, m) mean and unbiased variance (clipped at >= 0; 0 for one row) of every class's score over rows start:stop.

    ``rows`` (B, R, m) stored probabilities; ``u`` (B,) the aps randomisation
    (``aps_u``). Two passes in float64, rows in order.
    """
    rows = _rows(rows)
    if score == "hps":
        from .soft import mean_var

        mean, var = mean_var(rows, int(start), int(stop))
        return mean, np.where(np.isnan(var), 0.0, np.maximum(var, 0.0))
    if score != "aps":
        raise ValueError(f"--score must be hps or aps, got {score!r}")
    B, _, m = rows.shape
    mean, var = np.empty((B, m)), np.empty((B, m))
    _aps_mean_var(rows, int(start), int(stop), np.asarray(u, np.float64), mean, var)
    return mean, np.maximum(var, 0.0)


def label_scores(rows, labels, start: int, stop: int, score: str = "hps", u=None) -> np.ndarray:
    """(B, stop - start) float64: the score of each input's label on each of its rows start:stop."""
    rows = _rows(rows)
    B = rows.shape[0]
    out = np.empty((B, int(stop) - int(start)), np.float64)
    u = np.zeros(B) if u is None else np.asarray(u, np.float64)
    _label_scores(rows, np.asarray(labels, np.int64), int(start), int(stop), score == "aps", u, out)
    return out


# ---------------------------------------------------------------------------------------- cas score
def dkw_e(N: int, alpha: float) -> float:
    """One-sided DKW half-width with Massart's constant: ``sqrt(ln(1/alpha) / (2 N))``."""
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * N))


def cas_lower(scores, eps_over_sigma, alpha: float) -> np.ndarray:
    """(E,) ``L(x, y, eps)`` of one input for each ``eps / sigma``: w.p. >= 1 - alpha (over the rows) it is at or
    below the smoothed score at every point within eps of x.

    ``scores`` (N,) the label's scores c_1..c_N in [0, 1]. With the distinct
    values of {0, 1, c_j} as b_0 = 0 < ... < b_M = 1, F the empirical CDF and
    e = ``dkw_e(N, alpha)``: ``sum_k (b_k - b_{k-1}) (1 - Phi(Phi^-1(min(1,
    F(b_{k-1}) + e)) + eps/sigma))``, the exact integral of one minus the
    shifted upper CDF band (constant between consecutive b's).
    """
    z = np.sort(np.asarray(scores, np.float64))
    N = z.size
    b = np.unique(np.concatenate(([0.0], z, [1.0])))
    F = np.searchsorted(z, b[:-1], side="right") / N
    base = special.ndtri(np.minimum(1.0, F + dkw_e(N, alpha)))  # F + e > 0; Phi^-1(1) = +inf
    width = np.diff(b)
    shift = np.asarray(eps_over_sigma, np.float64)
    return np.array([np.sum(width * special.ndtr(-(base + s))) for s in shift.ravel()]).reshape(shift.shape)


# ------------------------------------------------------------------------------------- calibration
def calibration_threshold(E, miscoverage: float, alpha: float) -> float:
    """tau: the k-th smallest calibration score, ``k = floor((n_cal + 1) (m - 2 alpha))`` in float64; -inf if k < 1.

    Guarantee: for a test score exchangeable with the n_cal scores ``E``,
    P(test score >= tau) >= 1 - (m - 2 alpha).
    """
    E = np.asarray(E, np.float64)
    k = math.floor((E.size + 1) * (float(miscoverage) - 2.0 * float(alpha)))
    if k < 1:
        return -math.inf
    return float(np.partition(E, k - 1)[k - 1])


def split(idx, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration positions, test positions), each ascending, of inputs with dataset indices ``idx``.

    Inputs ordered by dataset index, N of them; ``perm =
    numpy.random.default_rng(seed).permutation(N)``; calibration: the inputs
    at ``perm[:floor(fraction N)]``, test: the rest. ValueError when either
    is empty.
    """
    idx = np.asarray(idx)
    N = idx.size
    order = np.argsort(idx, kind="stable")
    perm = np.random.default_rng(int(seed)).permutation(N)
    n_cal = int(math.floor(float(fraction) * N))
    if n_cal < 1 or n_cal >= N:
        raise ValueError(f"--calibration-split {fraction:g} of {N} inputs leaves "
                         f"{'no calibration' if n_cal < 1 else 'no test'} input")
    return np.sort(order[perm[:n_cal]]), np.sort(order[perm[n_cal:]])


# -------------------------------------------------------------------------------------------- test
def hoeffding_half(N: int, alpha: float) -> float:
    """b_H = ``sqrt(ln(1/alpha) / (2 N))``."""
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * N))


def upper_mean(mean, var, N: int, alpha: float, bound: str = "bernstein") -> np.ndarray:
    """U = min(1, mean + b): w.p. >= 1 - alpha the smoothed score is at or below U (each entry on its own).

    ``bernstein`` (Maurer and Pontil 2009, Thm 4): ``b = sqrt(2 var ln(2/a) /
    N) + 7 ln(2/a) / (3 (N - 1))`` (+inf for N = 1); ``hoeffding``: ``b =
    b_H``.
    """
    mean = np.asarray(mean, np.float64)
    if bound == "hoeffding":
        b = hoeffding_half(N, alpha)
    elif bound == "bernstein":
        if N < 2:
            return np.ones_like(mean)
        lt = math.log(2.0 / alpha)
        b = np.sqrt(2.0 * np.maximum(np.asarray(var, np.float64), 0.0) * lt / N) + 7.0 * lt / (3.0 * (N - 1))
    else:
        raise ValueError(f"--mean-bound must be bernstein or hoeffding, got {bound!r}")
    return np.minimum(1.0, mean + b)


def in_set(U, tau: float, variant: str, eps: float = 0.0, sigma: float = 1.0, N: int = 1,
           alpha: float = 0.001) -> np.ndarray:
    """Boolean like ``U``: the classes in the robust set, from their upper bounds ``U`` and the threshold ``tau``.

    ``rscp+``: ``Phi^-1(U) + eps/sigma >= Phi^-1(max(0, tau - b_H))``
    (b_H of N rows at alpha); ``cas``: ``U >= tau`` (eps is in tau). Every
    class when tau is -inf. Phi^-1(0) = -inf, Phi^-1(1) = +inf.
    """
    U = np.asarray(U, np.float64)
    if tau == -math.inf:
        return np.ones(U.shape, bool)
    if variant == "cas":
        return U >= tau
    if variant != "rscp+":
        raise ValueError(f"--robust must be rscp+ or cas, got {variant!r}")
    rhs = special.ndtri(max(0.0, tau - hoeffding_half(N, alpha)))
    return special.ndtri(U) + eps / sigma >= rhs


def set_strings(mask: np.ndarray) -> np.ndarray:
    """(rows,) object array: each row's classes (True columns), ascending, joined by single spaces ("" if none).

    Equal rows are joined once (a robust set is often the whole label set).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if mask.shape[0] == 0:
        return np.zeros(0, object)
    packed = np.packbits(mask, axis=1)
    uniq, inv = np.unique(packed, axis=0, return_inverse=True)
    m = mask.shape[1]
    texts = np.array([" ".join(map(str, np.flatnonzero(np.unpackbits(u)[:m]))) for u in uniq], dtype=object)
    return texts[np.asarray(inv).ravel()]
