"""adaptive (CERTIFYADP replayed on stored rows) against an independent computation written here.

The reference follows docs/methods.md section 6 line by line with scipy.stats
on real stores; it shares no code with certifier/.
"""
import math

import numpy as np
import pytest
from scipy import stats

from smoothcert.certifier import CertifyOptions, certify

from conftest import rows_from_labels


def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_cp_upper(k, n, a):
    return 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)


def ref_top1(counts):
    return sorted(range(len(counts)), key=lambda c: (-counts[c], c))[0]


def ref_cohen_radius(lab, cA, n, sigma, alpha):
    """Cohen CERTIFY on the first n rows with a fixed cA: radius, or None on abstain."""
    pA = ref_cp_lower(list(lab[:n]).count(cA), n, alpha)
    return None if pA < 0.5 else sigma * stats.norm.ppf(pA)


def ref_adaptive(lab0, lab, m, stages_req, n_store, sigma, alpha, beta, r, n_avail=None):
    """(predict, radius, rows_used, outcome) as section 6 pins CERTIFYADP and its offline replay."""
    stages = sorted({min(s, n_store) for s in stages_req})
    s = len(stages)
    n_avail = len(lab) if n_avail is None else n_avail
    cA = ref_top1([list(lab0).count(c) for c in range(m)])
    prev = 0
    for i, ni in enumerate(stages):
        if ni > n_avail:
            return -1, 0.0, prev, "short"
        k = list(lab[:ni]).count(cA)
        pA = ref_cp_lower(k, ni, alpha / s)
        if pA > 0.5 and sigma * stats.norm.ppf(pA) >= r:
            return cA, sigma * stats.norm.ppf(pA), ni, "certified"
        if i < s - 1 and sigma * stats.norm.ppf(ref_cp_upper(k, ni, beta / (s - 1))) < r:
            return -1, 0.0, ni, "aborted"
        prev = ni
    return -1, 0.0, stages[-1], "abstained"


def labels_store(make_store, rng, N, n0, n, m, sigma=0.25):
    """A store whose inputs have a top-class rate spread from 0.45 to 1; returns (store, hard labels, labels)."""
    labs, probs = [], []
    truth = rng.integers(0, m, N)
    for i in range(N):
        p_top = 0.45 + 0.55 * i / (N - 1)
        other = rng.integers(0, m, n0 + n)
        lab = np.where(rng.random(n0 + n) < p_top, truth[i], other)
        labs.append(lab)
        probs.append(rows_from_labels(lab, m, rng))
    store = make_store(np.stack(probs), truth, n0, sigma=sigma)
    return store, np.stack(labs), truth


@pytest.mark.parametrize("r", [0.0, 0.2, 0.45])
def test_replay_matches_reference(make_store, r):
    rng = np.random.default_rng(3)
    N, n0, n, m = 30, 20, 600, 4
    store, labs, truth = labels_store(make_store, rng, N, n0, n, m)
    alpha, beta = 0.01, 0.05
    stages = [50, 200, 1000]
    table, meta = certify(store, "adaptive", CertifyOptions(radius=r, stages=stages, alpha=alpha, beta=beta), progress=False)
    s = 3  # 50, 200, 600 after clipping
    outcomes = set()
    for i in range(N):
        row = table.iloc[i]
        want = ref_adaptive(labs[i, :n0], labs[i, n0:], m, stages, n, 0.25, alpha, beta, r)
        assert (row["predict"], row["rows_used"], row["outcome"]) == (want[0], want[2], want[3]), i
        assert row["radius"] == pytest.approx(want[1], rel=1e-10, abs=1e-12)
        outcomes.add(row["outcome"])
        if row["outcome"] == "certified":
            # the full procedure (Cohen CERTIFY) at alpha/s on the same rows certifies at least r
            rad = ref_cohen_radius(labs[i, n0:], row["predict"], int(row["rows_used"]), 0.25, alpha / s)
            assert rad is not None and rad >= r and rad == pytest.approx(row["radius"], rel=1e-10, abs=1e-12)
        if row["outcome"] == "aborted":
            cA = ref_top1([list(labs[i, :n0]).count(c) for c in range(m)])
            ni = int(row["rows_used"])
            pU = ref_cp_upper(list(labs[i, n0:n0 + ni]).count(cA), ni, beta / (s - 1))
            assert 0.25 * stats.norm.ppf(pU) < r and ni != 600
    assert "certified" in outcomes
    if r > 0:
        assert "aborted" in outcomes
    ad = meta["adaptive"]
    assert ad["stages"] == [50, 200, 600] and ad["stages_clipped"] and ad["s"] == 3
    assert ad["SampleRF"] == pytest.approx(n / table["rows_used"].mean())
    assert meta["confidence"] == pytest.approx(1 - alpha)


