"""Replay sampling (``sample --replay-of BASE``): a changed model on a base store's own noisy copies.

The claims: replaying the unchanged model reproduces BASE's first n0 + P
rows byte for byte (every stored array) and so has no disagreements; every
setting that would make the copies differ is refused in one line before
anything is written; the replay store resumes and shards like any store;
and ``certify --method incremental --base BASE`` on a sampled replay store
equals an independent computation from the two stores' hard labels, and
refuses a BASE changed after the replay.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from faultkit import assert_one_line_error, invoke
from smoothcert.sampler import testing as T
from smoothcert.sampler.config import SampleConfig, row_batches
from smoothcert.sampler.run import sample
from smoothcert.store import StoreError, open_store
from smoothcert.store import format as F

TINY, TINY_B = "smoothcert.sampler.testing:tiny", "smoothcert.sampler.testing:tiny_b"
N0, NN, BS, SIGMA, SEED = 5, 300, 64, 0.5, 3


@pytest.fixture
def env(tmp_path):
    x, y = T.tiny_data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    x2 = x.copy()
    x2[3, 0, 0, 0] ^= 1                                   # one pixel of one selected input differs
    np.savez(tmp_path / "other.npz", x=x2, y=y)
    xr, yr = T.tiny_data(channels=3)
    np.savez(tmp_path / "rgb.npz", x=xr, y=yr)

    class Env:
        root = tmp_path
        data = str(tmp_path / "d.npz")

        def base(self, name="base", **kw):
            kw = {"models": [TINY], "data": self.data, "sigma": SIGMA, "n0": N0, "n": NN, "batch_size": BS,
                  "seed": SEED, "indices": "1:11:1", "device": "cpu", "progress": False, "log": lambda s: None,
                  **kw}
            sample(str(tmp_path / name), **kw)
            return tmp_path / name

        def replay(self, name, base, n, **kw):
            kw = {"models": [TINY], "batch_size": BS, "device": "cpu", "progress": False, "log": lambda s: None,
                  **kw}
            return sample(str(tmp_path / name), replay_of=str(base), n=n, **kw)

    return Env()


def stored(path) -> dict:
    """Every array of a store's group as numpy, and its attributes."""
    with open_store(str(path)) as st:
        out = {name: np.asarray(a[:]) for name, a in st.root.arrays()}
        out["attrs"] = dict(st.attrs)
    return out


def assert_prefix_equal(out, base, rows: int):
    """Every array of OUT equals BASE's first ``rows`` rows per input, byte for byte; the records name the same inputs."""
    O, B = stored(out), stored(base)
    assert O.keys() == B.keys()
    assert F.ARGMAX in O and (F.ROWS in O or "topk_p" in O)
    n0 = O["attrs"]["n0"]
    for a in O.keys() - {"attrs", F.INPUTS}:
        r = O[a].shape[1]                                     # per row (N, n0 + P, ...) or the selection's (N, n0, ...)
        assert r == rows or (r == n0 and B[a].shape[1] == n0), (a, O[a].shape, B[a].shape)
        assert O[a].tobytes() == np.ascontiguousarray(B[a][:, :r]).tobytes(), a
    col = F.COL
    for field in ("idx", "label", "core_predict", "complete"):
        assert (O[F.INPUTS][:, col[field]] == B[F.INPUTS][:, col[field]]).all(), field
    assert (O[F.INPUTS][:, col["n_rows"]] == rows).all()


# --------------------------------------------------------------- the same copies
@pytest.mark.parametrize("P", [1, 150, 251, NN])
def test_unchanged_model_replay_equals_base_rows_byte_for_byte(env, P):
    base = env.base()
    env.replay("out", base, P)
    assert_prefix_equal(env.root / "out", base, N0 + P)
    a = stored(env.root / "out")["attrs"]
    with open_store(str(base)) as b:
        assert a["replay_of"] == {"location": str(base), "fingerprint": b.fingerprint()}
        assert (a["sigma"], a["seed"], a["n0"], a["n"], a["indices"]) == (SIGMA, SEED, N0, P, b.attrs["indices"])
        assert a["data_fingerprint"] == b.attrs["data_fingerprint"]


