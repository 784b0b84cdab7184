"""Per-row top-k and entropy of stored softmax rows: what a compact layout keeps (``layouts.CompactRows``, ``CompactFullS0``).

``compact_rows`` turns rows given in a store's dtype into ``(topk_p, topk_c,
entropy)``: the K largest values bit for bit, descending, their classes (ties:
the lower class first), and ``-sum_c p_c ln p_c`` over the whole row, summed
in class order in float64 from the float32 value of each entry, ``p <= 0``
contributing 0 -- the same arithmetic, operation for operation, as the
certifier's uncertainty and ACES kernels, so it is bit-identical to what they
compute from the full rows. The kernel (``store.kernels``, numba) is imported
on first use only.
"""
from __future__ import annotations

import numpy as np

from .errors import StoreError

MAX_TOPK = 256

def compact_rows(rows: np.ndarray, k: int):
    """``(topk_p, topk_c, entropy)`` of (r, m) rows given in the store's dtype (see the module docstring).

    ``topk_p`` keeps the input dtype (bit-identical values), ``topk_c`` is
    uint16, ``entropy`` float64 computed from the float32 value of each entry.
    """
    rows = np.asarray(rows)
    dt = rows.dtype
    r, m = rows.shape
    if not (2 <= k <= min(m, MAX_TOPK)):
        raise StoreError(f"--topk must be in 2..{min(m, MAX_TOPK)} for {m} classes, got {k}")
    f32 = np.ascontiguousarray(rows, dtype=np.float32)
    top_p = np.full((r, k), -np.inf, np.float32)
    top_c = np.zeros((r, k), np.int64)
    ent = np.empty(r, np.float64)
    from .kernels import compact_rows_kernel  # numba, imported on first use

    compact_rows_kernel(f32, int(k), top_p, top_c, ent)
    return top_p.astype(dt), top_c.astype(np.uint16), ent
