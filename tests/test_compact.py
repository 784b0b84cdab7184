"""Compact stores (top-k per row + exact entropy) on 1,000 classes: every certificate they support equals the full-row one."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.certifier import CertifyOptions, certify
from smoothcert.store import CompactRows, StoreError, create_store, open_store

M, N, N0, N_EST, K = 1000, 6, 60, 300, 5


def _rows(rng, R, m, label, strength):
    """Peaked 1,000-class softmax rows with a runner-up and a long tail, as a trained classifier gives under noise."""
    logits = rng.standard_normal((R, m)).astype(np.float32) * 1.5
    logits[:, label] += strength + rng.standard_normal(R).astype(np.float32) * 2.0
    logits[:, (label + 1) % m] += strength * 0.5
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(full float16 store, compact copy, compact import of the same source)."""
    d = tmp_path_factory.mktemp("compact")
    rng = np.random.default_rng(11)
    probs = np.stack([_rows(rng, N0 + N_EST, M, (7 * i) % M, [0.5, 3.0, 6.0, 9.0, 12.0, 4.0][i]) for i in range(N)])
    labels = (7 * np.arange(N)) % M
    core = labels.copy()
    core[1] = 3
    np.savez(d / "src.npz", probs=probs, labels=labels, core_predict=core)
    run = CliRunner()
    r = run.invoke(cli.main, ["store", "import", str(d / "src.npz"), str(d / "full.zarr"), "--sigma", "0.5",
                              "--n0", str(N0), "--dtype", "float16"])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli.main, ["store", "compact", str(d / "full.zarr"), str(d / "compact.zarr"), "--topk", str(K)])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli.main, ["store", "import", str(d / "src.npz"), str(d / "imported.zarr"), "--sigma", "0.5",
                              "--n0", str(N0), "--dtype", "float16", "--compact-topk", str(K)])
    assert r.exit_code == 0, r.output
    return d / "full.zarr", d / "compact.zarr", d / "imported.zarr"


def _exact_thetas(compact):
    """Thresholds that equal some rows' own u values (where '<' versus '<=' would show) plus a grid."""
    with open_store(compact) as st:
        b = st.read_block(0, N, fields=("argmax", "compact"))
    e, p = b["entropy"], b["topk_p"].astype(np.float64)
    exact = list(e[:, [0, 7, N0 + 3]].ravel()) + list(-p[:, [1, N0 + 5], 0].ravel()) \
        + list(-(p[:, [2, N0 + 9], 0] - p[:, [2, N0 + 9], 1]).ravel())
    return exact, e


CASES = [
    ("cohen", {}),
    ("cohen-predict", {}),
    ("two-step", {}),
    ("adaptive", {"radius": 0.25, "stages": [50, 100, 300]}),
    ("uncertainty", "thetas"),
    ("aces", "ace-thetas"),
    ("aces-predict", "ace-thetas"),
]


@pytest.mark.parametrize("method,opts", CASES)
def test_supported_certificates_are_exact_on_a_compact_1000_class_store(stores, method, opts):
    full, compact, imported = stores
    exact, ent = _exact_thetas(compact)
    if opts == "thetas":
        o = CertifyOptions(uncertainty=["entropy", "confidence", "margin"],
                           theta=sorted(set(exact + list(np.linspace(-1, 7, 41)) + [math.inf])))
    elif opts == "ace-thetas":
        o = CertifyOptions(theta=sorted(set(list(np.clip(ent[:, [1, 4, N0]].ravel() / math.log(M), 0, 1))
                                            + list(np.linspace(0, 1, 101)))))
    else:
        o = CertifyOptions(**opts)
    want, _ = certify(full, method, o, progress=False)
    assert len(want) >= N and (want["predict"] >= 0).any() and (want["predict"] < 0).any() or method == "cohen-predict"
    for store in (compact, imported):
        got, meta = certify(store, method, o, progress=False)
        pd.testing.assert_frame_equal(want, got, check_exact=True)
        assert meta["compact"]["certificate"] == "exact" and meta["compact"]["topk"] == K
        assert meta["compact"]["why"].startswith("exact:")


def _compact_without_selection_rows(full, path):
    """The compact store of ``full`` as written before format version 3 (layout ``compact``: no whole S0 rows)."""
    with open_store(full) as f:
        st = create_store(path, n_inputs=f.n_inputs, n0=f.n0, n=f.n, num_classes=f.num_classes, sigma=f.sigma,
                          dtype=f.dtype, core_predict=f.has_core_predict, layout=CompactRows(K))
        for s in range(f.n_inputs):
            st.write_input(s, **f.read_input(s))
        st.close()
    return path


