"""The store: import validation, integrity checks, readers, and the CLI's one-line errors."""
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.store import FullRows, StoreError, create_store, open_store
from smoothcert.store.format import FORMAT_VERSION, META_CRC_KEY, sealed
from smoothcert.store.importer import import_npz


def good_source(N=3, R=30, m=4, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(m), size=(N, R)).astype(np.float32)
    return {"probs": probs, "labels": np.arange(N) % m}


def write_npz(tmp_path, name="src.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def invoke(*args):
    r = CliRunner().invoke(cli.main, [str(a) for a in args])
    return r


BAD_INPUTS = [
    # (name, mutate(src) -> src, expected message fragment)
    ("nan", lambda s: s["probs"].__setitem__((1, 7, 2), np.nan) or s, "input 1 (idx 1), row 7: NaN or Inf"),
    ("inf", lambda s: s["probs"].__setitem__((2, 3, 0), np.inf) or s, "input 2 (idx 2), row 3: NaN or Inf"),
    ("negative", lambda s: (s["probs"].__setitem__((0, 5, 1), -0.2), s["probs"].__setitem__((0, 5, 0), s["probs"][0, 5, 0] + 0.2)) and s, "input 0 (idx 0), row 5: negative probability"),
    ("sum", lambda s: s["probs"].__setitem__((1, 2), s["probs"][1, 2] * 1.01) or s, "input 1 (idx 1), row 2: probabilities sum to"),
    ("label-high", lambda s: s.__setitem__("labels", np.array([0, 4, 1])) or s, "input 1: label 4 outside 0..3"),
    ("label-neg", lambda s: s.__setitem__("labels", np.array([0, -1, 1])) or s, "input 1: label -1 outside 0..3"),
    ("label-shape", lambda s: s.__setitem__("labels", np.array([0, 1])) or s, "'labels' must be an integer array of shape (3,)"),
    ("label-float", lambda s: s.__setitem__("labels", np.array([0.0, 1.0, 2.0])) or s, "'labels' must be an integer array"),
    ("probs-2d", lambda s: s.__setitem__("probs", s["probs"][0]) or s, "'probs' must have shape (N, n0+n, m)"),
    ("probs-int", lambda s: s.__setitem__("probs", (s["probs"] > 0.5).astype(np.int32)) or s, "'probs' must be a float array"),
    ("dup-idx", lambda s: s.__setitem__("idx", np.array([5, 7, 5])) or s, "duplicate dataset index 5 at inputs 0 and 2"),
    ("core-range", lambda s: s.__setitem__("core_predict", np.array([0, 9, 1])) or s, "input 1: core_predict 9 outside 0..3"),
]


@pytest.mark.parametrize("name,mutate,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_import_rejects_bad_input_with_one_line_and_no_store(tmp_path, name, mutate, message):
    src = write_npz(tmp_path, **mutate(good_source()))
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", 0.25, "--n0", 10)
    assert r.exit_code != 0
    assert message in r.output, r.output
    err = [l for l in r.output.splitlines() if l.startswith("smoothcert: error:")]
    assert len(err) == 1
    assert not (tmp_path / "st").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".st.partial")]


@pytest.mark.parametrize("n0,message", [(0, "n0 must be at least 1"), (30, "leaves n = 0 < 1")])
def test_import_rejects_bad_split(tmp_path, n0, message):
    src = write_npz(tmp_path, **good_source())
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", 0.25, "--n0", n0)
    assert r.exit_code != 0 and message in r.output
    assert not (tmp_path / "st").exists()


def test_import_rejects_missing_keys_bad_sigma_and_pickles(tmp_path):
    src = write_npz(tmp_path, probs=good_source()["probs"])
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", 0.25, "--n0", 10)
    assert r.exit_code != 0 and "missing array 'labels'" in r.output
    src = write_npz(tmp_path, "ok.npz", **good_source())
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", -1, "--n0", 10)
    assert r.exit_code != 0 and "sigma must be a positive number" in r.output
    obj = tmp_path / "obj.npz"
    np.savez(obj, probs=np.array([{"a": 1}], dtype=object), labels=np.array([0]))
    r = invoke("store", "import", obj, tmp_path / "st", "--sigma", 0.25, "--n0", 1)
    assert r.exit_code != 0 and "without unpickling" in r.output
    notzip = tmp_path / "x.npz"
    notzip.write_bytes(b"not a zip at all")
    r = invoke("store", "import", notzip, tmp_path / "st", "--sigma", 0.25, "--n0", 1)
    assert r.exit_code != 0 and "is not an .npz file" in r.output
    assert not (tmp_path / "st").exists()


