"""The numba kernels of the store layer, imported on first use (``import smoothcert.store`` needs no numba).

- ``f16_bits``: the float16 bits of a float32 (given as its bits), rounded to
  nearest, ties to even, as numpy's ``astype`` and IEEE 754 round;
  ``f32_to_f16_bits`` applies it to an array (``store.float16``).
- ``topk_insert``: one value into a row's descending top k, a tie keeping
  the lower class first; ``compact_rows_kernel`` builds every row's top k and
  entropy with it (``store.topk``).

The sampler's compact-rows kernel (``sampler/kernels.py``) rounds and
compacts each softmax row with the same two functions, so a compact store
sampled directly holds the bytes ``store compact`` writes.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, inline="always")
def f16_bits(f):
    """float16 bits of the float32 with bits ``f``: round to nearest, ties to even (NaN stays a quiet NaN)."""
    sign = (f >> np.uint32(16)) & np.uint32(0x8000)
    e = (f >> np.uint32(23)) & np.uint32(0xFF)
    m = f & np.uint32(0x7FFFFF)
    if e == 255:
        o = np.uint32(0x7C00) | (np.uint32(0x200) if m != 0 else np.uint32(0))
    elif e >= 113:                                  # a normal float16 (or overflow: carries to inf)
        q = m >> np.uint32(13)
        rem = m & np.uint32(0x1FFF)
        q += np.uint32((rem > 0x1000) | ((rem == 0x1000) & ((q & np.uint32(1)) == 1)))
        o = ((e - np.uint32(112)) << np.uint32(10)) + q
        if o > 0x7C00:
            o = np.uint32(0x7C00)
    elif e >= 102:                                  # a subnormal float16 (or 0, or the smallest normal)
        s = np.uint32(126) - e
        full = m | np.uint32(0x800000)
        q = full >> s
        rem = full & ((np.uint32(1) << s) - np.uint32(1))
        half = np.uint32(1) << (s - np.uint32(1))
        q += np.uint32((rem > half) | ((rem == half) & ((q & np.uint32(1)) == 1)))
        o = q
    else:                                           # below half the smallest subnormal: zero
        o = np.uint32(0)
    return o | sign


@nb.njit(cache=True, nogil=True, error_model="numpy")
def f32_to_f16_bits(src, dst):
    """``dst[i]`` = float16 bits of the float32 bits ``src[i]``; True when some value is a NaN or an infinity."""
    bad = False
    for i in range(src.shape[0]):
        f = src[i]
        if (f >> np.uint32(23)) & np.uint32(0xFF) == 255:
            bad = True
        dst[i] = np.uint16(f16_bits(f))
    return bad


@nb.njit(cache=True, nogil=True, inline="always")
def topk_insert(top_p, top_c, r, k, cnt, v, c):
    """Value ``v`` of class ``c`` into row ``r``'s descending top k, ``cnt`` of them filled so far, where it
    belongs (callers test ``cnt < k or v > top_p[r, k - 1]`` first, the rare case); classes come in ascending
    order, so a tie keeps the lower class first. Returns the new ``cnt``."""
    j = cnt if cnt < k else k - 1
    while j > 0 and top_p[r, j - 1] < v:
        if j < k:
            top_p[r, j] = top_p[r, j - 1]
            top_c[r, j] = top_c[r, j - 1]
        j -= 1
    top_p[r, j] = v
    top_c[r, j] = c
    return cnt + 1 if cnt < k else cnt


@nb.njit(parallel=True, nogil=True, cache=True)
def compact_rows_kernel(rows, k, top_p, top_c, ent):
    """Per row of float32 ``rows``: the descending top k into ``top_p``/``top_c`` (prefilled with -inf) and the
    entropy, summed in class order in float64, ``p <= 0`` contributing 0, as the certifier's kernels sum it."""
    R, m = rows.shape
    for r in nb.prange(R):
        h = 0.0
        cnt = 0
        for c in range(m):
            v = rows[r, c]
            p = np.float64(v)
            if p > 0.0:
                h -= p * math.log(p)
            if cnt < k or v > top_p[r, k - 1]:
                cnt = topk_insert(top_p, top_c, r, k, cnt, v, c)
        ent[r] = h
