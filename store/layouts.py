"""Store layouts: which per-input arrays a store holds, and how one input becomes them.

A store (``api.SampleStore``) has one create, one write protocol, one block
read and one verify. What differs between kinds of store -- the arrays, how an
input's rows are turned into them, which ``read_block`` fields can be served,
what ``verify`` checks of the values -- is a :class:`Layout` object, chosen
from the group attributes in one place, :func:`layout_of`, through the
registry :data:`LAYOUTS` (stored ``layout`` attribute -> class).

Layouts today:

- :class:`FullRows` (``layout`` absent, or ``"full"``): the n0 + n softmax
  rows of every input whole (float16 or float32), their hard labels, and
  per-member log-probabilities for ensembles;
- :class:`CompactRows` (``layout = "compact"``, ``topk = K``): per row the
  K largest probabilities, their classes and the exact entropy, plus the hard
  labels (``topk.py`` computes them; ``FORMAT.md``, "Compact stores"). Only
  read (and written on request) since format version 3: its selection rows
  are not kept whole;
- :class:`CompactFullS0` (``layout = "compact-s0"``, ``topk = K``, format
  version 3): everything :class:`CompactRows` keeps, plus the n0 selection
  rows of every input whole (``rows0``). What ``store compact``, ``store
  import --compact-topk`` and ``sample --topk`` write.

What every layout shares, and the store (not the layout) owns: the per-input
record ``inputs`` (dataset index, label, n_rows, core_predict, three crc32c
columns, the ``complete`` marker), the ``argmax`` array (hard labels of the
full-precision rows, whose checksum also covers the record's scalars), the
group attributes other than the layout's own, and the write protocol
(record with ``complete = 0``, then the arrays in the layout's order, then the
committing record).

Adding a layout (as :class:`CompactFullS0` was: top-K for every row, full
rows for the n0 selection rows) is one subclass and one registry entry, never
an ``if`` elsewhere:

1. subclass :class:`Layout`; set ``name`` (the stored ``layout`` value), the
   capabilities ``has_full_rows`` (every row of every input stored whole),
   ``keeps_full_s0`` (the n0 selection rows stored whole, field ``rows0``),
   ``has_members``, ``format_version`` (the version its stores are written
   with) and ``since_version`` (the first version that has it);
2. ``attrs`` / ``from_attrs``: the layout's own group attributes, written at
   create and validated at open (one-line StoreError naming the store);
3. ``arrays``: every per-input array (names, shapes, dtypes, chunks, fill,
   dimension names) in write order, each assigned to the record checksum
   that covers it (``part``, a key of :data:`PART_CRC`: ``rows``,
   ``argmax``, ``members`` or ``selection``; the crc is over the part's
   arrays in this order);
4. ``encode``: one input's given data (``write_input``'s keyword arguments)
   -> its rows count, hard labels and every array's stored values;
5. ``fields``: the ``read_block`` fields it serves, each reading whole parts
   (so that every field read is verified) and converting them for the
   reader; ``refuse`` says why a field it lacks is not served;
6. ``value_problems`` (what ``verify`` checks beyond checksums),
   ``input_parts`` (a read input as ``write_input`` arguments, for merge);
7. add it to :data:`LAYOUTS`; bump ``format.FORMAT_VERSION`` when an older
   reader would misread such a store (FORMAT.md says when), and describe its
   arrays in FORMAT.md.

The certifier asks a store's layout for capabilities (``has_full_rows``,
``keeps_full_s0``, ``topk``, ``stored_fields``), never for its name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import format as F
from .errors import StoreError
from .format import StoreShape
from .topk import MAX_TOPK

DEFAULT_LAYOUT = "full"        # a store without a ``layout`` attribute (every store before compact ones)

# Parts of an input: each is covered by one crc32c column of the input's record. ``members`` (ensemble member
# rows of a full store) and ``selection`` (the whole selection rows of a compact-s0 store) share the third
# column: no layout has both.
PART_CRC = {"rows": "crc_rows", "argmax": "crc_argmax", "members": "crc_members", "selection": "crc_members"}
ROWS0 = "rows0"                # the read_block field (and compact-s0 array) of the n0 selection rows, whole


@dataclass(frozen=True)
class ArraySpec:
    """One per-input array: shape (N,) + ``per_input``, chunked one input per chunk, (1,) + ``chunks``."""
    name: str
    per_input: tuple
    dtype: str
    chunks: tuple
    fill: object
    dims: tuple
    part: str                  # which record checksum covers it (PART_CRC)
    decoded_itemsize: int      # bytes per element once a reader has decoded it (float32 rows, int64 labels, ...)


@dataclass(frozen=True)
class Field:
    """A ``read_block`` field: the arrays it reads (whole parts), how it is checked and returned."""
    arrays: tuple
    part: str
    damaged: str               # the end of the one-line error when the part does not match its checksum
    convert: Callable          # {array name: (B, ...) stored values} -> {output name: array}


def argmax_spec(shape: StoreShape) -> ArraySpec:
    """The hard labels every layout stores: (R,) uint16, fill 65535; their checksum covers the record's scalars."""
    R = shape.total_rows
    return ArraySpec(F.ARGMAX, (R,), "uint16", (F.row_chunk(R, 2),), F.ARGMAX_FILL, ("input", "row"), "argmax", 8)


