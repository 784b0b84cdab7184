"""The noise scheme: a pure function of (seed, dataset index, row), as store/FORMAT.md documents it."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from scipy import stats

from smoothcert.sampler import noise as N


def spec_normals(seed: int, idx: int, start: int, count: int) -> np.ndarray:
    """The documented scheme, written out independently with Python integers and numpy floats."""
    h = hashlib.sha256(b"smoothcert-noise-v1\0" + seed.to_bytes(8, "little", signed=True)
                       + idx.to_bytes(8, "little", signed=True)).digest()
    key = int.from_bytes(h[:8], "little")
    M = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)

    out = []
    for p in range(start // 2, (start + count + 1) // 2):
        z = mix(mix(((p + 1) * 0x9E3779B97F4A7C15) & M) ^ key)
        u1 = ((z >> 32) + 1.0) / 4294967296.0
        r = np.float32(math.sqrt(-2.0 * math.log(u1)))
        t = np.float32(z & 0xFFFFFF) * np.float32(2.0 * math.pi / 16777216.0)
        out += [r * np.cos(t, dtype=np.float32), r * np.sin(t, dtype=np.float32)]
    off = start - 2 * (start // 2)
    return np.asarray(out, dtype=np.float32)[off:off + count]


@pytest.mark.parametrize("impl", ["numba", "torch"])
@pytest.mark.parametrize("seed,idx,start,count", [(0, 0, 0, 64), (3, 17, 5, 101), (-7, 2**40, 999, 33)])
def test_matches_the_documented_scheme(impl, seed, idx, start, count):
    got = N.standard_normal(N.input_key(seed, idx), start, count, impl=impl).numpy()
    want = spec_normals(seed, idx, start, count)
    # the integers are exact; the float transform may differ in the last bit between libms
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


def test_numba_and_torch_kernels_agree_on_a_large_stream():
    key = N.input_key(5, 123)
    a = N.standard_normal(key, 1, 200_001, impl="numba")
    b = N.standard_normal(key, 1, 200_001, impl="torch")
    assert a.dtype == b.dtype == torch.float32
    assert torch.max(torch.abs(a - b)).item() < 1e-5


@pytest.mark.parametrize("impl", ["numba", "torch"])
def test_rows_do_not_depend_on_how_they_are_cut(impl):
    shape = (3, 5, 5)   # odd C*H*W: a row boundary splits a Box-Muller pair
    full = N.noise_rows(1, 9, 0, 40, shape, impl=impl)
    pieces = torch.cat([N.noise_rows(1, 9, a, b, shape, impl=impl) for a, b in [(0, 7), (7, 8), (8, 33), (33, 40)]])
    assert torch.equal(full, pieces)
    assert torch.equal(full[11:12], N.noise_rows(1, 9, 11, 12, shape, impl=impl))


@pytest.mark.parametrize("impl", ["numba", "torch"])
def test_noisy_copies_are_x_plus_sigma_noise_unclipped(impl):
    x = torch.rand(3, 5, 5)
    z = N.noise_rows(0, 4, 10, 20, (3, 5, 5), impl=impl)
    got = N.noisy_copies(x, 0.5, 0, 4, 10, 20, impl=impl)
    assert torch.equal(got, z * 0.5 + x)
    assert got.min() < 0 or got.max() > 1   # noise is not clipped to [0, 1]
    pieces = torch.cat([N.noisy_copies(x[None], 0.5, 0, 4, a, b, impl=impl) for a, b in [(10, 13), (13, 14), (14, 20)]])
    assert torch.equal(got, pieces)


@pytest.mark.parametrize("threads", [4, 6])
def test_noise_split_across_threads_is_the_single_threaded_noise(monkeypatch, threads):
    """Large batches run the numba kernel in one piece per two torch threads: same bytes as one call, odd cuts too."""
    x = torch.rand(3, 5, 7)                      # 105 pixels: the cuts fall inside rows and inside Box-Muller pairs
    monkeypatch.setattr(N, "PARALLEL_MIN_ELEMENTS", 1 << 30)
    one = N.noisy_copies(x, 0.3, 2, 11, 3, 3 + 997)
    monkeypatch.setattr(N, "PARALLEL_MIN_ELEMENTS", 1000)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        split = N.noisy_copies(x, 0.3, 2, 11, 3, 3 + 997)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, split)
    assert torch.equal(one, N.noise_rows(2, 11, 3, 1000, (3, 5, 7), impl="numba") * np.float32(0.3) + x)


def test_keys_differ_by_seed_and_index():
    keys = {N.input_key(s, i) for s in range(5) for i in range(200)}
    assert len(keys) == 1000
    assert all(0 <= k < 2**64 for k in keys)
    with pytest.raises(ValueError):
        N.input_key(0, -1)
    with pytest.raises(ValueError):
        N.input_key(2**63, 0)


def test_the_stream_is_standard_normal_and_inputs_are_independent():
    a = N.standard_normal(N.input_key(0, 0), 0, 200_000).double().numpy()
    b = N.standard_normal(N.input_key(0, 1), 0, 200_000).double().numpy()
    c = N.standard_normal(N.input_key(1, 0), 0, 200_000).double().numpy()
    for v in (a, b, c):
        assert abs(v.mean()) < 0.01 and abs(v.std() - 1) < 0.01
        assert stats.kstest(v, "norm").pvalue > 1e-4
    for u, v in ((a, b), (a, c), (a[:-1], a[1:]), (a[0::2], a[1::2])):
        assert abs(np.corrcoef(u, v)[0, 1]) < 0.01


def test_a_forked_child_computes_the_noise_with_a_pool_of_its_own(monkeypatch):
    """The thread pool of the split noise kernel does not survive fork: a child must not wait on its parent's threads."""
    import multiprocessing as mp

    monkeypatch.setattr(N, "PARALLEL_MIN_ELEMENTS", 1000)
    x = torch.rand(3, 5, 7)
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        want = N.noisy_copies(x, 0.3, 2, 11, 0, 500)      # the parent's pool now exists
        ctx = mp.get_context("fork")
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_child_noise, (x, N.PARALLEL_MIN_ELEMENTS)).get(timeout=60)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(torch.from_numpy(got), want)


