"""Host-memory settings of a CPU sampling process.

glibc's malloc serves blocks above its mmap threshold (128 KiB, raised
dynamically up to 32 MiB) with fresh ``mmap`` pages and trims the heap's top
back to the OS; a CPU forward pass allocates and frees its activations on
every batch, so it page-faults them back in every time. Once the sampler adds
its own allocations between batches (the noisy batch, the rows), the dynamic
threshold no longer settles: noise, forward pass and softmax of a digits-CNN
batch of 1,000 took 17.7-18.9 ms without and 13.7-15.7 ms with these settings
(the forward pass alone on one reused batch: 12.6-13.1 ms).
``keep_freed_memory`` raises both thresholds so freed activations stay in the
heap for the next batch. It is process-wide: arrays above 64 MiB are still
mmapped (and returned to the OS when freed); at most 1 GiB of freed heap is
kept. Set ``SMOOTHCERT_MALLOPT=0`` to leave malloc alone.
"""
from __future__ import annotations

import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 2**30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are set (False elsewhere)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SMOOTHCERT_MALLOPT", "1") == "0" or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return _done
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        # the trim threshold alone would also stop the dynamic mmap threshold: only after the mmap one is set
        _done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _done = False
    return _done
