"""Tables written block by block: the bytes of the whole-table writers, bounded work ahead, nothing half-written.

``csvtext.csv_lines`` against ``DataFrame.to_csv``, ``table.TableWriter``
against ``write_table`` of the concatenated parts (CSV, JSONL, Parquet row
groups), ``report.ConsoleSummary`` against ``console_summary``, and the
engine's in-order hand-off (``engine._in_order``) with its window.
"""
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from smoothcert.certifier.csvtext import csv_lines
from smoothcert.certifier.table import TableWriter, write_table


def frame(rng, n, start=0):
    """Every column kind a certificate table has, with the values that format unusually."""
    odd = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e16, 1e-5, 5e-324, 0.1 + 0.2, 1.7976931348623157e308])
    return pd.DataFrame({
        "idx": np.arange(start, start + n, dtype=np.int64),
        "label": rng.integers(-3, 1000, n),
        "method": pd.Series(["uncertainty"] * n, dtype="str"),
        "uncertainty": pd.Categorical.from_codes(rng.integers(0, 3, n), ["entropy", "confidence", "margin"]),
        "theta": rng.choice(np.linspace(-1, 2.3, 37), n),
        "radius": rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n),
        "p_lower": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        "odd": rng.choice(odd, n),
        "small": rng.integers(0, 5, n).astype(np.int16),
        "single": rng.random(n).astype(np.float32),
        "big": rng.integers(0, 2**63 - 1, n, dtype=np.int64),
        "names": pd.Series(rng.choice(["0+1", "a b", "", None], n), dtype=object),
    })


def test_csv_lines_are_to_csv_bytes():
    rng = np.random.default_rng(0)
    df = frame(rng, 5000)
    df.loc[7, "names"] = None
    assert csv_lines(df) == df.to_csv(index=False, header=False).encode()
    assert csv_lines(df.iloc[:0]) == b""
    memo = {}
    for part in (df.iloc[:2000], df.iloc[2000:]):  # a memo of float texts shared across parts
        assert csv_lines(part, memo) == part.to_csv(index=False, header=False).encode()
    assert memo


@pytest.mark.parametrize("column", [
    pd.Series([True, False]),                                          # booleans
    pd.Series(["a,b", "c"], dtype="str"),                              # the csv module would quote these
    pd.Series(['say "x"', "c"], dtype=object),
    pd.Series(["line\nbreak", "c"], dtype=object),
    pd.Series([1, "x"], dtype=object),                                 # objects that are not strings
    pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"])),
    pd.Series(pd.Categorical([1.5, 2.5])),                             # categories that are not strings
])
def test_csv_lines_leave_other_columns_to_pandas(column):
    assert csv_lines(pd.DataFrame({"a": [1, 2], "b": column})) is None


def parts_of(rng, sizes):
    parts, at = [], 0
    for n in sizes:
        parts.append(frame(rng, n, at))
        at += n
    return parts


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("stream_after", [1, 10**9])
def test_writer_gives_write_tables_bytes(tmp_path, suffix, stream_after):
    """Streamed from the first part on or kept whole: the bytes of write_table of the concatenation."""
    rng = np.random.default_rng(1)
    parts = parts_of(rng, [300, 0, 1, 450, 77])
    if suffix == ".parquet":
        parts = [p.drop(columns="names") for p in parts]  # objects: kept whole, tested below
    whole = pd.concat(parts, ignore_index=True)
    write_table(whole, tmp_path / f"whole{suffix}", {"a": 1})
    with TableWriter(tmp_path / f"parts{suffix}", stream_after=stream_after) as w:
        for p in parts:
            w.write(p)
        w.commit({"a": 1})
    assert (tmp_path / f"parts{suffix}").read_bytes() == (tmp_path / f"whole{suffix}").read_bytes()
    assert (tmp_path / f"parts{suffix}.meta.json").read_bytes() == (tmp_path / f"whole{suffix}.meta.json").read_bytes()
    assert w.rows == len(whole)
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(
        [f"parts{suffix}", f"parts{suffix}.meta.json", f"whole{suffix}", f"whole{suffix}.meta.json"])