def test_stage_clipping_duplicates_and_options(make_store):
    rng = np.random.default_rng(4)
    store, labs, truth = labels_store(make_store, rng, 6, 10, 300, 3)
    # 400 and 1000 both clip to 300: s = 2 stages
    table, meta = certify(store, "adaptive", CertifyOptions(radius=0.1, stages=[100, 400, 1000]), progress=False)
    assert meta["adaptive"]["stages"] == [100, 300] and meta["adaptive"]["s"] == 2
    for i in range(6):
        want = ref_adaptive(labs[i, :10], labs[i, 10:], 3, [100, 400, 1000], 300, 0.25, 0.001, 0.0001, 0.1)
        assert (table.iloc[i]["predict"], table.iloc[i]["rows_used"]) == (want[0], want[2])
    with pytest.raises(ValueError, match="--radius"):
        certify(store, "adaptive", CertifyOptions(), progress=False)
    with pytest.raises(ValueError, match="increasing"):
        certify(store, "adaptive", CertifyOptions(radius=0.1, stages=[1000, 100]), progress=False)
    # --n-use clips too
    t2, m2 = certify(store, "adaptive", CertifyOptions(radius=0.1, stages=[100, 200], n_use=150), progress=False)
    assert m2["adaptive"]["stages"] == [100, 150] and m2["adaptive"]["n"] == 150


def test_report_notes_clipping(make_store, tmp_path):
    from click.testing import CliRunner

    from smoothcert.cli import main

    rng = np.random.default_rng(5)
    store, _, _ = labels_store(make_store, rng, 8, 10, 300, 3)
    out = tmp_path / "a.csv"
    r = CliRunner().invoke(main, ["certify", str(store), "--method", "adaptive", "--radius", "0.1", "--stages",
                                  "100,1000", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert "SampleRF" in r.output and "clipped" in r.output and "100+300" in r.output


def test_short_adaptive_inputs(tmp_path):
    """An input stored with fewer rows: the replay never uses rows that do not exist; other methods refuse."""
    from smoothcert.store import create_store

    rng = np.random.default_rng(6)
    n0, n, m = 10, 400, 3
    path = tmp_path / "adp.zarr"
    st = create_store(path, n_inputs=2, n0=n0, n=n, num_classes=m, sigma=0.25, dtype="float32")
    lab_full = np.zeros(n0 + n, int)
    st.write_input(0, rows=rows_from_labels(lab_full, m, rng), label=0, idx=0)
    lab_short = np.where(rng.random(n0 + 50) < 0.7, 0, 1)
    st.write_input(1, rows=rows_from_labels(lab_short, m, rng), label=0, idx=1, n_rows=n0 + 50)
    st.close()
    table, meta = certify(path, "adaptive", CertifyOptions(radius=0.1, stages=[50, 400]), progress=False)
    assert table.iloc[0]["outcome"] == "certified" and table.iloc[0]["rows_used"] == 50
    want = ref_adaptive(lab_short[:n0], lab_short[n0:], m, [50, 400], n, 0.25, 0.001, 0.0001, 0.1, n_avail=50)
    row = table.iloc[1]
    assert (row["predict"], row["rows_used"], row["outcome"]) == (want[0], want[2], want[3])
    assert want[3] == "short" and row["predict"] == -1 and row["rows_used"] == 50
    assert meta["adaptive"]["short_inputs"] == 1
    with pytest.raises(ValueError, match="rows stored"):
        certify(path, "cohen", CertifyOptions(), progress=False)


def test_soundness_simulation():
    """Known pA: a certificate claims more than the true radius in at most alpha of the runs, and an early
    abort gives up on an input robust at r in at most beta of the runs. A necessary check; the one with power
    against alpha doubled is soundness/test_power.py::test_adaptive_power."""
    from smoothcert.stats.adaptive import replay

    rng = np.random.default_rng(99)
    alpha, beta, sigma, r, trials = 0.1, 0.1, 0.25, 0.25, 20000
    stages = np.array([30, 100, 300])
    limit_a = alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    limit_b = beta + 3 * math.sqrt(beta * (1 - beta) / trials)
    for pA in (stats.norm.cdf(0.97 * r / sigma), stats.norm.cdf(1.02 * r / sigma), stats.norm.cdf(1.3 * r / sigma), 0.995):
        true_radius = sigma * stats.norm.ppf(pA)
        inc = rng.binomial(np.diff(np.concatenate([[0], stages]))[None, :], pA, size=(trials, 3))
        k = np.cumsum(inc, axis=1)
        res = replay(k, stages, stages[-1], sigma, alpha, beta, r)
        bad = res["certified"] & (res["radius"] > true_radius)
        assert bad.mean() <= limit_a, (pA, bad.mean())
        if true_radius >= r:
            early = res["outcome"] == "aborted"
            assert early.mean() <= limit_b, (pA, early.mean())
