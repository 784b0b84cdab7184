"""The sample store API that the sampler writes and the certifier reads.

A store is a zarr v3 group (see ``FORMAT.md``). ``create_store`` lays out the
arrays for a fixed number of inputs; ``SampleStore.write_input`` writes one
input (rows, hard labels, scalars, checksum, and the ``complete`` marker
last); ``SampleStore.read_block`` reads a contiguous block of inputs and
refuses, by dataset index, any input that is incomplete or whose bytes do not
match the checksum written with them.
"""
from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass

import numpy as np

from . import format as F
from .backend import open_zarr_store
from .checksum import crc_of, scalars_vector
from .errors import StoreError
from .float16 import to_float16


def software_versions() -> dict:
    """Versions of the packages that shape a store's bytes or its certificates."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("smoothcert", "zarr", "numcodecs", "numpy", "scipy", "numba", "dask", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _whoami():
    """The login name of the writing process's user, or None when the system cannot tell."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoreShape:
    n_inputs: int
    n0: int
    n: int
    num_classes: int
    members: int = 0

    @property
    def total_rows(self) -> int:
        return self.n0 + self.n


def _check_shape(shape: StoreShape, where: str) -> None:
    for name in ("n_inputs", "n0", "n", "num_classes", "members"):
        v = getattr(shape, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise StoreError(f"{where}: {name} must be an integer, got {type(v).__name__}")
    if shape.n_inputs < 1 or shape.n_inputs > F.MAX_INPUTS:
        raise StoreError(f"{where}: n_inputs must be in 1..{F.MAX_INPUTS}, got {shape.n_inputs}")
    if shape.n0 < 1:
        raise StoreError(f"{where}: n0 must be at least 1, got {shape.n0}")
    if shape.n < 1:
        raise StoreError(f"{where}: n must be at least 1, got {shape.n}")
    if shape.total_rows > F.MAX_ROWS_PER_INPUT:
        raise StoreError(f"{where}: n0 + n = {shape.total_rows} exceeds {F.MAX_ROWS_PER_INPUT}")
    if shape.num_classes < 2 or shape.num_classes > F.MAX_CLASSES:
        raise StoreError(f"{where}: num_classes must be in 2..{F.MAX_CLASSES}, got {shape.num_classes}")
    if shape.members < 0 or shape.members > 1024:
        raise StoreError(f"{where}: members must be in 0..1024, got {shape.members}")


def _check_input_bytes(nbytes: int, what: str, where: str) -> None:
    """Refuse a layout whose one input decodes to more than F.MAX_INPUT_BYTES (before anything is allocated)."""
    if nbytes > F.MAX_INPUT_BYTES:
        raise StoreError(f"{where}: one input ({what}) decodes to {nbytes / 2**30:.1f} GiB, more than the "
                         f"{F.MAX_INPUT_BYTES / 2**30:g} GiB a reader holds per input")


def create_store(
    location,
    *,
    n_inputs: int,
    n0: int,
    n: int,
    num_classes: int,
    sigma: float,
    dtype: str = F.DEFAULT_SAMPLER_DTYPE,
    members: int = 0,
    core_predict: bool = False,
    metadata: dict | None = None,
    storage_options: dict | None = None,
) -> "SampleStore":
    """Create an empty store for ``n_inputs`` inputs of ``n0 + n`` rows of ``num_classes``.

    ``metadata`` (seed, fingerprints, device, source, ...) is recorded in the
    group attributes next to the shape, sigma, dtype, format version, software
    versions and creation time. Refuses to overwrite an existing store.
    """
    import zarr

    shape = StoreShape(int(n_inputs), int(n0), int(n), int(num_classes), int(members))
    _check_shape(shape, str(location))
    R, m, k = shape.total_rows, shape.num_classes, shape.members
    _check_input_bytes(R * (m * 4 + 8 + k * m * 4), f"{R} rows x {m} classes" + (f" x {k} members" if k else ""),
                       str(location))
    if dtype not in F.ROW_DTYPES:
        raise StoreError(f"{location}: dtype must be one of {F.ROW_DTYPES}, got {dtype!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise StoreError(f"{location}: sigma must be a positive number, got {sigma!r}")
    zstore = open_zarr_store(location, mode="w", storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="w-")
    except Exception as e:
        raise StoreError(f"cannot create store {location}: it already exists or is not writable ({type(e).__name__}: {e})") from e
    attrs = {
        "format": F.FORMAT_NAME,
        "format_version": F.FORMAT_VERSION,
        "n_inputs": shape.n_inputs,
        "n0": shape.n0,
        "n": shape.n,
        "num_classes": shape.num_classes,
        "sigma": float(sigma),
        "dtype": dtype,
        "members": shape.members,
        "core_predict": bool(core_predict),
        "created": _now(),
        "versions": software_versions(),
        "host": platform.node(),
        "user": _whoami(),
    }
    for k, v in (metadata or {}).items():
        attrs.setdefault(k, v)
    N, R, m = shape.n_inputs, shape.total_rows, shape.num_classes
    itemsize = np.dtype(dtype).itemsize
    rc = F.row_chunk(R, m * itemsize)
    comp = F.compressors()

    def arr(name, shp, dt, chunks, fill, dims):
        root.create_array(name, shape=shp, dtype=dt, chunks=chunks, fill_value=fill,
                          compressors=comp, dimension_names=dims)

    arr(F.ROWS, (N, R, m), dtype, (1, rc, m), np.nan, ("input", "row", "class"))
    arr(F.ARGMAX, (N, R), "uint16", (1, F.row_chunk(R, 2)), F.ARGMAX_FILL, ("input", "row"))
    if shape.members:
        k = shape.members
        arr(F.MEMBERS, (N, R, k, m), "float32", (1, F.row_chunk(R, 4 * k * m), k, m), np.nan,
            ("input", "row", "member", "class"))
    arr(F.INPUTS, (N, len(F.INPUT_FIELDS)), "int64", (1, len(F.INPUT_FIELDS)), -1, ("input", "field"))
    root[F.INPUTS].attrs["fields"] = list(F.INPUT_FIELDS)
    root.attrs[F.ATTRS_KEY] = F.sealed(attrs)
    return SampleStore(root, str(location), zstore, writable=True)


def open_store(location, mode: str = "r", storage_options: dict | None = None) -> "SampleStore":
    """Open an existing store for reading (``mode='r'``) or for writing inputs (``'a'``)."""
    import zarr

    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
    zstore = open_zarr_store(location, mode=mode, storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="r" if mode == "r" else "r+")
    except Exception as e:
        raise StoreError(f"store {location} is not a zarr group ({type(e).__name__}: {e})") from e
    cls = SampleStore
    if isinstance(root.attrs.get(F.ATTRS_KEY), dict) and root.attrs[F.ATTRS_KEY].get("layout") == "compact":
        from .compact import CompactStore as cls  # top-k rows plus per-row statistics (compact.py)
    return cls(root, str(location), zstore, writable=(mode == "a"))


class SampleStore:
    """One opened sample store: shape and metadata, per-input writes, block reads."""

    def __init__(self, root, location: str, zstore, writable: bool):
        self.root = root
        self.location = location
        self._zstore = zstore
        self.writable = writable
        self.attrs = self._validated_attrs()
        a = self.attrs
        self.shape = StoreShape(a["n_inputs"], a["n0"], a["n"], a["num_classes"], a.get("members", 0))
        self._arrays = {}
        self._direct = {}
        self._check_layout_size()

    def _check_layout_size(self) -> None:
        """Refuse metadata whose one input would decode to more than F.MAX_INPUT_BYTES, before any read."""
        total, parts = 0, []
        for name, itemsize in ((F.ROWS, 4), (F.ARGMAX, 8), (F.MEMBERS, 4)):
            shp = self._expected_shape(name)
            if shp is None or (name == F.MEMBERS and not self.members):
                continue
            total += int(np.prod(shp[1:], dtype=object)) * itemsize
            parts.append(f"{name} {'x'.join(map(str, shp[1:]))}")
        _check_input_bytes(total, ", ".join(parts), f"store {self.location}")

    # ----------------------------------------------------------------- metadata
    def _validated_attrs(self) -> dict:
        try:
            a = dict(self.root.attrs.get(F.ATTRS_KEY) or {})
        except Exception as e:
            raise StoreError(f"store {self.location}: unreadable group metadata ({e})") from e
        if a.get("format") != F.FORMAT_NAME:
            raise StoreError(f"store {self.location} is not a smoothcert store (no '{F.ATTRS_KEY}.format' = {F.FORMAT_NAME!r} in its attributes)")
        v = a.get("format_version")
        if v not in F.READABLE_VERSIONS or isinstance(v, bool):
            raise StoreError(f"store {self.location} has format version {v!r}; this smoothcert reads versions "
                             f"{', '.join(map(str, F.READABLE_VERSIONS))}")
        crc = a.get(F.META_CRC_KEY)
        if crc is None and v >= 2:
            raise StoreError(f"store {self.location}: metadata checksum '{F.META_CRC_KEY}' is missing (required "
                             f"from format version 2): the group metadata was damaged or written by hand")
        if crc is not None and crc != F.metadata_crc(a):
            raise StoreError(f"store {self.location}: metadata checksum mismatch: the group metadata (zarr.json "
                             f"attributes) changed after it was written, so sigma, n0, n cannot be trusted")
        self.metadata_sealed = a.pop(F.META_CRC_KEY, None) is not None
        for key in ("n_inputs", "n0", "n", "num_classes"):
            if not isinstance(a.get(key), int) or isinstance(a.get(key), bool):
                raise StoreError(f"store {self.location}: metadata {key} must be an integer, got {a.get(key)!r}")
        a.setdefault("members", 0)
        _check_shape(StoreShape(a["n_inputs"], a["n0"], a["n"], a["num_classes"], a["members"]), f"store {self.location}")
        s = a.get("sigma")
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not (np.isfinite(s) and s > 0):
            raise StoreError(f"store {self.location}: metadata sigma must be a positive number, got {s!r}")
        if a.get("dtype") not in F.ROW_DTYPES:
            raise StoreError(f"store {self.location}: metadata dtype must be one of {F.ROW_DTYPES}, got {a.get('dtype')!r}")
        return a

    @property
    def n_inputs(self) -> int:
        return self.shape.n_inputs

    @property
    def n0(self) -> int:
        return self.shape.n0

    @property
    def n(self) -> int:
        return self.shape.n

    @property
    def num_classes(self) -> int:
        return self.shape.num_classes

    @property
    def members(self) -> int:
        return self.shape.members

    @property
    def sigma(self) -> float:
        return float(self.attrs["sigma"])

    @property
    def dtype(self) -> str:
        return self.attrs["dtype"]

    @property
    def has_core_predict(self) -> bool:
        return bool(self.attrs.get("core_predict"))

    def array(self, name: str):
        if name not in self._arrays:
            try:
                a = self.root[name]
            except KeyError:
                raise StoreError(f"store {self.location}: array '{name}' is missing") from None
            expect = self._expected_shape(name)
            if expect is not None and tuple(a.shape) != expect:
                raise StoreError(f"store {self.location}: array '{name}' has shape {tuple(a.shape)}, metadata says {expect}")
            self._arrays[name] = a
        return self._arrays[name]

    def _direct_reader(self, name: str):
        """The same-thread chunk reader of array ``name`` (``store.direct``), or None where zarr must read."""
        from . import direct

        if not direct.ENABLED:
            return None
        if name not in self._direct:
            self._direct[name] = direct.reader(self.array(name))
        return self._direct[name]

    def _expected_shape(self, name):
        N, R, m, k = self.n_inputs, self.shape.total_rows, self.num_classes, self.members
        return {F.ROWS: (N, R, m), F.ARGMAX: (N, R), F.MEMBERS: (N, R, k, m),
                F.INPUTS: (N, len(F.INPUT_FIELDS))}.get(name)

    def set_attrs(self, **updates) -> None:
        """Update the group metadata (single writer only: the importer or a finished run)."""
        a = dict(self.root.attrs.get(F.ATTRS_KEY) or {})
        a.update(updates)
        self.root.attrs[F.ATTRS_KEY] = F.sealed(a)
        self.attrs = self._validated_attrs()

    def add_run(self, run_id: str, record: dict) -> None:
        """Record one writer's provenance (shard, device, throughput) as its own group.

        Each run is a separate ``runs/<run_id>`` group, so concurrent shard
        processes never rewrite each other's metadata.
        """
        import zarr

        runs = self.root.require_group("runs")
        g = runs.require_group(run_id)
        g.attrs.update(record)
        del zarr  # imported only to make the dependency explicit

    def runs(self) -> dict:
        try:
            runs = self.root["runs"]
        except KeyError:
            return {}
        return {name: dict(g.attrs) for name, g in runs.groups()}

    # ------------------------------------------------------------------ writing
    def write_input(self, i: int, *, rows, label: int, idx: int, argmax=None,
                    member_logprobs=None, core_predict: int | None = None, n_rows: int | None = None) -> None:
        """Write input slot ``i`` completely, then mark it complete.

        ``rows``: (r, m) softmax rows, r = n0 + n (or fewer for an adaptive
        input, given as ``n_rows``); ``argmax``: (r,) hard labels of the
        full-precision rows (computed from ``rows`` when omitted). Rows are
        cast to the store's dtype; the checksum covers the stored bytes. A
        crash before the marker leaves the input incomplete, never wrong.
        """
        if not self.writable:
            raise StoreError(f"store {self.location} is open read-only")
        N, R, m = self.n_inputs, self.shape.total_rows, self.num_classes
        if not (0 <= i < N):
            raise StoreError(f"store {self.location}: input slot {i} outside 0..{N - 1}")
        rows = np.asarray(rows)
        r = rows.shape[0] if rows.ndim == 2 else -1
        if rows.ndim != 2 or rows.shape[1] != m or not (self.n0 < r <= R):
            raise StoreError(f"store {self.location}: input {idx}: rows must have shape ({R}, {m}), got {rows.shape}")
        if n_rows is None:
            n_rows = r
        if n_rows != r:
            raise StoreError(f"store {self.location}: input {idx}: n_rows={n_rows} but {r} rows given")
        if argmax is None:
            argmax = np.argmax(rows, axis=1)
        argmax = np.asarray(argmax)
        if argmax.shape != (r,):
            raise StoreError(f"store {self.location}: input {idx}: argmax must have shape ({r},), got {argmax.shape}")
        stored_rows = np.full((R, m), np.nan, dtype=self.dtype)
        if stored_rows.dtype == np.float16 and rows.dtype == np.float32:
            to_float16(rows, out=stored_rows[:r])    # numpy's astype, bit for bit, without its slow subnormal path
        else:
            stored_rows[:r] = rows
        stored_arg = np.full((R,), F.ARGMAX_FILL, dtype=np.uint16)
        stored_arg[:r] = argmax
        cp = -1 if core_predict is None else int(core_predict)
        if self.has_core_predict and core_predict is None:
            raise StoreError(f"store {self.location}: input {idx}: the store expects core_predict")
        stored_mem = None
        if self.members:
            if member_logprobs is None:
                raise StoreError(f"store {self.location}: input {idx}: the store expects member_logprobs")
            member_logprobs = np.asarray(member_logprobs)
            if member_logprobs.shape != (r, self.members, m):
                raise StoreError(f"store {self.location}: input {idx}: member_logprobs must have shape ({r}, {self.members}, {m}), got {member_logprobs.shape}")
            stored_mem = np.full((R, self.members, m), np.nan, dtype=np.float32)
            stored_mem[:r] = member_logprobs
        scal = scalars_vector(int(label), int(idx), int(n_rows), cp)
        record = np.array([int(idx), int(label), int(n_rows), cp, crc_of(stored_rows), crc_of(stored_arg, scal),
                           crc_of(stored_mem), 1], dtype=np.int64)
        pending = record.copy()
        pending[F.COL["complete"]] = 0
        self.array(F.INPUTS)[i] = pending   # a rewrite invalidates the old record first
        self.array(F.ROWS)[i] = stored_rows
        self.array(F.ARGMAX)[i] = stored_arg
        if stored_mem is not None:
            self.array(F.MEMBERS)[i] = stored_mem
        self.array(F.INPUTS)[i] = record    # the commit: one chunk, written last

    # ------------------------------------------------------------------ reading
    def read_records(self, start: int = 0, stop: int | None = None, strict: bool = False) -> dict:
        """The per-input records of slots start:stop as a dict of (stop - start,) int64 columns.

        A record chunk that cannot be decoded (a write cut short, or damage)
        reads as incomplete (all -1), or raises StoreError naming the slot
        when ``strict``.
        """
        stop = self.n_inputs if stop is None else int(stop)
        start = int(start)
        arr = self.array(F.INPUTS)
        try:
            rec = np.asarray(arr[start:stop])
        except Exception:
            rec = np.full((stop - start, len(F.INPUT_FIELDS)), -1, np.int64)
            for s in range(start, stop):
                try:
                    rec[s - start] = arr[s]
                except Exception as e:
                    if strict:
                        raise StoreError(f"store {self.location}: input slot {s} is damaged: its record cannot be "
                                         f"decoded ({type(e).__name__}: {str(e)[:120]})") from e
        return {name: rec[:, j] for j, name in enumerate(F.INPUT_FIELDS)}

    def complete_mask(self) -> np.ndarray:
        """Boolean (N,): which input slots carry the complete marker."""
        return self.read_records()["complete"] == 1

    def indices(self) -> np.ndarray:
        """(N,) dataset index per slot (-1 where never written)."""
        return self.read_records()["idx"]

    def read_block(self, start: int, stop: int, fields=(F.ARGMAX,), verify: bool = True,
                   only_complete: bool = False, check=(), records: dict | None = None) -> dict:
        """Read input slots ``start:stop``.

        Always returns ``label``, ``idx``, ``n_rows``, ``slot`` (and
        ``core_predict`` when stored); plus the requested ``fields`` among
        ``argmax`` (int64), ``rows`` (float32) and ``member_logprobs``.
        With ``verify`` every input's checksum is recomputed over the bytes
        read and a missing or damaged input raises StoreError naming its
        dataset index. ``only_complete`` drops incomplete slots instead of
        refusing them (for resume logic, never for certificates). ``check``
        names parts that are read and verified but not returned; ``records``
        passes the slots' records when the caller has read them already.
        """
        start, stop = int(start), int(stop)
        out = {"slot": np.arange(start, stop)}
        rec, keep = self._block_records(start, stop, records, only_complete)
        idx, label, n_rows, cp = rec["idx"], rec["label"], rec["n_rows"], rec["core_predict"]
        crc = np.stack([rec["crc_rows"], rec["crc_argmax"], rec["crc_members"]], axis=1) if verify else None
        raw = {}
        for f in tuple(fields) + tuple(c for c in check if c not in fields):
            if f not in (F.ROWS, F.ARGMAX, F.MEMBERS):
                raise ValueError(f"unknown field {f!r}")
            if f == F.MEMBERS and not self.members:
                raise StoreError(f"store {self.location} holds no ensemble members")
            raw[f] = self._read(f, start, stop, idx)
        if verify:
            part = {F.ROWS: 0, F.ARGMAX: 1, F.MEMBERS: 2}
            for j in np.flatnonzero(keep):
                for f, a in raw.items():
                    extra = (scalars_vector(label[j], idx[j], n_rows[j], cp[j]),) if f == F.ARGMAX else ()
                    if crc_of(a[j], *extra) != int(crc[j, part[f]]):
                        raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                         f"'{f}' does not match its checksum")
                if F.ARGMAX not in raw:
                    # the scalars are covered by the argmax checksum: read it when not already read
                    a = self._read(F.ARGMAX, start + j, start + j + 1, idx[j:j + 1])[0]
                    if crc_of(a, scalars_vector(label[j], idx[j], n_rows[j], cp[j])) != int(crc[j, 1]):
                        raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                         f"label/index/argmax do not match their checksum")
        sel = np.flatnonzero(keep)
        out = {"slot": out["slot"][sel], "label": label[sel], "idx": idx[sel], "n_rows": n_rows[sel], "core_predict": cp[sel]}
        for f, a in raw.items():
            if f not in fields:
                continue
            a = a[sel]
            if f == F.ARGMAX:
                a = a.astype(np.int64)
            elif f == F.ROWS:
                a = a.astype(np.float32, copy=False)
            out[f] = a
        return out

    def _block_records(self, start: int, stop: int, records, only_complete: bool):
        """(records, keep) of slots start:stop: ``core_predict`` -1 when not stored; an incomplete slot raises
        StoreError naming its input, or is dropped from ``keep`` with ``only_complete``."""
        rec = dict(records if records is not None else self.read_records(start, stop, strict=not only_complete))
        if not self.has_core_predict:
            rec["core_predict"] = np.full(stop - start, -1, np.int64)
        complete = rec["complete"] == 1
        if not complete.all() and not only_complete:
            bad = int(np.flatnonzero(~complete)[0])
            idx = rec["idx"]
            who = f"input {int(idx[bad])}" if idx[bad] >= 0 else f"input slot {start + bad}"
            raise StoreError(f"store {self.location}: {who} is incomplete or missing (no complete marker); "
                             f"resume the sampler or run 'smoothcert store verify'")
        return rec, complete

    def _read(self, name: str, start: int, stop: int, idx) -> np.ndarray:
        """Read slots start:stop of one array; a chunk that fails to decode is named by its input.

        On a local directory store the chunks are read and decoded on this
        thread (``store.direct``: half the CPU of zarr's asynchronous
        pipeline, the same arrays); elsewhere through zarr.
        """
        rd = self._direct_reader(name)
        if rd is not None:
            out = np.empty((stop - start,) + rd.shape, dtype=rd.dtype)
            for s in range(start, stop):
                try:
                    out[s - start] = rd.read(s)
                except ValueError as e:
                    raise self._undecodable(name, s, idx[s - start] if idx is not None else -1, str(e)) from e
                except OSError as e:
                    raise StoreError(f"store {self.location}: '{name}' slot {s} cannot be read ({e})") from e
            return out
        try:
            return np.asarray(self.array(name)[start:stop])
        except StoreError:
            raise
        except Exception as e:
            for s in range(start, stop):
                try:
                    self.array(name)[s]
                except Exception as e1:
                    raise self._undecodable(name, s, idx[s - start] if idx is not None else -1,
                                            f"{type(e1).__name__}: {str(e1)[:120]}") from e1
            raise StoreError(f"store {self.location}: '{name}' slots {start}..{stop - 1} cannot be read ({type(e).__name__}: {e})") from e

    def _undecodable(self, name: str, slot: int, idx, why: str) -> StoreError:
        """The one-line error for a chunk of ``name`` at ``slot`` that cannot be decoded, naming its input."""
        who = f"input {int(idx)}" if idx >= 0 else "input"
        return StoreError(f"store {self.location}: {who} (slot {slot}) is damaged: '{name}' cannot be decoded "
                          f"({why[:160]})")

    def iter_blocks(self, block_size: int, fields=(F.ARGMAX,), verify: bool = True):
        """Yield ``read_block`` dicts over all slots, ``block_size`` inputs at a time."""
        for s in range(0, self.n_inputs, block_size):
            yield self.read_block(s, min(s + block_size, self.n_inputs), fields=fields, verify=verify)

    # ------------------------------------------------------------------- checks
    def verify(self, progress=None) -> list[tuple[int, int, str]]:
        """Check every slot: complete marker, checksums, values. Returns (slot, idx, problem) per bad input."""
        problems = []
        fields = [F.ROWS, F.ARGMAX] + ([F.MEMBERS] if self.members else [])
        seen = {}
        for s in range(self.n_inputs):
            try:
                b = self.read_block(s, s + 1, fields=fields, verify=True)
            except StoreError as e:
                msg = str(e).split(": ", 1)[-1]
                problems.append((s, -1, msg))
            except Exception as e:  # a codec error (zstd checksum) on a damaged chunk
                problems.append((s, -1, f"input slot {s} is damaged: {type(e).__name__}: {e}"))
            else:
                i = int(b["idx"][0])
                if i in seen:
                    problems.append((s, i, f"input {i} duplicates the dataset index of slot {seen[i]}"))
                seen.setdefault(i, s)
                r = int(b["n_rows"][0])
                rows = b[F.ROWS][0, :r]
                if not np.isfinite(rows).all():
                    problems.append((s, i, f"input {i} has non-finite rows"))
                arg = b[F.ARGMAX][0, :r]
                if (arg >= self.num_classes).any():
                    problems.append((s, i, f"input {i} has hard labels outside 0..{self.num_classes - 1}"))
            if progress is not None:
                progress(1)
        return problems

    def fingerprint(self, records: dict | None = None) -> str:
        """sha256 over the metadata and every input's checksums: equal fingerprints, equal contents."""
        import hashlib
        import json

        h = hashlib.sha256()
        provenance = ("created", "host", "user", "versions", "runs", "source_file", "merged_from")
        h.update(json.dumps({k: v for k, v in self.attrs.items() if k not in provenance}, sort_keys=True, default=str).encode())
        rec = records if records is not None else self.read_records()
        for name in F.INPUT_FIELDS:
            h.update(np.ascontiguousarray(rec[name]).tobytes())
        return h.hexdigest()

    def info(self) -> dict:
        """Metadata plus counts of complete inputs and runs, for ``store info``."""
        d = dict(self.attrs)
        d["location"] = self.location
        records = self.read_records()
        d["complete_inputs"] = int((records["complete"] == 1).sum())
        d["metadata_checksum"] = "ok" if self.metadata_sealed else "none (format version 1)"
        d["fingerprint"] = self.fingerprint(records)
        d["runs"] = self.runs()
        return d

    def close(self) -> None:
        try:
            self._zstore.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