def test_parquet_row_groups_as_write_table_cuts_them(tmp_path, monkeypatch):
    """Parquet streams whole row groups of pyarrow's default length: with that length made small, the file equals
    ``to_parquet(row_group_size=...)`` of the whole; with the real default (1,048,576 rows) too, on 1.2 M rows."""
    import pyarrow.parquet as pq

    from smoothcert.certifier import table as T

    rng = np.random.default_rng(2)
    parts = [p.drop(columns="names") for p in parts_of(rng, [700, 650, 10, 900])]
    whole = pd.concat(parts, ignore_index=True)
    monkeypatch.setattr(T, "ROW_GROUP", 1000)
    whole.to_parquet(tmp_path / "whole.parquet", index=False, row_group_size=1000)
    with TableWriter(tmp_path / "parts.parquet", stream_after=1) as w:
        for p in parts:
            w.write(p)
        w.commit()
    assert pq.ParquetFile(tmp_path / "parts.parquet").metadata.num_row_groups == 3
    assert (tmp_path / "parts.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    monkeypatch.undo()

    n, k = 1_200_000, 8
    big = pd.DataFrame({"idx": np.arange(n, dtype=np.int64),
                        "theta": np.tile(np.linspace(0, 1, 1000), n // 1000),
                        "guarantee": pd.Categorical.from_codes(np.arange(n) % 2, ["cc", "ncl"])})
    write_table(big, tmp_path / "big-whole.parquet")
    with TableWriter(tmp_path / "big-parts.parquet") as w:
        for i in range(k):
            w.write(big.iloc[i * n // k:(i + 1) * n // k].reset_index(drop=True))
        w.commit()
    assert pq.ParquetFile(tmp_path / "big-parts.parquet").metadata.num_row_groups == 2
    assert (tmp_path / "big-parts.parquet").read_bytes() == (tmp_path / "big-whole.parquet").read_bytes()


def test_parquet_with_objects_or_attrs_is_kept_whole(tmp_path):
    rng = np.random.default_rng(3)
    for name, parts in (("objects", parts_of(rng, [40, 50])), ("attrs", parts_of(rng, [40, 50]))):
        if name == "attrs":
            parts = [p.drop(columns="names") for p in parts]
            for p in parts:
                p.attrs["ensemble"] = {"kcr": 0.5}
        write_table(pd.concat(parts, ignore_index=True), tmp_path / f"{name}-whole.parquet")
        with TableWriter(tmp_path / f"{name}.parquet", stream_after=1) as w:
            for p in parts:
                w.write(p)
            w.commit()
        assert (tmp_path / f"{name}.parquet").read_bytes() == (tmp_path / f"{name}-whole.parquet").read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_failure_leaves_nothing(tmp_path, suffix):
    """An error while parts are written (or a block with other dtypes) removes the temporary file; an existing
    table of that name stays as it was."""
    rng = np.random.default_rng(4)
    parts = [p.drop(columns="names") for p in parts_of(rng, [30, 30])]
    out = tmp_path / f"t{suffix}"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with TableWriter(out, stream_after=1) as w:
            w.write(parts[0])
            raise RuntimeError("a block failed")
    odd = parts[1].assign(small=parts[1]["small"].astype(np.float64))
    with pytest.raises(ValueError, match="other columns or dtypes"):
        with TableWriter(out, stream_after=1) as w:
            w.write(parts[0])
            w.write(odd)
    assert out.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == [out.name]


def test_console_summary_from_parts_equals_the_whole():
    from smoothcert.certifier.report import ConsoleSummary, console_summary

    rng = np.random.default_rng(5)
    n = 6 * 40
    df = pd.DataFrame({
        "idx": np.repeat(np.arange(6), 40), "label": 0, "method": "uncertainty",
        "uncertainty": pd.Categorical.from_codes(np.tile(np.repeat([0, 1], 20), 6), ["entropy", "margin"]),
        "theta": np.tile(np.concatenate([np.linspace(0, 1, 19), [math.nan]] * 2), 6),
        "predict": rng.integers(-1, 2, n), "radius": rng.random(n), "correct": rng.integers(0, 2, n)})
    for limit in (5, 12, 100):
        s = ConsoleSummary(limit)
        for a in range(0, n, 50):
            s.add(df.iloc[a:a + 50])
        assert s.text("OUT") == console_summary(df, "OUT", limit)
        assert s.rows == n


def test_blocks_handed_on_in_order_within_the_window():
    """Blocks finish in any order but reach the consumer in block order; no block is started more than ``window``
    ahead of the one being handed on; a failing block cancels those not yet started and raises."""
    from smoothcert.certifier.engine import _in_order

    class Bar:
        def update(self, k):
            pass

    started, seen, lock = [], [], threading.Lock()
    n, window = 23, 4

    def work(i):
        rng = np.random.default_rng(i)
        x = float(rng.random())
        for _ in range(int(2000 * x)):
            x = math.sin(x)
        return i

    with ThreadPoolExecutor(3) as pool:
        def submit(i):
            with lock:
                assert i < len(seen) + window  # never more than window beyond the next block handed on
                started.append(i)
            return pool.submit(work, i)

        _in_order(n, submit, window, seen.append, Bar())
        assert seen == list(range(n)) and started == list(range(n))

        def failing(i):
            if i == 5:
                raise ValueError("block 5 is damaged")
            return i

        got = []
        with pytest.raises(ValueError, match="block 5"):
            _in_order(n, lambda i: pool.submit(failing, i), window, got.append, Bar())
        assert got == [0, 1, 2, 3, 4]
