"""ACES: certified entropy selection between a smoothed model and a core model (docs/methods.md section 5).

Horváth et al. (ACES, 2022), Alg. 1 (CERTIFY) and Alg. 4 (PREDICT). The store's
rows are the certification model's outputs under noise; the selection model
is the entropy test on the same rows: a row selects the certification model
(s = 1) iff ``H(p) / ln(m) <= theta`` (natural log, ``0 ln 0 = 0``, rows used
exactly as stored). ``core_predict`` is the core model's clean prediction.

A sweep of T thresholds costs about one threshold: each row's normalised
entropy is computed once and dropped into the bin of the first threshold at
or above it (binary search over the sorted thresholds), and one cumulative
sum gives, for every threshold, the number of selecting rows; the bounds are
then evaluated once per distinct (count, n) pair. The store is read once.

Overall confidence (worked out from section 5 and Theorem B.1/B.2 of Horváth et al. 2022, ACES):

- CERTIFY: S0 only chooses ``s_hat`` and ``cA`` (no test, no alpha spent);
  the two Clopper-Pearson bounds on S (``pS`` for the selection, ``pA`` for
  the class) are each at alpha/2, so by the union bound a returned class and
  radius hold with probability >= 1 - alpha. Branches 2 and 3 rest on one
  bound each (at alpha/2 <= alpha).
- PREDICT: on S only; branch 1 needs two tests at alpha/2 (union: alpha),
  branches 2 and 3 one each; so a returned class is F_ACES(x) with
  probability >= 1 - alpha.

Both already spend alpha once overall, so ``--joint-alpha`` changes nothing.
Each threshold's certificates hold at that level; choosing the best threshold
afterwards on the same test inputs is post-hoc selection (calibrate on a
validation store). The registry entries of ``aces`` and ``aces-predict`` are
in ``entries_aces``.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..stats.bounds import cp_lower
from ..stats.hypotheses import binom_p
from ..stats.counts import top_k
from ..stats.normal import norm_ppf
from .kernels import class_counts
from .registry import frame

_JIT = dict(nogil=True, cache=True)
DEFAULT_THETAS = tuple(i / 100 for i in range(101))  # the reference code's grid 0, 0.01, ..., 1


# -------------------------------------------------------------------- kernels
LUT_BITS = 16  # buckets of [0, 1] that narrow each row's binary search to the thresholds inside its bucket


def _bucket_lut(thetas: np.ndarray) -> np.ndarray:
    """lut[b] = index of the first threshold >= b / 2^LUT_BITS (b = 0 .. 2^LUT_BITS), lut[-1] = T."""
    nb_ = 1 << LUT_BITS
    grid = np.arange(nb_ + 1, dtype=np.float64) / nb_  # exact: power-of-two denominators
    return np.concatenate([np.searchsorted(thetas, grid, side="left"), [len(thetas)]]).astype(np.int64)


@nb.njit(parallel=True, **_JIT)
def _selection_counts(rows, starts, stops, thetas, lut, inv_log_m, out):
    B = rows.shape[0]
    m = rows.shape[2]
    T = thetas.shape[0]
    nbk = lut.shape[0] - 2
    for b in nb.prange(B):
        hist = np.zeros(T + 1, np.int64)
        for r in range(starts[b], stops[b]):
            h = 0.0
            for c in range(m):
                p = np.float64(rows[b, r, c])
                if p > 0.0:
                    h -= p * np.log(p)
            h *= inv_log_m
            if h != h:  # NaN: never selects
                hist[T] += 1
                continue
            # thresholds below bucket k / nbk <= h cannot select; those from bucket k + 1 on all do
            k = int(h * nbk) if h < 1.0 else nbk
            if k < 0:
                k = 0
            lo = lut[k]
            hi = lut[k + 1]
            while lo < hi:  # first threshold >= h: the row selects for it and every larger one
                mid = (lo + hi) // 2
                if thetas[mid] < h:
                    lo = mid + 1
                else:
                    hi = mid
            hist[lo] += 1
        cum = 0
        for t in range(T):
            cum += hist[t]
            out[b, t] = cum


@nb.njit(parallel=True, **_JIT)
def _entropies(rows, starts, stops, inv_log_m, out):
    B = rows.shape[0]
    m = rows.shape[2]
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            h = 0.0
            for c in range(m):
                p = np.float64(rows[b, r, c])
                if p > 0.0:
                    h -= p * np.log(p)
            out[b, r - starts[b]] = h * inv_log_m


def normalized_entropy(rows: np.ndarray, start, stop) -> np.ndarray:
    """(B, max(stop - start)) ``H(p)/ln(m)`` of rows ``start[b]:stop[b]`` (NaN beyond an input's range)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    B, R, m = rows.shape
    starts = np.broadcast_to(np.asarray(start, np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, np.int64), (B,)).copy()
    out = np.full((B, int((stops - starts).max(initial=0))), np.nan)
    _entropies(rows, starts, stops, 1.0 / math.log(m), out)
    return out


def selection_counts(rows: np.ndarray, start, stop, thetas) -> np.ndarray:
    """(B, T): per input, how many of rows ``start[b]:stop[b]`` select the certification model at each theta.

    Guarantee: entry (b, t) equals ``#{r : H(rows[b, r]) / ln(m) <= thetas[t]}``
    exactly as computed in float64 from the stored values (the entropy of each
    row is computed once, whatever the number of thresholds; a bucket table of
    [0, 1] narrows each row's binary search to the thresholds in its bucket).
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    B, R, m = rows.shape
    thetas = np.asarray(thetas, dtype=np.float64)
    uniq, inv = np.unique(thetas, return_inverse=True)
    starts = np.broadcast_to(np.asarray(start, np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, np.int64), (B,)).copy()
    out = np.zeros((B, len(uniq)), np.int64)
    _selection_counts(rows, starts, stops, uniq, _bucket_lut(uniq), 1.0 / math.log(m), out)
    return out[:, inv.reshape(-1)]



@nb.njit(parallel=True, **_JIT)
def _selection_counts_stats(ent, starts, stops, thetas, inv_log_m, out):
    # The binning of _selection_counts, with H(p) from a compact store's stored entropy.
    B = ent.shape[0]
    T = thetas.shape[0]
    for b in nb.prange(B):
        hist = np.zeros(T + 1, np.int64)
        for r in range(starts[b], stops[b]):
            h = ent[b, r]
            h *= inv_log_m
            if h != h:
                hist[T] += 1
                continue
            lo = 0
            hi = T
            while lo < hi:
                mid = (lo + hi) // 2
                if thetas[mid] < h:
                    lo = mid + 1
                else:
                    hi = mid
            hist[lo] += 1
        cum = 0
        for t in range(T):
            cum += hist[t]
            out[b, t] = cum


def selection_counts_of(block, start, stop, thetas) -> np.ndarray:
    """``selection_counts`` of a block, from its rows or from its compact entropies (equal results).

    A compact store keeps each row's entropy as the float64 the full-row
    kernel computes; times 1/ln(m) it is the same normalised entropy.
    """
    comp = getattr(block, "compact", None)
    if comp is None:
        return selection_counts(block.rows, start, stop, thetas)
    ent = np.ascontiguousarray(comp["entropy"], dtype=np.float64)
    B = ent.shape[0]
    thetas = np.asarray(thetas, dtype=np.float64)
    uniq, inv = np.unique(thetas, return_inverse=True)
    starts = np.broadcast_to(np.asarray(start, np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, np.int64), (B,)).copy()
    out = np.zeros((B, len(uniq)), np.int64)
    _selection_counts_stats(ent, starts, stops, uniq, 1.0 / math.log(block.m), out)
    return out[:, inv.reshape(-1)]

# ------------------------------------------------------------- cached bounds
def _pairs_apply(fn, k, n, *args):
    """``fn(k, n, *args)`` evaluated once per distinct (k, n) pair and broadcast back (exactly equal values)."""
    k, n = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(n, np.int64))
    key = k.ravel() * (int(n.max(initial=0)) + 1) + n.ravel()
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    vals = np.atleast_1d(fn(k.ravel()[first], n.ravel()[first], *args))
    return vals[inv.reshape(-1)].reshape(k.shape)


def cp_lower_pairs(k, n, a):
    """Clopper-Pearson lower bound at level ``a`` for every (k, n), computed once per distinct pair."""
    return _pairs_apply(cp_lower, k, n, a)


def binom_p_pairs(k, n, alternative="two-sided"):
    """``binom_p(k, n)`` against 0.5 for every (k, n), computed once per distinct pair."""
    return _pairs_apply(binom_p, k, n, alternative)


# ------------------------------------------------------------ pure procedures
def certify_counts(counts0, counts, sel0, sel, n0, n, core, sigma: float, alpha: float):
    """ACES CERTIFY (Alg. 1 of Horváth et al. 2022, ACES) for every input and threshold, with probability >= 1 - alpha sound.

    ``counts0``/``counts`` (B, m): hard-label counts of S0/S; ``sel0``/``sel``
    (B, T): rows of S0/S that select the certification model; ``n0`` and ``n``
    rows per input; ``core`` (B,) the core model's clean prediction. Per
    (input, theta), a returned class is F_ACES(x) and, with selection 1, is
    constant within the radius. Returns a dict of (B, T) arrays: predict,
    radius, selection (1 certified model, 0 core, -1 agreement or abstain),
    p_lower (pA), p_select (pS) and select_radius (the selection model's
    certified radius: + for s_hat = 1, - for s_hat = 0, 0 when pS <= 1/2).
    """
    counts0 = np.asarray(counts0)
    counts = np.asarray(counts)
    sel0 = np.asarray(sel0, np.int64)
    sel = np.asarray(sel, np.int64)
    B, T = sel.shape
    n = np.broadcast_to(np.asarray(n, np.int64), (B,))
    n0 = np.broadcast_to(np.asarray(n0, np.int64), (B,))
    core = np.asarray(core, np.int64)
    half = alpha / 2
    # from S0: the selection and the class
    s_hat = np.where((n0[:, None] - sel0) > sel0, 0, 1)
    cA = top_k(counts0, 1)[0][:, 0]
    # from S: one bound each, at alpha/2
    kA = np.take_along_axis(counts, cA[:, None], axis=1)[:, 0]
    pA = np.atleast_1d(cp_lower_pairs(kA, n, half))
    kS = np.where(s_hat == 1, sel, n[:, None] - sel)
    pS = cp_lower_pairs(kS, np.broadcast_to(n[:, None], (B, T)), half)
    p = np.minimum(pA[:, None], pS)
    b1 = (s_hat == 1) & (p > 0.5)
    b2 = ~b1 & (s_hat == 0) & (pS >= 0.5)
    b3 = ~b1 & ~b2 & (cA == core)[:, None] & (pA >= 0.5)[:, None]
    cA2 = np.broadcast_to(cA[:, None], (B, T))
    predict = np.where(b1 | b3, cA2, np.where(b2, core[:, None], -1)).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.where(b1, sigma * norm_ppf(np.where(b1, p, 0.5)), 0.0)
        rs = sigma * norm_ppf(np.where(pS > 0.5, pS, 0.5))
    selection = np.where(b1, 1, np.where(b2, 0, -1)).astype(np.int64)
    select_radius = np.where(pS > 0.5, np.where(s_hat == 1, rs, -rs), 0.0)
    return {"predict": predict, "radius": radius.astype(np.float64), "selection": selection,
            "p_lower": np.broadcast_to(pA[:, None], (B, T)), "p_select": pS, "select_radius": select_radius}


def predict_counts(counts, sel, n, core, alpha: float, alternative: str = "two-sided"):
    """ACES PREDICT (Alg. 4 of Horváth et al. 2022, ACES, second branch read as "and") on S: a returned class is F_ACES(x) w.p. >= 1 - alpha.

    ``counts`` (B, m) hard-label counts of S, ``sel`` (B, T) selecting rows of
    S per threshold, ``n`` rows, ``core`` (B,). Returns (predict, selection),
    each (B, T); selection 1 (smoothed certification model), 0 (core), -1.
    """
    counts = np.asarray(counts)
    sel = np.asarray(sel, np.int64)
    B, T = sel.shape
    n = np.broadcast_to(np.asarray(n, np.int64), (B,))
    core = np.asarray(core, np.int64)
    half = alpha / 2
    cls, vals = top_k(counts, 2)
    cA, nA, nB = cls[:, 0], vals[:, 0], vals[:, 1]
    rho = np.atleast_1d(binom_p_pairs(nA, nA + nB, alternative))
    k1 = sel
    k0 = n[:, None] - sel
    nn = np.broadcast_to(n[:, None], (B, T))
    p1 = binom_p_pairs(k1, nn, alternative)
    p0 = binom_p_pairs(k0, nn, alternative)
    b1 = (k1 > k0) & (p1 <= half) & (rho <= half)[:, None]
    b2 = ~b1 & (k0 > k1) & (p0 <= half)
    b3 = ~b1 & ~b2 & ((cA == core) & (rho <= half))[:, None]
    cA2 = np.broadcast_to(cA[:, None], (B, T))
    predict = np.where(b1 | b3, cA2, np.where(b2, core[:, None], -1)).astype(np.int64)
    selection = np.where(b1, 1, np.where(b2, 0, -1)).astype(np.int64)
    return predict, selection


# ----------------------------------------------------------------- options
def thetas_of(opts) -> np.ndarray:
    """The thresholds to evaluate: ``--theta`` (each in [0, 1]) or the reference grid 0, 0.01, ..., 1."""
    th = list(opts.theta) if opts.theta else list(DEFAULT_THETAS)
    arr = np.asarray(th, dtype=np.float64)
    bad = arr[~((arr >= 0) & (arr <= 1))]
    if bad.size:
        raise ValueError(f"--theta: ACES thresholds are normalised entropies in [0, 1], got {bad[0]!r}")
    return arr


def check_options(opts, store=None):
    """ValueError on a threshold outside [0, 1], before any row is read."""
    thetas_of(opts)


# ------------------------------------------- computations (entries_aces)
def _expand(B, thetas):
    return np.repeat(np.arange(B), len(thetas)), np.tile(thetas, B)


def certify_aces(block, opts):
    """One row per (input, theta): ACES CERTIFY (Alg. 1), predict and radius w.p. >= 1 - alpha."""
    thetas = thetas_of(opts)
    B = len(block)
    n_i = block.n_i
    c0 = class_counts(block.argmax, 0, block.n0_use, block.m)
    c = class_counts(block.argmax, block.n0, block.n0 + n_i, block.m)
    sel0 = selection_counts_of(block, 0, block.n0_use, thetas)  # rows or compact entropies
    sel = selection_counts_of(block, block.n0, block.n0 + n_i, thetas)
    res = certify_counts(c0, c, sel0, sel, block.n0_use, n_i, block.core_predict, block.sigma, opts.alpha)
    pos, th = _expand(B, thetas)
    return frame(pos, theta=th, **{k: v.reshape(-1) for k, v in res.items()})


def predict_aces(block, opts):
    """One row per (input, theta): ACES PREDICT (Alg. 4), the class of F_ACES w.p. >= 1 - alpha; radius 0."""
    thetas = thetas_of(opts)
    B = len(block)
    n_i = block.n_i
    c = class_counts(block.argmax, block.n0, block.n0 + n_i, block.m)
    sel = selection_counts_of(block, block.n0, block.n0 + n_i, thetas)
    pred, selection = predict_counts(c, sel, n_i, block.core_predict, opts.alpha, opts.binom_test)
    pos, th = _expand(B, thetas)
    return frame(pos, theta=th, predict=pred.reshape(-1), radius=0.0, selection=selection.reshape(-1))
