"""Deterministic Gaussian noise, a pure function of (seed, dataset index, row).

Scheme ``smoothcert-splitmix-bm-v1`` (documented in ``store/FORMAT.md``):

* per input, a 64-bit key = the first 8 bytes (little endian) of
  ``sha256(b"smoothcert-noise-v1\\0" + seed + idx)``, seed and idx as signed
  64-bit little-endian integers;
* the input's noise is one flat stream over its rows in store order (row ``r``,
  element ``j`` of the C*H*W pixels is stream element ``e = r*D + j``); stream
  elements come in pairs, pair ``p = e // 2`` is drawn from the 64-bit word
  ``z = mix(mix((p + 1) * G) ^ key)`` (``mix`` is SplitMix64's finaliser,
  ``G = 0x9E3779B97F4A7C15``, all arithmetic mod 2**64);
* Box-Muller: ``u1 = (z >> 32 + 1) / 2**32`` in float64,
  ``r = float32(sqrt(-2 ln u1))``; ``t = float32(z & 0xFFFFFF) * float32(2 pi / 2**24)``;
  element ``2p`` is ``r * cos(t)``, element ``2p + 1`` is ``r * sin(t)`` (float32).

A row's noise therefore depends only on (seed, idx, row) and the input's
shape: never on the batch size, the subset, the order or the shard. The
integers are identical on every device; the float transform may differ in
the last bit between an accelerator (torch's ``cos``/``sin``) and the CPU,
never between runs on one device. On CPU the stream is computed by the numba
kernels of ``sampler.noise_kernels`` (vectorised, bit for bit the scalar
definition, with ``cos``/``sin`` as glibc's float routines compute them on
every platform), elsewhere by torch ops on the device; both implement the
same formula (the tests check they agree).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

SCHEME = "smoothcert-splitmix-bm-v1"

_G = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
_TWO_PI_24 = np.float32(2.0 * math.pi / 16777216.0)
_INV_2_32 = 1.0 / 4294967296.0


def input_key(seed: int, idx: int) -> int:
    """The 64-bit noise key of dataset index ``idx`` under ``seed`` (unsigned int)."""
    seed, idx = int(seed), int(idx)
    if not (-(1 << 63) <= seed < (1 << 63)):
        raise ValueError(f"seed {seed} does not fit in a signed 64-bit integer")
    if not (0 <= idx < (1 << 63)):
        raise ValueError(f"dataset index {idx} must be in 0..2**63-1")
    h = hashlib.sha256(b"smoothcert-noise-v1\0" + seed.to_bytes(8, "little", signed=True)
                       + idx.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(h[:8], "little")


# ------------------------------------------------------------------ reference
def _mix_py(z: int) -> int:
    """SplitMix64's finaliser on a Python integer (mod 2**64)."""
    z = ((z ^ (z >> 30)) * _C1) & _MASK64
    z = ((z ^ (z >> 27)) * _C2) & _MASK64
    return z ^ (z >> 31)


def reference_words(key: int, start_pair: int, count: int) -> list[int]:
    """The 64-bit words of pairs ``start_pair ..`` in plain Python integers (the spec, slow)."""
    return [_mix_py(_mix_py(((p + 1) * _G) & _MASK64) ^ key) for p in range(start_pair, start_pair + count)]


# ---------------------------------------------------------------- numba (CPU)
def _get_numba_fill():
    """The compiled CPU kernels ``(fill, noisy)`` of ``sampler.noise_kernels`` (numba's cache serves later processes)."""
    from . import noise_kernels

    return noise_kernels.fill, noise_kernels.noisy


def _pairs_numpy_numba(key: int, p0: int, p1: int) -> np.ndarray:
    """Stream elements of pairs ``p0 .. p1`` as float32 numpy, computed by the numba kernel."""
    out = np.empty(2 * (p1 - p0), dtype=np.float32)
    _get_numba_fill()[0](np.uint64(key), np.int64(p0), out)
    return out


