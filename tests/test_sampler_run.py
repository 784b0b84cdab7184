"""The sampler in-process: reproducibility, subsets and shards, direct recomputation, resume, loading forms."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from smoothcert.sampler import testing as T
from smoothcert.sampler.run import sample
from smoothcert.store import StoreError, open_store
from smoothcert.store import format as F

N0, NN, BS, SIGMA = 5, 50, 16, 0.25
ARRAYS = (F.ROWS, F.ARGMAX, F.MEMBERS, F.INPUTS)


@pytest.fixture
def env(tmp_path):
    x, y = T.tiny_data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    torch.save(T.tiny().state_dict(), tmp_path / "w.pt")
    torch.save(T.tiny_b().state_dict(), tmp_path / "wb.pt")

    class Env:
        root = tmp_path
        data = str(tmp_path / "d.npz")
        weights = str(tmp_path / "w.pt")
        weights_b = str(tmp_path / "wb.pt")

        def run(self, name, **kw):
            kw.setdefault("models", ["smoothcert.sampler.testing:tiny"])
            kw.setdefault("weights", [self.weights] if kw["models"] == ["smoothcert.sampler.testing:tiny"] else ())
            kw.setdefault("data", self.data)
            kw.setdefault("sigma", SIGMA)
            kw.setdefault("n0", N0)
            kw.setdefault("n", NN)
            kw.setdefault("batch_size", BS)
            kw.setdefault("device", "cpu")
            kw.setdefault("progress", False)
            kw.setdefault("log", lambda s: None)
            return sample(str(tmp_path / name), **kw)

    return Env()


def arrays(path) -> dict:
    """Every per-input array of a store, as numpy."""
    st = open_store(str(path))
    try:
        return {a: np.asarray(st.root[a][:]) for a in ARRAYS if a in st.root}
    finally:
        st.close()


def assert_same_store(a, b):
    A, B = arrays(a), arrays(b)
    assert A.keys() == B.keys()
    for k in A:
        assert A[k].tobytes() == B[k].tobytes(), k


def by_index(path) -> dict:
    """{dataset index: (rows bytes, argmax bytes)} of a store's complete inputs."""
    st = open_store(str(path))
    try:
        b = st.read_block(0, st.n_inputs, fields=("rows", "argmax"), only_complete=True)
    finally:
        st.close()
    return {int(i): (r.astype(np.float16).tobytes(), a.tobytes()) for i, r, a in zip(b["idx"], b["rows"], b["argmax"])}


def spec_rows(seed, idx, r0, r1, shape):
    from tests.test_sampler_noise import spec_normals

    d = int(np.prod(shape))
    return spec_normals(seed, idx, r0 * d, (r1 - r0) * d).reshape((r1 - r0,) + tuple(shape))


# ------------------------------------------------------------------ reproducibility
def test_same_call_twice_gives_byte_identical_stores(env):
    r1 = env.run("a")
    r2 = env.run("b")
    assert r1.written == r2.written == 12
    assert_same_store(env.root / "a", env.root / "b")
    st = open_store(str(env.root / "a"))
    assert st.verify() == []
    a = st.attrs
    assert a["source"] == "sample" and a["seed"] == 0 and a["noise_scheme"] == "smoothcert-splitmix-bm-v1"
    assert len(a["model_fingerprint"]) == 64 and len(a["data_fingerprint"]) == 64 and a["indices"] == "0:12:1"
    assert a["device"] == "cpu" and a["normalisation"] is None
    run = next(iter(st.runs().values()))
    assert run["status"] == "finished" and run["inputs_written"] == 12 and run["samples_per_s"] > 0


def test_subset_and_shards_give_the_same_rows_as_the_full_run(env):
    env.run("full")
    full = by_index(env.root / "full")
    assert sorted(full) == list(range(12))
    env.run("sub", indices="3:11:2")
    sub = by_index(env.root / "sub")
    assert sorted(sub) == [3, 5, 7, 9]
    assert all(sub[i] == full[i] for i in sub)
    for k in range(3):
        env.run("sharded", shard=f"{k}/3")
        part = by_index(env.root / "sharded")
        assert all(part[i] == full[i] for i in part)
    assert_same_store(env.root / "full", env.root / "sharded")


