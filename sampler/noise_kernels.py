"""The CPU (numba) kernels of the noise scheme ``smoothcert-splitmix-bm-v1`` (``sampler.noise`` documents it).

The stream is computed in chunks of pairs, each in passes a compiler can
vectorise (AVX2 and the like), instead of one libm call after another:

1. the pairs' 64-bit words (SplitMix64), ``u1`` and the float32 angle ``t``;
2. the radius ``r = float32(sqrt(-2 ln u1))`` with a branch-free natural
   logarithm (fdlibm's ``__ieee754_log``, error below 1 ulp), checked
   against the float32 rounding: wherever ``sqrt(-2 ln u1)`` lies within a
   relative 2**-40 of a float32 rounding boundary (about one pair in 30,000)
   the radius is recomputed with the C library's ``log``, exactly as the
   scalar definition does. Elsewhere the two logarithms (both below 1 ulp,
   2**-52 relative) cannot round to different float32 radii, so the radius
   is bit for bit the definition's; ``bench/exhaustive.py`` checks all
   2**32 values of ``u1`` against it;
3. ``cos t`` and ``sin t`` in float32 by the C library (the definition's own
   calls: a float32 argument has only 2**24 values here, but the C
   library's float routines are not correctly rounded, so they are kept);
4. ``r * cos t``, ``r * sin t`` interleaved, then ``x + sigma * eps`` in
   float32 in the same order of operations as the torch path.

Kernels are module-level functions so that numba's on-disk cache serves
every later process (a closure over constants misses it each time).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

G = np.uint64(0x9E3779B97F4A7C15)
C1 = np.uint64(0xBF58476D1CE4E5B9)
C2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31, S32, S52 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32), np.uint64(52)
ONE, M24 = np.uint64(1), np.uint64(0xFFFFFF)
MANT = np.uint64(0x000FFFFFFFFFFFFF)
HI20 = np.uint64(0xFFFFF)
SQRT2_ADJ, BIT20 = np.uint64(0x95F64), np.uint64(0x100000)
EXP_ONE = np.uint64(0x3FF)
TWO_PI_24 = np.float32(2.0 * math.pi / 16777216.0)
INV_2_32 = 1.0 / 4294967296.0
CHUNK = 512                        # pairs per chunk: the scratch arrays stay in the L1 cache

# fdlibm e_log.c
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01
UP, DOWN = 1.0 + 2.0 ** -40, 1.0 - 2.0 ** -40


@nb.njit(inline="always", error_model="numpy")
def _mix(z):
    z = (z ^ (z >> S30)) * C1
    z = (z ^ (z >> S27)) * C2
    return z ^ (z >> S31)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def radii_from_hi(hi, r, scratch_u, scratch_m, scratch_k, flags) -> int:
    """``r[i] = float32(sqrt(-2 ln((hi[i] + 1) / 2**32)))`` for uint32 values ``hi``; returns the libm fix-ups made.

    The definition's own value (``math.log``) wherever the fast logarithm
    could round to another float32; the scratch arrays are at least as long as ``hi``.
    """
    n = hi.shape[0]
    for i in range(n):
        scratch_u[i] = (np.float64(hi[i]) + 1.0) * INV_2_32
    return _radii(scratch_u, n, r, scratch_m, scratch_k, flags)


@nb.njit(inline="always", error_model="numpy")
def _radii(u, n, r, mb, kk, flags):
    ub = u.view(np.uint64)
    m = mb.view(np.float64)
    for i in range(n):                  # u = 2**k * m with m in [sqrt(2)/2, sqrt(2)), as fdlibm reduces it
        hx = ub[i]
        j = (((hx >> S32) & HI20) + SQRT2_ADJ) & BIT20
        mb[i] = (hx & MANT) | ((EXP_ONE - (j >> np.uint64(20))) << S52)
        kk[i] = np.float64(np.int32(hx >> S52) - np.int32(1023) + np.int32(j >> np.uint64(20)))
    for i in range(n):
        f = m[i] - 1.0
        s = f / (2.0 + f)
        dk = kk[i]
        z = s * s
        w = z * z
        t1 = w * (LG2 + w * (LG4 + w * LG6))
        t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
        hfsq = 0.5 * f * f
        lg = dk * LN2_HI - ((hfsq - (s * (hfsq + (t2 + t1)) + dk * LN2_LO)) - f)
        v = math.sqrt(-2.0 * lg)
        r[i] = np.float32(v)
        flags[i] = np.float32(v * UP) != np.float32(v * DOWN)    # near a float32 boundary (or NaN)
    fixed = 0
    for i in range(n):
        if flags[i]:
            r[i] = np.float32(math.sqrt(-2.0 * math.log(u[i])))
            fixed += 1
    return fixed


@nb.njit(inline="always", error_model="numpy")
def _chunk(key, p0, n, nz, u, mb, kk, flags, r, t, c, s):
    """The stream elements of pairs ``p0 .. p0+n`` into ``nz[:2n]`` (float32, interleaved)."""
    for i in range(n):
        z = _mix(_mix((np.uint64(p0 + i) + ONE) * G) ^ key)
        u[i] = (np.float64(np.uint32(z >> S32)) + 1.0) * INV_2_32
        t[i] = np.float32(np.uint32(z & M24)) * TWO_PI_24
    _radii(u, n, r, mb, kk, flags)
    for i in range(n):
        c[i] = math.cos(t[i])
        s[i] = math.sin(t[i])
    for i in range(n):
        nz[2 * i] = r[i] * c[i]
        nz[2 * i + 1] = r[i] * s[i]


@nb.njit(inline="always", error_model="numpy")
def _scratch():
    return (np.empty(2 * CHUNK, np.float32), np.empty(CHUNK, np.float64), np.empty(CHUNK, np.uint64),
            np.empty(CHUNK, np.float64), np.empty(CHUNK, np.bool_), np.empty(CHUNK, np.float32),
            np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32), np.empty(CHUNK, np.float32))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def fill(key, start_pair, out):
    """``out`` (even length) = the stream elements of pairs ``start_pair ..``."""
    nz, u, mb, kk, flags, r, t, c, s = _scratch()
    pairs = out.shape[0] // 2
    for a in range(0, pairs, CHUNK):
        n = min(CHUNK, pairs - a)
        _chunk(key, start_pair + a, n, nz, u, mb, kk, flags, r, t, c, s)
        for i in range(2 * n):
            out[2 * a + i] = nz[i]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def noisy(key, start, x, sigma, out):
    """``out[i] = x[(start + i) % D] + sigma * eps[start + i]`` in float32 (``eps * sigma`` first, then ``+ x``)."""
    nz, u, mb, kk, flags, r, t, c, s = _scratch()
    count, d = out.shape[0], x.shape[0]
    q0, q1 = start // 2, (start + count + 1) // 2
    j = start % d                       # position in x of the next element written
    e = 0                               # next element of out
    for a in range(q0, q1, CHUNK):
        n = min(CHUNK, q1 - a)
        _chunk(key, a, n, nz, u, mb, kk, flags, r, t, c, s)
        lo = start - 2 * a if a == q0 else 0        # first stream element of the chunk that out takes
        hi = min(2 * n, start + count - 2 * a)
        while lo < hi:                  # runs of x without wrap-around: the inner loop vectorises
            run = min(hi - lo, d - j)
            for i in range(run):
                out[e + i] = nz[lo + i] * sigma + x[j + i]
            e += run
            lo += run
            j += run
            if j == d:
                j = 0