def test_unchanged_ensemble_with_core_model_replay_equals_base_byte_for_byte(env):
    """The device loop (an ensemble on CPU): member log-softmax, rows, argmax and core_predict all reproduced."""
    kw = {"models": [TINY, TINY_B], "core_model": TINY}
    base = env.base(**kw)
    env.replay("out", base, 100, **kw)
    assert_prefix_equal(env.root / "out", base, N0 + 100)
    assert F.MEMBERS in stored(base) and (stored(base)[F.INPUTS][:, F.COL["core_predict"]] >= 0).all()


def test_unchanged_model_replay_of_a_compact_store_with_topk_equals_base_byte_for_byte(env, tmp_path):
    """--topk on both: the compact arrays (top-k, classes, entropy, whole selection rows) are BASE's prefix too."""
    import pandas as pd

    base = env.base(topk=2)
    env.replay("out", base, 120, topk=2)
    assert stored(base)["attrs"]["layout"] == stored(env.root / "out")["attrs"]["layout"] == "compact-s0"
    assert_prefix_equal(env.root / "out", base, N0 + 120)
    tab = tmp_path / "t.csv"
    code, _, stderr, exc = invoke(["certify", env.root / "out", "--method", "incremental", "--base", base,
                                   "--out", tab, "-q"])
    assert code == 0 and exc is None, stderr
    assert (pd.read_csv(tab)["disagreements"] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_unchanged_model_replay_on_cuda_equals_a_cuda_base_byte_for_byte(env):
    base = env.base(device="cuda")
    env.replay("out", base, 200, device="cuda")
    assert_prefix_equal(env.root / "out", base, N0 + 200)


def test_replay_settings_come_from_base_and_batches_are_base_batches_cut_at_n0_plus_P(env):
    base = env.base()
    c = SampleConfig(models=[TINY], replay_of=str(base), n=150, batch_size=BS)
    assert (c.sigma, c.seed, c.n0, c.n, c.indices, c.data) == (SIGMA, SEED, N0, 150, "1:11:1", env.data)
    # BASE's batches of 64 over 305 rows: (0, 64), (64, 128), (128, 192), ...; the replay's 155 rows
    assert c.batches() == [(0, 64), (64, 128), (128, 155)]
    assert c.batches() == [(a, min(b, 155)) for a, b in row_batches(N0 + NN, BS) if a < 155]
    assert c.replace(progress=True).batches() == c.batches()            # replace validates against BASE again
    given = SampleConfig(models=[TINY], replay_of=str(base), n=150, sigma=SIGMA, seed=SEED, n0=N0,
                         indices="1:11:1", data=env.data, batch_size=BS)
    assert given == c


def test_unchanged_model_replay_certifies_with_zero_disagreements(env, tmp_path):
    import pandas as pd

    base = env.base()
    env.replay("out", base, 200)
    tab = tmp_path / "t.csv"
    code, _, stderr, exc = invoke(["certify", env.root / "out", "--method", "incremental", "--base", base,
                                   "--out", tab, "-q"])
    assert code == 0 and exc is None, stderr
    t = pd.read_csv(tab)
    assert len(t) == 10 and (t["disagreements"] == 0).all() and (t["rows_used"] == 200).all()


# --------------------------------------------------------------------- refusals
def _refused(args, out, *needles):
    code, _, stderr, exc = invoke(args)
    line = assert_one_line_error(code, stderr, exc, what=" ".join(map(str, args)))
    for s in needles:
        assert s in line, line
    assert not out.exists(), f"{out} was created"
    return line


def _sample_args(env, base, out, *extra):
    return ["sample", "--model", TINY, "--replay-of", base, "--batch-size", BS, "--device", "cpu", "--no-progress",
            *extra, out]


@pytest.mark.parametrize("extra, needles", [
    (["--n", 40, "--sigma", 0.25], ["--sigma 0.25 differs from BASE's sigma 0.5"]),
    (["--n", 40, "--seed", 4], ["--seed 4 differs from BASE's seed 3"]),
    (["--n", 40, "--n0", 6], ["--n0 6 differs from BASE's n0 5"]),
    (["--n", 40, "--indices", "0:10"], ["--indices selects 0:10:1 (10 inputs), BASE's indices are 1:11:1"]),
    (["--n", 40, "--indices", "1:12"], ["--indices selects 1:12:1 (11 inputs), BASE's indices are 1:11:1 (10"]),
    (["--n", 40, "--data", "OTHER"], ["--data", "other.npz differs from BASE's data", "d.npz", "data fingerprint"]),
    (["--n", 40, "--data", "RGB", "--model", "smoothcert.sampler.testing:tiny_rgb"],
     ["input shape [3, 6, 6] here, [1, 6, 6] in BASE"]),
    (["--n", NN + 1], [f"--n {NN + 1} exceeds BASE's n = {NN}"]),
    ([], [f"give --n P, how many of BASE's estimation rows to replay (1..{NN})"]),
    (["--n", 40, "--adaptive-radius", 0.5], ["--adaptive-radius cannot be combined with --replay-of"]),
])
def test_each_mismatch_with_base_is_refused_in_one_line_with_nothing_written(env, extra, needles):
    base = env.base()
    extra = [str(env.root / "other.npz") if a == "OTHER" else str(env.root / "rgb.npz") if a == "RGB" else a
             for a in extra]
    if "--model" in extra:     # a second --model would make an ensemble: replace the first
        i = extra.index("--model")
        args = ["sample", "--model", extra[i + 1], "--replay-of", base, "--batch-size", BS, "--device", "cpu",
                "--no-progress", *extra[:i], *extra[i + 2:], env.root / "out"]
    else:
        args = _sample_args(env, base, env.root / "out", *extra)
    line = _refused(args, env.root / "out", *needles)
    assert f"--replay-of {base}" in line or "--adaptive-radius" in line


def test_missing_incomplete_adaptive_and_imported_bases_are_refused_with_nothing_written(env, make_store):
    out = env.root / "out"
    _refused(_sample_args(env, env.root / "nowhere", out, "--n", 10), out,
             f"--replay-of {env.root / 'nowhere'}: cannot open the base store", "does not exist")
    part = env.base("part", shard="0/2")                     # half of BASE's inputs sampled
    _refused(_sample_args(env, part, out, "--n", 10), out, "5 of 10 inputs of BASE are incomplete (first: slot 1)")
    adaptive = env.base("adaptive", adaptive_radius=0.3, adaptive_stages="50,100")
    _refused(_sample_args(env, adaptive, out, "--n", 10), out, "BASE was sampled adaptively")
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(4, N0 + 20)).astype(np.float32)
    imported = make_store(probs, np.zeros(4, int), N0, name="imported")
    _refused(_sample_args(env, imported, out, "--n", 10), out, "BASE was not written by smoothcert sample",
             "no seed, noise_scheme")