def test_another_batch_size_gives_the_same_noise(env):
    env.run("b16")
    env.run("b7", batch_size=7)
    a, b = arrays(env.root / "b16"), arrays(env.root / "b7")
    np.testing.assert_allclose(a["rows"].astype(np.float32), b["rows"].astype(np.float32), atol=2e-3)


def test_a_stored_row_is_the_softmax_of_the_model_on_that_noisy_copy(env):
    env.run("s", dtype="float32", seed=11, indices="2:12:3")
    st = open_store(str(env.root / "s"))
    b = st.read_block(0, st.n_inputs, fields=("rows", "argmax"))
    x, y = T.tiny_data()
    net = T.tiny().eval()
    for j, idx in enumerate(b["idx"]):
        assert b["label"][j] == y[idx]
        for r0, r1 in ((0, 3), (N0 + 7, N0 + 9), (N0 + NN - 1, N0 + NN)):
            clean = x[idx].astype(np.float32) / np.float32(255)
            noisy = clean[None] + np.float32(SIGMA) * spec_rows(11, int(idx), r0, r1, clean.shape)
            with torch.no_grad():
                want = torch.softmax(net(torch.from_numpy(noisy)), 1).numpy()
            np.testing.assert_allclose(b["rows"][j, r0:r1], want, atol=1e-5)
            assert (b["argmax"][j, r0:r1] == want.argmax(1)).all()


def test_float16_rows_are_the_float32_rows_rounded_to_nearest_even(env):
    """The writer rounds the float32 rows to float16 (store.float16): the bytes numpy's astype gives."""
    env.run("s32", dtype="float32", seed=5, indices="0:4")
    env.run("s16", dtype="float16", seed=5, indices="0:4")
    a = open_store(str(env.root / "s32")).read_block(0, 4, fields=("rows",))["rows"]
    b = open_store(str(env.root / "s16"))._read("rows", 0, 4, None)
    assert b.dtype == np.float16 and b.tobytes() == a.astype(np.float16).tobytes()


# ------------------------------------------------------------------ resume
def test_resume_skips_complete_inputs_and_redoes_a_half_written_one(env):
    env.run("ref")
    env.run("s", shard="0/2")
    st = open_store(str(env.root / "s"), mode="a")
    rec = st.root[F.INPUTS][4]
    rec[F.COL["complete"]] = 0                         # input 4: rows written, record not yet committed
    st.root[F.INPUTS][4] = rec
    st.root["rows"][4] = np.zeros(st.root["rows"].shape[1:], np.float16)
    st.close()
    r = env.run("s")
    assert r.skipped == 5 and r.written == 7
    assert_same_store(env.root / "ref", env.root / "s")
    assert env.run("s").written == 0


@pytest.mark.parametrize("change,needle", [
    ({"sigma": 0.5}, "sigma 0.25, this run asks for 0.5"),
    ({"seed": 3}, "seed 0, this run asks for 3"),
    ({"n": 60}, "n 50, this run asks for 60"),
    ({"dtype": "float32"}, "dtype float16, this run asks for float32"),
    ({"weights": None}, "model fingerprint"),
    ({"indices": "0:10"}, "number of inputs 12, this run asks for 10"),
])
def test_resume_into_a_store_made_otherwise_is_refused(env, change, needle):
    env.run("s", indices="0:12")
    if change.get("weights", 1) is None:
        change = {"weights": [env.weights_b]}
    with pytest.raises(StoreError) as e:
        env.run("s", indices=change.pop("indices", "0:12"), **change)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and "was made with" in msg


def test_another_model_and_other_data_are_refused(env, tmp_path):
    env.run("s")
    with pytest.raises(StoreError, match="model fingerprint"):
        env.run("s", models=["smoothcert.sampler.testing:tiny_b"], weights=())
    x, y = T.tiny_data()
    x[3, 0, 0, 0] ^= 1
    np.savez(tmp_path / "d2.npz", x=x, y=y)
    with pytest.raises(StoreError, match="data fingerprint"):
        env.run("s", data=str(tmp_path / "d2.npz"))


