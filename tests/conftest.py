"""Shared test helpers: real stores on disk built through the public import path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def softmax(logits, axis=-1):
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def rows_from_labels(labels_per_row, m, rng, peak=0.9):
    """Softmax rows whose argmax is exactly the given hard labels (dtype float32)."""
    labels_per_row = np.asarray(labels_per_row)
    R = labels_per_row.shape[0]
    rest = rng.dirichlet(np.ones(m), size=R) * (1 - peak)
    rows = rest.copy()
    rows[np.arange(R), labels_per_row] += peak
    return rows.astype(np.float32)


@pytest.fixture
def make_store(tmp_path):
    """make_store(probs, labels, n0, sigma=0.25, dtype=None, name=..., **extra arrays) -> store path."""
    from smoothcert.store.importer import import_npz

    counter = {"i": 0}

    def _make(probs, labels, n0, sigma=0.25, dtype=None, name=None, **extra):
        counter["i"] += 1
        name = name or f"store{counter['i']}"
        src = tmp_path / f"{name}.npz"
        np.savez(src, probs=np.asarray(probs), labels=np.asarray(labels), **extra)
        dest = tmp_path / name
        import_npz(src, dest, sigma=sigma, n0=n0, dtype=dtype)
        return dest

    return _make


@pytest.fixture
def counts_store(make_store):
    """counts_store(counts0 (N, m), counts (N, m), labels) -> a store whose hard labels have exactly these counts."""

    def _make(counts0, counts, labels, sigma=0.25, seed=0, **kw):
        counts0 = np.asarray(counts0)
        counts = np.asarray(counts)
        rng = np.random.default_rng(seed)
        N, m = counts0.shape
        n0 = int(counts0[0].sum())
        n = int(counts[0].sum())
        assert (counts0.sum(1) == n0).all() and (counts.sum(1) == n).all()
        probs = np.empty((N, n0 + n, m), np.float32)
        for i in range(N):
            l0 = np.repeat(np.arange(m), counts0[i])
            l1 = np.repeat(np.arange(m), counts[i])
            probs[i] = rows_from_labels(np.concatenate([rng.permutation(l0), rng.permutation(l1)]), m, rng)
        return make_store(probs, labels, n0, sigma=sigma, **kw)

    return _make
