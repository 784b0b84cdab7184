"""``smoothcert sample --topk K``: a compact store written directly, byte for byte ``store compact --topk K`` of
the full store sampled with the same settings, on a 1,000-class model; its kernels against independent references."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.sampler import kernels as KER
from smoothcert.sampler.run import sample
from smoothcert.store import StoreError, open_store
from smoothcert.store import format as F
from smoothcert.store.compact import compact_store
from smoothcert.store.topk import compact_rows

M, N_IN, N0, NN, BS, SIGMA, K = 1000, 6, 7, 60, 16, 0.25, 5
# attributes that describe the writing, not the data: when, where, by whom, with what, from where
PROVENANCE = {"created", "versions", "host", "user", "compacted_from", F.META_CRC_KEY}


def _linear(m: int, seed: int):
    """A linear classifier on 1 x 6 x 6 inputs with ``m`` classes (seeded weights), as a TorchScript module."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, 36, generator=g) * 2
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, m))
    with torch.no_grad():
        net[1].weight.copy_(W)
        net[1].bias.copy_(-0.5 * W.sum(1))
    return torch.jit.script(net.eval()), W


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A 1,000-class model (and a second one, for an ensemble) and inputs from ambiguous to robust."""
    root = tmp_path_factory.mktemp("topk")
    net, W = _linear(M, 0)
    net.save(str(root / "m.pt"))
    _linear(M, 1)[0].save(str(root / "m2.pt"))
    Wn = (W / W.norm(dim=1, keepdim=True)).numpy()
    x = (0.5 + np.linspace(0.02, 0.6, N_IN)[:, None] * Wn[np.arange(N_IN) * 7]).reshape(N_IN, 1, 6, 6)
    x = x.astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(root / "d.npz", x=x, y=y.astype(np.int64))

    class Env:
        path = root
        model, model2, data = str(root / "m.pt"), str(root / "m2.pt"), str(root / "d.npz")

        def run(self, name, **kw):
            kw.setdefault("models", [self.model])
            for key, v in dict(data=self.data, sigma=SIGMA, n0=N0, n=NN, batch_size=BS, device="cpu",
                               progress=False, log=lambda s: None).items():
                kw.setdefault(key, v)
            return sample(str(root / name), **kw)

    return Env()


def store_files(path) -> dict:
    """{relative path: bytes} of every array file (chunks and array metadata); the group's own zarr.json and the
    provenance runs/ left out."""
    p = Path(path)
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*"))
            if f.is_file() and str(f.relative_to(p)) != "zarr.json" and not str(f.relative_to(p)).startswith("runs")}


def data_attrs(path) -> dict:
    a = json.loads((Path(path) / "zarr.json").read_text())["attributes"][F.ATTRS_KEY]
    return {k: v for k, v in a.items() if k not in PROVENANCE}


def assert_same_bytes(a, b):
    A, B = store_files(a), store_files(b)
    assert sorted(A) == sorted(B)
    differ = [k for k in A if A[k] != B[k]]
    assert not differ, differ[:5]
    assert data_attrs(a) == data_attrs(b)


# ------------------------------------------------------------------ the store equals store compact of the full store
@pytest.mark.parametrize("dtype,k,bs", [("float16", K, BS), ("float32", K, BS), ("float16", 2, 5)])
def test_sample_topk_equals_store_compact_of_the_full_store_byte_for_byte(env, dtype, k, bs):
    tag = f"{dtype}-{k}-{bs}"
    env.run(f"full-{tag}", dtype=dtype, batch_size=bs)
    compact_store(env.path / f"full-{tag}", env.path / f"fc-{tag}", topk=k)
    r = env.run(f"tk-{tag}", dtype=dtype, batch_size=bs, topk=k)
    assert r.written == N_IN
    assert_same_bytes(env.path / f"fc-{tag}", env.path / f"tk-{tag}")
    with open_store(env.path / f"tk-{tag}") as st:
        assert st.attrs["layout"] == "compact-s0" and st.topk == k and st.keeps_full_s0 and st.verify() == []
        assert "rows" not in st.root                      # no full row of the estimation block is stored
        run = next(iter(st.runs().values()))
        assert run["topk"] == k and run["topk_impl"] == "numba on cpu" and run["status"] == "finished"
        b = st.read_block(0, N_IN, fields=("compact", "rows0", "argmax"))
    with open_store(env.path / f"full-{tag}") as full:
        rows = full.read_block(0, N_IN, fields=("rows",))["rows"]
    assert np.array_equal(b["rows0"], rows[:, :N0])
    assert (b["topk_p"][:, :, 0] > 0.2).any() and (b["entropy"] > 1.0).any()  # peaked rows and flat rows were seen


def test_an_ensemble_with_topk_equals_store_compact_of_the_ensemble_store(env):
    """Ensembles run the device loop (here on CPU): top-k by an integer key, entropy by a cumulative sum."""
    models = [env.model, env.model2]
    for dtype in ("float16", "float32"):
        env.run(f"ens-{dtype}", models=models, dtype=dtype)
        compact_store(env.path / f"ens-{dtype}", env.path / f"ens-fc-{dtype}", topk=K)
        env.run(f"ens-tk-{dtype}", models=models, dtype=dtype, topk=K)
        assert_same_bytes(env.path / f"ens-fc-{dtype}", env.path / f"ens-tk-{dtype}")
        with open_store(env.path / f"ens-tk-{dtype}") as st:
            assert st.members == 0 and st.attrs["member_fingerprints"] and st.verify() == []
            assert next(iter(st.runs().values()))["topk_impl"] == "torch on cpu"


def test_adaptive_sampling_with_topk_equals_store_compact_of_the_adaptive_store(env):
    kw = dict(n0=20, n=200, batch_size=20, adaptive_radius=0.05, adaptive_stages=[20, 60, 200],
              adaptive_alpha=0.05, adaptive_beta=0.05)
    env.run("adp", **kw)
    compact_store(env.path / "adp", env.path / "adp-fc", topk=K)
    env.run("adp-tk", topk=K, **kw)
    assert_same_bytes(env.path / "adp-fc", env.path / "adp-tk")
    with open_store(env.path / "adp-tk") as st:
        n_rows = st.read_records()["n_rows"]
    assert (n_rows < 220).any(), n_rows                    # some input stopped early


def test_the_cli_writes_the_same_compact_store_and_certifies_it(env):
    args = ["--model", env.model, "--data", env.data, "--sigma", str(SIGMA), "--n0", str(N0), "--n", str(NN),
            "--batch-size", str(BS), "--device", "cpu", "--no-progress"]
    run = CliRunner()
    r = run.invoke(cli.main, ["sample", *args, str(env.path / "cli-full")])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli.main, ["store", "compact", str(env.path / "cli-full"), str(env.path / "cli-fc"), "--topk", "5"])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli.main, ["sample", *args, "--topk", "5", str(env.path / "cli-tk")])
    assert r.exit_code == 0, r.output
    assert_same_bytes(env.path / "cli-fc", env.path / "cli-tk")
    from smoothcert.certifier import certify

    want, _ = certify(str(env.path / "cli-full"), "two-step", progress=False)
    got, meta = certify(str(env.path / "cli-tk"), "two-step", progress=False)
    assert want.equals(got) and meta["compact"]["certificate"] == "exact"


# ------------------------------------------------------------------ resume, shards, refusals
def test_an_interrupted_topk_run_resumes_to_the_same_bytes(env):
    env.run("ref", topk=K, indices="0:4")
    env.run("cut", topk=K, indices="0:4", shard="1/2")       # slots 1 and 3 only: the run "stopped" there
    st = open_store(str(env.path / "cut"), mode="a")
    rec = st.root[F.INPUTS][3]
    rec[F.COL["complete"]] = 0                               # slot 3: arrays written, commit not yet written
    st.root[F.INPUTS][3] = rec
    st.root["rows0"][3] = np.zeros(st.root["rows0"].shape[1:], np.float16)
    st.root["topk_p"][3] = np.zeros(st.root["topk_p"].shape[1:], np.float16)
    st.close()
    r = env.run("cut", topk=K, indices="0:4")
    assert r.skipped == 1 and r.written == 3
    assert_same_bytes(env.path / "ref", env.path / "cut")
    assert env.run("cut", topk=K, indices="0:4").written == 0


@pytest.mark.parametrize("first,then,needle", [
    ({"topk": K}, {"topk": 3}, "top-k (--topk) 5, this run asks for 3"),
    ({"topk": K}, {}, "layout compact-s0, this run asks for full"),
    ({}, {"topk": K}, "layout full, this run asks for compact-s0"),
])
def test_resuming_with_another_layout_or_k_is_refused_in_one_line(env, first, then, needle):
    name = f"re-{len(first)}-{then.get('topk', 0)}"
    env.run(name, indices="0:2", **first)
    with pytest.raises(StoreError) as e:
        env.run(name, indices="0:2", **then)
    assert "\n" not in str(e.value) and needle in str(e.value) and "was made with" in str(e.value), str(e.value)


def test_bad_topk_requests_are_refused_in_one_line(env, tmp_path):
    for k, msg in ((1, "--topk must be an integer in 2..256, got 1"), (257, "--topk must be an integer in 2..256"),
                   (2.5, "--topk must be an integer in 2..256, got 2.5"), ("5", "--topk must be an integer")):
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            env.run("bad", topk=k)
    with pytest.raises(ValueError, match=r"--topk must be in 2\.\.5 for a model with 5 classes, got 6"):
        sample(str(tmp_path / "five"), models=["smoothcert.sampler.testing:tiny"], data="smoothcert.sampler.testing:tiny_dataset",
               sigma=0.25, n0=3, n=10, device="cpu", progress=False, log=lambda s: None, topk=6)
    assert not (tmp_path / "five").exists()
    r = CliRunner().invoke(cli.main, ["sample", "--model", env.model, "--data", env.data, "--sigma", "0.25",
                                      "--device", "cpu", "--topk", "1", str(tmp_path / "cli")])
    assert r.exit_code != 0 and r.output.count("\n") == 1 and "--topk must be an integer in 2..256" in r.output
    with pytest.raises(ValueError, match=r"the model's output on input \d+ \(row \d+\) is not finite"):
        sample(str(tmp_path / "nan"), models=["smoothcert.sampler.testing:tiny_nan"],
               data="smoothcert.sampler.testing:tiny_dataset", sigma=2.0, n0=3, n=40, device="cpu",
               progress=False, log=lambda s: None, topk=3)


# ------------------------------------------------------------------ the kernels against independent references
def _softmax32(logits):
    """The float32 softmax rows of the full-row sampler (``softmax_argmax_at``) and their argmax."""
    rows = np.empty(logits.shape, np.float32)
    arg = np.empty(logits.shape[0], np.int32)
    KER.softmax_argmax_at(logits, rows, arg, 0)
    return rows, arg


def _reference(rows, k):
    """Top-k (descending, ties to the lower class) and entropy (Python floats, class order) of stored rows."""
    order = np.lexsort((np.broadcast_to(np.arange(rows.shape[1]), rows.shape), -rows), axis=1)[:, :k]
    ent = []
    for row in rows.astype(np.float32):
        h = 0.0
        for v in row.tolist():
            if v > 0:
                h -= v * math.log(v)
        ent.append(h)
    return np.take_along_axis(rows, order, 1), order, np.array(ent)


def _logits(rng, B, m):
    lg = (rng.standard_normal((B, m)) * rng.choice([0.05, 2.0, 12.0, 60.0], size=(B, 1))).astype(np.float32)
    lg[0] = 0.0                                   # every class tied
    lg[1, ::3] = 7.0                              # ties at the top
    lg[2, :] = -1e4
    lg[2, 17 % m] = 30.0                          # one class takes all (the others underflow to 0)
    return lg


@pytest.mark.parametrize("m,k", [(1000, 5), (10, 3), (2, 2)])
def test_the_cpu_kernel_keeps_what_store_compact_keeps_of_the_rounded_rows(m, k):
    rng = np.random.default_rng(m)
    lg = _logits(rng, 64, m)
    rows, arg = _softmax32(lg)
    values, terms = KER.f16_tables()
    for dtype, tables in (("float16", (values, terms)), ("float32", (values[:0], terms[:0]))):
        n0 = 9
        tp, tc = np.empty((64, k), np.float32), np.empty((64, k), np.uint16)
        ent, a2, r0 = np.empty(64), np.empty(64, np.int32), np.empty((n0, m), np.float32)
        # two batches, the second at an offset, as the loop calls it
        assert KER.softmax_topk_at(lg[:20], tp, tc, ent, a2, r0, *tables, 0) == -1
        assert KER.softmax_topk_at(lg[20:], tp, tc, ent, a2, r0, *tables, 20) == -1
        stored = rows.astype(dtype)                # numpy's rounding of the full-row sampler's rows
        p, c, e = _reference(stored, k)
        assert np.array_equal(a2, arg) and r0.tobytes() == rows[:n0].tobytes()
        assert tp.astype(dtype).tobytes() == p.tobytes() and np.array_equal(tc, c), dtype
        assert ent.tobytes() == e.tobytes(), (dtype, np.abs(ent - e).max())
        p2, c2, e2 = compact_rows(stored, k)       # and the store's own kernel, bit for bit
        assert p2.tobytes() == p.tobytes() and np.array_equal(c2, c) and e2.tobytes() == ent.tobytes()


def test_the_cpu_kernel_marks_a_row_that_is_not_finite():
    lg = np.zeros((4, 6), np.float32)
    lg[2, 3] = np.nan
    values, terms = KER.f16_tables()
    ent = np.zeros(4)
    bad = KER.softmax_topk_at(lg, np.empty((4, 2), np.float32), np.empty((4, 2), np.uint16), ent,
                              np.empty(4, np.int32), np.empty((0, 6), np.float32), values, terms, 0)
    assert bad == 2 and np.isnan(ent[2]) and np.isfinite(ent[[0, 1, 3]]).all()


def test_the_float16_tables_hold_each_value_and_its_entropy_term():
    values, terms = KER.f16_tables()
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    assert values.tobytes() == bits.view(np.float16).astype(np.float32).tobytes()
    for b in (0, 1, 0x0400, 0x1234, 0x3555, 0x3BFF, 0x3C00):     # zero, subnormal, normal, just below 1, 1
        v = float(values[b])
        assert terms[b] == (v * math.log(v) if v > 0 else 0.0)
    assert np.isnan(terms[0x7E00]) and terms[0x8400] == 0.0        # NaN; a negative value contributes 0


def test_the_device_topk_gives_the_host_kernels_bytes_and_nan_for_a_bad_row():
    from smoothcert.sampler.loops import CompactBuffers, DeviceTopK

    rng = np.random.default_rng(3)
    m, B, n0 = 1000, 40, 5
    lg = _logits(rng, B, m)
    probs = torch.softmax(torch.from_numpy(lg), dim=1)
    probs[5, 9] = float("nan")
    dev = torch.device("cpu")
    buf = CompactBuffers(B, n0, m, K, "float16", dev, False)
    topk = DeviceTopK(K, n0, m, "float16", dev)
    topk(probs[:4], buf, 0, 4, idx=0)              # the first batch is checked against the host kernel
    assert topk.checked
    topk(probs[4:5], buf, 4, 5, idx=0)               # a batch of one row
    topk(probs[5:], buf, 5, B, idx=0)
    q = probs.to(torch.float16).numpy()
    ok = np.isfinite(q).all(axis=1)
    p, c, e = compact_rows(np.where(ok[:, None], q, 0), K)
    assert buf.top_p.numpy()[ok].tobytes() == p[ok].tobytes()
    assert np.array_equal(buf.top_c.numpy().view(np.uint16)[ok], c[ok])
    assert buf.ent.numpy()[ok].tobytes() == e[ok].tobytes()
    assert np.isnan(buf.ent.numpy()[5]) and ok.sum() == B - 1
    assert np.array_equal(buf.rows0.numpy(), probs[:n0].numpy().astype(np.float16))
    assert np.array_equal(buf.arg.numpy(), probs.argmax(1).numpy())
    with pytest.raises(ValueError, match=r"the model's output on input 7 \(row 5\) is not finite"):
        buf.payload(B, 7)