# ------------------------------------------------------------------ loading forms
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_and_factory_forms_give_the_same_rows(env):
    env.run("factory")
    ts = env.root / "tiny.pt"
    torch.jit.save(torch.jit.script(T.tiny().eval()), str(ts))
    env.run("script", models=[str(ts)], weights=())
    a, b = arrays(env.root / "factory"), arrays(env.root / "script")
    np.testing.assert_allclose(a["rows"].astype(np.float32), b["rows"].astype(np.float32), atol=1e-3)
    assert (a["argmax"] != b["argmax"]).mean() < 1e-3
    fa = open_store(str(env.root / "factory")).attrs["model_fingerprint"]
    fb = open_store(str(env.root / "script")).attrs["model_fingerprint"]
    assert fa != fb


def test_channels_last_by_default_with_a_fallback_for_models_that_cannot_take_it(env):
    notes = []
    env.run("cl", dtype="float32")                                   # default: channels-last
    env.run("contig", dtype="float32", channels_last=False)
    env.run("view", dtype="float32", models=["smoothcert.sampler.testing:tiny_view"], weights=(), log=notes.append)
    assert any("tiny_view failed in channels-last format" in s for s in notes), notes
    runs = {name: list(open_store(str(env.root / name)).runs().values())[0] for name in ("cl", "contig", "view")}
    assert [runs[k]["channels_last"] for k in ("cl", "contig", "view")] == [True, False, False]
    a, b, c = (arrays(env.root / k)["rows"] for k in ("cl", "contig", "view"))
    np.testing.assert_allclose(a, b, atol=1e-6)            # the same model: only the summation order differs
    np.testing.assert_allclose(c, b, atol=1e-6)
    with pytest.raises(ValueError, match="tiny_view: the forward pass on input 0"):
        env.run("view-cl", models=["smoothcert.sampler.testing:tiny_view"], weights=(), channels_last=True)


def test_a_cpu_run_keeps_freed_activations_in_the_heap_unless_told_not_to(env):
    import subprocess
    import sys
    from pathlib import Path

    env.run("m", indices="0:2")
    run = list(open_store(str(env.root / "m")).runs().values())[0]
    assert run["malloc_tuned"] is True          # glibc (Linux): the thresholds are set and the run says so
    code = "from sampler.host import keep_freed_memory as k; print(k(), k())"
    out = {v: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent.parent,
                             env={**os.environ, "SMOOTHCERT_MALLOPT": v}).stdout.split() for v in ("0", "1")}
    assert out == {"0": ["False", "False"], "1": ["True", "True"]}


def test_all_data_forms_give_the_same_store(env, tmp_path):
    """The array forms and a dataset; image folders (always RGB) are compared with their pixels in test_data_forms.py."""
    x, y = T.tiny_data()
    env.run("npz_uint8")
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / np.float32(255), y=y)
    env.run("npz_float", data=str(tmp_path / "f.npz"))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    env.run("npy", data=f"{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}")
    env.run("callable", data="smoothcert.sampler.testing:tiny_dataset")
    env.run("object", data=T.tiny_dataset())
    ref = arrays(env.root / "npz_uint8")
    fp = open_store(str(env.root / "npz_uint8")).attrs["data_fingerprint"]
    for name in ("npz_float", "npy", "callable", "object"):
        got = arrays(env.root / name)
        for k in (F.ROWS, F.ARGMAX, F.INPUTS):
            assert got[k].tobytes() == ref[k].tobytes(), (name, k)
        assert open_store(str(env.root / name)).attrs["data_fingerprint"] == fp


def test_normalisation_is_applied_after_the_noise(env):
    env.run("norm", mean="0.5", std="0.25", dtype="float32", indices="0:2")
    st = open_store(str(env.root / "norm"))
    assert st.attrs["normalisation"] == {"mean": [0.5], "std": [0.25]}
    rows = st.read_block(0, 1, fields=("rows",))["rows"][0]
    x, _ = T.tiny_data()
    noisy = x[0].astype(np.float32)[None] / np.float32(255) + np.float32(SIGMA) * spec_rows(0, 0, 0, 4, (1, 6, 6))
    with torch.no_grad():
        want = torch.softmax(T.tiny()(torch.from_numpy((noisy - 0.5) / 0.25)), 1).numpy()
    np.testing.assert_allclose(rows[:4], want, atol=1e-5)


