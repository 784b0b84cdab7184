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
3. ``cos t`` and ``sin t`` in float32, branch-free: glibc's ``sinf`` and
   ``cosf`` (the routines of glibc 2.28 and later, in the build x86-64
   selects on a CPU with FMA) operation for operation: the reduction by
   pi/2, the two double-precision polynomials and their fused multiply-adds,
   the quadrant's choice and sign, the tiny-angle shortcut. The angle takes
   only 2**24 values, and for every one of them these are the C library's
   bits on such a machine (a test and ``bench/exhaustive.py`` compare all of
   them); on any other platform they are the same bits, not its own libm's.
   The C library's float routines are not correctly rounded (they differ
   from the rounded exact value at 1.3 % of these angles), so the kernel
   reproduces their arithmetic instead of computing the exact value;
4. ``r * cos t``, ``r * sin t`` interleaved, then ``x + sigma * eps`` in
   float32 in the same order of operations as the torch path.

Kernels are module-level functions so that numba's on-disk cache serves
every later process (a closure over constants misses it each time).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

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

# glibc sysdeps/ieee754/flt-32/sincosf_data.c (__sincosf_table[0]; table [1] is its cosine part negated)
HPI_INV = float.fromhex("0x1.45f306dc9c883p+23")     # 2/pi * 2**24
HPI = float.fromhex("0x1.921fb54442d18p+0")          # pi/2
SC_C0, SC_C1 = 1.0, float.fromhex("-0x1.ffffffd0c621cp-2")
SC_C2, SC_C3 = float.fromhex("0x1.55553e1068f19p-5"), float.fromhex("-0x1.6c087e89a359dp-10")
SC_C4 = float.fromhex("0x1.99343027bf8c3p-16")
SC_S1, SC_S2 = float.fromhex("-0x1.555545995a603p-3"), float.fromhex("0x1.1107605230bc4p-7")
SC_S3 = float.fromhex("-0x1.994eb3774cf24p-13")
TINY_ANGLE = np.float32(2.0 ** -12)                   # below it cosf returns 1 and sinf its argument
HALF_24 = np.int32(0x800000)
SHIFT_24 = np.int32(24)


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma.f64``: the FMA instruction, or an exact emulation without one)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        return builder.call(builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d])), args)

    return sig, codegen


@nb.njit(inline="always", error_model="numpy")
def _sincos(t, c, s, n):
    """``c[i], s[i] = cosf(t[i]), sinf(t[i])`` as glibc computes them, for float32 angles ``|t| < 120``.

    glibc reduces ``x = t - q pi/2`` with ``q = round(t 2/pi)`` (from the
    truncated ``t 2**24 2/pi``), evaluates one polynomial in ``x`` (sine:
    ``x + x**3 S(x**2)``, cosine: ``C(x**2)``) as the quadrant requires and
    rounds it to float32; both are computed here and the quadrant selects,
    which gives the same bits because each polynomial is odd or even in its
    signs exactly (every operation rounds to nearest, symmetric in sign).
    """
    for i in range(n):
        y = t[i]
        x = np.float64(y)
        q = (np.int32(x * HPI_INV) + HALF_24) >> SHIFT_24
        xr = fma(-np.float64(q), HPI, x)
        x2 = xr * xr
        x3 = xr * x2
        sp = fma(x3 * x2, fma(x2, SC_S3, SC_S2), fma(x3, SC_S1, xr))
        x4 = x2 * x2
        cp = fma(x4 * x2, fma(x2, SC_C4, SC_C3), fma(x4, SC_C2, fma(x2, SC_C1, SC_C0)))
        odd = (q & 1) != 0
        sv = cp if odd else sp
        cv = sp if odd else cp
        sv = -sv if (q & 2) != 0 else sv                  # quadrants 2, 3: sin < 0
        cv = -cv if ((q ^ (q >> 1)) & 1) != 0 else cv     # quadrants 1, 2: cos < 0
        tiny = abs(y) < TINY_ANGLE
        s[i] = y if tiny else np.float32(sv)
        c[i] = np.float32(1.0) if tiny else np.float32(cv)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def sincos(t, c, s):
    """``c, s = cosf(t), sinf(t)`` elementwise as glibc computes them (float32 arrays, angles ``|t| < 120``)."""
    _sincos(t, c, s, t.shape[0])


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
    _sincos(t, c, s, n)
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
