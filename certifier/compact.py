"""What each certificate gets from a compact store (top-k per row plus exact per-row entropy).

A compact store (``store/compact.py``) keeps each row's hard label, its K
largest probabilities with their classes, and its entropy, all bit-identical
to what the certifier computes from the full store's rows. Hence:

- ``cohen``, ``cohen-predict``, ``two-step``, ``adaptive``: **exact**. They
  count hard labels only, and the stored argmax is kept whole.
- ``uncertainty`` (entropy, confidence, margin) and ``aces``/``aces-predict``:
  **exact**. u(p) per row is the stored float64 entropy, ``-p_(1)`` or
  ``-(p_(1) - p_(2))`` from the stored top-2 values, each the very float the
  full-row kernels compute; hard labels come from the stored argmax.
- ``cdf`` and ``soft``: **refused** on a compact store that does not keep
  its selection rows whole. Their class is the argmax of the *mean* of the
  S0 rows, which needs every class's probability in every row; with the
  missing mass unknown, a different class could be picked than on the full
  store, and a certificate for another class is not comparable with (nor
  bounded by) the full-row one, so neither exactness nor conservativeness
  could be claimed. On a compact store that keeps them (the store object's
  ``keeps_full_s0`` is true and its ``read_block`` returns field ``rows0``),
  they run on section 9's bounds (``compact_confidence``): **never above**
  the full-row certificate, equal to it where ``rows_bounded`` is 0.
- Ensemble options (``--members``, ``--consensus``) are refused: a compact
  store keeps no per-member rows.

The engine asks ``compact_fields`` which store fields a method reads on a
compact store (or gets the refusal), and ``statement`` for the sidecar.
The ``*_of`` functions are what the uncertainty and ACES methods call to
get their counts from a block, whichever layout it was read from.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

HARD_LABEL = ("exact: the method counts hard labels only, and a compact store keeps every row's stored argmax "
              "(the full-precision row's hard label) whole")
FROM_STATS = {
    "uncertainty": ("exact: entropy is stored per row as the same float64 the full-row kernel computes, confidence "
                    "and margin come from the stored top-2 probabilities (bit-identical values), hard labels from "
                    "the stored argmax"),
    "aces": ("exact: the selection's normalised entropy is the stored per-row entropy (bit-identical to the "
             "full-row kernel's) times 1/ln(m); hard labels from the stored argmax"),
    "aces-predict": ("exact: the selection's normalised entropy is the stored per-row entropy times 1/ln(m); "
                     "hard labels from the stored argmax"),
}
BOUNDED = {
    "cdf": ("bounded: the class is picked on the full selection rows; a class outside a row's top-k is bounded by "
            "[0, t_i] (score 0, margin -p_(1)) and the cdf bound then credits no ties: never above the full-row "
            "certificate, equal to it where rows_bounded = 0 (the class in every estimation row's top-k)"),
    "soft": ("bounded: the class is picked on the full selection rows; values outside a row's top-k are bounded by "
             "[0, t_i] (lower bound of the class from 0, upper bounds of the others from t_i, bernstein with a "
             "variance bound over every row the top-k allow): never above the full-row certificate, equal to it "
             "where rows_bounded = 0 (always when k = m)"),
}
REFUSED = ("needs full softmax rows: its class is the argmax of the mean of the S0 rows, and a compact store "
           "does not know the probabilities outside each row's top-k, so the certificate could be neither exact nor "
           "provably conservative")


def compact_fields(method, store, fields) -> list:
    """The fields ``method`` reads on the compact ``store`` (``rows`` becomes ``compact``), or ValueError naming why not."""
    fields = list(fields)
    if "member_logprobs" in fields:
        raise ValueError(f"--method {method.name} needs per-member rows; store {store.location} is compact "
                         f"(top-{store.topk}) and keeps none")
    if "rows" not in fields:
        return fields
    if method.name in BOUNDED and keeps_full_s0(store):
        return ["compact" if f == "rows" else f for f in fields] + ["rows0"]
    if method.name not in FROM_STATS:
        raise ValueError(f"--method {method.name} {REFUSED}; store {store.location} is compact "
                         f"(top-{store.topk}): certify the full store (exact on compact stores: "
                         f"cohen, cohen-predict, two-step, adaptive, {', '.join(FROM_STATS)})")
    return ["compact" if f == "rows" else f for f in fields]


def keeps_full_s0(store) -> bool:
    """Whether the compact ``store`` keeps its n0 selection rows whole (readable as field ``rows0``)."""
    return bool(getattr(store, "keeps_full_s0", False))


def statement(method, store) -> dict:
    """The sidecar entry saying how a certificate computed from the compact ``store`` relates to the full-row one."""
    if method.name in BOUNDED and keeps_full_s0(store):
        return {"layout": "compact", "topk": store.topk, "certificate": "bounded", "why": BOUNDED[method.name]}
    why = FROM_STATS.get(method.name, HARD_LABEL)
    return {"layout": "compact", "topk": store.topk, "certificate": "exact", "why": why}


# --------------------------------------------------------------- uncertainty
_JIT = dict(nogil=True, cache=True)


def uncertainty_of(comp: dict, name: str) -> np.ndarray:
    """(B, R) float64 u values of a compact block: the very floats the full-row kernel computes per row."""
    if name == "entropy":
        return np.asarray(comp["entropy"], dtype=np.float64)
    p1 = comp["topk_p"][..., 0].astype(np.float64)  # float32 of the stored value, then float64: as the kernel does
    if name == "confidence":
        return -p1
    if name == "margin":
        return -(p1 - comp["topk_p"][..., 1].astype(np.float64))
    raise ValueError(f"--uncertainty: {name!r} is not one of entropy, confidence, margin")


def extended_counts_per_function_of(block, start, stop, funcs, thetas_per_function) -> list:
    """``uncertainty.extended_counts_per_function`` of a block, from its rows or its compact statistics (equal results)."""
    from . import uncertainty as U

    comp = getattr(block, "compact", None)
    if comp is None:
        return U.extended_counts_per_function(block.argmax, block.rows, start, stop, funcs, thetas_per_function)
    names = {v: k for k, v in U._CODE.items()}
    labels = np.asarray(block.argmax, dtype=np.int64)
    B, R = labels.shape
    m = block.m
    starts = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,))
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,))
    r = np.arange(R)
    inside = (r[None, :] >= starts[:, None]) & (r[None, :] < stops[:, None]) & (labels >= 0) & (labels < m)
    rows_b = np.broadcast_to(np.arange(B)[:, None], (B, R))[inside]
    lab = labels[inside]
    out = []
    for f, thetas in zip(funcs, thetas_per_function):
        uniq, inv = np.unique(U.check_thetas(thetas), return_inverse=True)
        T = len(uniq)
        u = uncertainty_of(comp, f if isinstance(f, str) else names[int(f)])[inside]
        j = np.where(np.isnan(u), T, np.searchsorted(uniq, u, side="right"))  # thresholds at or below u
        hist = np.bincount((rows_b * m + lab) * (T + 1) + j, minlength=B * m * (T + 1)).reshape(B, m, T + 1)
        real = np.cumsum(hist[..., :T], axis=-1).transpose(0, 2, 1)  # (B, T, m): rows with u < theta_t
        v = (stops - starts)[:, None] - real.sum(axis=-1)
        c = np.concatenate([real, v[..., None]], axis=-1)
        out.append(c[:, inv.reshape(-1)])
    return out


# ---------------------------------------------------------------------- ACES
@nb.njit(parallel=True, **_JIT)
def _selection_counts_stats(ent, starts, stops, thetas, inv_log_m, out):
    # The binning of aces._selection_counts, with H(p) from the stored entropy.
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
    """``aces.selection_counts`` of a block, from its rows or from its compact entropies (equal results)."""
    comp = getattr(block, "compact", None)
    if comp is None:
        from .aces import selection_counts

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
