"""The cluster examples of docs/cluster.md, run for real on CPU: a SLURM array job and torchrun write one store.

The array job's tasks run as concurrent processes with the variables SLURM
sets; torchrun is the real launcher (--standalone, on 127.0.0.1). Both
stores must hold exactly the bytes of a single-process run, and a merge of
two separately sampled halves must too.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from smoothcert.store import open_store
from smoothcert.store import format as F

EX = ROOT / "docs" / "examples"
N_INPUTS, N0, N = 16, 5, 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from smoothcert.sampler import testing as T
    from smoothcert.sampler.run import sample

    d = tmp_path_factory.mktemp("cluster")
    x, y = T.tiny_data(n=N_INPUTS)
    np.savez(d / "data.npz", x=x, y=y)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the launched processes (OMP_NUM_THREADS=1): the same bytes
    try:
        sample(str(d / "ref.zarr"), models=["smoothcert.sampler.testing:tiny"], data=str(d / "data.npz"), sigma=0.25, n0=N0,
               n=N, batch_size=100, device="cpu", progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return d


def _env(d, store, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(MODEL="smoothcert.sampler.testing:tiny", DATA=str(d / "data.npz"), STORE=str(store), SIGMA="0.25", N0=str(N0),
               N=str(N), BATCH="100", DEVICE="cpu", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


def _bytes(path) -> dict:
    with open_store(path) as st:
        return {a: np.asarray(st.root[a][:]).tobytes() for a in (F.ROWS, F.ARGMAX, F.INPUTS)}


def _same_as_reference(d, store):
    with open_store(store) as st:
        assert st.verify() == [] and st.complete_mask().all()
        runs = st.runs()
    ref = _bytes(d / "ref.zarr")
    got = _bytes(store)
    for k in ref:
        assert ref[k] == got[k], k
    return runs


def _console_script() -> str:
    """The installed ``smoothcert`` console script (a Python file torchrun can run)."""
    here = Path(sys.executable).parent / "smoothcert"
    found = str(here) if here.exists() else shutil.which("smoothcert")
    assert found, "the smoothcert console script is not installed"
    return found


def test_slurm_array_job_tasks_write_one_store(setup):
    d = setup
    store = d / "array.zarr"
    tasks = [subprocess.Popen(["bash", str(EX / "sample-array.sbatch")], cwd=ROOT,
                              env=_env(d, store, SMOOTHCERT=f"{sys.executable} -m smoothcert",
                                       SLURM_ARRAY_TASK_ID=str(k), SLURM_ARRAY_TASK_COUNT="2",
                                       SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_JOB_ID="4242"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for t in tasks:
        out, err = t.communicate(timeout=300)
        assert t.returncode == 0, err
    runs = _same_as_reference(d, store)
    assert sorted(r["shard"] for r in runs.values()) == ["0/2", "1/2"]


def test_torchrun_processes_write_one_store(setup):
    d = setup
    store = d / "torchrun.zarr"
    r = subprocess.run(["bash", str(EX / "sample-torchrun.sh")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=_env(d, store, SMOOTHCERT=_console_script(), NGPU="2", TORCHRUN_ARGS="--standalone",
                                TORCHRUN=f"{sys.executable} -m torch.distributed.run"))  # torchrun, whatever PATH holds
    assert r.returncode == 0, r.stderr[-2000:]
    runs = _same_as_reference(d, store)
    assert sorted(r["shard"] for r in runs.values()) == ["0/2", "1/2"]


def test_halves_sampled_separately_merge_into_the_single_run_store(setup):
    from smoothcert.sampler.run import sample
    from smoothcert.sampler.merge import merge_stores

    d = setup
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, ind in (("lo.zarr", "0:8"), ("hi.zarr", "8:16")):
            sample(str(d / name), models=["smoothcert.sampler.testing:tiny"], data=str(d / "data.npz"), sigma=0.25, n0=N0, n=N,
                   batch_size=100, device="cpu", progress=False, log=lambda s: None, indices=ind)
    finally:
        torch.set_num_threads(threads)
    merge_stores([d / "hi.zarr", d / "lo.zarr"], d / "merged.zarr", data=str(d / "data.npz"))
    _same_as_reference(d, d / "merged.zarr")


def test_the_dask_jobqueue_example_is_valid_python():
    path = EX / "certify-slurm.py"
    compile(path.read_text(), str(path), "exec")