def test_ensemble_members_see_the_same_noise_and_core_model_sees_the_clean_input(env):
    env.run("single", dtype="float32")
    env.run("ens", models=["smoothcert.sampler.testing:tiny", "smoothcert.sampler.testing:tiny_b"], weights=[env.weights, env.weights_b],
            core_model="smoothcert.sampler.testing:tiny_b", dtype="float32")
    st = open_store(str(env.root / "ens"))
    assert st.members == 2 and st.has_core_predict and len(st.attrs["member_fingerprints"]) == 2
    b = st.read_block(0, st.n_inputs, fields=("rows", "argmax", "member_logprobs"))
    single = open_store(str(env.root / "single")).read_block(0, 12, fields=("rows",))["rows"]
    lp = b["member_logprobs"]
    np.testing.assert_allclose(np.exp(lp[:, :, 0]), single, atol=1e-5)          # member 0 = the single model
    ens = torch.softmax(torch.from_numpy(lp).mean(2), -1).numpy()
    np.testing.assert_allclose(b["rows"], ens, atol=1e-5)
    assert (b["argmax"] == b["rows"].argmax(-1)).mean() > 0.999
    x, _ = T.tiny_data()
    with torch.no_grad():
        clean = T.tiny_b()(torch.from_numpy(x.astype(np.float32) / 255)).argmax(1).numpy()
    assert (b["core_predict"] == clean).all()


