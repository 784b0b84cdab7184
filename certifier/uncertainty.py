"""Uncertainty-aware certificates R_CC, R_NCL and ncl-strict (docs/methods.md section 3).

A row's uncertainty-equipped label at threshold theta is its hard label if
``u(p) < theta`` and the uncertain class V (index m) otherwise. What the
certificates read of the extended counts (m + 1 entries) for every theta
comes from one pass over the rows (``ranked_counts_of``), so a sweep of
1,000 thresholds costs one read of the store and one u value per row and
function. The certificates are then computed for all (input, function,
theta) pairs at once:

- ``cc`` (R_CC): two-step (section 2) on the extended counts, V a class like
  any other, abstain when PREDICT's top class is V; the runner-up may be V.
  With probability >= 1 - 2 alpha, g(x + d) = cA (confident) for ||d|| < R_CC.
- ``ncl`` (Däubener et al.'s R_NCL formula): V merged into cA. It guarantees only
  that the merged outcome "cA or uncertain" keeps more mass than any single
  other class within R_NCL; it does NOT guarantee that the smoothed
  prediction stays in {cA, V} (a third class can win when the mass of cA
  and V splits: P = (cA .5, V .3, cB .2) has R_NCL = 0.84 sigma, yet
  g(x + d) = cB is possible at 0.8 sigma).
- ``ncl-strict``: max(R1, R2) at alpha/3 per bound on S; within it the
  smoothed prediction provably stays in {cA, V} (w.p. >= 1 - 2 alpha).

How the sweep counts (a design choice where docs/methods.md says "sort each
input's u values and count with binary search"): the counts are the same, but
instead of sorting each input's u values, each row's u is located among the
sorted distinct thresholds (a bucket guess corrected by exact comparisons)
and the row is filed in that bin. On S0 the ranking PREDICT reads is updated
as rows join the confident ones (``kernels_uncertainty.selection_ranks``); on
S, a histogram over the bins of only the classes those rankings picked, and
of all real classes together (V is the rest), gives by cumulative sums their
counts at every theta (``kernels_uncertainty.estimation_counts``):
O(rows + n0 x distinct classes + T) per input and function, no sort, and no
count per class (``extended_counts_per_function_of`` counts every class, for
calibration).

Choices where the spec is silent: u is computed in float64 from the stored
values (float16 stores: the float16 values); the row is V when u >= theta
(NaN u counts as V); ``ncl``'s runner-up is also reported when PREDICT's test
abstained (as two-step reports its runner-up), from the untested top class.

Everything here is a pure function over arrays, except the memo table of
Clopper-Pearson bounds (a pure function of (k, n, level), cached so that a
sweep computes each distinct bound once per process).
"""
from __future__ import annotations

import threading

import numpy as np
from scipy import special

from ..stats.bounds import cp_lower, cp_upper
from ..stats.hypotheses import binom_p
from .kernels_uncertainty import (CONFIDENCE, ENTROPY, MARGIN, class_histogram, estimation_counts, ncl_strict_r2,
                                  selection_ranks, theta_bins)

FUNCTIONS = ("entropy", "confidence", "margin")
GUARANTEES = ("cc", "ncl", "ncl-strict")
_CODE = {"entropy": ENTROPY, "confidence": CONFIDENCE, "margin": MARGIN}
NONE = -1


# ----------------------------------------------------------------- u functions
def uncertainty_values(rows: np.ndarray, name: str) -> np.ndarray:
    """u(p) per row of ``rows`` (..., m) in float64, larger = more uncertain (Däubener et al.'s signs).

    The same definitions as the kernel (entropy with natural log and 0 ln 0 = 0,
    ``-max p``, ``-(p_(1) - p_(2))``); entropy is summed with numpy here, so it
    may differ from the kernel's class-order sum in the last bit.
    """
    p = np.asarray(rows, dtype=np.float64)
    if name == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -t.sum(axis=-1)
    if name == "confidence":
        return -p.max(axis=-1)
    if name == "margin":
        s = np.sort(p, axis=-1)
        return -(s[..., -1] - s[..., -2])
    raise ValueError(f"--uncertainty: {name!r} is not one of {', '.join(FUNCTIONS)}")