def test_a_model_with_another_number_of_classes_is_refused_with_nothing_written(env):
    import warnings

    base = env.base()
    six = env.root / "six.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(T._seeded_init(T._tiny_cls()(m=6), 0)), str(six))
    args = ["sample", "--model", six, "--replay-of", base, "--n", 10, "--device", "cpu", "--no-progress",
            env.root / "out"]
    _refused(args, env.root / "out", "the model has 6 classes, BASE's model 5")


# ------------------------------------------------------------- resume and shards
def test_replay_resumes_and_shards_like_any_store(env):
    base = env.base()
    env.replay("whole", base, 120)
    env.replay("sharded", base, 120, shard="1/2")
    with open_store(str(env.root / "sharded")) as st:
        assert st.complete_mask().sum() == 5
    env.replay("sharded", base, 120, shard="0/2")              # the other shard into the same store
    r = env.replay("sharded", base, 120)                       # resume: nothing left to do
    assert r.written == 0 and r.skipped == 10
    W, S = stored(env.root / "whole"), stored(env.root / "sharded")
    for a in (F.ROWS, F.ARGMAX):
        assert W[a].tobytes() == S[a].tobytes()
    assert W["attrs"]["replay_of"] == S["attrs"]["replay_of"]


def test_resuming_a_replay_after_base_changed_is_refused(env):
    base = env.base()
    env.replay("out", base, 120, shard="0/2")
    with open_store(str(base), mode="a") as b:                 # BASE re-sampled in one input: new bytes
        kw = b.read_input(0)
        kw["rows"] = kw["rows"][:, ::-1].copy()
        kw["argmax"] = kw["rows"].argmax(1)
        b.write_input(0, **kw)
    with pytest.raises(StoreError, match="replay of a base store with fingerprint"):
        env.replay("out", base, 120, shard="1/2")


