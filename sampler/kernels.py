"""CPU kernels of the sampling loop: softmax rows and their argmax in one pass (numba).

On CPU the per-batch post-processing runs here instead of as several small
torch ops: each of those is a round trip through torch's thread pool, which
on a small network costs a sizeable share of the forward pass. The kernel is
a module-level function, so numba's on-disk cache serves every later process.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def softmax_argmax_at(logits, rows, arg, offset):
    """``rows[offset + i] = softmax(logits[i])`` (float32) and ``arg[offset + i]`` its first argmax, for every row
    ``i`` of ``logits``; returns the first row whose softmax is not finite, or -1."""
    B, m = logits.shape
    bad = -1
    for i in range(B):
        o = offset + i
        mx = logits[i, 0]
        for c in range(1, m):
            if logits[i, c] > mx:
                mx = logits[i, c]
        s = np.float32(0.0)
        for c in range(m):
            e = np.float32(np.exp(logits[i, c] - mx))
            rows[o, c] = e
            s += e
        best, am = np.float32(-1.0), 0
        for c in range(m):
            p = rows[o, c] / s
            rows[o, c] = p
            if p > best:
                best, am = p, c
        if not (s > 0 and s < np.inf) and bad < 0:
            bad = i
        arg[o] = am
    return bad


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel."""
    softmax_argmax_at(np.zeros((1, 2), np.float32), np.empty((1, 2), np.float32), np.empty(1, np.int32), 0)