def check_thetas(thetas) -> np.ndarray:
    """Thresholds as float64; NaN is refused (+-inf are allowed: +inf recovers plain labels)."""
    t = np.asarray(list(thetas), dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("--theta: NaN is not a threshold")
    return t


def _codes(funcs) -> np.ndarray:
    return np.asarray([_CODE[f] if isinstance(f, str) else int(f) for f in funcs], dtype=np.int64)


def block_bins(block, start, stop, funcs, thetas_sorted) -> np.ndarray:
    """``kernels_uncertainty.theta_bins`` of a block's rows ``start[b]:stop[b]``, from its rows or compact statistics.

    A compact store keeps each row's entropy as the float64 the full-row
    kernel computes and its top-2 probabilities as stored, so u(p), and every
    count below, is the same as from the full rows.
    """
    comp = getattr(block, "compact", None)
    if comp is None:
        return theta_bins(block.rows, start, stop, _codes(funcs), thetas_sorted)
    return theta_bins(None, start, stop, _codes(funcs), thetas_sorted, stats=(comp["entropy"], comp["topk_p"]))


def _unique_thetas(thetas_per_function):
    """Per function: (ascending distinct thresholds, index of each given threshold among them)."""
    return [np.unique(check_thetas(t), return_inverse=True) for t in thetas_per_function]


def extended_counts_per_function_of(block, start, stop, funcs, thetas_per_function) -> list:
    """Per function f, (B, T_f, m + 1) counts of the uncertainty-equipped labels of rows ``start[b]:stop[b]``.

    Entry [b, t, c] counts rows with hard label c (the stored argmax) and
    ``u_f(p) < thetas_f[t]``; entry [..., m] counts the rest (V). Thresholds
    keep the caller's order (duplicates allowed). One pass over the rows
    computes each row's u once per function, whatever the number of
    thresholds. Every class is counted (m + 1 integers per input and
    threshold): what calibration reads; the certificates read far less
    (``ranked_counts_of``).
    """
    B, m = len(block.argmax), block.m
    uniq = _unique_thetas(thetas_per_function)
    bins = block_bins(block, start, stop, funcs, [u for u, _ in uniq])
    hist = class_histogram(bins, block.argmax, start, stop, [len(u) for u, _ in uniq], m)
    n_total = (np.broadcast_to(np.asarray(stop, np.int64), (B,)) - np.broadcast_to(np.asarray(start, np.int64), (B,)))
    out = []
    for fi, (u, inv) in enumerate(uniq):
        real = np.cumsum(hist[:, fi, :, : len(u)], axis=-1).transpose(0, 2, 1)  # (B, T_f, m)
        v = n_total[:, None] - real.sum(axis=-1)
        c = np.concatenate([real, v[..., None]], axis=-1)
        out.append(c[:, inv.reshape(-1)])
    return out


def extended_counts(labels, rows, start, stop, funcs, thetas) -> np.ndarray:
    """(B, F, T, m + 1): ``extended_counts_per_function_of`` of full rows, the same thresholds for every function."""
    from types import SimpleNamespace

    block = SimpleNamespace(argmax=labels, rows=rows, m=rows.shape[2], compact=None)
    return np.stack(extended_counts_per_function_of(block, start, stop, funcs, [thetas] * len(funcs)), axis=1)


COUNT_FIELDS = ("k_top", "k_second", "k_ncl_runner", "k_v")


def ranked_counts_of(block, funcs, thetas_per_function, s0: tuple, s: tuple) -> dict:
    """What the certificates read, per (input, function, theta), in that order (thresholds in the caller's order).

    ``s0 = (start, stop)`` are the selection rows and ``s = (start, stop)``
    the estimation rows of each input. Returns flat arrays of B x S entries
    (S = the thresholds of all functions): ``kernels_uncertainty.SELECTION_FIELDS``
    (the three largest extended selection counts and their classes, and
    ``ncl``'s runner-up among real classes) and, on the estimation rows,
    ``COUNT_FIELDS``: the counts of those three classes and of V. Only
    those classes are counted on the estimation rows: O(inputs x settings)
    integers, never one per class.
    """
    uniq = _unique_thetas(thetas_per_function)
    sorted_thetas, tcount = [u for u, _ in uniq], [len(u) for u, _ in uniq]
    bins0 = block_bins(block, *s0, funcs, sorted_thetas)
    ranks = selection_ranks(bins0, block.argmax, *s0, tcount, block.m)
    del bins0
    classes = np.stack([ranks["top"], ranks["second"], ranks["ncl_runner"]])
    bins = block_bins(block, *s, funcs, sorted_thetas)
    est = estimation_counts(bins, block.argmax, *s, tcount, classes, block.m)
    del bins
    Tmax = classes.shape[-1]
    take = np.concatenate([fi * Tmax + inv.reshape(-1) for fi, (_, inv) in enumerate(uniq)])  # (S,)
    B = len(block.argmax)

    def flat(a):  # (B, F, Tmax) -> (B * S,) in (input, function, given theta) order
        return np.ascontiguousarray(a.reshape(B, -1)[:, take]).reshape(-1)

    out = {k: flat(v) for k, v in ranks.items()}
    out.update({k: flat(est[i]) for i, k in enumerate(COUNT_FIELDS)})
    return out


# ------------------------------------------------------- memoised exact bounds
_CP_MEMO: dict = {}
_CP_LOCK = threading.Lock()
_MEMO_MAX_N = 1 << 22  # dense memo tables up to 32 MB each


def _cp_memo(side: str, k: np.ndarray, n: int, level: float) -> np.ndarray:
    """``cp_lower``/``cp_upper`` of counts ``k`` out of ``n`` at ``level``, each distinct value computed once.

    The values are exactly those of ``bounds.cp_lower``/``cp_upper`` (the same
    elementwise scipy calls), so results equal an uncached computation bit for bit.
    """
    key = (side, int(n), float(level))
    k = np.asarray(k, dtype=np.int64)
    fn = cp_lower if side == "lower" else cp_upper
    if n > _MEMO_MAX_N:  # a dense table would be too large: each distinct count of this call once
        need, inv = np.unique(k, return_inverse=True)
        return np.atleast_1d(fn(need, np.full(need.shape, n), level))[inv.reshape(-1)].reshape(k.shape)
    with _CP_LOCK:
        table = _CP_MEMO.get(key)
        if table is None:
            table = _CP_MEMO[key] = np.full(int(n) + 1, np.nan)
    vals = table[k]
    miss = np.isnan(vals)
    if miss.any():  # computed outside the lock, so that threads compute at once (scipy releases the GIL); two
        need = np.unique(k[miss])  # threads may fill the same entries, with the same values
        got = np.atleast_1d(fn(need, np.full(need.shape, n), level))
        table[need] = got
        vals[miss] = got[np.searchsorted(need, k[miss])]
    return vals


def cp_bound(side: str, k, n, level: float) -> np.ndarray:
    """Clopper-Pearson bound per pair (k[i] successes of n[i]) at one level, memoised per (n, level)."""
    k = np.asarray(k, dtype=np.int64)
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), k.shape)
    out = np.empty(k.shape, dtype=np.float64)
    for nv in np.unique(n):
        sel = n == nv
        out[sel] = _cp_memo(side, k[sel], int(nv), level)
    return out


