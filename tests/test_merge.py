"""store merge: matching parts merge into a store that certifies like one sampled whole; each mismatch is refused."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.store import StoreError, create_store, open_store
from smoothcert.sampler.merge import merge_stores  # the store merge with --data checked by the sampler

M, N0, N_EST = 5, 20, 200


def _dataset(tmp_path, n=12):
    rng = np.random.default_rng(3)
    x = rng.random((n, 1, 4, 4)).astype(np.float32)
    y = np.arange(n) % M
    p = tmp_path / "data.npz"
    np.savez(p, x=x, y=y)
    return p


def _fp(data_path, spec):
    from smoothcert.sampler.data import fingerprint, load_data, parse_indices

    ds = load_data(str(data_path))
    return fingerprint(ds, parse_indices(spec, len(ds)))


def _rows(seed, idx, R=N0 + N_EST, m=M):
    rng = np.random.default_rng(1000 * seed + idx)
    logits = rng.standard_normal((R, m)) * 1.5
    logits[:, idx % m] += rng.uniform(0, 4)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _sampled(path, indices, *, data_path=None, spec=None, seed=0, n0=N0, n=N_EST, m=M, sigma=0.25, dtype="float16",
             complete=True, run=None, **meta_over):
    """A store as the sampler writes it (metadata keys of sampler/run.py), rows a function of (seed, index)."""
    meta = {"source": "sample", "seed": seed, "model_fingerprint": "m" * 64, "noise_scheme": "smoothcert-splitmix-bm-v1",
            "normalisation": None, "amp": None, "indices": spec,
            "data_fingerprint": _fp(data_path, spec) if data_path is not None else "d" * 64, "device": "cpu"}
    meta.update(meta_over)
    st = create_store(path, n_inputs=len(indices), n0=n0, n=n, num_classes=m, sigma=sigma, dtype=dtype, metadata=meta)
    for s, i in enumerate(indices):
        if not complete and s == len(indices) - 1:
            break
        st.write_input(s, rows=_rows(seed, i, n0 + n, m), label=i % m, idx=i)
    if run:
        st.add_run(run, {"shard": "0/1", "throughput": 123.0})
    st.close()
    return path


@pytest.fixture
def halves(tmp_path):
    data = _dataset(tmp_path)
    a = _sampled(tmp_path / "a.zarr", range(0, 6), data_path=data, spec="0:6:1", run="run-a")
    b = _sampled(tmp_path / "b.zarr", range(6, 12), data_path=data, spec="6:12:1", run="run-b")
    return data, a, b


def test_matching_parts_merge_into_what_one_run_would_have_sampled(tmp_path, halves):
    from smoothcert.certifier import certify

    data, a, b = halves
    whole = _sampled(tmp_path / "whole.zarr", range(12), data_path=data, spec="0:12:1")
    out = tmp_path / "merged.zarr"
    r = merge_stores([b, a], out, data=str(data))  # argument order does not matter: inputs sorted by index
    assert r["inputs"] == 12
    t_whole, _ = certify(whole, "two-step", progress=False)
    t_merged, m_meta = certify(out, "two-step", progress=False)
    pd.testing.assert_frame_equal(t_whole, t_merged, check_exact=True)
    with open_store(out) as st, open_store(a) as sa:
        assert st.verify() == []
        assert list(st.indices()) == list(range(12))
        assert st.attrs["source"] == "merge" and st.attrs["seed"] == 0 and st.attrs["model_fingerprint"] == "m" * 64
        parts = st.attrs["merged_from"]
        assert [p["location"] for p in parts] == [str(b), str(a)]
        assert parts[1]["attrs"]["indices"] == "0:6:1" and parts[1]["fingerprint"] == sa.fingerprint()
        assert parts[1]["attrs"]["created"] == sa.attrs["created"]
        assert "recomputed from --data" in st.attrs["merge_data_check"]
        runs = st.runs()
        assert runs["part1.run-a"]["throughput"] == 123.0 and runs["part0.run-b"]["part"] == 0
    # the --data check reaches the parts of a merged store too: merge it again with a third part
    c = _sampled(tmp_path / "c.zarr", [11], data_path=data, spec="11:12:1")
    with pytest.raises(StoreError, match="dataset index 11 is in both"):
        merge_stores([out, c], tmp_path / "m2.zarr", data=str(data))


def test_merge_to_zip_and_cli(tmp_path, halves):
    data, a, b = halves
    res = CliRunner().invoke(cli.main, ["store", "merge", str(a), str(b), str(tmp_path / "m.zip"), "--data", str(data)])
    assert res.exit_code == 0, res.output
    assert "merged 2 stores (12 inputs)" in res.output
    with open_store(tmp_path / "m.zip") as st:
        assert st.n_inputs == 12 and st.verify() == []
    info = CliRunner().invoke(cli.main, ["store", "info", str(tmp_path / "m.zip")])
    assert "merged from 2 stores" in info.output and "12 of 12 inputs complete" in info.output


def _refusal(tmp_path, parts, match, **kw):
    out = tmp_path / "out.zarr"
    with pytest.raises(StoreError, match=match):
        merge_stores(parts, out, **kw)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("change,match", [
    ({"sigma": 0.5}, r"sigma differs \(0\.25 vs 0\.5\)"),
    ({"n0": 10}, "n0 differs"),
    ({"n": 100}, r"\bn differs"),
    ({"m": 6}, "number of classes differs"),
    ({"dtype": "float32"}, "dtype differs"),
    ({"seed": 1}, r"seed differs \(0 vs 1\)"),
    ({"model_fingerprint": "x" * 64}, "model fingerprint differs"),
    ({"noise_scheme": "other-v2"}, "noise scheme differs"),
    ({"normalisation": {"mean": [0.5], "std": [0.2]}}, "normalisation differs"),
])
def test_each_setting_mismatch_is_refused_with_its_message(tmp_path, halves, change, match):
    data, a, _ = halves
    b = _sampled(tmp_path / "b2.zarr", range(6, 12), data_path=data, spec="6:12:1", **change)
    _refusal(tmp_path, [a, b], match, data=str(data))


def test_data_fingerprint_mismatch_is_refused(tmp_path, halves):
    data, a, b = halves
    # different index ranges, no --data: the fingerprints cannot be compared
    _refusal(tmp_path, [a, b], r"data fingerprint differs .*pass --data DATA")
    # with --data, a part sampled from other data is named
    wrong = _sampled(tmp_path / "w.zarr", range(6, 12), spec="6:12:1", data_fingerprint="e" * 64)
    _refusal(tmp_path, [a, wrong], r"w\.zarr: data fingerprint differs from --data .* at its indices 6:12:1",
             data=str(data))


def test_format_version_mismatch_is_refused(tmp_path, halves):
    _, a, b = halves
    g = zarr.open_group(str(b), mode="r+")
    attrs = dict(g.attrs["smoothcert"])
    attrs["format_version"] = 1  # the version before the metadata checksum: readable, but not mergeable with 2
    attrs.pop("metadata_crc32c")
    g.attrs["smoothcert"] = attrs
    _refusal(tmp_path, [a, b], r"format version differs \(2 vs 1\)")


def test_duplicates_incomplete_parts_and_existing_out_are_refused(tmp_path, halves):
    data, a, b = halves
    dup = _sampled(tmp_path / "dup.zarr", [5, 6], data_path=data, spec="5:7:1")
    _refusal(tmp_path, [a, dup], "dataset index 5 is in both", data=str(data))
    part = _sampled(tmp_path / "part.zarr", range(6, 12), data_path=data, spec="6:12:1", complete=False)
    _refusal(tmp_path, [a, part], r"part\.zarr: input slot 5 is incomplete .*finish its sampling", data=str(data))
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(StoreError, match="already exists"):
        merge_stores([a, b], tmp_path / "exists.zarr", data=str(data))
    with pytest.raises(StoreError, match="given twice"):
        merge_stores([a, a], tmp_path / "x.zarr")


def test_imported_parts_merge_only_when_the_user_asserts_the_data(tmp_path, make_store):
    probs = np.stack([_rows(0, i) for i in range(8)])
    labels = np.arange(8) % M
    p1 = make_store(probs[:3], labels[:3], N0, idx=np.arange(3))
    p2 = make_store(probs[3:], labels[3:], N0, idx=np.arange(3, 8))
    whole = make_store(probs, labels, N0)
    _refusal(tmp_path, [p1, p2], "imported store's fingerprint covers its own .npz.*--assume-same-data")
    out = tmp_path / "m.zarr"
    merge_stores([p1, p2], out, assume_same_data=True)
    from smoothcert.certifier import certify

    pd.testing.assert_frame_equal(certify(whole, "cohen", progress=False)[0], certify(out, "cohen", progress=False)[0])
    with open_store(out) as st:
        assert "asserted by the user" in st.attrs["merge_data_check"]


def test_cli_refusal_is_one_line_and_nonzero(tmp_path, halves):
    _, a, b = halves
    r = CliRunner().invoke(cli.main, ["store", "merge", str(a), str(b), str(tmp_path / "o.zarr")])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.startswith("smoothcert: error:")]
    assert len(lines) == 1 and "data fingerprint differs" in lines[0]
    assert not (tmp_path / "o.zarr").exists()
    r = CliRunner().invoke(cli.main, ["store", "merge", str(a), str(tmp_path / "o.zarr")])
    assert r.exit_code != 0 and "at least two stores" in r.output