def test_import_never_overwrites(tmp_path):
    src = write_npz(tmp_path, **good_source())
    assert invoke("store", "import", src, tmp_path / "st", "--sigma", 0.25, "--n0", 10).exit_code == 0
    before = open_store(tmp_path / "st").fingerprint()
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", 0.5, "--n0", 10)
    assert r.exit_code != 0 and "already exists" in r.output
    assert open_store(tmp_path / "st").fingerprint() == before


def test_import_is_lossless_and_self_describing(tmp_path):
    s = good_source()
    s["idx"] = np.array([10, 20, 30])
    s["core_predict"] = np.array([0, 1, 2])
    src = write_npz(tmp_path, **s)
    r = invoke("store", "import", src, tmp_path / "st", "--sigma", 0.25, "--n0", 10)
    assert r.exit_code == 0, r.output
    st = open_store(tmp_path / "st")
    assert st.dtype == "float32" and st.n0 == 10 and st.n == 20 and st.num_classes == 4
    b = st.read_block(0, 3, fields=("rows", "argmax"))
    np.testing.assert_array_equal(b["rows"], s["probs"])
    np.testing.assert_array_equal(b["argmax"], s["probs"].argmax(-1))
    np.testing.assert_array_equal(b["idx"], [10, 20, 30])
    np.testing.assert_array_equal(b["core_predict"], [0, 1, 2])
    info = invoke("store", "info", tmp_path / "st")
    assert info.exit_code == 0
    # a full store is written with format version 2 as before version 3 (which added the compact-s0 layout only)
    assert FullRows.format_version == 2 < FORMAT_VERSION
    for key in ("sigma: 0.25", "n0: 10", "complete_inputs: 3", f"format_version: {FullRows.format_version}",
                "data_fingerprint"):
        assert key in info.output
    # plain zarr can read it, with named dimensions
    g = zarr.open_group(str(tmp_path / "st"), mode="r")
    assert g["rows"].metadata.dimension_names == ("input", "row", "class")


def test_float16_import_keeps_full_precision_argmax(tmp_path):
    s = good_source(N=2, R=200)
    p = s["probs"]
    p[:, :, 1] = p[:, :, 0] + 1e-6  # class 1 wins by less than float16 can see
    p /= p.sum(-1, keepdims=True)
    src = write_npz(tmp_path, **s)
    import_npz(src, tmp_path / "st", sigma=0.25, n0=10, dtype="float16")
    b = open_store(tmp_path / "st").read_block(0, 2, fields=("rows", "argmax"))
    np.testing.assert_array_equal(b["argmax"], p.argmax(-1))
    assert b["rows"].dtype == np.float32