def binom_p_unique(k, N, alternative: str) -> np.ndarray:
    """``hypotheses.binom_p(k, N)`` per pair, computing each distinct (k, N) once."""
    k = np.asarray(k, dtype=np.int64)
    N = np.asarray(N, dtype=np.int64)
    if k.size == 0:
        return np.ones(k.shape)
    base = int(N.max()) + 1
    key = k.ravel() * base + N.ravel()  # one integer per (k, N): 1-D unique is much faster than rows
    uk, inv = np.unique(key, return_inverse=True)
    p = np.atleast_1d(binom_p(uk // base, uk % base, alternative))
    return p[inv.reshape(-1)].reshape(k.shape)


def _ppf(p):
    """Phi^-1 (scipy's ndtri, the function norm.ppf evaluates on [0, 1])."""
    return special.ndtri(p)


def _radius(pA, pB, sigma):
    """sigma/2 (Phi^-1(pA) - Phi^-1(pB)), NaN counting as no radius (as two_step.radius_from_bounds)."""
    with np.errstate(invalid="ignore"):
        r = 0.5 * sigma * (_ppf(pA) - _ppf(pB))
    return np.where(np.isnan(r), -np.inf, r)


def _two_step_bounds(kA, kB, has_b, n, a):
    """Section 2's CERTIFY bounds: (pA, pB), each side at a/2 when both are bounded, else pB = 1 - CP_lower(kA, a)."""
    split = has_b & (kA + kB != n)
    pA = np.empty(kA.shape)
    pB = np.empty(kA.shape)
    pA[split] = cp_bound("lower", kA[split], n[split], a / 2)
    pB[split] = cp_bound("upper", kB[split], n[split], a / 2)
    full = ~split
    pA[full] = cp_bound("lower", kA[full], n[full], a)
    pB[full] = 1.0 - pA[full]
    return pA, pB


# ------------------------------------------------------------- certificates
def certify_ranked(r: dict, n, m: int, sigma: float, alpha: float, alternative: str = "two-sided",
                   guarantees=GUARANTEES, alpha_s0: float | None = None) -> dict:
    """Certificates of P (input, function, theta) pairs from ``ranked_counts_of``'s arrays (each (P,)).

    PREDICT of section 2 on the extended selection counts: cA is the top
    class when binom_p(nA, nA + nB) <= alpha (it may be V), cB the second
    when binom_p(nB, nB + nC) <= alpha (it may be V); ``ncl``'s runner-up is
    the largest real class other than the top one when binom_p(nB, nB + nC)
    <= alpha over real classes (also reported where PREDICT's test
    abstained, as two-step reports its runner-up). ``n`` (P,) rows of S per
    pair; ``alpha`` the level of PREDICT's tests on S0 and of the bounds on
    S (each guarantee holds w.p. >= 1 - 2 alpha); ``alpha_s0``, when given,
    the level of the tests on S0 instead (a ``--n-use`` list splits alpha on
    S only, docs/methods.md section 11); ``m`` the number of real classes (V
    is class m). Returns ``{guarantee: {predict, radius, runner_up, p_lower,
    p_upper, top_class}}``: ``predict`` -1 and ``radius`` 0 on abstain;
    ``runner_up`` m for V, -1 for NONE (also reported on abstain);
    ``p_lower``/``p_upper`` the bounds on S (NaN where PREDICT abstained or
    chose V); ``top_class`` PREDICT's class (m for V, -1 when its test abstained).
    """
    P = len(r["top"])
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), (P,)).copy()
    a0 = alpha if alpha_s0 is None else alpha_s0
    p_top = binom_p_unique(r["n_top"], r["n_top"] + r["n_second"], alternative)
    p_run = binom_p_unique(r["n_second"], r["n_second"] + r["n_third"], alternative)
    cA = np.where(p_top <= a0, r["top"], NONE).astype(np.int64)
    cB = np.where(p_run <= a0, r["second"], NONE).astype(np.int64)
    real_top = (cA >= 0) & (cA < m)
    sel = np.flatnonzero(real_top)  # bounds only where PREDICT chose a real class
    ns, cAs = n[sel], cA[sel]
    kA = r["k_top"][sel]
    kV = r["k_v"][sel]
    out = {}

    def result(pA, pB, rad, runner_up):
        radius = np.zeros(P)
        predict = np.full(P, -1, np.int64)
        ok = rad > 0
        radius[sel[ok]] = rad[ok]
        predict[sel[ok]] = cAs[ok]
        p_lower = np.full(P, np.nan)
        p_upper = np.full(P, np.nan)
        p_lower[sel], p_upper[sel] = pA, pB
        return dict(predict=predict, radius=radius, runner_up=runner_up, p_lower=p_lower, p_upper=p_upper,
                    top_class=cA)

    if "cc" in guarantees:
        cBs = cB[sel]
        kB = np.where(cBs >= 0, r["k_second"][sel], 0)
        pA, pB = _two_step_bounds(kA, kB, cBs >= 0, ns, alpha)
        out["cc"] = result(pA, pB, _radius(pA, pB, sigma), cB)

    if "ncl" in guarantees or "ncl-strict" in guarantees:
        p_ncl = binom_p_unique(r["n_ncl_runner"], r["n_ncl_runner"] + r["n_ncl_third"], alternative)
        cB2 = np.where((p_ncl <= a0) & (r["ncl_runner"] >= 0), r["ncl_runner"], NONE).astype(np.int64)
        cB2s = cB2[sel]
        has_b2 = cB2s >= 0
        kB2 = np.where(has_b2, r["k_ncl_runner"][sel], 0)
        kAV = kA + kV
        if "ncl" in guarantees:
            pA, pB = _two_step_bounds(kAV, kB2, has_b2, ns, alpha)
            out["ncl"] = result(pA, pB, _radius(pA, pB, sigma), cB2)
        if "ncl-strict" in guarantees:
            rad, pA, pB = ncl_strict_radius(kA, kAV, kB2, has_b2, ns, sigma, alpha)
            out["ncl-strict"] = result(pA, pB, rad, cB2)
    return out