def _child_noise(x, min_elements):
    N.PARALLEL_MIN_ELEMENTS = min_elements
    torch.set_num_threads(4)
    return N.noisy_copies(x, 0.3, 2, 11, 0, 500).numpy()


# ---------------------------------------------------------------- the vectorised kernel, bit for bit
TWO_PI_24 = np.float32(2.0 * math.pi / 16777216.0)


def _glibc_trig():
    """glibc's ``cosf`` and ``sinf`` (sysdeps/ieee754/flt-32: s_cosf.c, s_sinf.c, sincosf.h, the FMA build),
    transcribed branch for branch as scalar numba functions, for float32 arguments ``|y| < 120``."""
    import numba as nb

    from smoothcert.sampler.noise_kernels import fma

    hpi_inv, hpi = float.fromhex("0x1.45F306DC9C883p+23"), float.fromhex("0x1.921FB54442D18p0")
    c0, c1, c2 = 1.0, float.fromhex("-0x1.ffffffd0c621cp-2"), float.fromhex("0x1.55553e1068f19p-5")
    c3, c4 = float.fromhex("-0x1.6c087e89a359dp-10"), float.fromhex("0x1.99343027bf8c3p-16")
    s1, s2 = float.fromhex("-0x1.555545995a603p-3"), float.fromhex("0x1.1107605230bc4p-7")
    s3 = float.fromhex("-0x1.994eb3774cf24p-13")
    pio4, tiny = np.float32(float.fromhex("0x1.921FB54442D18p-1")), np.float32(2.0 ** -12)

    @nb.njit
    def sinf_poly(x, x2, table, n):          # sincosf.h; table 1 negates the cosine coefficients
        if (n & 1) == 0:
            x3 = x * x2
            s1_ = fma(x2, s3, s2)
            x7 = x3 * x2
            s = fma(x3, s1, x)
            return fma(x7, s1_, s)
        g = -1.0 if table else 1.0
        x4 = x2 * x2
        c2_ = fma(x2, g * c4, g * c3)
        c1_ = fma(x2, g * c1, g * c0)
        x6 = x4 * x2
        c = fma(x4, g * c2, c1_)
        return fma(x6, c2_, c)

    @nb.njit
    def reduce_fast(x):                       # without TOINT_INTRINSICS, as on x86-64
        r = x * hpi_inv
        n = (np.int32(r) + np.int32(0x800000)) >> np.int32(24)
        return fma(-np.float64(n), hpi, x), n

    @nb.njit
    def cosf(y):
        x = np.float64(y)
        if abs(y) < pio4:
            if abs(y) < tiny:
                return np.float32(1.0)
            return np.float32(sinf_poly(x, x * x, 0, 1))
        x, n = reduce_fast(x)
        s = (1.0, -1.0, -1.0, 1.0)[n & 3]
        return np.float32(sinf_poly(x * s, x * x, (n & 2) != 0, n ^ 1))

    @nb.njit
    def sinf(y):
        x = np.float64(y)
        if abs(y) < pio4:
            if abs(y) < tiny:
                return y
            return np.float32(sinf_poly(x, x * x, 0, 0))
        x, n = reduce_fast(x)
        s = (1.0, -1.0, -1.0, 1.0)[n & 3]
        return np.float32(sinf_poly(x * s, x * x, (n & 2) != 0, n))

    return cosf, sinf


