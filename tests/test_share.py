"""Sharing: export to .zip (from any backend) and read it back directly; store info says who made the store."""
from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.store import StoreError, open_store
from smoothcert.store.share import export_zip, safe_member_name


def _probs(N=6, R=130, m=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, R, m)) * 2
    logits[np.arange(N), :, np.arange(N) % m] += 2.5
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def folder(make_store):
    return make_store(_probs(), np.arange(6) % 4, 30, dtype="float16", core_predict=np.arange(6) % 4)


def test_zip_round_trip_certifies_like_the_folder(folder, tmp_path):
    from smoothcert.certifier import certify

    out = tmp_path / "shared.zip"
    r = CliRunner().invoke(cli.main, ["store", "export", str(folder), str(out)])
    assert r.exit_code == 0, r.output
    with open_store(folder) as a, open_store(out) as b:
        assert a.fingerprint() == b.fingerprint() and b.verify() == []
        assert r.output.strip().endswith(a.fingerprint())
    for method in ("two-step", "aces"):
        pd.testing.assert_frame_equal(certify(folder, method, progress=False)[0], certify(out, method, progress=False)[0],
                                      check_exact=True)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names == sorted(names) and len(names) == len(set(names))
        assert all(safe_member_name(n) == n for n in names)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    # zip -> zip keeps the bytes: the same store exported twice is the same file
    again = tmp_path / "again.zip"
    export_zip(out, again)
    assert again.read_bytes() == out.read_bytes()


def test_export_refuses_existing_bad_or_inside_targets(folder, tmp_path):
    (tmp_path / "x.zip").write_bytes(b"keep me")
    with pytest.raises(StoreError, match="already exists"):
        export_zip(folder, tmp_path / "x.zip")
    assert (tmp_path / "x.zip").read_bytes() == b"keep me"
    with pytest.raises(StoreError, match="ending in .zip"):
        export_zip(folder, tmp_path / "x.tar")
    with pytest.raises(StoreError, match="inside store"):
        export_zip(folder, folder / "self.zip")
    with pytest.raises(StoreError, match="does not exist"):
        export_zip(tmp_path / "nope", tmp_path / "n.zip")
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    r = CliRunner().invoke(cli.main, ["store", "export", str(folder), str(tmp_path / "x.zip")])
    assert r.exit_code != 0 and r.output.count("\n") == 1 and "already exists" in r.output


@pytest.mark.parametrize("key", ["../evil", "/abs/zarr.json", "a/../../b", "a\\b", "", "a//b", "./x", "c:/x"])
def test_member_names_that_could_escape_are_refused(key):
    with pytest.raises(StoreError, match="not a safe relative path"):
        safe_member_name(key)


def test_export_from_an_fsspec_url(folder, tmp_path):
    from smoothcert.certifier import certify

    url = "file://" + str(folder)
    out = tmp_path / "from-url.zip"
    export_zip(url, out)
    pd.testing.assert_frame_equal(certify(folder, "cohen", progress=False)[0], certify(out, "cohen", progress=False)[0])


def test_info_says_who_made_the_store_when_with_what_and_its_checksums(folder):
    r = CliRunner().invoke(cli.main, ["store", "info", str(folder)])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[:2]
    assert first[0].startswith("made by: ") and "@" in first[0] and "(UTC)" in first[0] and "zarr" in first[0]
    with open_store(folder) as st:
        assert first[1] == f"checksums: 6 of 6 inputs complete; metadata checksum ok; fingerprint {st.fingerprint()}"
        assert st.attrs["user"] and st.attrs["host"]
    j = CliRunner().invoke(cli.main, ["store", "info", str(folder), "--json"])
    assert '"fingerprint"' in j.output and '"complete_inputs": 6' in j.output