ARGMAX_FIELD = Field((F.ARGMAX,), "argmax", f"'{F.ARGMAX}' does not match its checksum",
                     lambda raw: {F.ARGMAX: raw[F.ARGMAX].astype(np.int64)})
SCALARS_DAMAGED = "label/index/argmax do not match their checksum"


class Layout:
    """What one kind of store holds per input. Subclasses: see the module docstring for the recipe."""

    name: str = ""
    has_full_rows: bool = True     # every row of every input is stored whole (``rows`` can be read)
    keeps_full_s0: bool = True     # the n0 selection rows are stored whole (field ``rows0`` can be read)
    has_members: bool = False      # per-member rows can be stored (ensembles)
    topk: int | None = None        # K of a top-K layout, None otherwise
    format_version: int = 2        # the format version a store of this layout is written with (FORMAT.md)
    since_version: int = 1         # the first format version that has this layout (an older one is refused)

    # -------------------------------------------------------------- metadata
    def attrs(self) -> dict:
        """The layout's own group attributes (merged into the store's at create)."""
        return {}

    @classmethod
    def from_attrs(cls, attrs: dict, where: str) -> Layout:
        """The layout of an opened store whose base attributes are valid; StoreError naming ``where`` otherwise."""
        return cls()

    def check(self, shape: StoreShape, where: str) -> None:
        """Refuse (StoreError) a store shape this layout cannot hold, at create."""

    # ---------------------------------------------------------------- arrays
    def arrays(self, shape: StoreShape, dtype: str) -> list[ArraySpec]:
        """Every per-input array, in the order ``write_input`` writes them."""
        raise NotImplementedError

    def describe_input(self, shape: StoreShape) -> str:
        """One input in words, for the size refusal at create."""
        raise NotImplementedError

    def encode(self, store, idx: int, given: dict, argmax, n_rows):
        """One input's data -> ``(r, argmax, {array name: (R, ...) stored values})``, or StoreError naming it.

        ``given`` holds ``write_input``'s layout-specific keyword arguments;
        ``argmax`` is None when not given (the layout derives it from full
        rows); the stored values are padded to R rows with the fill values.
        """
        raise NotImplementedError

    # --------------------------------------------------------------- reading
    def fields(self, shape: StoreShape) -> dict[str, Field]:
        """The ``read_block`` fields this layout serves for a store of ``shape``."""
        raise NotImplementedError

    def stored_fields(self, shape: StoreShape) -> list[str]:
        """Fields that together read every stored part of an input (``verify``, ``certify --verify full``)."""
        raise NotImplementedError

    def refuse(self, field: str, store) -> Exception:
        """The error for a ``read_block`` field this layout does not serve."""
        return ValueError(f"unknown field {field!r}")

    def value_problems(self, block: dict, r: int, num_classes: int, i: int) -> list[str]:
        """What ``verify`` finds wrong with the values of input ``i`` (one-slot ``read_block`` of stored_fields)."""
        raise NotImplementedError

    def input_parts(self, block: dict, r: int) -> dict:
        """The layout-specific ``write_input`` arguments that write a read input (one-slot block) again."""
        raise NotImplementedError

    def __repr__(self) -> str:
        a = self.attrs()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in a.items() if k != 'layout')})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.attrs() == other.attrs()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.attrs().items()))))


def _pad(values, R: int, fill, dtype, tail=()) -> np.ndarray:
    out = np.full((R,) + tuple(tail), fill, dtype=dtype)
    out[:len(values)] = values
    return out