@pytest.mark.parametrize("method", ["cdf", "soft"])
def test_methods_that_need_full_rows_refuse_a_compact_store_without_selection_rows_in_one_line(stores, tmp_path,
                                                                                              method):
    compact = _compact_without_selection_rows(stores[0], tmp_path / "old.zarr")
    with pytest.raises(ValueError, match=rf"--method {method} needs full softmax rows.*compact \(top-{K}\)"):
        certify(compact, method, progress=False)
    r = CliRunner().invoke(cli.main, ["certify", str(compact), "--method", method, "--out", str(tmp_path / "o.csv")])
    assert r.exit_code != 0 and r.output.count("\n") == 1 and "needs full softmax rows" in r.output
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(ValueError, match="per-member rows"):
        certify(compact, "two-step", CertifyOptions(members=[0]), progress=False)


def test_a_1000_class_compact_store_is_over_20x_smaller_apart_from_its_selection_rows_and_self_describing(stores):
    full, compact, imported = stores

    def size(p):
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

    ratio = size(full) / (size(compact) - size(compact / "rows0"))
    assert ratio >= 20, ratio
    # the whole selection rows cost what they cost in the full store (N0 of N0 + N_EST rows), within compression
    assert size(compact / "rows0") <= 1.2 * size(full / "rows") * N0 / (N0 + N_EST)
    with open_store(full) as f, open_store(compact) as c, open_store(imported) as i:
        assert c.attrs["layout"] == "compact-s0" and c.attrs["topk"] == K and c.verify() == []
        assert c.keeps_full_s0 and i.keeps_full_s0 and c.attrs["format_version"] == 3
        assert c.attrs["compacted_from"]["fingerprint"] == f.fingerprint()
        assert [c.attrs[k] for k in ("sigma", "n0", "n", "num_classes", "dtype")] == \
               [f.attrs[k] for k in ("sigma", "n0", "n", "num_classes", "dtype")]
        # the same rows give the same stored bytes whichever way the compact store was made
        for col in ("crc_rows", "crc_argmax", "crc_members"):
            assert c.read_records()[col].tolist() == i.read_records()[col].tolist()
        with pytest.raises(StoreError, match=r"compact \(top-5 per row\): it holds no full softmax rows"):
            c.read_block(0, 1, fields=("rows",))
        b = c.read_block(0, N, fields=("compact", "rows0"))
        rows = f.read_block(0, N, fields=("rows",))["rows"]
    # top-k values are the stored float16 values, their classes point at them, in descending order
    assert np.array_equal(np.take_along_axis(rows, b["topk_c"].astype(np.int64), -1), b["topk_p"])
    assert (np.diff(b["topk_p"], axis=-1) <= 0).all()
    assert np.array_equal(b["topk_p"], -np.sort(-rows, axis=-1)[..., :K])
    # the selection rows are the full store's first N0 rows, float32 of the stored float16, in store order
    assert b["rows0"].dtype == np.float32 and b["rows0"].shape == (N, N0, M)
    assert np.array_equal(b["rows0"], rows[:, :N0])


def test_damage_in_a_compact_store_is_named(stores, tmp_path):
    import shutil

    _, compact, _ = stores
    bad = tmp_path / "bad.zarr"
    shutil.copytree(compact, bad)
    chunk = next(p for p in sorted((bad / "entropy" / "c" / "2").rglob("*")) if p.is_file())
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"input 2 \(slot 2\) is damaged: .entropy. cannot be decoded"):
        certify(bad, "uncertainty", progress=False)
    r = CliRunner().invoke(cli.main, ["store", "verify", str(bad)])
    assert r.exit_code == 1 and "slot 2" in r.output


def test_compact_refuses_bad_requests(stores, tmp_path):
    full, compact, _ = stores
    for args, msg in [([str(full), str(tmp_path / "o.zarr"), "--topk", "1"], "--topk must be in 2..256"),
                      ([str(compact), str(tmp_path / "o.zarr"), "--topk", "3"], "compact already"),
                      ([str(full), str(compact), "--topk", "3"], "already exists")]:
        r = CliRunner().invoke(cli.main, ["store", "compact", *args])
        assert r.exit_code != 0 and msg in r.output, r.output
    assert not (tmp_path / "o.zarr").exists()
