"""Property tests (hypothesis) of the certifier on small random stores.

- any valid store (ties, one class, exact zeros, float16, ensembles, prefixes):
  every method runs, and every certificate is well formed with a finite radius;
- adding agreeing rows never lowers a Cohen radius (counts, and n_use prefixes of a store);
- ``uncertainty`` at theta = inf equals ``two-step`` (cc and ncl);
- results do not depend on the block size, nor on threads vs a 2-process LocalCluster.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smoothcert.certifier import CertifyOptions, certify
from smoothcert.store.importer import import_npz

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# every method with options that exercise all its settings
METHOD_OPTIONS = {
    "cohen": {},
    "cohen-predict": {},
    "two-step": {},
    "uncertainty": dict(uncertainty=["entropy", "confidence", "margin"], theta=[-0.5, 0.5, math.inf]),
    "cdf": dict(measure=["score", "margin"], bound=["cdf", "hoeffding"], threshold=[0.2, 0.5]),
    "soft": dict(bound=["bernstein", "hoeffding"]),
    "aces": dict(theta=[0.0, 0.3, 1.0]),
    "aces-predict": dict(theta=[0.0, 0.3, 1.0]),
    "adaptive": dict(radius=0.1, stages=[1, 3, 8]),
}


# ------------------------------------------------------------------ strategies
ROW_KINDS = ("onehot", "peak", "tie", "uniform", "random")


def make_row(kind, c, c2, m, rng):
    if kind == "onehot":  # exact zeros elsewhere
        r = np.zeros(m)
        r[c] = 1.0
    elif kind == "peak":
        r = np.full(m, 0.1 / (m - 1))
        r[c] = 0.9
    elif kind == "tie":  # two classes tied at the top (c2 may equal c: then one-hot)
        r = np.zeros(m)
        r[c] += 0.5
        r[c2] += 0.5
    elif kind == "uniform":
        r = np.full(m, 1.0 / m)
    else:
        r = rng.dirichlet(np.ones(m) * 0.5)
    return r


@st.composite
def store_arrays(draw, members=None):
    """Arrays for ``store import``: 1-3 inputs, 2-4 classes, n0 1-4, n 1-12, rows of every kind."""
    m = draw(st.integers(2, 4))
    N = draw(st.integers(1, 3))
    n0 = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    R = n0 + n
    one_class = draw(st.booleans())
    labels_rows = draw(st.lists(st.integers(0, m - 1), min_size=N * R, max_size=N * R))
    if one_class:
        labels_rows = [labels_rows[0]] * (N * R)
    kinds = draw(st.lists(st.sampled_from(ROW_KINDS), min_size=N * R, max_size=N * R))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    probs = np.empty((N, R, m))
    for j, (kind, c) in enumerate(zip(kinds, labels_rows)):
        probs[j // R, j % R] = make_row(kind, c, int(rng.integers(0, m)), m, rng)
    arrays = {
        "probs": probs.astype(np.float32),
        "labels": np.array(draw(st.lists(st.integers(0, m - 1), min_size=N, max_size=N))),
        "core_predict": np.array(draw(st.lists(st.integers(0, m - 1), min_size=N, max_size=N))),
    }
    with_members = draw(st.booleans()) if members is None else members
    if with_members:
        k = draw(st.integers(1, 3))
        mem = np.empty((N, R, k, m))
        for j in range(k):  # members: the row itself, or another row of any kind (may disagree, exact zeros)
            other_kinds = draw(st.lists(st.sampled_from(ROW_KINDS), min_size=N * R, max_size=N * R))
            for i, kind in enumerate(other_kinds):
                mem[i // R, i % R, j] = make_row(kind, int(rng.integers(0, m)), int(rng.integers(0, m)), m, rng)
        arrays["member_probs"] = mem.astype(np.float32)
    dtype = draw(st.sampled_from(["float32", "float16"]))
    n_use = draw(st.none() | st.integers(1, n))
    n0_use = draw(st.none() | st.integers(1, n0))
    return arrays, n0, dtype, n0_use, n_use


def build_store(tmp: Path, arrays, n0, dtype, sigma=0.5) -> str:
    src = tmp / "src.npz"
    np.savez(src, **arrays)
    dest = tmp / "store"
    import_npz(src, dest, sigma=sigma, n0=n0, dtype=dtype)
    return str(dest)


def check_table(table, method, m, N):
    assert len(table) >= N
    assert set(table["idx"]) == set(range(N))
    r = table["radius"].to_numpy(dtype=np.float64)
    p = table["predict"].to_numpy()
    assert np.isfinite(r).all(), f"{method}: non-finite radius {r[~np.isfinite(r)][:3]}"
    assert (r >= 0).all(), f"{method}: negative radius"
    assert ((p >= -1) & (p < m)).all(), f"{method}: predict outside -1..{m - 1}"
    assert (r[p == -1] == 0).all(), f"{method}: abstention with a radius"
    assert set(table["correct"]) <= {0, 1}


# ------------------------------------------------------------------ properties
@settings(max_examples=30, **SETTINGS)
@given(store_arrays())
def test_any_valid_store_gives_well_formed_certificates(case):
    arrays, n0, dtype, n0_use, n_use = case
    N, _, m = arrays["probs"].shape
    with tempfile.TemporaryDirectory() as d:
        loc = build_store(Path(d), arrays, n0, dtype)
        for method, kw in METHOD_OPTIONS.items():
            table, meta = certify(loc, method, CertifyOptions(**kw, n0_use=n0_use, n_use=n_use), progress=False)
            check_table(table, method, m, N)
            assert 0 < meta["confidence"] < 1
            if "member_probs" in arrays:
                k = arrays["member_probs"].shape[2]
                ens = CertifyOptions(**kw, members=list(range(k))[::-1], consensus=1)
                table, meta = certify(loc, method, ens, progress=False)
                check_table(table, method, m, N)


@settings(max_examples=50, **SETTINGS)
@given(st.integers(2, 5).flatmap(lambda m: st.tuples(
    st.lists(st.integers(0, 30), min_size=m, max_size=m),
    st.lists(st.integers(0, 60), min_size=m, max_size=m),
    st.integers(1, 200),
    st.sampled_from([0.001, 0.01, 0.1, 0.3]))))
def test_adding_agreeing_rows_never_lowers_a_cohen_radius(case):
    from smoothcert.certifier import cohen

    c0, c, extra, alpha = (np.array(v) if isinstance(v, list) else v for v in case)
    c0, c = np.array([c0]), np.array([c])
    n = int(c.sum())
    if n == 0:
        c[0, 0] = 1
        n = 1
    pred, rad, pA = cohen.certify(c0, c, n, 0.5, alpha)
    cA = int(np.argmax(c0[0]))  # top-1 of the selection counts, ties to the lowest index
    more = c.copy()
    more[0, cA] += extra
    pred2, rad2, pA2 = cohen.certify(c0, more, n + extra, 0.5, alpha)
    assert pA2[0] >= pA[0]
    assert rad2[0] >= rad[0]
    if pred[0] >= 0:
        assert pred2[0] == pred[0]


@settings(max_examples=15, **SETTINGS)
@given(st.integers(2, 4), st.integers(0, 2**16), st.integers(1, 30), st.integers(1, 40))
def test_cohen_radius_grows_along_n_use_prefixes_of_agreeing_rows(m, seed, head, tail):
    """S = `head` arbitrary rows, then `tail` rows of cA: the radius at n_use = head + t never decreases in t."""
    rng = np.random.default_rng(seed)
    n0 = 10
    lab0 = np.r_[np.zeros(6, int), rng.integers(0, m, 4)]  # cA = 0 (6 of 10 at least)
    lab0[6:] = np.where(lab0[6:] == 0, 1, lab0[6:])
    labs = np.r_[lab0, rng.integers(0, m, head), np.zeros(tail, int)]
    probs = np.stack([make_row("peak", c, c, m, rng) for c in labs])[None].astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        loc = build_store(Path(d), {"probs": probs, "labels": np.array([0])}, n0, "float32")
        radii = [certify(loc, "cohen", CertifyOptions(alpha=0.01, n_use=head + t), progress=False)[0]["radius"].iloc[0]
                 for t in sorted({0, tail // 2, tail})]
    assert all(b >= a for a, b in zip(radii, radii[1:])), radii


@settings(max_examples=25, **SETTINGS)
@given(store_arrays(members=False), st.sampled_from([0.001, 0.05, 0.2]), st.booleans(),
       st.sampled_from(["two-sided", "greater"]))
def test_uncertainty_at_theta_inf_equals_two_step(case, alpha, joint, test):
    arrays, n0, dtype, n0_use, n_use = case
    opts = dict(alpha=alpha, joint_alpha=joint, binom_test=test, n0_use=n0_use, n_use=n_use)
    with tempfile.TemporaryDirectory() as d:
        loc = build_store(Path(d), arrays, n0, dtype)
        ts, _ = certify(loc, "two-step", CertifyOptions(**opts), progress=False)
        un, _ = certify(loc, "uncertainty", CertifyOptions(**opts, uncertainty=["entropy", "confidence", "margin"],
                                                           theta=[math.inf], guarantee=["cc", "ncl"]),
                        progress=False)
    for (f, g), sub in un.groupby(["uncertainty", "guarantee"]):
        sub = sub.sort_values("idx").reset_index(drop=True)
        ref = ts.sort_values("idx").reset_index(drop=True)
        assert (sub["predict"].to_numpy() == ref["predict"].to_numpy()).all(), (f, g)
        np.testing.assert_array_equal(sub["radius"].to_numpy(), ref["radius"].to_numpy(), err_msg=f"{f} {g}")
        assert (sub["runner_up"].to_numpy() == ref["runner_up"].to_numpy()).all(), (f, g)


@pytest.fixture(scope="module")
def chunk_store(tmp_path_factory):
    """23 inputs (a prime: every block size leaves a ragged last block), 4 classes, 2 members."""
    rng = np.random.default_rng(3)
    N, R, m = 23, 60, 4
    logits = rng.normal(0, 2, size=(N, R, 2, m))
    logits[..., 0] += np.linspace(0, 3, N)[:, None, None]
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    probs = np.exp(lp.mean(2))
    probs /= probs.sum(-1, keepdims=True)
    arrays = {"probs": probs.astype(np.float32), "labels": rng.integers(0, m, N), "core_predict": rng.integers(0, m, N),
              "member_logprobs": lp.astype(np.float32)}
    return build_store(tmp_path_factory.mktemp("chunks"), arrays, 10, "float16")


def _same(a, b):
    import pandas as pd

    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


@settings(max_examples=25, **SETTINGS)
@given(method=st.sampled_from(sorted(METHOD_OPTIONS)), block_size=st.integers(1, 30), ens=st.booleans())
def test_results_do_not_depend_on_block_size(chunk_store, method, block_size, ens):
    kw = dict(METHOD_OPTIONS[method], **(dict(members=[1, 0], consensus=1) if ens else {}))
    ref, _ = certify(chunk_store, method, CertifyOptions(**kw), progress=False, block_size=23)
    got, _ = certify(chunk_store, method, CertifyOptions(**kw), progress=False, block_size=block_size)
    _same(ref, got)


def test_results_do_not_depend_on_processes_vs_threads(chunk_store):
    """One LocalCluster of 2 worker processes (about 2 s to start), block size 5, an ensemble
    uncertainty sweep (rows, member rows and counts all cross the process boundary): equal to threads."""
    kw = dict(METHOD_OPTIONS["uncertainty"], members=[1, 0], consensus=1)
    ref, meta_t = certify(chunk_store, "uncertainty", CertifyOptions(**kw), progress=False, block_size=5)
    got, meta_p = certify(chunk_store, "uncertainty", CertifyOptions(**kw), progress=False, block_size=5, workers=2)
    _same(ref, got)
    assert meta_t["ensemble"] == meta_p["ensemble"]