class FullRows(Layout):
    """Every row whole: ``rows`` (R, m) float16/float32, ``argmax``, and ``member_logprobs`` (R, k, m) for ensembles.

    Writes take ``rows`` (r, m) softmax rows (cast to the store's dtype;
    float32 to float16 bit for bit as numpy's ``astype``), optional
    ``argmax`` (derived from ``rows`` when absent), ``member_logprobs``
    (r, k, m) when the store holds members, ``n_rows`` (= r). Fields:
    ``rows`` (float32), ``rows0`` (the first n0 of ``rows``: the whole part
    is read and verified), ``argmax`` (int64), ``member_logprobs``. A full
    store carries no ``layout`` attribute, as every store before compact ones.
    """

    name = "full"
    has_full_rows = True
    has_members = True

    def arrays(self, shape, dtype):
        R, m, k = shape.total_rows, shape.num_classes, shape.members
        out = [ArraySpec(F.ROWS, (R, m), dtype, (F.row_chunk(R, m * np.dtype(dtype).itemsize), m), np.nan,
                         ("input", "row", "class"), "rows", 4),
               argmax_spec(shape)]
        if k:
            out.append(ArraySpec(F.MEMBERS, (R, k, m), "float32", (F.row_chunk(R, 4 * k * m), k, m), np.nan,
                                 ("input", "row", "member", "class"), "members", 4))
        return out

    def describe_input(self, shape):
        R, m, k = shape.total_rows, shape.num_classes, shape.members
        return f"{R} rows x {m} classes" + (f" x {k} members" if k else "")

    def encode(self, store, idx, given, argmax, n_rows):
        from .float16 import to_float16

        unknown = set(given) - {"rows", "member_logprobs"}
        if unknown:
            raise TypeError(f"write_input() of a full store got unexpected arguments {sorted(unknown)}")
        R, m, k, where = store.shape.total_rows, store.num_classes, store.members, f"store {store.location}"
        rows = np.asarray(given.get("rows"))
        r = rows.shape[0] if rows.ndim == 2 else -1
        if rows.ndim != 2 or rows.shape[1] != m or not (store.n0 < r <= R):
            raise StoreError(f"{where}: input {idx}: rows must have shape ({R}, {m}), got {rows.shape}")
        if n_rows is None:
            n_rows = r
        if n_rows != r:
            raise StoreError(f"{where}: input {idx}: n_rows={n_rows} but {r} rows given")
        if argmax is None:
            argmax = np.argmax(rows, axis=1)
        stored_rows = np.full((R, m), np.nan, dtype=store.dtype)
        if stored_rows.dtype == np.float16 and rows.dtype == np.float32:
            to_float16(rows, out=stored_rows[:r])    # numpy's astype, bit for bit, without its slow subnormal path
        else:
            stored_rows[:r] = rows
        out = {F.ROWS: stored_rows}
        mem = given.get("member_logprobs")
        if k:
            if mem is None:
                raise StoreError(f"{where}: input {idx}: the store expects member_logprobs")
            mem = np.asarray(mem)
            if mem.shape != (r, k, m):
                raise StoreError(f"{where}: input {idx}: member_logprobs must have shape ({r}, {k}, {m}), got {mem.shape}")
            out[F.MEMBERS] = _pad(mem, R, np.nan, np.float32, (k, m))
        return r, argmax, out

    def fields(self, shape):
        n0, damaged = shape.n0, f"'{F.ROWS}' does not match its checksum"
        out = {F.ROWS: Field((F.ROWS,), "rows", damaged,
                             lambda raw: {F.ROWS: raw[F.ROWS].astype(np.float32, copy=False)}),
               ROWS0: Field((F.ROWS,), "rows", damaged,
                            lambda raw: {ROWS0: raw[F.ROWS][:, :n0].astype(np.float32)}),
               F.ARGMAX: ARGMAX_FIELD}
        if shape.members:
            out[F.MEMBERS] = Field((F.MEMBERS,), "members", f"'{F.MEMBERS}' does not match its checksum",
                                   lambda raw: {F.MEMBERS: raw[F.MEMBERS]})
        return out

    def stored_fields(self, shape):
        return [F.ROWS, F.ARGMAX] + ([F.MEMBERS] if shape.members else [])

    def refuse(self, field, store):
        if field == F.MEMBERS:
            return StoreError(f"store {store.location} holds no ensemble members")
        return super().refuse(field, store)

    def value_problems(self, block, r, num_classes, i):
        problems = []
        if not np.isfinite(block[F.ROWS][0, :r]).all():
            problems.append(f"input {i} has non-finite rows")
        if (block[F.ARGMAX][0, :r] >= num_classes).any():
            problems.append(f"input {i} has hard labels outside 0..{num_classes - 1}")
        return problems

    def input_parts(self, block, r):
        return {"rows": block[F.ROWS][0, :r], "n_rows": r,
                "member_logprobs": block[F.MEMBERS][0, :r] if F.MEMBERS in block else None}


