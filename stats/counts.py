"""Ranking count vectors: the top-k rule every method shares (ties towards the lowest index)."""
from __future__ import annotations

import numpy as np


def top_k(counts: np.ndarray, k: int):
    """Classes and counts of the k largest entries per row, ties towards the lowest index.

    Returns ``(classes (B, k), values (B, k))``; classes beyond m are -1 with count 0.
    """
    counts = np.asarray(counts)
    B, m = counts.shape
    order = np.argsort(-counts, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(counts, order, axis=1)
    if k > m:
        pad = k - m
        order = np.concatenate([order, np.full((B, pad), -1, order.dtype)], axis=1)
        vals = np.concatenate([vals, np.zeros((B, pad), vals.dtype)], axis=1)
    return order.astype(np.int64), vals
