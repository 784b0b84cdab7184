"""Numba kernels over blocks of stored rows (parallel over inputs, GIL released).

Each kernel is a pure function of its arrays. Numba rejects float16, so
callers pass float32 (the store's reader upcasts) or integer hard labels.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True)


@nb.njit(parallel=True, **_JIT)
def _counts_ranges(labels, starts, stops, m):
    B = labels.shape[0]
    out = np.zeros((B, m), dtype=np.int64)
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            c = labels[b, r]
            if c < m:
                out[b, c] += 1
    return out


def class_counts(labels: np.ndarray, start, stop, m: int) -> np.ndarray:
    """(B, m) counts of hard labels ``labels[b, start[b]:stop[b]]`` per input.

    ``start``/``stop`` are ints or per-input arrays. Labels >= m are not
    counted (the reader refuses such inputs before they get here).
    """
    B = labels.shape[0]
    starts = np.broadcast_to(np.asarray(start, dtype=np.int64), (B,)).copy()
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,)).copy()
    return _counts_ranges(np.ascontiguousarray(labels), starts, stops, int(m))


@nb.njit(parallel=True, **_JIT)
def _bad_labels(labels, starts, stops, m):
    B = labels.shape[0]
    bad = np.zeros(B, dtype=np.bool_)
    for b in nb.prange(B):
        for r in range(starts[b], stops[b]):
            if labels[b, r] >= m or labels[b, r] < 0:
                bad[b] = True
                break
    return bad


def invalid_label_inputs(labels: np.ndarray, stop, m: int) -> np.ndarray:
    """Boolean (B,): inputs with a hard label outside 0..m-1 among their first ``stop`` rows."""
    B = labels.shape[0]
    stops = np.broadcast_to(np.asarray(stop, dtype=np.int64), (B,)).copy()
    return _bad_labels(np.ascontiguousarray(labels), np.zeros(B, np.int64), stops, int(m))