def _libm_is_glibc_fma() -> bool:
    """Whether this process's C library float trig is glibc >= 2.28's FMA build (x86-64 with FMA)."""
    import platform

    lib, ver = platform.libc_ver()
    if lib != "glibc" or platform.machine() != "x86_64" or tuple(int(v) for v in ver.split(".")[:2]) < (2, 28):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " fma " in f" {line.split(':', 1)[1].strip()} " for line in f)
    except OSError:
        return False


@pytest.mark.skipif(not _libm_is_glibc_fma(), reason="compares with glibc >= 2.28 on x86-64 with FMA")
def test_the_transcription_is_the_c_librarys_cosf_and_sinf_at_every_angle_of_the_scheme():
    """All 2**24 angles: the transcription of glibc gives this C library's bits (so stores keep their bytes)."""
    import numba as nb

    cosf, sinf = _glibc_trig()

    @nb.njit
    def differ(two_pi_24):
        d = 0
        for k in range(1 << 24):
            for t in (np.float32(k) * two_pi_24, -np.float32(k) * two_pi_24):   # the scheme's angles and their negatives
                d += (cosf(t) != math.cos(t)) + (sinf(t) != math.sin(t))
        return d

    assert differ(TWO_PI_24) == 0


def test_the_branch_free_angle_kernel_is_the_transcription_at_every_angle_and_within_one_ulp():
    """All 2**24 angles: the vectorised kernel equals the branchy transcription bit for bit, and both lie within
    one float32 ulp of cos and sin computed in float64 by numpy (an independent computation)."""
    import numba as nb

    from smoothcert.sampler import noise_kernels as K

    cosf, sinf = _glibc_trig()

    @nb.njit
    def transcribed(t):
        c, s = np.empty_like(t), np.empty_like(t)
        for i in range(t.shape[0]):
            c[i], s[i] = cosf(t[i]), sinf(t[i])
        return c, s

    t = np.arange(1 << 24, dtype=np.float32) * TWO_PI_24
    c, s = np.empty_like(t), np.empty_like(t)
    K.sincos(t, c, s)
    wc, ws = transcribed(t)
    assert c.tobytes() == wc.tobytes() and s.tobytes() == ws.tobytes()
    neg = np.concatenate([-t[::17], np.float32(-119.9) + t[::101]])     # negative angles, and out to |t| < 120
    nc, ns = np.empty_like(neg), np.empty_like(neg)
    K.sincos(neg, nc, ns)
    wc, ws = transcribed(neg)
    assert nc.tobytes() == wc.tobytes() and ns.tobytes() == ws.tobytes()
    for got, exact in ((c, np.cos(t.astype(np.float64))), (s, np.sin(t.astype(np.float64)))):
        ulp = np.spacing(np.abs(exact).astype(np.float32))
        assert (np.abs(got - exact) <= ulp).all()
        # not the exact value rounded: glibc's float routines are not correctly rounded (about 1 % of these)
        assert 0 < (got != exact.astype(np.float32)).mean() < 0.05
    assert c[0] == 1.0 and s[0] == 0.0 and s[1] == t[1]            # the tiny-angle shortcut


def _definition_kernels():
    """The scheme's float transform written as plain scalar numba code (the C library's log; cos and sin as
    glibc computes them, the C library's own on such a machine)."""
    import numba as nb

    cosf, sinf = _glibc_trig()

    M24, S32 = np.uint64(0xFFFFFF), np.uint64(32)
    G, C1, C2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    two_pi_24 = np.float32(2.0 * math.pi / 16777216.0)

    @nb.njit
    def radius(hi):
        return np.float32(math.sqrt(-2.0 * math.log((np.float64(hi) + 1.0) / 4294967296.0)))

    @nb.njit
    def stream(key, p0, pairs):
        out = np.empty(2 * pairs, np.float32)
        for i in range(pairs):
            z = (np.uint64(p0 + i) + np.uint64(1)) * G
            for k in range(2):
                z = (z ^ (z >> np.uint64(30))) * C1
                z = (z ^ (z >> np.uint64(27))) * C2
                z = z ^ (z >> np.uint64(31))
                if k == 0:
                    z = z ^ key
            r = radius(z >> S32)
            t = np.float32(z & M24) * two_pi_24
            out[2 * i] = r * cosf(t)
            out[2 * i + 1] = r * sinf(t)
        return out

    @nb.njit
    def radii(hi):
        out = np.empty(hi.shape[0], np.float32)
        for i in range(hi.shape[0]):
            out[i] = radius(hi[i])
        return out

    return stream, radii


