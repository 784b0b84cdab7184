"""CPU kernels of the sampling loop: softmax rows and their argmax in one pass (numba).

On CPU the per-batch post-processing runs here instead of as several small
torch ops: each of those is a round trip through torch's thread pool, which
on a small network costs a sizeable share of the forward pass.
"""
from __future__ import annotations

import numpy as np

_kernel = None


def _get():
    """The compiled kernel (compiled once per process, or loaded from numba's cache)."""
    global _kernel
    if _kernel is None:
        import numba as nb

        @nb.njit(cache=True, nogil=True)
        def softmax_argmax(logits, rows, arg):
            B, m = logits.shape
            bad = -1
            for i in range(B):
                mx = logits[i, 0]
                for c in range(1, m):
                    if logits[i, c] > mx:
                        mx = logits[i, c]
                s = np.float32(0.0)
                for c in range(m):
                    e = np.float32(np.exp(logits[i, c] - mx))
                    rows[i, c] = e
                    s += e
                best, am = np.float32(-1.0), 0
                for c in range(m):
                    p = rows[i, c] / s
                    rows[i, c] = p
                    if p > best:
                        best, am = p, c
                if not (s > 0 and s < np.inf) and bad < 0:
                    bad = i
                arg[i] = am
            return bad

        _kernel = softmax_argmax
    return _kernel


def softmax_argmax(logits: np.ndarray, rows: np.ndarray, arg: np.ndarray) -> int:
    """Write softmax(logits) (float32) into ``rows`` and its first argmax into ``arg``; return the first non-finite row or -1."""
    return int(_get()(logits, rows, arg))


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel."""
    softmax_argmax(np.zeros((1, 2), np.float32), np.empty((1, 2), np.float32), np.empty(1, np.int32))
