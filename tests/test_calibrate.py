"""Threshold calibration (docs/methods.md section 3.1) on stores built so that the answer is known.

The expected thetas come from closed forms (confidence) and from a brute-force
walk over the 1,001 thresholds written here with plain Python loops.
"""
import json
import math

import numpy as np
import pytest

from smoothcert.certifier.calibrate import calibrate, load_calibration, write_calibration

M = 4
CONF = [0.30 + 0.05 * i for i in range(10)]  # max probability of every row of correct input i


def _row(label, c, m=M):
    p = np.full(m, (1 - c) / (m - 1))
    p[label] = c
    return p


@pytest.fixture(scope="module")
def known_store(tmp_path_factory):
    """12 inputs, 5 + 20 rows: input i < 10 has all rows on its label with max probability CONF[i];
    inputs 10 and 11 are wrong (all rows on another class, probability 0.9). A0 = 10/12."""
    from smoothcert.store.importer import import_npz

    labels = np.array([i % M for i in range(12)])
    probs = np.empty((12, 25, M), np.float32)
    for i in range(10):
        probs[i] = _row(labels[i], CONF[i])
    for i in (10, 11):
        probs[i] = _row((labels[i] + 1) % M, 0.9)
    d = tmp_path_factory.mktemp("cal")
    np.savez(d / "k.npz", probs=probs, labels=labels)
    import_npz(d / "k.npz", d / "k.zarr", sigma=0.25, n0=5)
    return d / "k.zarr", probs, labels


def ref_u(p, name):
    p = [float(x) for x in p]
    if name == "entropy":
        return -sum(x * math.log(x) for x in p if x > 0)
    if name == "confidence":
        return -max(p)
    s = sorted(p)
    return -(s[-1] - s[-2])


def ref_theta(name, k, m):
    return {"entropy": math.log(m) * (1 - k / 1000), "confidence": -(0.1 + 0.9 * k / 1000), "margin": -k / 1000}[name]


def ref_calibrate(probs, labels, n0, name, loss):
    """Section 3.1 by brute force: majority over S (V = m always wrong, loses ties), walk k = 0..1000."""
    N, R, m = probs.shape
    us = [[ref_u(p, name) for p in probs[i, n0:n0 + 1000]] for i in range(N)]
    hard = [[max(range(m), key=lambda c: (p[c], -c)) for p in probs[i, n0:n0 + 1000]] for i in range(N)]

    def acc(theta):
        ok = 0
        for i in range(N):
            cnt = [0] * (m + 1)
            for u, h in zip(us[i], hard[i]):
                cnt[h if u < theta else m] += 1
            maj = max(range(m + 1), key=lambda c: (cnt[c], -c))
            ok += maj == labels[i]
        return ok / N

    a0 = acc(math.inf)
    prev = None
    for k in range(1001):
        a = acc(ref_theta(name, k, m))
        if a < (1 - loss) * a0:
            return (math.inf, a0) if k == 0 else prev
        prev = (ref_theta(name, k, m), a)
    return prev


def test_confidence_closed_form(known_store):
    store, _, _ = known_store
    cal = calibrate(store, ["confidence"], [0.01, 0.15])
    r = {x["loss"]: x for x in cal["results"]}
    assert r[0.01]["A0"] == pytest.approx(10 / 12)
    # input 0 (max p = 0.3) turns V first: 0.1 + 0.9 k/1000 >= 0.3 from k = 223, so theta_222 is kept
    assert r[0.01]["k"] == 222 and r[0.01]["theta"] == -(0.1 + 0.9 * 222 / 1000)
    assert r[0.01]["accuracy"] == pytest.approx(10 / 12)
    # losing one input of ten is within 15 %; input 1 (0.35) turns V from k = 278
    assert r[0.15]["k"] == 277 and r[0.15]["theta"] == -(0.1 + 0.9 * 277 / 1000)
    assert r[0.15]["accuracy"] == pytest.approx(9 / 12)


@pytest.mark.parametrize("name", ["entropy", "confidence", "margin"])
def test_matches_brute_force(known_store, name):
    store, probs, labels = known_store
    losses = [0.005, 0.01, 0.15, 0.5]
    cal = calibrate(store, [name], losses)
    for rec, loss in zip(cal["results"], losses):
        theta, kept = ref_calibrate(probs, labels, 5, name, loss)
        assert rec["theta"] == theta, (name, loss)
        assert rec["accuracy"] == pytest.approx(kept), (name, loss)


def test_k0_fails_gives_inf_and_none_fails_gives_last(tmp_path):
    from smoothcert.store.importer import import_npz

    m = 20
    # uniform rows: max p = 0.05 <= 0.1, so confidence's loosest theta already makes every row V
    probs = np.full((3, 12, m), 1 / m, np.float32)
    np.savez(tmp_path / "u.npz", probs=probs, labels=np.zeros(3, int))  # argmax of a uniform row: class 0, correct
    import_npz(tmp_path / "u.npz", tmp_path / "u.zarr", sigma=0.25, n0=2)
    r = calibrate(tmp_path / "u.zarr", ["confidence"], [0.01])["results"][0]
    assert r["theta"] == math.inf and r["k"] is None and r["accuracy"] == 1.0

    # every input wrong: A0 = 0, no k can fall below it, theta_1000 is returned
    probs = np.stack([np.tile(_row(1, 0.8), (12, 1)) for _ in range(3)]).astype(np.float32)
    np.savez(tmp_path / "w.npz", probs=probs, labels=np.zeros(3, int))
    import_npz(tmp_path / "w.npz", tmp_path / "w.zarr", sigma=0.25, n0=2)
    res = calibrate(tmp_path / "w.zarr", ["entropy", "confidence", "margin"], [0.01])["results"]
    assert [(x["k"], x["theta"]) for x in res] == [(1000, 0.0), (1000, -1.0), (1000, -1.0)]


