"""CPU kernels of the sampling loop: softmax rows and their argmax in one pass (numba).

On CPU the per-batch post-processing runs here instead of as several small
torch ops: each of those is a round trip through torch's thread pool, which
on a small network costs a sizeable share of the forward pass. The kernel is
a module-level function, so numba's on-disk cache serves every later process.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..store.kernels import f16_bits, topk_insert


@nb.njit(cache=True, nogil=True, inline="always")
def _softmax_into(logits, i, out, o):
    """``out[o] = softmax(logits[i])`` in float32; returns (the sum of the exponentials, the first argmax)."""
    m = logits.shape[1]
    mx = logits[i, 0]
    for c in range(1, m):
        if logits[i, c] > mx:
            mx = logits[i, c]
    s = np.float32(0.0)
    for c in range(m):
        e = np.float32(np.exp(logits[i, c] - mx))
        out[o, c] = e
        s += e
    best, am = np.float32(-1.0), 0
    for c in range(m):
        p = out[o, c] / s
        out[o, c] = p
        if p > best:
            best, am = p, c
    return s, am


@nb.njit(cache=True, nogil=True)
def softmax_argmax_at(logits, rows, arg, offset):
    """``rows[offset + i] = softmax(logits[i])`` (float32) and ``arg[offset + i]`` its first argmax, for every row
    ``i`` of ``logits``; returns the first row whose softmax is not finite, or -1."""
    bad = -1
    for i in range(logits.shape[0]):
        o = offset + i
        s, am = _softmax_into(logits, i, rows, o)
        if not (s > 0 and s < np.inf) and bad < 0:
            bad = i
        arg[o] = am
    return bad


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel."""
    softmax_argmax_at(np.zeros((1, 2), np.float32), np.empty((1, 2), np.float32), np.empty(1, np.int32), 0)


# ---------------------------------------------------------------- compact rows (sample --topk)
@nb.njit(cache=True, nogil=True)
def softmax_topk_at(logits, top_p, top_c, ent, arg, rows0, f16_values, f16_terms, offset):
    """Compact rows of a batch: for every row ``i`` of ``logits`` (row ``o = offset + i`` of the input), what
    ``store compact`` keeps of the softmax row rounded to the store's dtype.

    ``arg[o]``: the first argmax of the float32 softmax (the arithmetic of
    ``softmax_argmax_at``, so the same hard label); ``rows0[o]`` (for
    ``o < n0 = rows0.shape[0]``): the float32 softmax row, whole; the row
    rounded to float16 (``store.kernels.f16_bits``) when ``f16_values`` holds
    the 65,536 float16 values (``f16_tables``; empty arrays: float32 rows, not
    rounded); of that row (``store.kernels.topk_insert``),
    ``top_p[o]``/``top_c[o]`` the K largest values, descending, and their
    classes (ties: the lower class first) and ``ent[o]`` its entropy summed in
    class order in float64, ``p <= 0`` contributing 0 (float16 rows: the term
    of each value from ``f16_terms``, computed with this arithmetic) --
    ``store.topk.compact_rows`` of the rounded row, bit for bit. A row whose
    softmax is not finite gets ``ent[o] = NaN``; returns the first such row,
    or -1.
    """
    B, m = logits.shape
    k = top_p.shape[1]
    n0 = rows0.shape[0]
    f16 = f16_values.shape[0] > 0
    row = np.empty((1, m), np.float32)  # the softmax row being compacted
    sc = row[0]
    bits = sc.view(np.uint32)
    bad = -1
    for i in range(B):
        o = offset + i
        s, am = _softmax_into(logits, i, row, 0)
        arg[o] = am
        if o < n0:
            for c in range(m):
                rows0[o, c] = sc[c]
        if not (s > 0 and s < np.inf):
            if bad < 0:
                bad = i
            ent[o] = np.nan
            continue
        h = 0.0
        cnt = 0
        for c in range(m):
            if f16:
                hb = f16_bits(bits[c])
                v = f16_values[hb]
                h -= f16_terms[hb]
            else:
                v = sc[c]
                p64 = np.float64(v)
                if p64 > 0.0:
                    h -= p64 * math.log(p64)
            if cnt < k or v > top_p[o, k - 1]:  # the store's insertion into the top k, bit for bit
                cnt = topk_insert(top_p, top_c, o, k, cnt, v, c)
        ent[o] = h
    return bad


@nb.njit(cache=True, nogil=True)
def _entropy_terms(values, out):
    # p ln p of each value as the store's entropy kernels compute it (float64 of the float32 value); 0 for p <= 0
    for b in range(values.shape[0]):
        p = np.float64(values[b])
        if p > 0.0:
            out[b] = p * math.log(p)
        elif p <= 0.0:
            out[b] = 0.0
        else:
            out[b] = np.nan


_F16_TABLES = None


def f16_tables():
    """(values, terms): the 65,536 float16 values as float32 (indexed by their bits) and each value's
    ``p ln p`` in float64 (0 for p <= 0, NaN for NaN), computed as ``store.topk.compact_rows`` computes it."""
    global _F16_TABLES
    if _F16_TABLES is None:
        values = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
        terms = np.empty(65536, np.float64)
        _entropy_terms(values, terms)
        _F16_TABLES = (values, terms)
    return _F16_TABLES


def warm_up_topk() -> None:
    """Compile (or load from numba's cache) the compact-rows kernel, for float16 and float32 rows."""
    values, terms = f16_tables()
    lg = np.zeros((1, 3), np.float32)
    for v, t in ((values, terms), (values[:0], terms[:0])):
        softmax_topk_at(lg, np.empty((1, 2), np.float32), np.empty((1, 2), np.uint16), np.empty(1, np.float64),
                        np.empty(1, np.int32), np.empty((1, 3), np.float32), v, t, 0)