# ---------------------------------------------------------------- torch (any device)
def _s64(v: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch stores."""
    return v - (1 << 64) if v >= (1 << 63) else v


def _mix_torch(z, t):
    """SplitMix64's finaliser in place on an int64 tensor (``t`` is scratch space of the same shape)."""
    # logical right shift on int64: arithmetic shift, then mask off the sign copies
    import torch

    torch.bitwise_right_shift(z, 30, out=t)
    t.bitwise_and_((1 << 34) - 1)
    z.bitwise_xor_(t).mul_(_s64(_C1))
    torch.bitwise_right_shift(z, 27, out=t)
    t.bitwise_and_((1 << 37) - 1)
    z.bitwise_xor_(t).mul_(_s64(_C2))
    torch.bitwise_right_shift(z, 31, out=t)
    t.bitwise_and_((1 << 33) - 1)
    z.bitwise_xor_(t)
    return z


def _pairs_torch(key: int, p0: int, p1: int, device):
    """Stream elements of pairs ``p0 .. p1`` as a float32 tensor on ``device``, computed with torch ops."""
    import torch

    z = torch.arange(p0 + 1, p1 + 1, dtype=torch.int64, device=device)
    t = torch.empty_like(z)
    z.mul_(_s64(_G))            # int64 multiplication wraps mod 2**64
    _mix_torch(z, t)
    z.bitwise_xor_(_s64(key))
    _mix_torch(z, t)
    fdt = torch.float64 if torch.device(device).type != "mps" else torch.float32
    torch.bitwise_right_shift(z, 32, out=t)
    t.bitwise_and_(0xFFFFFFFF)
    u1 = t.to(fdt).add_(1.0).mul_(_INV_2_32)
    r = u1.log_().mul_(-2.0).sqrt_().to(torch.float32)
    th = z.bitwise_and_(0xFFFFFF).to(torch.float32).mul_(float(_TWO_PI_24))
    out = torch.empty((p1 - p0, 2), dtype=torch.float32, device=device)
    torch.mul(r, torch.cos(th), out=out[:, 0])
    torch.mul(r, torch.sin(th), out=out[:, 1])
    return out.view(-1)


# ---------------------------------------------------------------- public API
def standard_normal(key: int, start: int, count: int, device="cpu", impl: str = "auto"):
    """Stream elements ``start .. start+count`` of the key's N(0, 1) stream as a float32 torch tensor on ``device``.

    ``impl``: ``"numba"`` (CPU only), ``"torch"``, or ``"auto"`` (numba on CPU, torch elsewhere).
    """
    import torch

    if start < 0 or count < 0:
        raise ValueError("start and count must be non-negative")
    dev = torch.device(device)
    if impl == "auto":
        impl = "numba" if dev.type == "cpu" else "torch"
    p0, p1 = start // 2, (start + count + 1) // 2
    if p1 == p0:
        return torch.empty(0, dtype=torch.float32, device=dev)
    if impl == "numba":
        if dev.type != "cpu":
            raise ValueError("the numba noise kernel runs on CPU only")
        flat = torch.from_numpy(_pairs_numpy_numba(key, p0, p1))
    elif impl == "torch":
        flat = _pairs_torch(key, p0, p1, dev)
    else:
        raise ValueError(f"unknown noise implementation {impl!r}")
    off = start - 2 * p0
    return flat[off:off + count]


def noise_rows(seed: int, idx: int, row_start: int, row_stop: int, shape, device="cpu", impl: str = "auto"):
    """The N(0, 1) noise of rows ``row_start:row_stop`` of input ``idx``: a float32 tensor (rows, *shape).

    The result depends only on (seed, idx, rows, shape): the sampler's rows
    for any batch size, subset or shard are built from exactly these values.
    """
    shape = tuple(int(s) for s in shape)
    d = int(np.prod(shape))
    rows = row_stop - row_start
    if rows < 0:
        raise ValueError("row_stop must not be below row_start")
    flat = standard_normal(input_key(seed, idx), row_start * d, rows * d, device=device, impl=impl)
    return flat.view((rows,) + shape)


_POOL = None
PARALLEL_MIN_ELEMENTS = 1 << 14


def _noisy_parallel(key, start: int, xf, sigma, out) -> None:
    """The numba ``noisy`` kernel over ``out``, cut into contiguous pieces run at once on half of torch's threads.

    The kernel releases the GIL and each element depends only on its stream
    position, so the pieces give the bytes of one call. Half, not all: right
    after a forward pass torch's OpenMP workers keep spinning on their cores
    for a while, and noise threads on those cores only compete with them
    (with 2 threads, the sampler ran 8 % slower end to end with the noise on
    both cores than on one). With 2 or 3 threads the noise runs in one piece.
    """
    global _POOL
    import torch

    noisy = _get_numba_fill()[1]
    threads = max(1, min(torch.get_num_threads() // 2, out.shape[0] // PARALLEL_MIN_ELEMENTS))
    if threads == 1:
        noisy(key, np.int64(start), xf, sigma, out)
        return
    import os

    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
        # a forked child inherits the pool object but not its threads: it gets a pool of its own
        from concurrent.futures import ThreadPoolExecutor

        _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="smoothcert-noise"))
    cuts = np.linspace(0, out.shape[0], threads + 1).astype(np.int64)
    futures = [_POOL[2].submit(noisy, key, np.int64(start + a), xf, sigma, out[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    for f in futures:
        f.result()


def noisy_copies(x, sigma: float, seed: int, idx: int, row_start: int, row_stop: int, impl: str = "auto"):
    """``x + sigma * noise`` for rows ``row_start:row_stop`` of input ``idx`` (float32, on x's device).

    ``x`` is the clean input (C, H, W) or (1, C, H, W) in [0, 1] pixel space;
    the noisy copies are not clipped (as in Cohen et al.).
    """
    import torch

    shape = tuple(x.shape[1:]) if x.dim() == 4 and x.shape[0] == 1 else tuple(x.shape)
    if impl == "auto":
        impl = "numba" if x.device.type == "cpu" else "torch"
    if impl == "numba" and x.dtype == torch.float32:     # one pass, no thread-pool round trips for small ops
        if row_stop < row_start:
            raise ValueError("row_stop must not be below row_start")
        batches = NoisyBatches(shape, row_stop - row_start)
        batches.set_input(x, sigma, seed, idx)
        return batches.rows(row_start, row_stop)
    z = noise_rows(seed, idx, row_start, row_stop, shape, device=x.device, impl=impl)
    return z.mul_(float(sigma)).add_(x.reshape((1,) + shape))


class NoisyBatches:
    """The noisy copies of one input after another, batch by batch, in one reused float32 buffer (CPU, numba).

    ``rows(a, b)`` gives ``x + sigma * noise`` for rows ``a:b`` of input
    ``idx`` (what ``noisy_copies`` returns, computed by the same code) with
    one kernel call of Python work per batch: right after a forward pass
    every Python step is slow (the pass has pushed the interpreter out of the
    caches; a bare ``np.empty(10).sum()`` then takes ~60 us instead of ~3),
    so the key, the flat input, the buffer and its tensor view are made once
    per input or per run instead of once per batch. The tensor ``rows``
    returns is overwritten by the next call.
    """

    def __init__(self, shape, batch_size: int):
        import torch

        self.shape = tuple(int(s) for s in shape)
        self.d = int(np.prod(self.shape))
        self._flat = np.empty(int(batch_size) * self.d, dtype=np.float32)
        self._view = torch.from_numpy(self._flat).view((int(batch_size),) + self.shape)
        self._noisy = _get_numba_fill()[1]
        self._one_piece = torch.get_num_threads() // 2 <= 1     # as _noisy_parallel would decide
        self._key = self._x = None
        self._sigma = np.float32(0.0)

    def set_input(self, x, sigma: float, seed: int, idx: int) -> None:
        """Make the following ``rows`` calls those of clean input ``x`` (float32, ``shape``) with dataset index ``idx``."""
        import torch

        if tuple(x.shape[-len(self.shape):]) != self.shape or x.numel() != self.d or x.dtype != torch.float32:
            raise ValueError(f"expected a float32 input of shape {self.shape}, got {x.dtype} {tuple(x.shape)}")
        self._key = np.uint64(input_key(seed, idx))
        self._x = np.ascontiguousarray(x.detach().reshape(-1).numpy())
        self._sigma = np.float32(sigma)

    def rows(self, row_start: int, row_stop: int):
        """``x + sigma * noise`` for rows ``row_start:row_stop`` (at most ``batch_size``), a view of the buffer."""
        n = row_stop - row_start
        out = self._flat[:n * self.d]
        if self._one_piece:
            self._noisy(self._key, row_start * self.d, self._x, self._sigma, out)
        else:
            _noisy_parallel(self._key, row_start * self.d, self._x, self._sigma, out)
        return self._view[:n]


def warm_up() -> None:
    """Compile (or load from numba's cache) the CPU kernels, so the first batch is not slow."""
    import torch

    _pairs_numpy_numba(1, 0, 1)
    noisy_copies(torch.zeros(1, 1, 2), 1.0, 0, 0, 0, 1, impl="numba")
