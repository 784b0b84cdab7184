"""Compact stores for many classes: per row the top-k probabilities, their classes and the exact entropy.

A full row of 1,000 classes costs 2,000 bytes in float16; most certificates
need far less of it. A compact store (``layout = "compact"``, ``topk = K``,
see FORMAT.md) keeps per row:

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

``CompactStore`` reads and writes such stores with the per-input record,
checksums and commit protocol of a full store (``crc_rows`` covers
``topk_p``, ``topk_c`` and ``entropy`` together).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile

import numba as nb
import numpy as np

from . import format as F
from .api import SampleStore, StoreShape, _check_shape, _now, _whoami, software_versions
from .backend import is_url, is_zip, local_path, open_zarr_store
from .checksum import crc_of, scalars_vector
from .errors import StoreError

LAYOUT = "compact"
TOPK_P = "topk_p"      # (N, R, K) store dtype, fill NaN
TOPK_C = "topk_c"      # (N, R, K) uint16, fill 65535
ENTROPY = "entropy"    # (N, R) float64, fill NaN
COMPACT = "compact"    # the read_block field that returns all three
MAX_TOPK = 256


# ----------------------------------------------------------------- kernels
@nb.njit(parallel=True, nogil=True, cache=True)
def _compact_rows(rows, k, top_p, top_c, ent):
    # per row: entropy as the certifier kernels sum it, and the descending top-k (ties: lower class first)
    R, m = rows.shape
    for r in nb.prange(R):
        h = 0.0
        cnt = 0
        for c in range(m):
            v = rows[r, c]
            p = np.float64(v)
            if p > 0.0:
                h -= p * math.log(p)
            # insertion into the descending top-k; a tie keeps the lower class first
            if cnt < k or v > top_p[r, k - 1]:
                j = cnt if cnt < k else k - 1
                while j > 0 and top_p[r, j - 1] < v:
                    if j < k:
                        top_p[r, j] = top_p[r, j - 1]
                        top_c[r, j] = top_c[r, j - 1]
                    j -= 1
                top_p[r, j] = v
                top_c[r, j] = c
                if cnt < k:
                    cnt += 1
        ent[r] = h


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
    _compact_rows(f32, int(k), top_p, top_c, ent)
    return top_p.astype(dt), top_c.astype(np.uint16), ent


# ------------------------------------------------------------------ layout
def _topk_chunk(R: int, k: int, itemsize: int) -> int:
    """Rows per chunk of a (R, k) per-input array, one input per chunk as for full rows."""
    return F.row_chunk(R, k * itemsize)


def create_compact_store(location, *, n_inputs: int, n0: int, n: int, num_classes: int, sigma: float, topk: int,
                         dtype: str = F.DEFAULT_SAMPLER_DTYPE, members: int = 0, core_predict: bool = False,
                         metadata: dict | None = None, storage_options: dict | None = None) -> "CompactStore":
    """Create an empty compact store (top-``topk`` per row) for ``n_inputs`` inputs; refuses an existing one."""
    import zarr

    shape = StoreShape(int(n_inputs), int(n0), int(n), int(num_classes), 0)
    _check_shape(shape, str(location))
    if members:
        raise StoreError(f"{location}: a compact store keeps no per-member rows; compact the ensemble's rows only")
    if dtype not in F.ROW_DTYPES:
        raise StoreError(f"{location}: dtype must be one of {F.ROW_DTYPES}, got {dtype!r}")
    if not (isinstance(topk, (int, np.integer)) and 2 <= topk <= min(num_classes, MAX_TOPK)):
        raise StoreError(f"{location}: --topk must be in 2..{min(num_classes, MAX_TOPK)} for {num_classes} classes, got {topk!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise StoreError(f"{location}: sigma must be a positive number, got {sigma!r}")
    zstore = open_zarr_store(location, mode="w", storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="w-")
    except Exception as e:
        raise StoreError(f"cannot create store {location}: it already exists or is not writable ({type(e).__name__}: {e})") from e
    attrs = {
        "format": F.FORMAT_NAME, "format_version": F.FORMAT_VERSION,
        "n_inputs": shape.n_inputs, "n0": shape.n0, "n": shape.n, "num_classes": shape.num_classes,
        "sigma": float(sigma), "dtype": dtype, "members": 0, "core_predict": bool(core_predict),
        "layout": LAYOUT, "topk": int(topk),
        "created": _now(), "versions": software_versions(), "host": __import__("platform").node(), "user": _whoami(),
    }
    for key, v in (metadata or {}).items():
        attrs.setdefault(key, v)
    N, R, k = shape.n_inputs, shape.total_rows, int(topk)
    comp = F.compressors()

    def arr(name, shp, dt, chunks, fill, dims):
        root.create_array(name, shape=shp, dtype=dt, chunks=chunks, fill_value=fill, compressors=comp,
                          dimension_names=dims)

    itemsize = np.dtype(dtype).itemsize
    arr(TOPK_P, (N, R, k), dtype, (1, _topk_chunk(R, k, itemsize), k), np.nan, ("input", "row", "rank"))
    arr(TOPK_C, (N, R, k), "uint16", (1, _topk_chunk(R, k, 2), k), F.ARGMAX_FILL, ("input", "row", "rank"))
    arr(ENTROPY, (N, R), "float64", (1, F.row_chunk(R, 8)), np.nan, ("input", "row"))
    arr(F.ARGMAX, (N, R), "uint16", (1, F.row_chunk(R, 2)), F.ARGMAX_FILL, ("input", "row"))
    arr(F.INPUTS, (N, len(F.INPUT_FIELDS)), "int64", (1, len(F.INPUT_FIELDS)), -1, ("input", "field"))
    root[F.INPUTS].attrs["fields"] = list(F.INPUT_FIELDS)
    root.attrs[F.ATTRS_KEY] = F.sealed(attrs)
    return CompactStore(root, str(location), zstore, writable=True)


class CompactStore(SampleStore):
    """An opened compact store: the SampleStore API with ``compact`` parts in place of ``rows``."""

    @property
    def topk(self) -> int:
        return int(self.attrs["topk"])

    def _validated_attrs(self) -> dict:
        """The full store's checks plus a valid ``topk`` and no members; StoreError otherwise."""
        a = super()._validated_attrs()
        k = a.get("topk")
        if not isinstance(k, int) or isinstance(k, bool) or not (2 <= k <= min(a["num_classes"], MAX_TOPK)):
            raise StoreError(f"store {self.location}: metadata topk must be an integer in 2..{min(a['num_classes'], MAX_TOPK)}, got {k!r}")
        if a.get("members"):
            raise StoreError(f"store {self.location}: a compact store cannot hold ensemble members")
        return a

    def _expected_shape(self, name):
        """The shape metadata implies for array ``name`` (None for arrays it does not describe)."""
        N, R, k = self.n_inputs, self.shape.total_rows, self.topk
        return {TOPK_P: (N, R, k), TOPK_C: (N, R, k), ENTROPY: (N, R), F.ARGMAX: (N, R),
                F.INPUTS: (N, len(F.INPUT_FIELDS))}.get(name)

    def _refuse_rows(self, what: str):
        """Raise the StoreError saying that a compact store holds no ``what``."""
        raise StoreError(f"store {self.location} is compact (top-{self.topk} per row): it holds no {what}; "
                         f"use the full store for this")

    # ------------------------------------------------------------------ writing
    def write_input(self, i: int, *, label: int, idx: int, topk_p=None, topk_c=None, entropy=None, rows=None,
                    argmax=None, core_predict: int | None = None, n_rows: int | None = None,
                    member_logprobs=None) -> None:
        """Write input slot ``i`` (from full ``rows``, or from its compact parts), then mark it complete.

        ``rows`` (r, m) are cast to the store's dtype first and compacted, so
        the stored values equal a full store's of that dtype; ``argmax`` as
        for a full store (the full-precision rows' hard labels).
        """
        if not self.writable:
            raise StoreError(f"store {self.location} is open read-only")
        if member_logprobs is not None:
            raise StoreError(f"store {self.location}: a compact store keeps no member rows")
        N, R, m, k = self.n_inputs, self.shape.total_rows, self.num_classes, self.topk
        if not (0 <= i < N):
            raise StoreError(f"store {self.location}: input slot {i} outside 0..{N - 1}")
        if rows is not None:
            rows = np.asarray(rows)
            if rows.ndim != 2 or rows.shape[1] != m:
                raise StoreError(f"store {self.location}: input {idx}: rows must have shape (r, {m}), got {rows.shape}")
            if argmax is None:
                argmax = np.argmax(rows, axis=1)
            topk_p, topk_c, entropy = compact_rows(rows.astype(self.dtype), k)
        topk_p, topk_c, entropy = np.asarray(topk_p), np.asarray(topk_c), np.asarray(entropy)
        r = topk_p.shape[0] if topk_p.ndim == 2 else -1
        if topk_p.shape != (r, k) or topk_c.shape != (r, k) or entropy.shape != (r,) or not (self.n0 < r <= R):
            raise StoreError(f"store {self.location}: input {idx}: top-k parts must have shapes ({R}, {k}), ({R}, {k}), "
                             f"({R},), got {topk_p.shape}, {topk_c.shape}, {entropy.shape}")
        if n_rows is not None and n_rows != r:
            raise StoreError(f"store {self.location}: input {idx}: n_rows={n_rows} but {r} rows given")
        if (np.asarray(topk_c) >= m).any():
            raise StoreError(f"store {self.location}: input {idx}: top-k classes outside 0..{m - 1}")
        argmax = np.asarray(argmax)
        if argmax.shape != (r,):
            raise StoreError(f"store {self.location}: input {idx}: argmax must have shape ({r},), got {argmax.shape}")
        cp = -1 if core_predict is None else int(core_predict)
        if self.has_core_predict and core_predict is None:
            raise StoreError(f"store {self.location}: input {idx}: the store expects core_predict")
        sp = np.full((R, k), np.nan, dtype=self.dtype)
        sp[:r] = topk_p
        sc = np.full((R, k), F.ARGMAX_FILL, dtype=np.uint16)
        sc[:r] = topk_c
        se = np.full((R,), np.nan, dtype=np.float64)
        se[:r] = entropy
        sa = np.full((R,), F.ARGMAX_FILL, dtype=np.uint16)
        sa[:r] = argmax
        scal = scalars_vector(int(label), int(idx), int(r), cp)
        record = np.array([int(idx), int(label), int(r), cp, crc_of(sp, sc, se), crc_of(sa, scal), 0, 1], dtype=np.int64)
        pending = record.copy()
        pending[F.COL["complete"]] = 0
        self.array(F.INPUTS)[i] = pending
        self.array(TOPK_P)[i] = sp
        self.array(TOPK_C)[i] = sc
        self.array(ENTROPY)[i] = se
        self.array(F.ARGMAX)[i] = sa
        self.array(F.INPUTS)[i] = record

    # ------------------------------------------------------------------ reading
    def read_block(self, start: int, stop: int, fields=(F.ARGMAX,), verify: bool = True,
                   only_complete: bool = False, check=(), records: dict | None = None) -> dict:
        """Read input slots ``start:stop`` like ``SampleStore.read_block``, with field ``compact``.

        ``compact`` returns ``topk_p`` (float32), ``topk_c`` (uint16) and
        ``entropy`` (float64); ``rows`` and ``member_logprobs`` are refused
        (StoreError). Checksums are verified as for a full store.
        """
        start, stop = int(start), int(stop)
        wanted = tuple(fields) + tuple(c for c in check if c not in fields)
        for f in wanted:
            if f in (F.ROWS, F.MEMBERS):
                self._refuse_rows("full softmax rows" if f == F.ROWS else "ensemble member rows")
            if f not in (F.ARGMAX, COMPACT):
                raise ValueError(f"unknown field {f!r}")
        rec, keep = self._block_records(start, stop, records, only_complete)
        idx, label, n_rows, cp = rec["idx"], rec["label"], rec["n_rows"], rec["core_predict"]
        raw = {}
        if COMPACT in wanted:
            for name in (TOPK_P, TOPK_C, ENTROPY):
                raw[name] = self._read(name, start, stop, idx)
        if F.ARGMAX in wanted or verify:  # the argmax checksum also covers label, idx, n_rows, core_predict
            raw[F.ARGMAX] = self._read(F.ARGMAX, start, stop, idx)
        if verify:
            for j in np.flatnonzero(keep):
                if COMPACT in wanted and crc_of(raw[TOPK_P][j], raw[TOPK_C][j], raw[ENTROPY][j]) != int(rec["crc_rows"][j]):
                    raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                     f"its top-k values, classes or entropies do not match their checksum")
                if crc_of(raw[F.ARGMAX][j], scalars_vector(label[j], idx[j], n_rows[j], cp[j])) != int(rec["crc_argmax"][j]):
                    raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                     f"label/index/argmax do not match their checksum")
        sel = np.flatnonzero(keep)
        out = {"slot": np.arange(start, stop)[sel], "label": label[sel], "idx": idx[sel], "n_rows": n_rows[sel],
               "core_predict": cp[sel]}
        if F.ARGMAX in fields:
            out[F.ARGMAX] = raw[F.ARGMAX][sel].astype(np.int64)
        if COMPACT in fields:
            out[TOPK_P] = raw[TOPK_P][sel].astype(np.float32, copy=False)
            out[TOPK_C] = raw[TOPK_C][sel]
            out[ENTROPY] = raw[ENTROPY][sel]
        return out

    def verify(self, progress=None) -> list[tuple[int, int, str]]:
        """Check every slot: complete marker, checksums, values. Returns (slot, idx, problem) per bad input."""
        problems = []
        seen = {}
        m = self.num_classes
        for s in range(self.n_inputs):
            try:
                b = self.read_block(s, s + 1, fields=(F.ARGMAX, COMPACT), verify=True)
            except StoreError as e:
                problems.append((s, -1, str(e).split(": ", 1)[-1]))
            except Exception as e:
                problems.append((s, -1, f"input slot {s} is damaged: {type(e).__name__}: {e}"))
            else:
                i = int(b["idx"][0])
                if i in seen:
                    problems.append((s, i, f"input {i} duplicates the dataset index of slot {seen[i]}"))
                seen.setdefault(i, s)
                r = int(b["n_rows"][0])
                if not (np.isfinite(b[TOPK_P][0, :r]).all() and np.isfinite(b[ENTROPY][0, :r]).all()):
                    problems.append((s, i, f"input {i} has non-finite top-k values or entropies"))
                if (b[TOPK_C][0, :r] >= m).any() or (b[F.ARGMAX][0, :r] >= m).any():
                    problems.append((s, i, f"input {i} has classes outside 0..{m - 1}"))
            if progress is not None:
                progress(1)
        return problems