def test_the_fast_radius_is_the_definitions_bit_for_bit_near_its_fallbacks_and_at_the_ends():
    """The vectorised log with its libm fallback near float32 boundaries gives exactly float32(sqrt(-2 ln u1)).

    (bench/exhaustive.py checks all 2**32 values; this checks 3 x 2**20 of them, the ends included.)"""
    from smoothcert.sampler import noise_kernels as K

    _, radii = _definition_kernels()
    rng = np.random.default_rng(7)
    hi = np.concatenate([np.arange(0, 1 << 20), np.arange((1 << 32) - (1 << 20), 1 << 32),
                         rng.integers(0, 1 << 32, 1 << 20)]).astype(np.uint32)
    n = hi.shape[0]
    r = np.empty(n, np.float32)
    fixed = K.radii_from_hi(hi, r, np.empty(n), np.empty(n, np.uint64), np.empty(n), np.empty(n, np.bool_))
    want = radii(hi)
    assert r.tobytes() == want.tobytes()
    assert fixed > 0                       # the fallback ran (about 2e-5 of the values)
    assert r[-(1 << 20) - 1] == 0.0        # u1 = 1: radius 0


@pytest.mark.parametrize("d,start,count", [(64, 0, 64_000), (105, 3, 9_999), (3072, 1, 1), (1, 7, 1025), (7, 0, 0)])
def test_the_noisy_kernel_is_the_scalar_definition_bit_for_bit(d, start, count):
    """Chunks, odd starts, runs that wrap x, an empty output: each element is x + sigma * eps of the definition."""
    from smoothcert.sampler import noise_kernels as K

    stream, _ = _definition_kernels()
    key = np.uint64(N.input_key(3, 1234))
    rng = np.random.default_rng(d)
    x = rng.random(d).astype(np.float32)
    sigma = np.float32(0.37)
    out = np.empty(count, np.float32)
    K.noisy(key, np.int64(start), x, sigma, out)
    p0 = start // 2
    eps = stream(key, p0, (start + count + 1) // 2 - p0)[start - 2 * p0:start - 2 * p0 + count]
    want = eps * sigma + x[(start + np.arange(count)) % d]
    assert out.tobytes() == want.astype(np.float32).tobytes()
    fill = np.empty(2 * 1500, np.float32)
    K.fill(key, np.int64(p0), fill)
    assert fill.tobytes() == stream(key, p0, 1500).tobytes()


@pytest.mark.parametrize("threads", [1, 4])
def test_reused_batch_buffer_gives_the_noisy_copies_of_each_input(monkeypatch, threads):
    """NoisyBatches (the CPU sampler's loop, and noisy_copies) gives x + sigma * noise batch by batch, input after
    input, in one or several pieces, and a short last batch: the bytes of the stream's own fill kernel."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(N, "PARALLEL_MIN_ELEMENTS", 64)
    shape = (3, 5, 7)
    nb_ = N.NoisyBatches(shape, 40)
    rng = np.random.default_rng(5)
    for idx in (0, 17, 3):
        x = torch.from_numpy(rng.random(shape).astype(np.float32))
        nb_.set_input(x, 0.4, 9, idx)
        for a, b in ((0, 40), (40, 80), (80, 97), (5, 6)):
            got = nb_.rows(a, b)
            assert got.shape == (b - a,) + shape
            want = N.noise_rows(9, idx, a, b, shape, impl="numba") * np.float32(0.4) + x   # the fill kernel's stream
            assert got.numpy().tobytes() == want.numpy().tobytes()
    for bad in (torch.zeros((3, 5, 6)), torch.zeros((2, 3, 5, 7)), torch.zeros(shape, dtype=torch.float64)):
        with pytest.raises(ValueError, match="float32 input of shape"):
            nb_.set_input(bad, 0.4, 9, 0)
