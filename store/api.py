"""The sample store API that the sampler writes and the certifier reads.

A store is a zarr v3 group (see ``FORMAT.md``). ``create_store`` lays out the
arrays for a fixed number of inputs; ``SampleStore.write_input`` writes one
input (its arrays, hard labels, scalars, checksums, and the ``complete``
marker last); ``SampleStore.read_block`` reads a contiguous block of inputs and
refuses, by dataset index, any input that is incomplete or whose bytes do not
match the checksum written with them.

What a store holds per input is its layout (``layouts.py``: full rows, or the
compact top-k); this module has one create, one write protocol, one read and
one verify for every layout, each asking ``store.layout``. Nothing here
imports from above the store's bottom modules (format, layouts, backend,
checksum, errors).
"""
from __future__ import annotations

import datetime as _dt
import platform

import numpy as np

from . import format as F
from .backend import open_zarr_store
from .checksum import crc_of, scalars_vector
from .errors import StoreError
from .format import StoreShape
from .layouts import PART_CRC, SCALARS_DAMAGED, ArraySpec, FullRows, Layout, layout_of


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
    layout: Layout | None = None,
) -> SampleStore:
    """Create an empty store for ``n_inputs`` inputs of ``n0 + n`` rows of ``num_classes``.

    ``layout`` says what is kept per input (``layouts.FullRows()``, the
    default, or e.g. ``layouts.CompactFullS0(topk=5)``). ``metadata`` (seed,
    fingerprints, device, source, ...) is recorded in the group attributes
    next to the shape, sigma, dtype, layout, format version, software
    versions and creation time. Refuses to overwrite an existing store.
    """
    import zarr

    layout = FullRows() if layout is None else layout
    shape = StoreShape(int(n_inputs), int(n0), int(n), int(num_classes), int(members))
    _check_shape(shape, str(location))
    layout.check(shape, str(location))
    if dtype not in F.ROW_DTYPES:
        raise StoreError(f"{location}: dtype must be one of {F.ROW_DTYPES}, got {dtype!r}")
    specs = layout.arrays(shape, dtype) + [_record_spec(shape)]
    _check_input_bytes(_decoded_bytes(specs[:-1]), layout.describe_input(shape), str(location))
    if not (np.isfinite(sigma) and sigma > 0):
        raise StoreError(f"{location}: sigma must be a positive number, got {sigma!r}")
    zstore = open_zarr_store(location, mode="w", storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="w-")
    except Exception as e:
        raise StoreError(f"cannot create store {location}: it already exists or is not writable ({type(e).__name__}: {e})") from e
    attrs = {
        "format": F.FORMAT_NAME,
        "format_version": layout.format_version,   # the first version that has this layout (FORMAT.md)
        "n_inputs": shape.n_inputs,
        "n0": shape.n0,
        "n": shape.n,
        "num_classes": shape.num_classes,
        "sigma": float(sigma),
        "dtype": dtype,
        "members": shape.members,
        "core_predict": bool(core_predict),
        **layout.attrs(),
        "created": _now(),
        "versions": software_versions(),
        "host": platform.node(),
        "user": _whoami(),
    }
    for k, v in (metadata or {}).items():
        attrs.setdefault(k, v)
    N = shape.n_inputs
    comp = F.compressors()
    for a in specs:
        root.create_array(a.name, shape=(N,) + a.per_input, dtype=a.dtype, chunks=(1,) + a.chunks, fill_value=a.fill,
                          compressors=comp, dimension_names=a.dims)
    root[F.INPUTS].attrs["fields"] = list(F.INPUT_FIELDS)
    root.attrs[F.ATTRS_KEY] = F.sealed(attrs)
    return SampleStore(root, str(location), zstore, writable=True)


def _record_spec(shape: StoreShape) -> ArraySpec:
    """The per-input record every layout shares: (8,) int64, fill -1, written first (pending) and last (commit)."""
    n = len(F.INPUT_FIELDS)
    return ArraySpec(F.INPUTS, (n,), "int64", (n,), -1, ("input", "field"), "record", 8)


def _decoded_bytes(specs) -> int:
    """Bytes one input of these arrays takes once decoded by a reader."""
    return sum(int(np.prod(a.per_input, dtype=object)) * a.decoded_itemsize for a in specs)