class CompactRows(Layout):
    """Per row the top K probabilities, their classes and the exact entropy: ``topk_p``, ``topk_c``, ``entropy``.

    ``topk_p`` (R, K) in the store's dtype (the full store's values bit for
    bit, descending), ``topk_c`` (R, K) uint16 (ties: the lower class first),
    ``entropy`` (R,) float64 (``topk.py``), plus ``argmax``; one checksum
    (``crc_rows``) covers the three, in that order. No member rows.
    Attributes ``layout = "compact"``, ``topk = K`` (2 <= K <= min(m, 256)).

    Writes take either full ``rows`` (r, m) (cast to the store's dtype, then
    compacted, so the values equal a full store's of that dtype; ``argmax``
    derived from them when absent) or the parts ``topk_p``, ``topk_c``,
    ``entropy`` with ``argmax``. Field ``compact`` returns ``topk_p``
    (float32), ``topk_c`` and ``entropy``; ``rows`` and ``member_logprobs``
    are refused with a one-line StoreError.
    """

    name = "compact"
    has_full_rows = False
    keeps_full_s0 = False
    has_members = False
    FIELD = "compact"          # the read_block field that returns all three
    TOPK_P, TOPK_C, ENTROPY = "topk_p", "topk_c", "entropy"

    def __init__(self, topk: int):
        self.topk = topk

    def attrs(self):
        return {"layout": self.name, "topk": int(self.topk)}

    @classmethod
    def from_attrs(cls, attrs, where):
        k = attrs.get("topk")
        if not isinstance(k, int) or isinstance(k, bool) or not (2 <= k <= min(attrs["num_classes"], MAX_TOPK)):
            raise StoreError(f"{where}: metadata topk must be an integer in 2..{min(attrs['num_classes'], MAX_TOPK)}, got {k!r}")
        if attrs.get("members"):
            raise StoreError(f"{where}: a compact store cannot hold ensemble members")
        return cls(k)

    def check(self, shape, where):
        if shape.members:
            raise StoreError(f"{where}: a compact store keeps no per-member rows; compact the ensemble's rows only")
        k, m = self.topk, shape.num_classes
        if not (isinstance(k, (int, np.integer)) and 2 <= k <= min(m, MAX_TOPK)):
            raise StoreError(f"{where}: --topk must be in 2..{min(m, MAX_TOPK)} for {m} classes, got {k!r}")

    def arrays(self, shape, dtype):
        R, k = shape.total_rows, int(self.topk)
        return [ArraySpec(self.TOPK_P, (R, k), dtype, (F.row_chunk(R, k * np.dtype(dtype).itemsize), k), np.nan,
                          ("input", "row", "rank"), "rows", 4),
                ArraySpec(self.TOPK_C, (R, k), "uint16", (F.row_chunk(R, k * 2), k), F.ARGMAX_FILL,
                          ("input", "row", "rank"), "rows", 2),
                ArraySpec(self.ENTROPY, (R,), "float64", (F.row_chunk(R, 8),), np.nan, ("input", "row"), "rows", 8),
                argmax_spec(shape)]

    def describe_input(self, shape):
        return f"{shape.total_rows} rows x top-{self.topk}"

    GIVEN = ("rows", "member_logprobs", TOPK_P, TOPK_C, ENTROPY)   # write_input arguments it takes

    def encode(self, store, idx, given, argmax, n_rows):
        from .topk import compact_rows

        where, R, m, k = f"store {store.location}", store.shape.total_rows, store.num_classes, self.topk
        if given.get("member_logprobs") is not None:
            raise StoreError(f"{where}: a compact store keeps no member rows")
        unknown = set(given) - set(self.GIVEN)
        if unknown:
            raise TypeError(f"write_input() of a compact store got unexpected arguments {sorted(unknown)}")
        rows = given.get("rows")
        if rows is not None:
            rows = np.asarray(rows)
            if rows.ndim != 2 or rows.shape[1] != m:
                raise StoreError(f"{where}: input {idx}: rows must have shape (r, {m}), got {rows.shape}")
            if argmax is None:
                argmax = np.argmax(rows, axis=1)
            topk_p, topk_c, entropy = compact_rows(_as_stored(rows, store.dtype), k)
        else:
            topk_p, topk_c, entropy = (given.get(a) for a in (self.TOPK_P, self.TOPK_C, self.ENTROPY))
        topk_p, topk_c, entropy = np.asarray(topk_p), np.asarray(topk_c), np.asarray(entropy)
        r = topk_p.shape[0] if topk_p.ndim == 2 else -1
        if topk_p.shape != (r, k) or topk_c.shape != (r, k) or entropy.shape != (r,) or not (store.n0 < r <= R):
            raise StoreError(f"{where}: input {idx}: top-k parts must have shapes ({R}, {k}), ({R}, {k}), "
                             f"({R},), got {topk_p.shape}, {topk_c.shape}, {entropy.shape}")
        if n_rows is not None and n_rows != r:
            raise StoreError(f"{where}: input {idx}: n_rows={n_rows} but {r} rows given")
        if (topk_c >= m).any():
            raise StoreError(f"{where}: input {idx}: top-k classes outside 0..{m - 1}")
        out = {self.TOPK_P: _pad(topk_p, R, np.nan, store.dtype, (k,)),
               self.TOPK_C: _pad(topk_c, R, F.ARGMAX_FILL, np.uint16, (k,)),
               self.ENTROPY: _pad(entropy, R, np.nan, np.float64)}
        out.update(self._encode_more(store, idx, given, rows))
        return r, argmax, out

    def _encode_more(self, store, idx, given, rows) -> dict:
        """Arrays a subclass keeps beyond the top-k parts (``rows``: the full rows given, or None)."""
        return {}

    def fields(self, shape):
        def convert(raw):
            return {self.TOPK_P: raw[self.TOPK_P].astype(np.float32, copy=False), self.TOPK_C: raw[self.TOPK_C],
                    self.ENTROPY: raw[self.ENTROPY]}

        return {F.ARGMAX: Field((F.ARGMAX,), "argmax", SCALARS_DAMAGED, ARGMAX_FIELD.convert),
                self.FIELD: Field((self.TOPK_P, self.TOPK_C, self.ENTROPY), "rows",
                                  "its top-k values, classes or entropies do not match their checksum", convert)}

    def stored_fields(self, shape):
        return [self.FIELD, F.ARGMAX]

    def refuse(self, field, store):
        if field in (F.ROWS, F.MEMBERS):
            what = "full softmax rows" if field == F.ROWS else "ensemble member rows"
            return StoreError(f"store {store.location} is compact (top-{self.topk} per row): it holds no {what}; "
                              f"use the full store for this")
        if field == ROWS0:
            return StoreError(f"store {store.location} is compact (top-{self.topk} per row) without whole selection "
                              f"rows (layout 'compact', written before format version 3); compact the full store "
                              f"again to keep them")
        return super().refuse(field, store)

    def value_problems(self, block, r, num_classes, i):
        problems = []
        if not (np.isfinite(block[self.TOPK_P][0, :r]).all() and np.isfinite(block[self.ENTROPY][0, :r]).all()):
            problems.append(f"input {i} has non-finite top-k values or entropies")
        if (block[self.TOPK_C][0, :r] >= num_classes).any() or (block[F.ARGMAX][0, :r] >= num_classes).any():
            problems.append(f"input {i} has classes outside 0..{num_classes - 1}")
        return problems

    def input_parts(self, block, r):
        return {a: block[a][0, :r] for a in (self.TOPK_P, self.TOPK_C, self.ENTROPY)}


