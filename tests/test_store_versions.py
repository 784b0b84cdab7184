"""Stores written before format version 3 read exactly as before; the compact layouts of each version.

The fixtures ``tests/fixtures/{compact_v2,full_v2}.zip`` were written by
smoothcert before format version 3 (``tests/fixtures/make_v2_stores.py``
says how); their rows are a pure function of the input, recomputed here.
"""
from __future__ import annotations

import runpy
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.certifier import certify
from smoothcert.store import CompactFullS0, FullRows, StoreError, create_store, open_store
from smoothcert.store.compact import compact_store

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GEN = runpy.run_path(str(FIXTURES / "make_v2_stores.py"))
N, N0, M, K = GEN["N"], GEN["N0"], GEN["M"], GEN["K"]
OLD_COMPACT, OLD_FULL = FIXTURES / "compact_v2.zip", FIXTURES / "full_v2.zip"


def _rows16():
    """(N, R, M) the fixtures' rows as stored (float16, widened to float32), and their full-precision argmax."""
    rows = np.stack([GEN["rows_of"](i) for i in range(N)])
    return rows.astype(np.float16).astype(np.float32), rows.argmax(-1)


def _topk_reference(rows, k):
    """Descending top-k values and classes, ties to the lower class (numpy, independent of the kernel)."""
    order = np.lexsort((np.broadcast_to(np.arange(rows.shape[-1]), rows.shape), -rows), axis=-1)[..., :k]
    return np.take_along_axis(rows, order, -1), order


def test_an_old_compact_store_reads_exactly_as_before(tmp_path):
    rows, arg = _rows16()
    with open_store(OLD_COMPACT) as st:
        assert st.attrs["format_version"] == 2 and st.attrs["layout"] == "compact" and st.topk == K
        assert not st.keeps_full_s0 and not st.layout.has_full_rows
        assert st.verify() == []
        b = st.read_block(0, N, fields=("argmax", "compact"))
        with pytest.raises(StoreError, match="without whole selection rows") as e:
            st.read_block(0, 1, fields=("rows0",))
        assert "\n" not in str(e.value)
    p, c = _topk_reference(rows, K)
    assert np.array_equal(b["topk_p"], p) and np.array_equal(b["topk_c"], c)
    assert np.array_equal(b["argmax"], arg) and b["idx"].tolist() == [10, 11, 12]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(rows > 0, rows.astype(np.float64) * np.log(rows.astype(np.float64)), 0.0).sum(-1)
    np.testing.assert_allclose(b["entropy"], ent, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["cdf", "soft"])
def test_an_old_compact_store_still_refuses_cdf_and_soft_in_one_line(tmp_path, method):
    with pytest.raises(ValueError, match=rf"--method {method} needs full softmax rows.*compact \(top-{K}\)"):
        certify(OLD_COMPACT, method, progress=False)
    r = CliRunner().invoke(cli.main, ["certify", str(OLD_COMPACT), "--method", method, "--out", str(tmp_path / "o.csv")])
    assert r.exit_code != 0 and r.output.count("\n") == 1 and "needs full softmax rows" in r.output, r.output
    assert not (tmp_path / "o.csv").exists()


def test_an_old_compact_store_certifies_as_the_old_full_store(tmp_path):
    import pandas as pd

    for method in ("cohen", "two-step", "uncertainty"):
        want, _ = certify(OLD_FULL, method, progress=False)
        got, meta = certify(OLD_COMPACT, method, progress=False)
        pd.testing.assert_frame_equal(want, got, check_exact=True)
        assert meta["compact"]["certificate"] == "exact" and meta["store_format_version"] == 2


