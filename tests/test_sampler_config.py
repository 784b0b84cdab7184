"""SampleConfig: one validated object for every sampling setting, and sample() running it."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothcert.sampler import testing as T
from smoothcert.sampler.config import SampleConfig, row_batches
from smoothcert.sampler.run import sample
from smoothcert.store import open_store
from smoothcert.store import format as F

TINY = "smoothcert.sampler.testing:tiny"


def cfg(**kw) -> SampleConfig:
    kw.setdefault("models", [TINY])
    kw.setdefault("data", "d.npz")
    kw.setdefault("sigma", 0.25)
    return SampleConfig(**kw)


# ------------------------------------------------------------------ validation
def test_a_config_holds_its_settings_normalised():
    c = cfg(models=TINY, weights=[Path("w.pt")], data=Path("d.npz"), sigma=1, n0=5.0, n=50, batch_size=16,
            seed=3, mean="0.5", std="0.2,0.3,0.4", adaptive_stages="100+200,300", core_model=Path("m.pt"))
    assert c.models == (TINY,) and c.weights == ("w.pt",) and c.data == "d.npz" and c.core_model == "m.pt"
    assert c.sigma == 1.0 and isinstance(c.sigma, float)
    assert (c.n0, c.n, c.batch_size, c.seed) == (5, 50, 16, 3) and isinstance(c.n0, int)
    assert c.mean == (0.5, 0.5, 0.5) and c.std == (0.2, 0.3, 0.4)          # one mean for every channel
    assert c.adaptive_stages == (100, 200, 300) and c.adaptive_plan is None  # no radius: no rule
    assert c.rows_per_input == 55
    assert cfg(std="0.5").mean == (0.0,) and cfg().mean is None and cfg().std is None


@pytest.mark.parametrize("kw, message", [
    ({"models": []}, "give at least one --model"),
    ({"sigma": 0}, "--sigma must be a positive number, got 0.0"),
    ({"sigma": float("nan")}, "--sigma must be a positive number, got nan"),
    ({"n0": 0}, "--n0 must be an integer >= 1, got 0"),
    ({"n": 1.5}, "--n must be an integer >= 1, got 1.5"),
    ({"batch_size": 0}, "--batch-size must be an integer >= 1, got 0"),
    ({"dtype": "float64"}, "--dtype must be one of float16, float32, got float64"),
    ({"amp": "int8"}, "--amp must be bf16 or fp16, got int8"),
    ({"seed": 2 ** 63}, f"seed {2 ** 63} does not fit in a signed 64-bit integer"),
    ({"shard": "4/4"}, "--shard 4/4: need 0 <= K < N, got K=4, N=4"),
    ({"shard": "1"}, "--shard 1: expected K/N, e.g. 0/4"),
    ({"core_weights": "w.pt"}, "--core-weights needs --core-model"),
    ({"models": ["m.pt"], "weights": ["w.pt"]}, "--weights applies only to package.module:factory models; m.pt is a file"),
    ({"weights": ["a.pt", "b.pt"]}, "2 --weights for 1 package.module:factory models"),
    ({"mean": "0.1,0.2", "std": "0.1,0.2,0.3"}, "--mean has 2 values and --std 3; give one per channel"),
    ({"std": "0.5,0"}, "--std [0.5, 0.0]: every value must be positive"),
    ({"adaptive_stages": "10,x"}, "--adaptive-stages: expected a comma-separated list of integers, got '10,x'"),
    ({"adaptive_radius": -1.0}, "--adaptive-radius must be a finite number >= 0, got -1.0"),
    ({"adaptive_radius": 0.5, "adaptive_alpha": 0.5}, "--adaptive-alpha must be in (0, 0.5), got 0.5"),
    ({"adaptive_radius": 0.5, "adaptive_beta": 1.0}, "--adaptive-beta must be in (0, 1), got 1.0"),
    ({"adaptive_radius": 0.5, "adaptive_stages": "200,100"}, "--stages must be strictly increasing (n_1 < ... < n_s), got 200,100"),
])
def test_a_bad_setting_is_refused_at_construction_with_a_one_line_message(kw, message):
    with pytest.raises(ValueError) as e:
        cfg(**kw)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_replace_validates_again_and_keeps_the_other_settings():
    c = cfg(n=300, adaptive_radius=0.25, adaptive_stages="100,200,1000")
    assert c.adaptive_plan["stages"] == [100, 200, 300]                      # clipped to n
    d = c.replace(n=150)
    assert d.adaptive_plan["stages"] == [100, 150] and d.models == c.models and d.sigma == c.sigma
    with pytest.raises(ValueError, match="--sigma must be a positive number"):
        c.replace(sigma=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.sigma = 0.5


def test_configs_with_the_same_settings_are_equal_whatever_they_log_to():
    a, b = cfg(log=print), cfg(log=lambda s: None)
    assert a == b and hash(a) == hash(b)
    assert a != cfg(seed=1)


# ------------------------------------------------------------------ the batch schedule
def _reference_batches(R, bs, ends):
    """Rows 0..R-1 walked one at a time: a batch closes when it holds bs rows, at a stage end, or at R."""
    out, start = [], 0
    for r in range(1, R + 1):
        if r - start == bs or r in ends or r == R:
            out.append((start, r))
            start = r
    return out


@pytest.mark.parametrize("n0, n, bs, stages", [
    (5, 50, 16, None), (100, 1000, 1000, None), (1, 1, 1, None),
    (50, 400, 50, "50,150,400"), (5, 300, 64, "100,500,2000"), (7, 1000, 128, "3,64,65,999"), (10, 90, 1000, "20,50"),
])
def test_the_batches_are_the_row_batches_cut_at_the_stage_ends(n0, n, bs, stages):
    c = cfg(n0=n0, n=n, batch_size=bs, adaptive_radius=None if stages is None else 0.1,
            adaptive_stages=stages or "1000")
    R = n0 + n
    ends = {n0 + min(int(s), n) for s in stages.split(",")} if stages else set()
    assert c.batches() == _reference_batches(R, bs, ends)
    assert set(c.stage_ends()) == ends
    if stages is None:
        assert c.batches() == row_batches(R, bs)


# ------------------------------------------------------------------ sample() runs a config
@pytest.fixture
def env(tmp_path):
    x, y = T.tiny_data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    torch.save(T.tiny().state_dict(), tmp_path / "w.pt")
    return tmp_path


def _arrays(path):
    with open_store(str(path)) as st:
        return {a: np.asarray(st.root[a][:]).tobytes() for a in (F.ROWS, F.ARGMAX, F.INPUTS) if a in st.root}


def test_sample_runs_a_config_as_it_runs_the_same_keywords(env):
    kw = dict(models=[TINY], weights=[str(env / "w.pt")], data=str(env / "d.npz"), sigma=0.25, n0=5, n=60,
              batch_size=16, device="cpu", indices="0:6", progress=False, log=lambda s: None)
    c = SampleConfig(**kw)
    a = sample(env / "a", c)
    b = sample(str(env / "b"), **kw)
    assert (a.written, b.written) == (6, 6)
    assert _arrays(env / "a") == _arrays(env / "b")
    sample(env / "c", c, seed=1)                              # keywords replace the config's fields
    sample(env / "d", **dict(kw, seed=1))
    assert _arrays(env / "c") == _arrays(env / "d") != _arrays(env / "a")
    with open_store(str(env / "c")) as st:
        assert st.attrs["seed"] == 1
    with pytest.raises(TypeError, match="config must be a SampleConfig, got dict"):
        sample(env / "e", kw)
    with pytest.raises(ValueError, match="--n must be an integer >= 1, got 0"):
        sample(env / "e", c, n=0)
    assert not (env / "e").exists()


def test_smoothcert_exports_the_config():
    import smoothcert
    import smoothcert.sampler

    assert smoothcert.SampleConfig is SampleConfig is smoothcert.sampler.SampleConfig


def test_building_a_config_imports_neither_torch_nor_scipy():
    probe = ("import sys\nfrom smoothcert.sampler.config import SampleConfig\n"
             "c = SampleConfig(models=['pkg.mod:net'], data='d.npz', sigma=0.5, mean='0.5', std='0.25', shard='0/2')\n"
             "print('torch' in sys.modules, 'scipy.stats' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