def open_store(location, mode: str = "r", storage_options: dict | None = None) -> SampleStore:
    """Open an existing store for reading (``mode='r'``) or for writing inputs (``'a'``)."""
    import zarr

    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
    zstore = open_zarr_store(location, mode=mode, storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="r" if mode == "r" else "r+")
    except Exception as e:
        raise StoreError(f"store {location} is not a zarr group ({type(e).__name__}: {e})") from e
    return SampleStore(root, str(location), zstore, writable=(mode == "a"))


class SampleStore:
    """One opened sample store: shape, metadata and layout, per-input writes, block reads."""

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
        self._specs = {x.name: x for x in self.layout.arrays(self.shape, self.dtype) + [_record_spec(self.shape)]}
        self._fields = self.layout.fields(self.shape)
        self._check_layout_size()

    def _check_layout_size(self) -> None:
        """Refuse metadata whose one input would decode to more than F.MAX_INPUT_BYTES, before any read."""
        specs = self.layout.arrays(self.shape, self.dtype)
        parts = ", ".join(f"{a.name} {'x'.join(map(str, a.per_input))}" for a in specs)
        _check_input_bytes(_decoded_bytes(specs), parts, f"store {self.location}")

    # ----------------------------------------------------------------- metadata
    def _validated_attrs(self) -> dict:
        """The group attributes, checked (format, version, checksum, shape, sigma, dtype, layout); sets ``layout``."""
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
        self.layout = layout_of(a, f"store {self.location}")
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
    def topk(self) -> int | None:
        """K of a top-K layout (``layout.topk``), None for full rows."""
        return self.layout.topk

    @property
    def keeps_full_s0(self) -> bool:
        """Whether the n0 selection rows of every input are stored whole (``read_block`` field ``rows0``).

        True for full stores and compact-s0 stores (format version 3), False
        for compact stores written before it (layout ``compact``).
        """
        return self.layout.keeps_full_s0

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
        """The shape the metadata and layout imply for array ``name`` (None for arrays they do not declare)."""
        spec = self._specs.get(name)
        return None if spec is None else (self.n_inputs,) + tuple(spec.per_input)

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
        runs = self.root.require_group("runs")
        g = runs.require_group(run_id)
        g.attrs.update(record)

    def runs(self) -> dict:
        """{run id: record} of every writer run, ordered by run id (an id starts with its run's start time)."""
        try:
            runs = self.root["runs"]
        except KeyError:
            return {}
        return {name: dict(g.attrs) for name, g in sorted(runs.groups(), key=lambda kv: kv[0])}  # listing order varies

    # ------------------------------------------------------------------ writing
    def write_input(self, i: int, *, label: int, idx: int, argmax=None, core_predict: int | None = None,
                    n_rows: int | None = None, **data) -> None:
        """Write input slot ``i`` completely, then mark it complete.

        ``data`` is what the layout takes (``layouts.py``): full ``rows``
        (r, m) softmax rows, r = n0 + n (or fewer for an adaptive input, given
        as ``n_rows``), ``member_logprobs`` for ensembles; or a compact
        store's ``topk_p``, ``topk_c``, ``entropy``. ``argmax``: (r,) hard
        labels of the full-precision rows (computed from ``rows`` when
        omitted). Values are cast to the store's dtype; the checksums cover
        the stored bytes. The record is written with ``complete = 0`` first,
        then every array of the layout in its order, then the record with the
        checksums and ``complete = 1``: a crash before that last write leaves
        the input incomplete, never wrong.
        """
        if not self.writable:
            raise StoreError(f"store {self.location} is open read-only")
        N, R = self.n_inputs, self.shape.total_rows
        if not (0 <= i < N):
            raise StoreError(f"store {self.location}: input slot {i} outside 0..{N - 1}")
        r, argmax, stored = self.layout.encode(self, idx, data, argmax, n_rows)
        argmax = np.asarray(argmax)
        if argmax.shape != (r,):
            raise StoreError(f"store {self.location}: input {idx}: argmax must have shape ({r},), got {argmax.shape}")
        cp = -1 if core_predict is None else int(core_predict)
        if self.has_core_predict and core_predict is None:
            raise StoreError(f"store {self.location}: input {idx}: the store expects core_predict")
        stored_arg = np.full((R,), F.ARGMAX_FILL, dtype=np.uint16)
        stored_arg[:r] = argmax
        stored[F.ARGMAX] = stored_arg
        order = [a for a in self._specs.values() if a.name != F.INPUTS]
        scal = scalars_vector(int(label), int(idx), int(r), cp)
        crc = {col: crc_of(*[stored[a.name] for a in order if PART_CRC[a.part] == col])
               for col in ("crc_rows", "crc_members")}     # 0 for a column no array of the layout uses
        record = np.array([int(idx), int(label), int(r), cp, crc["crc_rows"], crc_of(stored_arg, scal),
                           crc["crc_members"], 1], dtype=np.int64)
        pending = record.copy()
        pending[F.COL["complete"]] = 0
        self.array(F.INPUTS)[i] = pending   # a rewrite invalidates the old record first
        for a in order:
            self.array(a.name)[i] = stored[a.name]
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

    def _field(self, name: str):
        """The layout's ``Field`` for ``name``, or the layout's refusal (StoreError, or ValueError for a name no layout knows)."""
        f = self._fields.get(name)
        if f is None:
            raise self.layout.refuse(name, self)
        return f

    def read_block(self, start: int, stop: int, fields=(F.ARGMAX,), verify: bool = True,
                   only_complete: bool = False, check=(), records: dict | None = None) -> dict:
        """Read input slots ``start:stop``.

        Always returns ``label``, ``idx``, ``n_rows``, ``slot`` and
        ``core_predict`` (-1 when not stored); plus the requested ``fields``
        the layout serves: ``argmax`` (int64) for every layout; ``rows``
        (float32) and ``member_logprobs`` of full rows; ``compact`` (its
        ``topk_p`` as float32, ``topk_c``, ``entropy``) of compact rows;
        ``rows0``, the n0 selection rows ((B, n0, m) float32, store order),
        wherever ``keeps_full_s0``. A field the layout does not serve is
        refused (StoreError, one line).
        With ``verify`` every input's checksum is recomputed over the bytes
        read and a missing or damaged input raises StoreError naming its
        dataset index. ``only_complete`` drops incomplete slots instead of
        refusing them (for resume logic, never for certificates). ``check``
        names fields that are read and verified but not returned; ``records``
        passes the slots' records when the caller has read them already.
        """
        start, stop = int(start), int(stop)
        wanted = tuple(fields) + tuple(c for c in check if c not in fields)
        spec = {f: self._field(f) for f in wanted}
        rec, keep = self._block_records(start, stop, records, only_complete)
        idx, label, n_rows, cp = rec["idx"], rec["label"], rec["n_rows"], rec["core_predict"]
        raw = {}
        for f in wanted:
            for name in spec[f].arrays:
                if name not in raw:
                    raw[name] = self._read(name, start, stop, idx)
        if verify:
            scalars_checked = any(spec[f].part == "argmax" for f in wanted)
            for j in np.flatnonzero(keep):
                scal = scalars_vector(label[j], idx[j], n_rows[j], cp[j])
                for f in wanted:
                    fs = spec[f]
                    extra = (scal,) if fs.part == "argmax" else ()
                    if crc_of(*(raw[name][j] for name in fs.arrays), *extra) != int(rec[PART_CRC[fs.part]][j]):
                        raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                         f"{fs.damaged}")
                if not scalars_checked:
                    # the scalars are covered by the argmax checksum: read it when not already read
                    a = self._read(F.ARGMAX, start + j, start + j + 1, idx[j:j + 1])[0]
                    if crc_of(a, scal) != int(rec[PART_CRC["argmax"]][j]):
                        raise StoreError(f"store {self.location}: input {int(idx[j])} (slot {start + j}) is damaged: "
                                         f"{SCALARS_DAMAGED}")
        sel = np.flatnonzero(keep)
        out = {"slot": np.arange(start, stop)[sel], "label": label[sel], "idx": idx[sel], "n_rows": n_rows[sel],
               "core_predict": cp[sel]}
        for f in fields:
            out.update(spec[f].convert({name: raw[name][sel] for name in spec[f].arrays}))
        return out

    def read_input(self, slot: int) -> dict:
        """Input ``slot``, every part verified, as the ``write_input`` keyword arguments that write it again."""
        b = self.read_block(slot, slot + 1, fields=self.layout.stored_fields(self.shape), verify=True)
        r = int(b["n_rows"][0])
        kw = self.layout.input_parts(b, r)
        kw.update(argmax=b[F.ARGMAX][0, :r], label=int(b["label"][0]), idx=int(b["idx"][0]),
                  core_predict=int(b["core_predict"][0]) if self.has_core_predict else None)
        return kw

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
        fields = self.layout.stored_fields(self.shape)
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
                problems.extend((s, i, p) for p in self.layout.value_problems(b, r, self.num_classes, i))
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