def _chunks(path: Path) -> dict:
    """{relative path: bytes} of every file of a store (a .zip or a folder), the group's zarr.json left out."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    else:
        files = {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}
    return {k: v for k, v in files.items() if k != "zarr.json" and not k.startswith("runs/")}


def test_a_full_store_written_now_has_the_bytes_of_a_format_version_2_store(tmp_path):
    st = create_store(tmp_path / "now.zarr", n_inputs=N, n0=N0, n=GEN["N_EST"], num_classes=M, sigma=GEN["SIGMA"],
                      dtype="float16", layout=FullRows(), metadata={"source": "import", "seed": None})
    for i in range(N):
        st.write_input(i, rows=GEN["rows_of"](i), label=int(GEN["labels"]()[i]), idx=10 + i)
    st.close()
    old, now = _chunks(OLD_FULL), _chunks(tmp_path / "now.zarr")
    assert sorted(old) == sorted(now) and all(old[k] == now[k] for k in old)
    with open_store(tmp_path / "now.zarr") as a, open_store(OLD_FULL) as b:
        assert a.attrs["format_version"] == b.attrs["format_version"] == 2
        assert a.fingerprint() == b.fingerprint()


def test_compacting_an_old_full_store_keeps_its_selection_rows_with_the_old_top_k_bytes(tmp_path):
    compact_store(OLD_FULL, tmp_path / "c.zarr", topk=K)
    rows, _ = _rows16()
    with open_store(tmp_path / "c.zarr") as new, open_store(OLD_COMPACT) as old:
        assert new.layout == CompactFullS0(K) and new.keeps_full_s0 and new.attrs["format_version"] == 3
        assert new.verify() == []
        # the top-k, entropy and argmax parts are the old compact store's, byte for byte
        for col in ("crc_rows", "crc_argmax"):
            assert new.read_records()[col].tolist() == old.read_records()[col].tolist()
        b = new.read_block(0, N, fields=("rows0", "compact"))
    assert b["rows0"].dtype == np.float32 and np.array_equal(b["rows0"], rows[:, :N0])
    old_files, new_files = _chunks(OLD_COMPACT), _chunks(tmp_path / "c.zarr")
    for name in ("topk_p", "topk_c", "entropy", "argmax"):
        keys = [k for k in old_files if k.startswith(name + "/")]
        assert keys and all(old_files[k] == new_files[k] for k in keys), name


def test_verify_names_a_damaged_selection_rows_chunk(tmp_path):
    compact_store(OLD_FULL, tmp_path / "c.zarr", topk=K)
    bad = tmp_path / "bad.zarr"
    shutil.copytree(tmp_path / "c.zarr", bad)
    chunk = next(p for p in sorted((bad / "rows0" / "c" / "1").rglob("*")) if p.is_file())
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    chunk.write_bytes(bytes(raw))
    with open_store(bad) as st:
        problems = st.verify()
        assert [p[0] for p in problems] == [1] and "rows0" in problems[0][2], problems
        with pytest.raises(StoreError, match=r"input 11 \(slot 1\) is damaged"):
            st.read_block(0, N, fields=("rows0",))
        st.read_block(0, N, fields=("compact", "argmax"))          # the other parts of input 11 are intact
    r = CliRunner().invoke(cli.main, ["store", "verify", str(bad)])
    assert r.exit_code == 1 and "slot 1" in r.output and "rows0" in r.output, r.output


def test_verify_finds_selection_rows_that_disagree_with_their_checksummed_top_k(tmp_path):
    """Bytes that pass every checksum but whose rows0 and top-k disagree (a writer's bug) are a value problem."""
    with open_store(OLD_COMPACT) as old:
        kw = [old.read_input(s) for s in range(N)]
    st = create_store(tmp_path / "s.zarr", n_inputs=N, n0=N0, n=GEN["N_EST"], num_classes=M, sigma=0.5,
                      dtype="float16", layout=CompactFullS0(K))
    rows, _ = _rows16()
    for s in range(N):
        sel = rows[s, :N0].copy()
        if s == 2:
            sel[0] = sel[0][::-1]            # another row: checksummed as written, but not the stored top-k's row
        st.write_input(s, rows0=sel, **kw[s])
    assert [(p[0], p[1]) for p in st.verify()] == [(2, 12)]
    assert "disagree" in st.verify()[0][2]
    st.close()


def test_a_compact_s0_write_without_its_selection_rows_is_refused_in_one_line(tmp_path):
    with open_store(OLD_COMPACT) as old:
        kw = old.read_input(0)
    st = create_store(tmp_path / "s.zarr", n_inputs=1, n0=N0, n=GEN["N_EST"], num_classes=M, sigma=0.5,
                      dtype="float16", layout=CompactFullS0(K))
    with pytest.raises(StoreError, match=rf"give rows0 \({N0}, {M}\)"):
        st.write_input(0, **kw)
    with pytest.raises(StoreError, match=rf"rows0 must have shape \({N0}, {M}\)"):
        st.write_input(0, rows0=np.zeros((N0 - 1, M), np.float32), **kw)
    st.close()