def ncl_strict_radius(kA, kAV, kB, has_b, n, sigma: float, alpha: float, tol: float = 1e-9):
    """``ncl-strict``: w.p. >= 1 - alpha on S (given PREDICT's classes), g(x + d) in {cA, V} for ||d|| < radius.

    At alpha/3 each: pA = CP_lower(kA), pAV = CP_lower(kA + kV), pB =
    CP_upper(kB) with a runner-up, else 1 - pAV. R1 = sigma/2 (Phi^-1(pA) -
    Phi^-1(pB)) (cA alone beats every real class); R2 = sup{r : Phi(Phi^-1(pAV)
    - r/sigma)/2 >= Phi(Phi^-1(pB) + r/sigma)} by bisection to ``tol`` (cA or V
    beats every real class, as max(P_A, P_V) >= (P_A + P_V)/2). Returns
    (max(R1, R2), pA, pB); the caller abstains where it is <= 0.
    """
    kA = np.asarray(kA, np.int64)
    n = np.asarray(n, np.int64)
    a3 = alpha / 3
    pA = cp_bound("lower", kA, n, a3)
    pAV = cp_bound("lower", kAV, n, a3)
    pB = np.empty(pA.shape)
    pB[has_b] = cp_bound("upper", kB[has_b], n[has_b], a3)
    pB[~has_b] = 1.0 - pAV[~has_b]
    r1 = _radius(pA, pB, sigma)
    z_av = _ppf(pAV)
    z_b = _ppf(pB)
    r2 = ncl_strict_r2(z_av, z_b, np.maximum(r1, 0.0), sigma, tol)
    return np.maximum(r1, r2), pA, pB