# ------------------------------------------------------- certify --method incremental
def _ref_incremental(base, out, P, alpha=0.001):
    """pA, zeta, d, predict, radius, lost per input, from the two stores' hard labels (numpy and scipy only)."""
    with open_store(str(base)) as b, open_store(str(out)) as o:
        bl, ol = np.asarray(b.root[F.ARGMAX][:]).astype(int), np.asarray(o.root[F.ARGMAX][:]).astype(int)
        n0, n, m, sigma = b.n0, b.n, b.num_classes, b.sigma
    res = []
    for lb, lo in zip(bl, ol):
        c0 = np.bincount(lb[:n0], minlength=m)
        cA = int(np.argmax(c0))                              # np.argmax: the lowest index among ties
        k = int((lb[n0:n0 + n] == cA).sum())
        pA = 0.0 if k == 0 else stats.beta.ppf(alpha, k, n - k + 1)
        d = int((lb[n0:n0 + P] != lo[n0:n0 + P]).sum())
        lost = int(((lb[n0:n0 + P] == cA) & (lo[n0:n0 + P] != cA)).sum())
        zeta = 1.0 if lost == P else stats.beta.ppf(1 - alpha, lost + 1, P - lost)
        p = pA - zeta
        pred, rad = (cA, sigma * stats.norm.ppf(p)) if p >= 0.5 else (-1, 0.0)
        res.append((pA, zeta, d, pred, rad, lost))
    return np.array(res)


def test_certify_incremental_on_a_sampled_replay_store_equals_independent_computation(env, tmp_path):
    import pandas as pd

    base = env.base()
    env.replay("changed", base, 200, models=[TINY_B])        # another network: many disagreements
    tab = tmp_path / "t.csv"
    code, _, stderr, exc = invoke(["certify", env.root / "changed", "--method", "incremental", "--base", base,
                                   "--out", tab, "-q"])
    assert code == 0 and exc is None, stderr
    t = pd.read_csv(tab)
    ref = _ref_incremental(base, env.root / "changed", 200)
    assert (t["disagreements"].to_numpy() == ref[:, 2]).all() and ref[:, 2].max() > 0
    assert (t["lost"].to_numpy() == ref[:, 5]).all()
    np.testing.assert_allclose(t["p_lower"], ref[:, 0], rtol=1e-12)
    np.testing.assert_allclose(t["zeta"], ref[:, 1], rtol=1e-12)
    assert (t["predict"].to_numpy() == ref[:, 3]).all()
    np.testing.assert_allclose(t["radius"], ref[:, 4], rtol=1e-9, atol=1e-12)


def test_certify_refuses_a_base_modified_after_the_replay_in_one_line(env, tmp_path):
    base = env.base()
    env.replay("out", base, 100)
    with open_store(str(base), mode="a") as b:                 # one input of BASE rewritten after the replay
        kw = b.read_input(2)
        kw["rows"] = kw["rows"][:, ::-1].copy()
        kw["argmax"] = kw["rows"].argmax(1)
        b.write_input(2, **kw)
    tab = tmp_path / "t.csv"
    code, _, stderr, exc = invoke(["certify", env.root / "out", "--method", "incremental", "--base", base,
                                   "--out", tab, "-q"])
    line = assert_one_line_error(code, stderr, exc)
    assert "BASE's fingerprint is" in line and "BASE changed since" in line, line
    assert not tab.exists()
