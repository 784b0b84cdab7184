"""Bit-exactness of two fast paths, checked over every value they can see.

1. The noise radius: the fast kernel against its definition for every one of the 2**32 values of u1.

The Box-Muller radius of the noise scheme is ``float32(sqrt(-2 ln u1))``
with ``u1 = (hi + 1) / 2**32``, ``hi`` the top 32 bits of a pair's word
(store/FORMAT.md). ``sampler.noise_kernels`` computes it with its own
vectorised logarithm and falls back to the C library's ``log`` near float32
rounding boundaries; this script compares it, bit for bit, with the
definition computed by the C library's ``log`` for all 2**32 values of
``hi``, and counts the fallbacks.

2. The noise angle: the kernel's branch-free ``cos``/``sin`` (glibc's
``cosf``/``sinf`` reproduced) against this C library's own float routines
at all 2**24 angles ``t`` the scheme can produce (meaningful where the C
library is glibc >= 2.28 on x86-64 with FMA; elsewhere it reports how many
angles that platform's libm rounds otherwise), and how many of them differ
from the exactly rounded values.

3. The store's float16 rounding: ``store.float16.to_float16`` (what
``write_input`` uses for float32 rows: the sampler's writer, ``store
import``, ``store merge``) against numpy's ``astype`` on every finite
float32 value.

    python bench/exhaustive.py [--bits 32] [--skip-f16]   (about ten minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

from smoothcert.sampler import noise_kernels as K  # noqa: E402

BLOCK = 1 << 16


@nb.njit(parallel=True, error_model="numpy")
def _compare(first_block, blocks):
    """(mismatches, fallbacks, first mismatching hi or -1) over ``blocks`` blocks of BLOCK values of hi."""
    mism = np.zeros(blocks, np.int64)
    fixed = np.zeros(blocks, np.int64)
    first = np.full(blocks, -1, np.int64)
    for b in nb.prange(blocks):
        hi = np.arange((first_block + b) * BLOCK, (first_block + b + 1) * BLOCK).astype(np.uint32)
        r = np.empty(BLOCK, np.float32)
        fixed[b] = K.radii_from_hi(hi, r, np.empty(BLOCK), np.empty(BLOCK, np.uint64), np.empty(BLOCK),
                                   np.empty(BLOCK, np.bool_))
        for i in range(BLOCK):
            u1 = (np.float64(hi[i]) + 1.0) * (1.0 / 4294967296.0)
            want = np.float32(math.sqrt(-2.0 * math.log(u1)))
            if r[i] != want:
                mism[b] += 1
                if first[b] < 0:
                    first[b] = hi[i]
    f = -1
    for b in range(blocks):
        if first[b] >= 0:
            f = first[b]
            break
    return mism.sum(), fixed.sum(), f


@nb.njit(error_model="numpy")
def _angles_vs_libm(c, s):
    """(angles whose kernel cos/sin differ from the C library's, angles whose C library value is not the rounded
    float64 value) over all 2**24 angles; ``c``, ``s`` are the kernel's values."""
    differ = not_rounded = 0
    for k in range(1 << 24):
        t = np.float32(k) * K.TWO_PI_24
        lc, ls = math.cos(t), math.sin(t)
        differ += (c[k] != lc) or (s[k] != ls)
        not_rounded += (lc != np.float32(math.cos(np.float64(t)))) or (ls != np.float32(math.sin(np.float64(t))))
    return differ, not_rounded


def check_angles() -> int:
    """Angles at which the kernel's cos/sin differ from this C library's float routines."""
    t0 = time.perf_counter()
    t = np.arange(1 << 24, dtype=np.float32) * K.TWO_PI_24
    c, s = np.empty_like(t), np.empty_like(t)
    K.sincos(t, c, s)
    differ, not_rounded = _angles_vs_libm(c, s)
    print(f"all {1 << 24:,} angles checked in {time.perf_counter() - t0:.1f} s: {differ} differ between the kernel's "
          f"cos/sin and the C library's cosf/sinf; the C library's differ from the exactly rounded values at "
          f"{not_rounded:,} ({not_rounded / (1 << 24):.1%})")
    return int(differ)


def check_store_f16() -> int:
    """Mismatches between store.float16.to_float16 and numpy's astype over every finite float32 bit pattern."""
    from smoothcert.store.float16 import to_float16

    t0 = time.perf_counter()
    bad = 0
    for s in range(0, 1 << 32, 1 << 24):
        f = np.arange(s, s + (1 << 24), dtype=np.uint64).astype(np.uint32).view(np.float32)
        f = f[np.isfinite(f)]
        with np.errstate(over="ignore"):
            want = f.astype(np.float16)
        bad += int((to_float16(f).view(np.uint16) != want.view(np.uint16)).sum())
    print(f"every finite float32 rounded to float16 in {time.perf_counter() - t0:.0f} s: {bad} differ between "
          f"store.float16 and numpy")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=32, help="check hi = 0 .. 2**bits - 1 (32: all of them)")
    ap.add_argument("--skip-f16", action="store_true", help="only the noise (radius and angle)")
    a = ap.parse_args(argv)
    total_blocks = max(1, (1 << a.bits) // BLOCK)
    t0 = time.perf_counter()
    mism = fixed = 0
    first = -1
    step = 1024
    for s in range(0, total_blocks, step):
        m, f, fi = _compare(s, min(step, total_blocks - s))
        mism, fixed = mism + int(m), fixed + int(f)
        if first < 0 and fi >= 0:
            first = int(fi)
    n = total_blocks * BLOCK
    print(f"{n:,} values of u1 checked in {time.perf_counter() - t0:.0f} s: {mism} radii differ from "
          f"float32(sqrt(-2 log u1)) by the C library (first at hi={first}); {fixed:,} computed by the fallback "
          f"({fixed / n:.1e} of them)")
    angles = check_angles()
    bad = 0 if a.skip_f16 else check_store_f16()
    return 1 if mism or angles or bad else 0


if __name__ == "__main__":
    sys.exit(main())