# ---------------------------------------------------------------- building
def _build(out, make, storage_options, fill):
    """Create the store at ``out`` with ``make(target)``, fill it, and move it into place (local targets atomically)."""
    out = str(out)
    if is_url(out):
        import fsspec

        fs, path = fsspec.core.url_to_fs(out, **(storage_options or {}))
        if fs.exists(path.rstrip("/") + "/zarr.json"):
            raise StoreError(f"store {out} already exists; choose a new path")
        st = make(out, storage_options)
        try:
            fill(st)
        finally:
            st.close()
        return
    dest = local_path(out)
    if dest.exists():
        raise StoreError(f"store {out} already exists; choose a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent)
    target = os.path.join(tmpdir, "store")
    try:
        st = make(target, None)
        try:
            fill(st)
        finally:
            st.close()
        if dest.exists():
            raise StoreError(f"store {out} appeared while it was being written; not overwriting it")
        if is_zip(out):
            from .share import export_zip

            export_zip(target, dest)
        else:
            os.replace(target, dest)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def compact_store(src, out, *, topk: int, storage_options: dict | None = None, progress=None) -> dict:
    """Write a new compact store ``out`` from the full store ``src``; every input verified on the way.

    Hard labels, labels, indices and core predictions are copied; each row's
    top-``topk`` values are the stored values bit for bit. Refuses an
    incomplete source, a compact source and an existing ``out``.
    """
    from .api import open_store

    with open_store(src, storage_options=storage_options) as st:
        if st.attrs.get("layout") == LAYOUT:
            raise StoreError(f"store {src} is compact already (top-{st.attrs.get('topk')})")
        if not (isinstance(topk, (int, np.integer)) and 2 <= topk <= min(st.num_classes, MAX_TOPK)):
            raise StoreError(f"--topk must be in 2..{min(st.num_classes, MAX_TOPK)} for {st.num_classes} classes, got {topk!r}")
        rec = st.read_records(strict=True)
        if not (rec["complete"] == 1).all():
            s = int(np.flatnonzero(rec["complete"] != 1)[0])
            raise StoreError(f"store {src}: input slot {s} is incomplete; finish sampling before compacting")
        fp = st.fingerprint(rec)
        keep = {k: v for k, v in st.attrs.items() if k not in ("created", "versions", "host", "user", "layout", "topk",
                                                                  "members", "merged_from")}
        keep["compacted_from"] = {"location": _redact(src), "fingerprint": fp, "members_dropped": st.members,
                                  "created": st.attrs.get("created"), "host": st.attrs.get("host"),
                                  "user": st.attrs.get("user"), "versions": st.attrs.get("versions")}
        if st.attrs.get("merged_from"):
            keep["merged_from"] = st.attrs["merged_from"]
        kw = dict(n_inputs=st.n_inputs, n0=st.n0, n=st.n, num_classes=st.num_classes, sigma=st.sigma,
                  dtype=st.dtype, core_predict=st.has_core_predict, topk=int(topk), metadata=keep)

        def make(target, so):
            return create_compact_store(target, storage_options=so, **kw)

        def fill(dst):
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

        _build(out, make, storage_options, fill)
    return {"inputs": kw["n_inputs"], "topk": int(topk)}


def import_npz_compact(src_path, out, *, sigma: float, n0: int, topk: int, dtype: str | None = None,
                       storage_options: dict | None = None, progress=None) -> dict:
    """``store import --compact-topk K``: a compact store equal to compacting the full import of ``src_path``.

    The source is validated exactly as ``store import`` does; rows are cast
    to ``dtype`` (default: float16 for float16 sources, else float32) before
    compaction, hard labels come from the source's full precision.
    """
    from .importer import _source_fingerprint, load_npz, validate_source

    if not (isinstance(sigma, (int, float)) and np.isfinite(sigma) and sigma > 0):
        raise StoreError(f"--sigma must be a positive number, got {sigma!r}")
    raw = load_npz(src_path)
    srcd = validate_source(raw, n0, name=f"source {src_path}")
    probs = srcd["probs"]
    N, R, m = probs.shape
    if "member_logprobs" in srcd:
        raise StoreError(f"source {src_path}: a compact store keeps no member rows; drop member_logprobs/member_probs")
    if dtype is None:
        dtype = "float16" if probs.dtype == np.float16 else "float32"
    if dtype not in F.ROW_DTYPES:
        raise StoreError(f"--dtype must be one of {F.ROW_DTYPES}, got {dtype!r}")
    if not (isinstance(topk, (int, np.integer)) and 2 <= topk <= min(m, MAX_TOPK)):
        raise StoreError(f"--compact-topk must be in 2..{min(m, MAX_TOPK)} for {m} classes, got {topk!r}")
    from pathlib import Path

    meta = {"source": "import", "source_file": Path(str(src_path)).name, "data_fingerprint": _source_fingerprint(raw),
            "model_fingerprint": None, "seed": None, "device": None}
    has_cp = "core_predict" in srcd

    def make(target, so):
        return create_compact_store(target, n_inputs=N, n0=n0, n=R - n0, num_classes=m, sigma=float(sigma),
                                    dtype=dtype, core_predict=has_cp, topk=int(topk), metadata=meta,
                                    storage_options=so)

    def fill(dst):
        for i in range(N):
            dst.write_input(i, rows=probs[i].astype(dtype), argmax=np.argmax(probs[i], axis=1),
                            label=int(srcd["labels"][i]), idx=int(srcd["idx"][i]),
                            core_predict=int(srcd["core_predict"][i]) if has_cp else None)
            if progress is not None:
                progress(1)

    _build(out, make, storage_options, fill)
    return {"inputs": N, "topk": int(topk)}


def _redact(location) -> str:
    """``location`` without any user:password@ of a URL."""
    import re

    return re.sub(r"(://)[^/@]+@", r"\1", str(location))
