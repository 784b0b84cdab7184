"""Write and read certificate tables (.csv, .jsonl, .parquet) and their meta sidecar.

Radii keep full float64 precision (``repr``); infinities are written as ``inf``.
A table is written to a temporary file and renamed into place, so an
existing file is never left half-written; ``TableWriter`` writes a table
from its blocks as they are computed, with the same bytes.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from .csvtext import csv_lines

SUFFIXES = (".csv", ".jsonl", ".parquet")
TEXT_COLUMNS = ("set",)  # read back as text: a conformal set "3" is not the number 3, and "" is the empty set


def _suffix(path) -> str:
    """The table format of ``--out`` (its suffix); ValueError naming ``--out`` for any other."""
    s = Path(path).suffix.lower()
    if s not in SUFFIXES:
        raise ValueError(f"--out {path}: unknown table format {s or '(none)'!r}; use one of {', '.join(SUFFIXES)}")
    return s


def _json_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return None
        return v
    return v


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_whole(table: pd.DataFrame, suffix: str, tmp: str) -> None:
    """``table`` into the file ``tmp`` in the format of ``suffix``."""
    if suffix == ".csv":
        with open(tmp, "wb") as f:
            f.write(_csv_header(table))
            f.write(_csv_rows(table, {}))
    elif suffix == ".jsonl":
        with open(tmp, "w") as f:
            _write_jsonl(table, f)
    else:
        table.to_parquet(tmp, index=False)


def _csv_header(table: pd.DataFrame) -> bytes:
    return table.iloc[:0].to_csv(index=False).encode()


def _csv_rows(table: pd.DataFrame, memo: dict) -> bytes:
    """``table.to_csv(index=False, header=False)`` as bytes, by ``csvtext.csv_lines`` where it can."""
    lines = csv_lines(table, memo)
    return lines if lines is not None else table.to_csv(index=False, header=False).encode()


def _write_jsonl(table: pd.DataFrame, f) -> None:
    cols = list(table.columns)
    for rec in table.itertuples(index=False, name=None):
        f.write(json.dumps({c: _json_value(v) for c, v in zip(cols, rec)}) + "\n")


def _need_pyarrow(path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(f"--out {path}: writing .parquet needs pyarrow (pip install 'smoothcert[parquet]')") from None


def write_table(table: pd.DataFrame, path, meta: dict | None = None) -> None:
    """Write ``table`` to ``path`` by suffix and ``meta`` to ``path + '.meta.json'``."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".parquet":
        _need_pyarrow(path)
    _atomic_write(path, lambda tmp: _write_whole(table, suffix, tmp))
    if meta is not None:
        write_meta(path, meta)


def write_meta(path, meta: dict) -> None:
    """Write the sidecar ``path + '.meta.json'`` (JSON-safe: numpy scalars as Python, inf as a string)."""
    _atomic_write(Path(str(path) + ".meta.json"),
                  lambda tmp: Path(tmp).write_text(json.dumps(_clean(meta), indent=2) + "\n"))


# pyarrow's default row group length, the row groups write_table's Parquet files have: a streamed table cuts
# the same ones
ROW_GROUP = 1024 * 1024