def test_amp_runs_on_cpu_and_is_part_of_the_store_identity(env):
    env.run("amp", amp="bf16", indices="0:3")
    st = open_store(str(env.root / "amp"))
    assert st.attrs["amp"] == "bf16" and st.verify() == []
    rows = st.read_block(0, 3, fields=("rows",))["rows"]
    np.testing.assert_allclose(rows.sum(-1), 1.0, atol=5e-3)
    with pytest.raises(StoreError, match="amp bf16, this run asks for None"):
        env.run("amp", indices="0:3")
    # the forward passes really ran under bf16 autocast: float32 rows equal the model's softmax recomputed so
    env.run("amp32", amp="bf16", indices="1:2", dtype="float32", seed=3)
    got = open_store(str(env.root / "amp32")).read_block(0, 1, fields=("rows",))["rows"][0]
    x, _ = T.tiny_data()
    clean = x[1].astype(np.float32) / np.float32(255)
    noisy = torch.from_numpy(clean[None] + np.float32(SIGMA) * spec_rows(3, 1, 0, N0 + NN, clean.shape))
    net = T.tiny().eval()
    net.load_state_dict(torch.load(env.weights, weights_only=True))
    with torch.inference_mode():
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            logits = net(noisy)
        want = torch.softmax(logits.float(), 1).numpy()
        plain = torch.softmax(net(noisy), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(want - plain).max() > 1e-4


def test_a_zip_store_is_written_and_read_back(env):
    env.run("plain", indices="0:4")
    env.run("s.zip", indices="0:4")
    a, b = arrays(env.root / "plain"), arrays(env.root / "s.zip")
    assert a[F.ROWS].tobytes() == b[F.ROWS].tobytes()
    assert not (env.root / "s.zip.sampling").exists()
    assert env.run("s.zip", indices="0:4").written == 0          # complete: nothing to do
    with pytest.raises(StoreError, match="sigma 0.25, this run asks for 0.5"):
        env.run("s.zip", indices="0:4", sigma=0.5)
    env.run("t.zip", indices="0:4", shard="0/2")                  # half done: still a folder beside it
    assert not (env.root / "t.zip").exists() and (env.root / "t.zip.sampling").is_dir()
    env.run("t.zip", indices="0:4", shard="1/2")
    assert arrays(env.root / "t.zip")[F.ROWS].tobytes() == a[F.ROWS].tobytes()
    assert not (env.root / "t.zip.sampling").exists()


def test_an_fsspec_url_store_is_written_shard_by_shard(env):
    import uuid

    url = f"memory://smoothcert-test-{uuid.uuid4().hex}/store"
    env.run("plain", indices="0:6")
    kw = dict(indices="0:6", models=["smoothcert.sampler.testing:tiny"], weights=[env.weights])
    assert sample(url, data=env.data, sigma=SIGMA, n0=N0, n=NN, batch_size=BS, device="cpu", progress=False,
                  log=lambda s: None, shard="1/2", **kw).complete == 3
    r = sample(url, data=env.data, sigma=SIGMA, n0=N0, n=NN, batch_size=BS, device="cpu", progress=False,
               log=lambda s: None, **kw)
    assert (r.written, r.skipped, r.complete) == (3, 3, 6)
    st = open_store(url)
    assert st.verify() == []
    assert np.asarray(st.root[F.ROWS][:]).tobytes() == arrays(env.root / "plain")[F.ROWS].tobytes()


# ------------------------------------------------------------------ errors
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_bad_inputs_give_one_line_errors_naming_the_input(env, tmp_path):
    x, y = T.tiny_data()
    y2 = y.copy()
    y2[7] = 9
    np.savez(tmp_path / "badlabel.npz", x=x, y=y2)
    with pytest.raises(ValueError, match="input 7 has label 9, but the model has 5 classes"):
        env.run("e1", data=str(tmp_path / "badlabel.npz"))
    xf = x.astype(np.float32)
    np.savez(tmp_path / "unscaled.npz", x=xf, y=y)
    with pytest.raises(ValueError, match=r"input 0 has pixel values in \[.*\], outside \[0, 1\]"):
        env.run("e2", data=str(tmp_path / "unscaled.npz"))
    with pytest.raises(ValueError, match="--weights applies only"):
        env.run("e3", models=[str(tmp_path / "d.npz")], weights=[env.weights])
    with pytest.raises(ValueError, match="not a TorchScript file"):
        env.run("e4", models=[env.data], weights=())
    with pytest.raises(ValueError, match="cannot import module"):
        env.run("e5", models=["no_such_pkg.mod:net"], weights=())
    with pytest.raises(ValueError, match="do not fit"):
        env.run("e6", models=["smoothcert.sampler.testing:tiny_rgb"], weights=[env.weights])
    with pytest.raises(ValueError, match="selects no input"):
        env.run("e7", indices="20:30")
    with pytest.raises(ValueError, match=r"the model's output on input \d+ \(row \d+\) is not finite"):
        env.run("e10", models=["smoothcert.sampler.testing:tiny_nan"], weights=(), sigma=2.0)
    with pytest.raises(FileNotFoundError, match="no such file"):
        env.run("e8", data=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="IMAGES.npy,LABELS.npy"):
        env.run("e9", data=str(tmp_path / "x.npy"))


def test_model_fingerprint_covers_buffers_and_dtypes():
    from smoothcert.sampler.models import state_dict_fingerprint

    net = T.cifar_resnet(blocks=1, width=8)
    a = state_dict_fingerprint(net.state_dict(), "f")   # BatchNorm: 0-dim int64 num_batches_tracked
    assert a == state_dict_fingerprint(T.cifar_resnet(blocks=1, width=8).state_dict(), "f")
    assert a != state_dict_fingerprint(net.state_dict(), "g")
    net[1].running_mean += 1e-3
    assert a != state_dict_fingerprint(net.state_dict(), "f")
    assert a != state_dict_fingerprint({k: v.double() if v.is_floating_point() else v
                                        for k, v in T.cifar_resnet(blocks=1, width=8).state_dict().items()}, "f")


def test_shard_resolution_from_flags_torchrun_and_slurm():
    from smoothcert.sampler.shard import Shard, resolve_shard

    assert resolve_shard("1/4", env={}) == Shard(1, 4, "--shard")
    assert resolve_shard(None, env={"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3, "torchrun")
    assert resolve_shard(None, env={"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4",
                                    "SLURM_ARRAY_TASK_MIN": "2"}) == Shard(3, 4, "slurm")
    assert resolve_shard(None, env={}) == Shard(0, 1, "none")
    assert list(Shard(1, 3).slots(8)) == [1, 4, 7]
    for bad in ("4/4", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError):
            resolve_shard(bad, env={})


def test_indices_follow_python_slices():
    from smoothcert.sampler.data import indices_spec, parse_indices

    assert list(parse_indices("0:10000:20", 100)) == list(range(0, 100, 20))
    assert list(parse_indices("5:", 8)) == [5, 6, 7]
    assert list(parse_indices(None, 3)) == [0, 1, 2]
    assert indices_spec(parse_indices("::3", 10)) == "0:10:3"
    assert not math.isnan(len(parse_indices("7", 10)))
