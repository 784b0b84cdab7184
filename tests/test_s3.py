"""Stores on S3-compatible object storage (moto's server on 127.0.0.1): written, certified, exported; no credentials kept."""
from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

KEY_ID = "SMOOTHCERTTESTKEYID7"
SECRET = "smoothcert-test-secret-do-not-store-9f3a"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 and the environment that points s3fs at it (fake credentials)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for k, v in env.items():
        mp.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CA_BUNDLE"):
        mp.delenv(k, raising=False)
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket="stores")
    try:
        yield {"client": client, "endpoint": env["AWS_ENDPOINT_URL"], "port": port}
    finally:
        mp.undo()
        server.stop()


def _probs(N=5, R=160, m=6, seed=1):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, R, m)) * 2
    logits[np.arange(N), :, np.arange(N) % m] += 3
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


def _all_bytes(client, bucket="stores", prefix=""):
    out = b""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out += o["Key"].encode() + b"\n" + client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def test_store_on_s3_certifies_like_the_local_copy_and_keeps_no_credentials(s3, tmp_path):
    from smoothcert import cli
    from smoothcert.certifier import certify
    from smoothcert.store import open_store

    np.savez(tmp_path / "src.npz", probs=_probs(), labels=np.arange(5) % 6)
    url = "s3://stores/run1.zarr"
    r = CliRunner().invoke(cli.main, ["store", "import", str(tmp_path / "src.npz"), url, "--sigma", "0.25", "--n0", "40"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli.main, ["store", "import", str(tmp_path / "src.npz"), str(tmp_path / "local.zarr"),
                                      "--sigma", "0.25", "--n0", "40"])
    assert r.exit_code == 0, r.output
    with open_store(url) as st, open_store(tmp_path / "local.zarr") as loc:
        assert st.fingerprint() == loc.fingerprint() and st.verify() == []
    t_local, _ = certify(tmp_path / "local.zarr", "two-step", progress=False)
    t_s3, meta = certify(url, "two-step", progress=False)
    pd.testing.assert_frame_equal(t_local, t_s3, check_exact=True)
    # two worker processes read S3 with the credentials from their environment
    t_w, _ = certify(url, "two-step", workers=2, block_size=2, progress=False)
    pd.testing.assert_frame_equal(t_local, t_w, check_exact=True)
    # credentials passed explicitly reach the reader, and never the results
    so = {"key": KEY_ID, "secret": SECRET, "client_kwargs": {"endpoint_url": s3["endpoint"]}}
    t_so, meta_so = certify(url, "cohen", progress=False, storage_options=so)
    out = tmp_path / "t.csv"
    r = CliRunner().invoke(cli.main, ["certify", url, "--method", "two-step", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    stored = _all_bytes(s3["client"], prefix="run1.zarr/")
    assert b"zarr.json" in stored
    written = [stored, out.read_bytes(), (tmp_path / "t.csv.meta.json").read_bytes(),
               json.dumps(meta, default=str).encode(), json.dumps(meta_so, default=str).encode()]
    for blob in written:
        assert KEY_ID.encode() not in blob and SECRET.encode() not in blob
    info = CliRunner().invoke(cli.main, ["store", "info", url])
    assert info.exit_code == 0 and KEY_ID not in info.output and SECRET not in info.output
    assert "5 of 5 inputs complete" in info.output


def test_export_from_s3_to_zip_and_merge_into_s3(s3, tmp_path):
    from smoothcert.certifier import certify
    from smoothcert.store.importer import import_npz
    from smoothcert.store.merge import merge_stores
    from smoothcert.store.share import export_zip

    p = _probs(N=6, seed=2)
    labels = np.arange(6) % 6
    np.savez(tmp_path / "a.npz", probs=p[:3], labels=labels[:3], idx=np.arange(3))
    np.savez(tmp_path / "b.npz", probs=p[3:], labels=labels[3:], idx=np.arange(3, 6))
    np.savez(tmp_path / "whole.npz", probs=p, labels=labels)
    import_npz(tmp_path / "a.npz", "s3://stores/a.zarr", sigma=0.5, n0=40)
    import_npz(tmp_path / "b.npz", "s3://stores/b.zarr", sigma=0.5, n0=40)
    import_npz(tmp_path / "whole.npz", tmp_path / "whole.zarr", sigma=0.5, n0=40)
    merge_stores(["s3://stores/a.zarr", "s3://stores/b.zarr"], "s3://stores/ab.zarr", assume_same_data=True)
    export_zip("s3://stores/ab.zarr", tmp_path / "ab.zip")
    want, _ = certify(tmp_path / "whole.zarr", "two-step", progress=False)
    for loc in ("s3://stores/ab.zarr", tmp_path / "ab.zip"):
        pd.testing.assert_frame_equal(want, certify(loc, "two-step", progress=False)[0], check_exact=True)
    stored = _all_bytes(s3["client"], prefix="ab.zarr/") + (tmp_path / "ab.zip").read_bytes()
    assert KEY_ID.encode() not in stored and SECRET.encode() not in stored


def test_credentials_in_a_url_never_reach_the_sidecar():
    from smoothcert.store.locations import redact as _redact

    cmd = "smoothcert certify s3://KEYID:SECRET@bucket/x.zarr --method cohen --out s3://u:p@b/o.csv"
    assert _redact(cmd) == "smoothcert certify s3://bucket/x.zarr --method cohen --out s3://b/o.csv"