class CompactFullS0(CompactRows):
    """A compact store that keeps its selection rows whole: :class:`CompactRows` plus ``rows0`` (n0, m).

    Everything :class:`CompactRows` keeps, for every row 0..R-1 (so every
    method that reads a compact store reads this one unchanged), plus the n0
    selection rows of each input whole in the store's dtype (``rows0``, the
    full store's first n0 rows bit for bit), under their own checksum
    (record column ``crc_members``, part ``selection``). With them a
    certificate picks its class on S0 exactly as on the full store.
    Attributes ``layout = "compact-s0"``, ``topk = K``; format version 3.

    Writes take full ``rows`` (r, m) as :class:`CompactRows` does (``rows0``
    is their first n0, cast to the store's dtype), or the top-k parts with
    ``rows0`` (n0, m) and ``argmax``. Fields: those of :class:`CompactRows`
    and ``rows0`` ((B, n0, m) float32, store order); ``rows`` and
    ``member_logprobs`` are refused in one line.
    """

    name = "compact-s0"
    keeps_full_s0 = True
    format_version = since_version = 3
    GIVEN = CompactRows.GIVEN + (ROWS0,)

    def arrays(self, shape, dtype):
        n0, m = shape.n0, shape.num_classes
        out = super().arrays(shape, dtype)
        sel = ArraySpec(ROWS0, (n0, m), dtype, (F.row_chunk(n0, m * np.dtype(dtype).itemsize), m), np.nan,
                        ("input", "selection_row", "class"), "selection", 4)
        return out[:3] + [sel] + out[3:]          # topk_p, topk_c, entropy, rows0, argmax

    def describe_input(self, shape):
        return f"{super().describe_input(shape)} + {shape.n0} selection rows x {shape.num_classes} classes"

    def _encode_more(self, store, idx, given, rows):
        n0, m = store.n0, store.num_classes
        sel = rows[:n0] if rows is not None else given.get(ROWS0)
        if sel is None:
            raise StoreError(f"store {store.location}: input {idx}: the store keeps its selection rows whole: "
                             f"give rows0 ({n0}, {m}) with the top-k parts")
        sel = np.asarray(sel)
        if sel.shape != (n0, m):
            raise StoreError(f"store {store.location}: input {idx}: rows0 must have shape ({n0}, {m}), got {sel.shape}")
        return {ROWS0: _as_stored(sel, store.dtype)}

    def fields(self, shape):
        out = super().fields(shape)
        out[ROWS0] = Field((ROWS0,), "selection", f"its selection rows ('{ROWS0}') do not match their checksum",
                           lambda raw: {ROWS0: raw[ROWS0].astype(np.float32)})
        return out

    def stored_fields(self, shape):
        return super().stored_fields(shape) + [ROWS0]

    def refuse(self, field, store):
        if field == F.ROWS:
            return StoreError(f"store {store.location} is compact (top-{self.topk} per row): it holds no full softmax "
                              f"rows of the estimation block (its {store.n0} selection rows are field '{ROWS0}'); "
                              f"use the full store for this")
        return super().refuse(field, store)

    def value_problems(self, block, r, num_classes, i):
        from .topk import compact_rows

        problems = super().value_problems(block, r, num_classes, i)
        sel = block[ROWS0][0]
        if not np.isfinite(sel).all():
            problems.append(f"input {i} has non-finite selection rows")
        elif not problems:
            n0, k = sel.shape[0], self.topk
            p, c, e = compact_rows(sel, k)      # float32 of the stored values: the stored top-k, bit for bit
            if not (np.array_equal(p, block[self.TOPK_P][0, :n0]) and np.array_equal(c, block[self.TOPK_C][0, :n0])
                    and np.array_equal(e, block[self.ENTROPY][0, :n0])):
                problems.append(f"input {i}: its selection rows disagree with their stored top-k values or entropies")
        return problems

    def input_parts(self, block, r):
        out = super().input_parts(block, r)
        out[ROWS0] = block[ROWS0][0]
        return out