class TableWriter:
    """A certificate table written from its parts, in order, with the bytes ``write_table`` writes for the whole.

    Parts go to a temporary file beside ``path``; ``commit`` renames it into
    place and writes the sidecar, and leaving the ``with`` block without
    ``commit`` (an error) removes it, so ``path`` is never half-written. A
    table of fewer than ``stream_after`` rows (default ``ROW_GROUP``) is kept
    and written at once by ``write_table``'s own code; a larger one streams,
    encoded and written on a thread of its own while the caller goes on
    (at most ``IN_FLIGHT`` CSV or JSONL parts, or one Parquet row group, wait
    for it): CSV and JSONL lines part by part, Parquet one row group of
    ``ROW_GROUP`` rows at a time (pyarrow's default, so the file has
    write_table's row groups). Streaming needs every part with rows to have
    the same columns and dtypes (checked; a method returns the same columns
    for every block). A Parquet table whose columns hold Python objects or
    whose parts carry ``attrs`` is kept whole, as its schema depends on
    every part.
    """

    IN_FLIGHT = 4

    def __init__(self, path, stream_after: int = ROW_GROUP):
        self.path = Path(path)
        self.suffix = _suffix(self.path)
        if self.suffix == ".parquet":
            _need_pyarrow(self.path)
        self.stream_after = int(stream_after)
        self.rows = 0
        self._parts, self._kept = [], 0
        self._dtypes = None
        self._file = self._pq = None
        self._streaming = False
        self._io, self._in_flight = None, deque()  # the writing thread and what it has yet to write
        self._memo = {}  # float texts of a CSV table, shared by its parts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._tmp is not None:
            self._abort()

    def write(self, part: pd.DataFrame) -> None:
        """Add the next part (rows after every part written so far)."""
        if len(part):
            if self._dtypes is None:
                self._dtypes = part.dtypes
            elif not (list(part.columns) == list(self._dtypes.index) and (part.dtypes == self._dtypes).all()):
                raise ValueError(f"--out {self.path}: a block's table has other columns or dtypes than the first "
                                 f"block's ({list(part.dtypes.astype(str).items())} vs "
                                 f"{list(self._dtypes.astype(str).items())})")
        elif self._streaming:
            return  # no rows: nothing to write
        self.rows += len(part)
        self._parts.append(part)
        self._kept += len(part)
        if not self._streaming and self._kept >= self.stream_after and self._can_stream():
            self._streaming = True
            self._parts = [p for p in self._parts if len(p)]
        if self._streaming:
            self._flush(final=False)

    def _can_stream(self) -> bool:
        if self.suffix != ".parquet":
            return True
        first = next(p for p in self._parts if len(p))
        return not first.attrs and not any(dt == np.dtype(object) for dt in first.dtypes)

    def _submit(self, job, limit: int) -> None:
        """Run ``job`` on the writing thread after everything submitted before, once fewer than ``limit`` wait."""
        from concurrent.futures import ThreadPoolExecutor

        if self._io is None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="table-writer")
        while len(self._in_flight) >= limit:
            self._in_flight.popleft().result()  # an error of the writing thread is raised here
        self._in_flight.append(self._io.submit(job))

    def _flush(self, final: bool) -> None:
        if self.suffix != ".parquet":
            for part in self._parts:
                self._submit(lambda part=part: self._write_lines(part), self.IN_FLIGHT)
            self._parts, self._kept = [], 0
            return
        while self._kept >= ROW_GROUP or (final and self._kept):
            n = min(ROW_GROUP, self._kept)
            take, rest, got = [], [], 0
            for part in self._parts:
                k = min(n - got, len(part))
                if k:
                    take.append(part.iloc[:k] if k < len(part) else part)
                if k < len(part):
                    rest.append(part.iloc[k:])
                got += k
            self._parts, self._kept = rest, self._kept - n
            self._submit(lambda take=take, n=n: self._write_row_group(take, n), 1)

    def _write_lines(self, part: pd.DataFrame) -> None:
        """On the writing thread: the CSV or JSONL lines of ``part`` (the CSV header before the first)."""
        if self._file is None:
            self._file = open(self._tmp, "wb" if self.suffix == ".csv" else "w")
            if self.suffix == ".csv":
                self._file.write(_csv_header(part))
        if self.suffix == ".csv":
            self._file.write(_csv_rows(part, self._memo))
        else:
            _write_jsonl(part, self._file)

    def _write_row_group(self, parts: list, n: int) -> None:
        """On the writing thread: ``parts`` (n rows) as one row group of the Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        chunks = [pa.Table.from_pandas(p, preserve_index=False) for p in parts]
        parts.clear()
        group = pa.concat_tables(chunks).combine_chunks()  # one chunk per column, as write_table writes it
        del chunks
        if self._pq is None:
            self._pq = pq.ParquetWriter(self._tmp, group.schema, compression="snappy")
        self._pq.write_table(group, row_group_size=n)

    def _finish_writing(self) -> None:
        """Wait for the writing thread's work (raising its error) and close the file."""
        try:
            while self._in_flight:
                self._in_flight.popleft().result()
        finally:
            if self._io is not None:
                self._io.shutdown(wait=True, cancel_futures=True)
            for f in (self._file, self._pq):
                if f is not None:
                    f.close()
            self._file = self._pq = None

    def commit(self, meta: dict | None = None) -> None:
        """Write what is left, move the table into place and write ``meta`` as its sidecar."""
        if self._streaming:
            self._flush(final=True)
            self._finish_writing()
        else:
            table = pd.concat(self._parts, ignore_index=True) if self._parts else pd.DataFrame()
            self._parts = []
            _write_whole(table, self.suffix, self._tmp)
        os.replace(self._tmp, self.path)
        self._tmp = None
        if meta is not None:
            write_meta(self.path, meta)

    def _abort(self) -> None:
        for f in self._in_flight:
            f.cancel()
        try:
            self._finish_writing()
        except Exception:
            pass  # the error that made us abort is the one to report
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, inf/nan to strings/null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    return _json_value(obj)


def read_table(path) -> pd.DataFrame:
    """Read a certificate table written by ``write_table`` (``inf`` parsed back to float), or a published result file.

    A file whose first line is the tab-separated header ``idx label predict
    radius correct [time]`` is one of the field's published result files,
    whatever its name (``certifier.published``); any other file is read by
    its suffix. Errors name the file as ``results file PATH``.
    """
    from .published import is_published, read_published

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results file {path} does not exist")
    if path.is_file() and is_published(path):
        return read_published(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"results file {path}: unknown format: not a certificate table ({', '.join(SUFFIXES)}) nor a "
                         f"tab-separated result file with the header 'idx label predict radius correct [time]'")
    text = {c: str for c in TEXT_COLUMNS}
    if suffix == ".csv":
        df = pd.read_csv(path, dtype=text)
    elif suffix == ".jsonl":
        df = pd.read_json(path, lines=True, dtype=text)
    else:
        df = pd.read_parquet(path)
    for c in TEXT_COLUMNS:  # "" (an empty set) reads back as a missing value from .csv
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    for c in ("theta", "threshold", "radius"):
        if c in df.columns and df[c].dtype == object:
            df[c] = df[c].astype(float)
    for c in ("predict", "label", "correct"):
        if c not in df.columns:
            raise ValueError(f"results file {path} is not a certificate table: column {c!r} missing")
    return df


def read_results(path) -> pd.DataFrame:
    """``read_table``, plus the settings a table's sidecar records instead of a column (what ``report`` reads).

    A conformal table of one variant has no ``robust`` column (its sidecar
    names the variant): it is added from the sidecar, after ``epsilon``, so
    that the tables of several runs are reported and plotted by variant.
    """
    path = Path(path)
    df = read_table(path)
    if "robust" in df.columns or "epsilon" not in df.columns or not (df["method"] == "conformal").any():
        return df
    variants = ((read_meta(path) or {}).get("conformal") or {}).get("robust")
    if isinstance(variants, list) and len(variants) == 1:
        df = df.copy()
        df.insert(df.columns.get_loc("epsilon") + 1, "robust", variants[0])
    return df


def read_meta(path) -> dict | None:
    p = Path(str(path) + ".meta.json")
    if not p.exists():
        return None
    return json.loads(p.read_text())
