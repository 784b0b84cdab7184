"""Compact stores for many classes: ``store compact`` and ``store import --compact-topk``.

A full row of 1,000 classes costs 2,000 bytes in float16; most certificates
need far less of it. A compact store (``layout = "compact-s0"``, ``topk =
K``, see FORMAT.md) keeps the n0 selection rows of each input whole
(``rows0``), and per row (selection rows included):

- ``argmax``: the hard label of the full-precision row, as a full store does;
- ``topk_p`` (K values, the store's dtype): the K largest stored
  probabilities, descending, bit-identical to the full store's values;
- ``topk_c`` (K uint16): their classes (ties: the lower class first);
- ``entropy`` (float64): ``-sum_c p_c ln p_c`` over the whole stored row,
  summed in class order in float64 from the float32 value of each stored
  entry, ``p <= 0`` contributing 0: the same arithmetic, operation for
  operation, as the certifier's uncertainty and ACES kernels, so it is
  bit-identical to what they compute from the full rows.

From these the confidence ``max p`` and margin ``p_(1) - p_(2)`` are exact
(K >= 2), and so is ``p_c`` for any class c among a row's top K; for a class
outside them, ``0 <= p_c <= topk_p[K-1]`` and ``p_c <= 1 - sum(topk_p)``
(up to rounding) is all that is known. ``certifier/compact.py`` states what
each certificate gets from this.

The layout itself (arrays, writes, reads, checks) is ``layouts.CompactFullS0``
(``layouts.CompactRows`` for compact stores written before format version 3,
which keep no whole selection rows), the kernel ``topk.compact_rows``; an
opened compact store is a ``SampleStore`` like any other. This module converts: a full store into a
compact one (:func:`compact_store`), and an .npz source straight into one
(:func:`import_npz_compact`, ``importer.import_npz`` with ``topk``).
"""
from __future__ import annotations

import numpy as np

from . import format as F
from .api import create_store, open_store
from .errors import StoreError
from .importer import import_npz
from .layouts import ROWS0, CompactFullS0, CompactRows
from .locations import redact
from .publish import publish_store
from .topk import MAX_TOPK, compact_rows  # noqa: F401  (the kernel, for callers of this module)

LAYOUT = CompactFullS0.name    # what compact_store, import --compact-topk and sample --topk write
TOPK_P, TOPK_C, ENTROPY = CompactRows.TOPK_P, CompactRows.TOPK_C, CompactRows.ENTROPY
COMPACT = CompactRows.FIELD    # the read_block field that returns all three
SELECTION = ROWS0              # the read_block field of the whole selection rows


def compact_store(src, out, *, topk: int, storage_options: dict | None = None, progress=None) -> dict:
    """Write a new compact store ``out`` from the full store ``src``; every input verified on the way.

    Hard labels, labels, indices and core predictions are copied; each row's
    top-``topk`` values are the stored values bit for bit, and the n0
    selection rows are kept whole (layout ``compact-s0``). Refuses an
    incomplete source, a source without full rows and an existing ``out``.
    """
    with open_store(src, storage_options=storage_options) as st:
        if not st.layout.has_full_rows:
            raise StoreError(f"store {src} is compact already (top-{st.layout.topk})")
        if not (isinstance(topk, (int, np.integer)) and 2 <= topk <= min(st.num_classes, MAX_TOPK)):
            raise StoreError(f"--topk must be in 2..{min(st.num_classes, MAX_TOPK)} for {st.num_classes} classes, got {topk!r}")
        rec = st.read_records(strict=True)
        if not (rec["complete"] == 1).all():
            s = int(np.flatnonzero(rec["complete"] != 1)[0])
            raise StoreError(f"store {src}: input slot {s} is incomplete; finish sampling before compacting")
        fp = st.fingerprint(rec)
        keep = {k: v for k, v in st.attrs.items() if k not in ("created", "versions", "host", "user", "layout", "topk",
                                                                  "members", "merged_from")}
        keep["compacted_from"] = {"location": redact(src), "fingerprint": fp, "members_dropped": st.members,
                                  "created": st.attrs.get("created"), "host": st.attrs.get("host"),
                                  "user": st.attrs.get("user"), "versions": st.attrs.get("versions")}
        if st.attrs.get("merged_from"):
            keep["merged_from"] = st.attrs["merged_from"]
        kw = dict(n_inputs=st.n_inputs, n0=st.n0, n=st.n, num_classes=st.num_classes, sigma=st.sigma,
                  dtype=st.dtype, core_predict=st.has_core_predict, metadata=keep, layout=CompactFullS0(int(topk)))

        def build(target, so):
            dst = create_store(target, storage_options=so, **kw)
            try:
                for s in range(st.n_inputs):
                    b = st.read_block(s, s + 1, fields=(F.ROWS, F.ARGMAX), verify=True,
                                      check=(F.MEMBERS,) if st.members else ())
                    r = int(b["n_rows"][0])
                    dst.write_input(s, rows=b[F.ROWS][0, :r].astype(st.dtype), argmax=b[F.ARGMAX][0, :r],
                                    label=int(b["label"][0]), idx=int(b["idx"][0]),
                                    core_predict=int(b["core_predict"][0]) if st.has_core_predict else None)
                    if progress is not None:
                        progress(1)
                for name, run in st.runs().items():
                    dst.add_run(name, run)
            finally:
                dst.close()

        publish_store(out, build, storage_options=storage_options,
                      exists=f"store {out} already exists; choose a new path",
                      appeared=f"store {out} appeared while it was being written; not overwriting it")
    return {"inputs": kw["n_inputs"], "topk": int(topk)}


def import_npz_compact(src_path, out, *, sigma: float, n0: int, topk: int, dtype: str | None = None,
                       storage_options: dict | None = None, progress=None) -> dict:
    """``store import --compact-topk K``: a compact store equal to compacting the full import of ``src_path``.

    The source is validated exactly as ``store import`` does; rows are cast
    to ``dtype`` (default: float16 for float16 sources, else float32) before
    compaction, hard labels come from the source's full precision; the
    selection rows are kept whole (layout ``compact-s0``).
    """
    return import_npz(src_path, out, sigma=sigma, n0=n0, dtype=dtype, topk=topk, storage_options=storage_options,
                      progress=progress)
