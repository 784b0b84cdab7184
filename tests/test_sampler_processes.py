"""The sampler as users run it: real subprocesses, SIGKILL and resume, concurrent shard processes, CLI errors.

References are sampled in this process (same torch thread count, so the same bytes) to save interpreter starts.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smoothcert.sampler import testing as T
from smoothcert.store import open_store
from smoothcert.store import format as F

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from smoothcert import cli; cli.main()"]


def sample_cmd(data, store, *extra):
    return CLI + ["sample", "--model", "smoothcert.sampler.testing:tiny", "--data", str(data), "--sigma", "0.25",
                  "--n0", "5", "--n", "1500", "--batch-size", "500", "--device", "cpu", "--no-progress",
                  *extra, str(store)]


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def sample_here(data, store, **kw):
    """The same run as ``sample_cmd`` in this process (a reference without another interpreter start)."""
    from smoothcert.sampler.run import sample

    return sample(str(store), models=["smoothcert.sampler.testing:tiny"], data=str(data), sigma=0.25, n0=5, n=1500,
                  batch_size=500, device="cpu", progress=False, log=lambda s: None, **kw)


def arrays(path) -> dict:
    st = open_store(str(path))
    try:
        return {a: np.asarray(st.root[a][:]) for a in (F.ROWS, F.ARGMAX, F.MEMBERS, F.INPUTS) if a in st.root}
    finally:
        st.close()


def assert_same_store(a, b):
    A, B = arrays(a), arrays(b)
    assert A.keys() == B.keys()
    for k in A:
        assert A[k].tobytes() == B[k].tobytes(), k


def n_complete(path) -> int:
    """Complete inputs of the store at ``path``, -1 while it does not exist yet."""
    if not (Path(path) / "zarr.json").exists():
        return -1
    try:
        st = open_store(str(path))
    except Exception:
        return -1
    try:
        return int(st.complete_mask().sum())
    finally:
        st.close()


def wait_on(p, seconds):
    """Let the sampler run for up to ``seconds`` between two looks at its store (returns early if it exits)."""
    try:
        p.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture
def data(tmp_path):
    x, y = T.tiny_data(n=30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return tmp_path / "d.npz"


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    ref, store = tmp_path / "ref", tmp_path / "killed"
    sample_here(data, ref)
    rng = np.random.default_rng()
    targets = sorted(rng.choice(np.arange(0, 20), size=3, replace=False))
    kills = 0
    for t in targets:
        p = subprocess.Popen(sample_cmd(data, store), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while p.poll() is None and n_complete(store) < t:   # wait on the store's complete markers
            wait_on(p, 0.01)
        for _ in range(int(rng.integers(0, 4))):             # land anywhere inside the next input
            n_complete(store)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += p.wait() == -signal.SIGKILL
        else:
            assert p.returncode == 0, p.stderr.read()
        p.stderr.close()
    assert kills >= 2, "the runs finished before they could be killed"
    r = run(sample_cmd(data, store))
    assert r.returncode == 0, r.stderr
    assert_same_store(ref, store)
    st = open_store(str(store))
    assert st.verify() == []
    assert sorted(st.indices().tolist()) == list(range(30)) and st.complete_mask().all()
    assert not list(tmp_path.glob(".killed.partial-*"))


def test_two_shard_processes_at_once_equal_one_process(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    ps = [subprocess.Popen(sample_cmd(data, two, "--shard", f"{k}/2"), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for k in range(2)]
    outs = [p.communicate(timeout=300) for p in ps]
    sample_here(data, one)
    for p, (_, err) in zip(ps, outs):
        assert p.returncode == 0, err
    assert_same_store(one, two)
    st = open_store(str(two))
    assert st.verify() == []
    shards = sorted(run_["shard"] for run_ in st.runs().values())
    assert shards == ["0/2", "1/2"]


def test_torchrun_environment_picks_the_shard(data, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert sample_here(data, tmp_path / "s").shard == "1/3"
    st = open_store(str(tmp_path / "s"))
    assert np.flatnonzero(st.complete_mask()).tolist() == list(range(1, 30, 3))


def test_cli_errors_are_one_line_with_exit_2(data, tmp_path):
    store = tmp_path / "s"
    sample_here(data, store, indices="0:4")
    r = run(sample_cmd(data, store, "--indices", "0:4", "--seed", "1"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"smoothcert: error: store {store} was made with seed 0, this run asks for 1"]
    r = run(sample_cmd(tmp_path / "nope.npz", tmp_path / "t"))
    assert r.returncode == 2 and r.stderr.startswith("smoothcert: error: data ") and len(r.stderr.strip().splitlines()) == 1
    h = run(CLI + ["sample", "--help"])
    assert h.returncode == 0
    text = " ".join(h.stdout.split())
    assert "[0, 1] pixel space" in text and "applied after the noise" in text and "--shard K/N" in text


def test_the_sample_command_never_imports_the_certifier_and_scipy_only_when_sampling_adaptively(data, tmp_path):
    """Start-up of `smoothcert sample`: the certifier layer is never imported (layers point one way);
    scipy.special (the adaptive stopping rule's bounds) only for --adaptive-radius; scipy.stats and pandas never."""
    probe = ("import sys\nfrom smoothcert import cli\n"
             "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
             "print(*(m in sys.modules for m in ('smoothcert.certifier', 'scipy.special', 'scipy.stats', 'pandas')))")
    args = sample_cmd(data, tmp_path / "s", "--indices", "0:2")[3:]
    r = run([sys.executable, "-c", probe] + args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "False", "False"]
    r = run([sys.executable, "-c", probe] + sample_cmd(data, tmp_path / "a", "--indices", "0:2",
                                                       "--adaptive-radius", "0.1", "--adaptive-stages", "100,500")[3:])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "False", "False"]