def _chunk_files(store, array, slot):
    base = Path(store) / array / "c" / str(slot)
    return [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else ([base] if base.is_file() else [])


@pytest.mark.parametrize("array", ["rows", "argmax", "inputs"])
@pytest.mark.parametrize("damage", ["flip", "delete", "truncate"])
def test_damaged_input_named_by_verify_and_refused_by_certify(tmp_path, array, damage):
    s = good_source(N=4)
    s["idx"] = np.array([100, 101, 102, 103])
    src = write_npz(tmp_path, **s)
    st = tmp_path / "st"
    import_npz(src, st, sigma=0.25, n0=10)
    f = _chunk_files(st, array, 2)[0]
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
        f.write_bytes(bytes(data))
    elif damage == "delete":
        f.unlink()
    else:
        f.write_bytes(b"")
    r = invoke("store", "verify", st)
    assert r.exit_code == 1
    assert "slot 2" in r.output and "slot 1" not in r.output and "slot 3" not in r.output
    for method in ("cohen", "two-step"):
        r = invoke("certify", st, "--method", method, "--out", tmp_path / "t.csv", "-q")
        assert r.exit_code != 0, (array, damage, method, r.output)
        assert "smoothcert: error:" in r.output
        assert ("102" in r.output) or ("slot 2" in r.output), r.output
        assert not (tmp_path / "t.csv").exists()


def test_incomplete_input_refused_by_name(tmp_path):
    st = create_store(tmp_path / "st", n_inputs=3, n0=5, n=10, num_classes=3, sigma=0.5)
    rng = np.random.default_rng(0)
    for i in (0, 2):
        st.write_input(i, rows=rng.dirichlet(np.ones(3), 15), label=0, idx=50 + i)
    r = invoke("certify", tmp_path / "st", "--method", "cohen", "--out", tmp_path / "t.csv")
    assert r.exit_code != 0 and "input slot 1 is incomplete" in r.output


def test_duplicate_indices_in_a_store_are_refused(tmp_path):
    st = create_store(tmp_path / "st", n_inputs=2, n0=5, n=10, num_classes=3, sigma=0.5)
    rng = np.random.default_rng(0)
    for i in (0, 1):
        st.write_input(i, rows=rng.dirichlet(np.ones(3), 15), label=0, idx=7)
    r = invoke("certify", tmp_path / "st", "--method", "cohen", "--out", tmp_path / "t.csv")
    assert r.exit_code != 0 and "dataset index 7 appears more than once" in r.output
    r = invoke("store", "verify", tmp_path / "st")
    assert r.exit_code == 1 and "duplicates the dataset index" in r.output


def test_open_rejects_non_stores_and_wrong_versions(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope")
    zarr.open_group(str(tmp_path / "plain"), mode="w")
    with pytest.raises(StoreError, match="not a smoothcert store"):
        open_store(tmp_path / "plain")
    src = write_npz(tmp_path, **good_source())
    import_npz(src, tmp_path / "st", sigma=0.25, n0=10)
    g = zarr.open_group(str(tmp_path / "st"), mode="r+")
    a = dict(g.attrs["smoothcert"])
    a["format_version"] = 99
    g.attrs["smoothcert"] = sealed(a)
    with pytest.raises(StoreError, match="format version 99"):
        open_store(tmp_path / "st")
    a["format_version"] = FORMAT_VERSION
    a["n_inputs"] = 10**12
    g.attrs["smoothcert"] = sealed(a)
    with pytest.raises(StoreError, match="n_inputs must be in"):
        open_store(tmp_path / "st")


def test_group_metadata_is_sealed_by_a_checksum(tmp_path):
    """One flipped bit in zarr.json (sigma 0.5 -> 0.7, a digit's 0x35 -> 0x37) would inflate every radius and pass
    a per-input verify: the metadata checksum makes it a one-line refusal of every command."""
    src = write_npz(tmp_path, **good_source())
    import_npz(src, tmp_path / "st", sigma=0.5, n0=10)
    good = open_store(tmp_path / "st").attrs
    assert META_CRC_KEY not in good  # checked on open, not part of the metadata a reader sees
    meta = tmp_path / "st" / "zarr.json"
    text = meta.read_text()
    assert text.count('"sigma": 0.5') == 1
    meta.write_text(text.replace('"sigma": 0.5', '"sigma": 0.7'))
    with pytest.raises(StoreError, match="metadata checksum mismatch"):
        open_store(tmp_path / "st")
    for args in (["store", "verify"], ["store", "info"], ["certify", "--method", "cohen", "--out", tmp_path / "x.csv"]):
        r = invoke(*args[:2], tmp_path / "st", *args[2:]) if args[0] == "store" else \
            invoke(args[0], tmp_path / "st", *args[1:])
        assert r.exit_code != 0 and "metadata checksum mismatch" in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
    # a flip of the version digit 2 -> 1 (one bit) does not switch the check off: the checksum is still there
    meta.write_text(text.replace('"format_version": 2', '"format_version": 1'))
    with pytest.raises(StoreError, match="metadata checksum mismatch"):
        open_store(tmp_path / "st")
    # nor does losing the checksum key from a version-2 store
    meta.write_text(text)
    g = zarr.open_group(str(tmp_path / "st"), mode="r+")
    a = dict(g.attrs["smoothcert"])
    a.pop(META_CRC_KEY)
    g.attrs["smoothcert"] = a
    with pytest.raises(StoreError, match="checksum .* is missing"):
        open_store(tmp_path / "st")
    # a version-1 store (no checksum yet) is still read, with the same metadata
    a["format_version"] = 1
    g.attrs["smoothcert"] = a
    v1 = open_store(tmp_path / "st").attrs
    assert v1["sigma"] == 0.5 and {k: v for k, v in v1.items() if k != "format_version"} == \
        {k: v for k, v in good.items() if k != "format_version"}


def test_zip_store_round_trip(tmp_path):
    src = write_npz(tmp_path, **good_source(N=5))
    import_npz(src, tmp_path / "st", sigma=0.25, n0=10)
    assert invoke("store", "export", tmp_path / "st", tmp_path / "st.zip").exit_code == 0
    a = invoke("certify", tmp_path / "st", "--method", "two-step", "--alpha", 0.1, "--out", tmp_path / "a.csv", "-q")
    b = invoke("certify", tmp_path / "st.zip", "--method", "two-step", "--alpha", 0.1, "--out", tmp_path / "b.csv", "-q")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    import_npz(src, tmp_path / "direct.zip", sigma=0.25, n0=10)
    assert open_store(tmp_path / "direct.zip").fingerprint() == open_store(tmp_path / "st").fingerprint()


def test_tables_in_all_formats_keep_full_precision(tmp_path):
    import json

    import pandas as pd

    src = write_npz(tmp_path, **good_source(N=4, R=300))
    import_npz(src, tmp_path / "st", sigma=0.3, n0=20)
    for suf in ("csv", "jsonl", "parquet"):
        r = invoke("certify", tmp_path / "st", "--method", "cohen", "--alpha", 0.2, "--out", tmp_path / f"t.{suf}", "-q")
        assert r.exit_code == 0, r.output
        meta = json.loads((tmp_path / f"t.{suf}.meta.json").read_text())
        assert meta["confidence"] == pytest.approx(0.8) and meta["method"] == "cohen" and meta["store_fingerprint"]
        assert "smoothcert certify" in meta["command"]
    from smoothcert.certifier.table import read_table

    t = {s: read_table(tmp_path / f"t.{s}") for s in ("csv", "jsonl", "parquet")}
    pd.testing.assert_frame_equal(t["csv"], t["parquet"], check_dtype=False)
    pd.testing.assert_frame_equal(t["csv"], t["jsonl"], check_dtype=False)
    r = invoke("certify", tmp_path / "st", "--method", "cohen", "--out", tmp_path / "t.txt")
    assert r.exit_code != 0 and "unknown table format" in r.output


def test_report_prints_table_and_plot(tmp_path):
    src = write_npz(tmp_path, **good_source(N=4, R=300))
    import_npz(src, tmp_path / "st", sigma=0.3, n0=20)
    invoke("certify", tmp_path / "st", "--method", "cohen", "--alpha", 0.2, "--out", tmp_path / "a.csv", "-q")
    invoke("certify", tmp_path / "st", "--method", "two-step", "--alpha", 0.2, "--out", tmp_path / "b.csv", "-q")
    r = invoke("report", tmp_path / "a.csv", tmp_path / "b.csv", "--radii", "0,0.1", "--plot", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    assert "acc@0.1" in r.output and "ACR" in r.output and "two-step" in r.output and "cohen" in r.output
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and "smoothcert" in r.output
    for cmd in (["certify"], ["report"], ["store", "import"], ["store", "verify"], ["store", "info"]):
        r = invoke(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output


def test_readable_by_xarray_with_named_dimensions(tmp_path):
    import xarray as xr

    src = write_npz(tmp_path, **good_source())
    import_npz(src, tmp_path / "st", sigma=0.25, n0=10)
    ds = xr.open_zarr(str(tmp_path / "st"), consolidated=False)
    assert ds["rows"].dims == ("input", "row", "class")
    assert ds["argmax"].dims == ("input", "row")
    assert ds["inputs"].dims == ("input", "field")
    assert ds["inputs"].attrs["fields"][:2] == ["idx", "label"]
    np.testing.assert_array_equal(ds["inputs"].values[:, 1], good_source()["labels"])


def test_fsspec_url_store_certifies_like_the_local_path(tmp_path):
    src = write_npz(tmp_path, **good_source(N=4, R=200))
    import_npz(src, tmp_path / "st", sigma=0.25, n0=20)
    a = invoke("certify", tmp_path / "st", "--method", "cohen", "--alpha", 0.1, "--out", tmp_path / "a.csv", "-q")
    url = "file://" + str(tmp_path / "st")
    b = invoke("certify", url, "--method", "cohen", "--alpha", 0.1, "--out", tmp_path / "b.csv", "-q")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_fsspec_memory_backend_round_trip(tmp_path):
    """A non-local fsspec backend (memory://) goes through zarr's FsspecStore end to end."""
    from smoothcert.certifier import CertifyOptions, certify

    src = write_npz(tmp_path, **good_source(N=3, R=120))
    import_npz(src, tmp_path / "st", sigma=0.25, n0=20)
    import_npz(src, "memory://smoothcert-test/st", sigma=0.25, n0=20)
    assert open_store("memory://smoothcert-test/st").fingerprint() == open_store(tmp_path / "st").fingerprint()
    a, _ = certify(tmp_path / "st", "two-step", CertifyOptions(alpha=0.1), progress=False)
    b, _ = certify("memory://smoothcert-test/st", "two-step", CertifyOptions(alpha=0.1), progress=False)
    assert a.equals(b)
    with pytest.raises(StoreError, match="already exists"):
        import_npz(src, "memory://smoothcert-test/st", sigma=0.25, n0=20)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_same_thread_chunk_reads_equal_zarrs_reads(tmp_path, monkeypatch, dtype):
    """store.direct reads a local store's chunks itself: the same arrays, dtypes and fill values as zarr's reads;
    a zip store (or any other layout) is read by zarr."""
    from smoothcert.store import direct
    from smoothcert.store.share import export_zip

    rng = np.random.default_rng(3)
    st = create_store(tmp_path / "st", n_inputs=4, n0=5, n=40, num_classes=3, sigma=0.5, dtype=dtype, members=2)
    for i in (0, 1, 3):                                  # slot 2 never written: its chunks are missing
        lp = np.log(rng.dirichlet(np.ones(3), (45, 2))).astype(np.float32)
        p = np.exp(lp).mean(1)
        st.write_input(i, rows=p / p.sum(1, keepdims=True), label=i % 3, idx=10 + i, member_logprobs=lp)
    st.close()
    fields = ("rows", "argmax", "member_logprobs")
    s = open_store(tmp_path / "st")
    assert all(s._direct_reader(f) is not None for f in fields)
    fast = s.read_block(0, 4, fields=fields, only_complete=True)
    raw = {f: s._read(f, 0, 4, None) for f in fields}
    monkeypatch.setattr(direct, "ENABLED", False)
    z = open_store(tmp_path / "st")
    slow = z.read_block(0, 4, fields=fields, only_complete=True)
    for f in fields:
        assert fast[f].dtype == slow[f].dtype and np.array_equal(fast[f], slow[f], equal_nan=True), f
        zr = z._read(f, 0, 4, None)                      # the missing slot reads as the fill value in both
        assert raw[f].dtype == zr.dtype and np.array_equal(raw[f], zr, equal_nan=True), f
    monkeypatch.setattr(direct, "ENABLED", True)
    export_zip(tmp_path / "st", tmp_path / "st.zip")
    zs = open_store(tmp_path / "st.zip")
    assert zs._direct_reader("rows") is None
    got = zs.read_block(0, 4, fields=fields, only_complete=True)
    assert all(np.array_equal(got[f], fast[f], equal_nan=True) for f in fields)


def test_a_chunk_zstd_cannot_decode_is_named_by_its_input(tmp_path):
    s = good_source(N=3)
    s["idx"] = np.array([7, 8, 9])
    import_npz(write_npz(tmp_path, **s), tmp_path / "st", sigma=0.25, n0=10)
    f = _chunk_files(tmp_path / "st", "rows", 1)[0]
    f.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)        # a zstd magic number, then garbage
    with pytest.raises(StoreError, match=r"input 8 \(slot 1\) is damaged: 'rows' cannot be decoded"):
        open_store(tmp_path / "st").read_block(0, 3, fields=("rows",))


def test_a_chunk_declaring_another_size_is_refused_before_it_is_decoded(tmp_path):
    """A zstd frame whose header declares 1 TiB (a decompression bomb) is named, not allocated."""
    s = good_source(N=3)
    s["idx"] = np.array([7, 8, 9])
    import_npz(write_npz(tmp_path, **s), tmp_path / "st", sigma=0.25, n0=10)
    f = _chunk_files(tmp_path / "st", "rows", 2)[0]
    f.write_bytes(b"\x28\xb5\x2f\xfd\xe0" + (1 << 40).to_bytes(8, "little") + b"\x00" * 32)
    with pytest.raises(StoreError, match=r"input 9 \(slot 2\) is damaged: 'rows' cannot be decoded .*1099511627776 bytes"):
        open_store(tmp_path / "st").read_block(0, 3, fields=("rows",))


def test_zstd_frame_content_size_read_from_the_header():
    from numcodecs import Zstd

    from smoothcert.store.direct import frame_content_size

    for n in (0, 1, 255, 256, 65791, 65792, 70_000, 2_002_000):
        data = np.random.default_rng(n).integers(0, 4, n, dtype=np.uint8)
        for level in (1, 5):
            assert frame_content_size(Zstd(level=level).encode(data)) == n
    assert frame_content_size(b"not zstd") is None


def test_float16_rounding_is_numpys_at_every_boundary_and_special_value():
    """store.float16.to_float16 == astype(float16) bit for bit (bench/exhaustive.py: every finite float32)."""
    from smoothcert.store.float16 import to_float16

    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    mid = ((h[:-1] + h[1:]) / 2).astype(np.float32)                     # ties: exact in float32
    rng = np.random.default_rng(0)
    sub = (rng.integers(102, 114, 1 << 18).astype(np.uint32) << 23 | rng.integers(0, 1 << 23, 1 << 18).astype(np.uint32))
    special = np.array([0.0, 2.0 ** -25, 2.0 ** -24, 3 * 2.0 ** -26, 65504, 65519.99, 65520, 1e30, 3.4e38, 1e-45],
                       dtype=np.float32)
    x = np.concatenate([mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)),
                        h.astype(np.float32), sub.view(np.float32), special])
    x = np.concatenate([x, -x])
    with np.errstate(over="ignore"):                                  # numpy warns where it rounds to infinity
        want = x.astype(np.float16)
    assert to_float16(x).view(np.uint16).tobytes() == want.view(np.uint16).tobytes()
    nonfinite = np.array([[1.0, np.nan], [np.inf, -np.inf]], np.float32)   # left to numpy
    out = np.empty((2, 4), np.float16)[:, ::2]                               # a non-contiguous destination
    with np.errstate(invalid="ignore"):
        assert to_float16(nonfinite, out=out).view(np.uint16).tobytes() == nonfinite.astype(np.float16).view(np.uint16).tobytes()


def test_a_float16_store_holds_the_float32_rows_rounded_as_numpy_rounds(tmp_path):
    rng = np.random.default_rng(1)
    lg = rng.normal(size=(45, 6)).astype(np.float32) * 4
    lg[:, 2] += 20                                                     # peaked: most entries float16-subnormal
    p = np.exp(lg - lg.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    st = create_store(tmp_path / "st", n_inputs=1, n0=5, n=40, num_classes=6, sigma=0.5, dtype="float16")
    st.write_input(0, rows=p, label=2, idx=0)
    st.close()
    got = open_store(tmp_path / "st")._read("rows", 0, 1, None)[0]
    assert got.tobytes() == p.astype(np.float16).tobytes()


def test_the_writer_runs_are_listed_in_the_order_of_their_ids(tmp_path):
    """``store info`` lists runs through ``runs()``: the same order whatever order the file system lists them in."""
    st = create_store(tmp_path / "s", n_inputs=1, n0=2, n=3, num_classes=4, sigma=0.25)
    ids = [f"part{k}.2026120{k % 7}T0{k}0000-host-{k}" for k in range(12)]
    for k in np.random.default_rng(0).permutation(12):
        st.add_run(ids[k], {"k": int(k)})
    st.close()
    with open_store(tmp_path / "s") as st:
        assert list(st.runs()) == sorted(ids) and [r["k"] for r in st.runs().values()] == [ids.index(i) for i in sorted(ids)]