def _as_stored(rows: np.ndarray, dtype: str) -> np.ndarray:
    """``rows.astype(dtype)`` bit for bit (float32 to float16 through ``float16.to_float16``, numpy's rounding)."""
    if np.dtype(dtype) == np.float16 and rows.dtype == np.float32:
        from .float16 import to_float16

        return to_float16(rows)
    return rows.astype(dtype)


# The one place a stored ``layout`` attribute becomes a layout: name -> class.
LAYOUTS: dict[str, type[Layout]] = {FullRows.name: FullRows, CompactRows.name: CompactRows,
                                    CompactFullS0.name: CompactFullS0}


def layout_of(attrs: dict, where: str) -> Layout:
    """The layout of a store whose (validated) group attributes are ``attrs``; StoreError naming an unknown one,
    or one that its format version cannot have (a layout appears in ``since_version`` of its class)."""
    name = attrs.get("layout", DEFAULT_LAYOUT)
    cls = LAYOUTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise StoreError(f"{where} has layout {name!r}, which this smoothcert does not read "
                         f"(it reads {', '.join(LAYOUTS)})")
    v = attrs.get("format_version")
    if isinstance(v, int) and v < cls.since_version:
        raise StoreError(f"{where} has layout {name!r}, which appeared in format version {cls.since_version}, "
                         f"but says format version {v}")
    return cls.from_attrs(attrs, where)
