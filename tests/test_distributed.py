"""Certification through a real dask.distributed scheduler gives the local (threaded) table, bit for bit."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ROOT

N, N0, N_EST, M = 10, 50, 600, 10


def _rows(rng, R, m, label, strength):
    logits = rng.standard_normal((R, m)) * 1.5
    logits[:, label] += strength + rng.standard_normal(R) * 2.0
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from smoothcert.store.importer import import_npz

    d = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(7)
    probs = np.stack([_rows(rng, N0 + N_EST, M, i % M, rng.uniform(0, 5)) for i in range(N)])
    np.savez(d / "src.npz", probs=probs, labels=np.arange(N) % M, idx=np.arange(100, 100 + N))
    import_npz(d / "src.npz", d / "s.zarr", sigma=0.5, n0=N0)
    return d / "s.zarr"


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=40)
    try:
        yield c
    finally:
        c.close()


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("method,opts", [
    ("two-step", {}),
    ("cohen", {}),
    ("uncertainty", {"uncertainty": ["entropy", "margin"], "theta": [0.5, 1.0, float("inf")]}),
    ("conformal", {"calibration_split": 0.5, "miscoverage": [0.5], "robust": ["rscp+", "cas"], "epsilon": [0, 0.2]}),
])
def test_scheduler_with_two_worker_processes_gives_the_local_table(store, cluster, method, opts):
    from smoothcert.certifier import CertifyOptions, certify

    o = CertifyOptions(**opts)
    local, meta_l = certify(store, method, o, progress=False)
    remote, meta_r = certify(store, method, o, scheduler=cluster.scheduler_address, block_size=3, progress=False)
    _same(local, remote)
    assert len(cluster.scheduler_info["workers"]) == 2
    for k in ("store_fingerprint", "confidence", "options", "n_inputs"):
        assert meta_l[k] == meta_r[k]


def test_workers_option_starts_its_own_processes_and_gives_the_local_table(store):
    from smoothcert.certifier import certify

    local, _ = certify(store, "two-step", progress=False)
    procs, _ = certify(store, "two-step", workers=2, block_size=4, progress=False)
    _same(local, procs)


def test_cli_scheduler_option_writes_the_same_file(store, cluster, tmp_path):
    from smoothcert import cli

    r = CliRunner()
    a = r.invoke(cli.main, ["certify", str(store), "--method", "two-step", "--out", str(tmp_path / "a.csv"), "-q"])
    b = r.invoke(cli.main, ["certify", str(store), "--method", "two-step", "--out", str(tmp_path / "b.csv"), "-q",
                            "--scheduler", cluster.scheduler_address, "--block-size", "2"])
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


_WORKER_WITHOUT_SMOOTHCERT = """
import sys


class _NoSmoothcert:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "smoothcert":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoSmoothcert())
from distributed.cli.dask_worker import main
sys.argv[0] = "dask-worker"
main()
"""


def test_a_worker_without_smoothcert_is_refused_in_one_line_before_any_task(store, tmp_path):
    """A worker that cannot import smoothcert would fail to unpickle tasks (or hang): refused up front."""
    from distributed import Client, LocalCluster

    from smoothcert.certifier.cluster import ClusterError, check_cluster
    from smoothcert.certifier import certify

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=40) as c:
        with Client(c) as client:  # no worker yet: a bounded wait, then a clear error
            with pytest.raises(ClusterError, match="no worker connected"):
                check_cluster(client, c.scheduler_address, wait_s=0.5)
        # smoothcert may be installed into site-packages (CI installs it with pip), so hiding the checkout from
        # PYTHONPATH is not enough: the worker runs with an import hook that refuses smoothcert's packages, as a
        # worker on a machine without smoothcert would.
        w = subprocess.Popen([sys.executable, "-c", _WORKER_WITHOUT_SMOOTHCERT, c.scheduler_address,
                              "--nthreads", "1", "--no-dashboard", "--no-nanny"],
                             cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with pytest.raises(ClusterError, match=r"cannot import smoothcert.*No module named"):
                certify(store, "two-step", scheduler=c.scheduler_address, progress=False)
        finally:
            w.terminate()
            w.wait(timeout=30)
    assert str(ROOT) not in env.get("PYTHONPATH", "")


def test_bad_scheduler_address_is_a_one_line_error(store, tmp_path):
    import socket

    import dask

    from smoothcert import cli

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # the default 30 s, shortened for the test
        r = CliRunner().invoke(cli.main, ["certify", str(store), "--method", "cohen", "--out", str(tmp_path / "x.csv"),
                                          "-q", "--scheduler", f"tcp://127.0.0.1:{port}"], catch_exceptions=False)
    assert r.exit_code != 0
    err = r.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smoothcert: error:") and str(port) in err[0]
    assert not (tmp_path / "x.csv").exists()


def test_damage_found_by_a_worker_process_is_one_line_on_stderr(store, tmp_path):
    """The worker's StoreError comes back to the command line as its one-line error; workers log nothing."""
    import shutil

    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    chunk = sorted((bad / "rows" / "c" / "4").rglob("*"))[-1]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    r = subprocess.run([sys.executable, "-m", "smoothcert", "certify", str(bad), "--method", "two-step", "--workers",
                        "2", "--block-size", "3", "--out", str(tmp_path / "t.csv"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("smoothcert: error: store ") and "input 104 (slot 4) is damaged" in lines[0]
    assert not (tmp_path / "t.csv").exists()


def _worker_settings(dask_worker):
    import dask

    return {"profile": dask.config.get("distributed.worker.profile.enabled"),
            "profiling": "profile" in dask_worker.periodic_callbacks,
            "numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "nthreads": dask_worker.state.nthreads}


def test_workers_as_certify_starts_them_are_single_threaded_without_dask_profiler(store):
    """--workers processes: one thread, NUMBA_NUM_THREADS=1, and the statistical profiler off (config, not env:
    a nanny's env reaches the worker after it has read its config), and they still certify the local table."""
    from distributed import Client

    from smoothcert.certifier import certify
    from smoothcert.certifier.cluster import local_cluster

    with local_cluster(1, silence_logs=40) as c, Client(c) as client:
        got = list(client.run(_worker_settings).values())
        assert got == [{"profile": False, "profiling": False, "numba_threads": "1", "nthreads": 1}]
        t, _ = certify(store, "two-step", scheduler=c.scheduler_address, progress=False)
    _same(t, certify(store, "two-step", progress=False)[0])
