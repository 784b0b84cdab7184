"""float32 -> float16 rounding to nearest even, as numpy's ``astype`` does it, without its slow path.

numpy converts a float32 whose float16 is subnormal (below 6.1e-5) through a
slow scalar path: 65 ms for one input of 100,100 x 10 peaked softmax rows,
most of whose entries are that small, against ~2 ms here. The kernel works
on the bits, integers only: finite values round to nearest, ties to even,
overflow to a signed infinity, as IEEE 754 (and numpy, and the F16C
instruction) round. ``bench/exhaustive.py`` compares it with numpy on every
finite float32; arrays holding a NaN or an infinity are left to numpy.
"""
from __future__ import annotations

import numpy as np

_kernel = None


def _get():
    global _kernel
    if _kernel is None:
        import numba as nb

        @nb.njit(cache=True, nogil=True, error_model="numpy")
        def f32_to_f16_bits(src, dst):
            bad = False
            for i in range(src.shape[0]):
                f = src[i]
                sign = (f >> np.uint32(16)) & np.uint32(0x8000)
                e = (f >> np.uint32(23)) & np.uint32(0xFF)
                m = f & np.uint32(0x7FFFFF)
                if e == 255:
                    bad = True
                    o = np.uint32(0x7C00)
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
                dst[i] = np.uint16(o | sign)
            return bad

        _kernel = f32_to_f16_bits
    return _kernel


def to_float16(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a.astype(np.float16)`` (into ``out`` when given, same shape), bit for bit, fast on subnormal results."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if out is None:
        out = np.empty(a.shape, np.float16)
    if out.shape != a.shape or out.dtype != np.float16:
        raise ValueError(f"out must be float16 of shape {a.shape}, got {out.dtype} {out.shape}")
    dst = out if out.flags.c_contiguous else np.empty(a.shape, np.float16)
    if _get()(a.reshape(-1).view(np.uint32), dst.reshape(-1).view(np.uint16)):
        dst[...] = a.astype(np.float16)                        # NaN or infinity: numpy's own conversion
    if dst is not out:
        out[...] = dst
    return out
