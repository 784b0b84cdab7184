"""float32 -> float16 rounding to nearest even, as numpy's ``astype`` does it, without its slow path.

numpy converts a float32 whose float16 is subnormal (below 6.1e-5) through a
slow scalar path: 65 ms for one input of 100,100 x 10 peaked softmax rows,
most of whose entries are that small, against ~2 ms here. The kernel works
on the bits, integers only: finite values round to nearest, ties to even,
overflow to a signed infinity, as IEEE 754 (and numpy, and the F16C
instruction) round. ``bench/exhaustive.py`` compares it with numpy on every
finite float32; arrays holding a NaN or an infinity are left to numpy.
The kernel (``store.kernels``, numba) is imported on first use only.
"""
from __future__ import annotations

import numpy as np

def to_float16(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a.astype(np.float16)`` (into ``out`` when given, same shape), bit for bit, fast on subnormal results."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if out is None:
        out = np.empty(a.shape, np.float16)
    if out.shape != a.shape or out.dtype != np.float16:
        raise ValueError(f"out must be float16 of shape {a.shape}, got {out.dtype} {out.shape}")
    dst = out if out.flags.c_contiguous else np.empty(a.shape, np.float16)
    from .kernels import f32_to_f16_bits  # numba, imported on first use

    if f32_to_f16_bits(a.reshape(-1).view(np.uint32), dst.reshape(-1).view(np.uint16)):
        dst[...] = a.astype(np.float16)                        # NaN or infinity: numpy's own conversion
    if dst is not out:
        out[...] = dst
    return out