def test_uses_at_most_1000_rows_of_s(tmp_path):
    """Rows of S beyond the first 1,000 (and the S0 rows) never count."""
    from smoothcert.store.importer import import_npz

    probs = np.empty((1, 10 + 1500, M), np.float32)
    probs[0, :10] = _row(2, 0.31)           # S0: wrong class, never used
    probs[0, 10:1010] = _row(0, 0.5)        # first 1000 rows of S: correct, max p 0.5
    probs[0, 1010:] = _row(1, 0.95)         # later rows: a confident majority of the wrong class
    np.savez(tmp_path / "s.npz", probs=probs, labels=np.array([0]))
    import_npz(tmp_path / "s.npz", tmp_path / "s.zarr", sigma=0.25, n0=10)
    r = calibrate(tmp_path / "s.zarr", ["confidence"], [0.01])["results"][0]
    assert r["A0"] == 1.0
    # rows turn V once 0.1 + 0.9 k/1000 >= 0.5, i.e. k >= 444.4
    assert r["k"] == 444


def test_json_round_trip_and_post_hoc_warning(known_store, tmp_path):
    from click.testing import CliRunner

    from smoothcert.cli import main

    store, _, _ = known_store
    out = tmp_path / "cal.json"
    runner = CliRunner()
    res = runner.invoke(main, ["calibrate", str(store), "--uncertainty", "confidence,margin", "--loss", "0.01,0.15",
                               "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "confidence" in res.stdout and "margin" in res.stdout
    cal = load_calibration(out)
    from smoothcert.store import open_store

    with open_store(store) as st:
        assert cal["store_fingerprint"] == st.fingerprint()
    thetas = {x["uncertainty"]: [] for x in cal["results"]}
    for x in cal["results"]:
        thetas[x["uncertainty"]].append(float(x["theta"]))

    # certifying the calibration store itself: one warning line on stderr
    table = tmp_path / "t.csv"
    res = runner.invoke(main, ["certify", str(store), "--method", "uncertainty", "--uncertainty", "confidence,margin",
                               "--theta-from", str(out), "--theta", "inf", "--out", str(table), "-q"])
    assert res.exit_code == 0, res.output
    warn = [line for line in res.stderr.splitlines() if "post-hoc" in line]
    assert len(warn) == 1 and warn[0].startswith("smoothcert: warning:")
    import pandas as pd

    t = pd.read_csv(table)
    for f in ("confidence", "margin"):
        got = sorted(set(t.loc[t["uncertainty"] == f, "theta"].astype(float)))
        assert got == sorted(set(thetas[f] + [math.inf]))
    meta = json.loads((tmp_path / "t.csv.meta.json").read_text())
    assert meta["theta_from"]["post_hoc"] is True

    # another store: no warning
    other = tmp_path / "other.zarr"
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(M), size=(4, 30)).astype(np.float32)
    np.savez(tmp_path / "o.npz", probs=probs, labels=np.zeros(4, int))
    import_npz(tmp_path / "o.npz", other, sigma=0.25, n0=5)
    res = runner.invoke(main, ["certify", str(other), "--method", "uncertainty", "--uncertainty", "margin",
                               "--theta-from", str(out), "--out", str(tmp_path / "o.csv"), "-q"])
    assert res.exit_code == 0, res.output
    assert "post-hoc" not in res.stderr
    assert json.loads((tmp_path / "o.csv.meta.json").read_text())["theta_from"]["post_hoc"] is False

    # a function the file lacks: a one-line error
    res = runner.invoke(main, ["certify", str(other), "--method", "uncertainty", "--uncertainty", "entropy",
                               "--theta-from", str(out), "--out", str(tmp_path / "e.csv"), "-q"])
    assert res.exit_code != 0 and "entropy" in res.stderr


def test_write_calibration_inf_is_a_string(tmp_path):
    cal = {"kind": "smoothcert-calibration", "results": [{"uncertainty": "entropy", "loss": 0.01, "theta": math.inf}]}
    write_calibration(cal, tmp_path / "c.json")
    assert '"inf"' in (tmp_path / "c.json").read_text()
    assert float(load_calibration(tmp_path / "c.json")["results"][0]["theta"]) == math.inf


def test_compact_store_gives_the_same_calibration(known_store, tmp_path):
    from smoothcert.store.compact import compact_store

    store, _, _ = known_store
    compact_store(store, tmp_path / "c.zarr", topk=2)
    full = calibrate(store, ["entropy", "confidence", "margin"], [0.01, 0.15])
    comp = calibrate(tmp_path / "c.zarr", ["entropy", "confidence", "margin"], [0.01, 0.15])
    assert full["results"] == comp["results"] and full["curves"] == comp["curves"]
