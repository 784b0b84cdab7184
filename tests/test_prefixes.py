"""``--n-use LIST`` and ``--interval cs`` on real stores (docs/methods.md section 11), against references written here.

The references recount each prefix from the stored hard labels with numpy and
bound it with scipy (Clopper-Pearson from the beta quantile, the confidence
sequence by brentq on the betaln log-martingale); they share no code with
certifier/ or stats/.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

from conftest import rows_from_labels
from smoothcert.certifier import CertifyOptions, certify

M, N0, N = 4, 60, 3000
PREFIXES = [100, 400, 1000, 3000]
SIGMA = 0.5


# ---------------------------------------------------------------- references
def ref_cp_lower(k, n, a):
    return 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)


def ref_cp_upper(k, n, a):
    return 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)


def _log_m(p, k, t):
    return betaln(k + 0.5, t - k + 0.5) - betaln(0.5, 0.5) - xlogy(k, p) - xlog1py(t - k, -p)


def ref_cs_lower(k, t, a):
    if k == 0:
        return 0.0
    return brentq(lambda p: _log_m(p, k, t) - math.log(1 / a), 1e-300, k / t, xtol=1e-15, rtol=1e-15)


def ref_cs_upper(k, t, a):
    return 1.0 if k == t else 1.0 - ref_cs_lower(t - k, t, a)


def ref_binom(k, n):
    return 1.0 if n == 0 else stats.binomtest(int(k), int(n), 0.5).pvalue


def ref_top(counts, k):
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    order = order + [-1] * max(0, k - len(order))
    return order[:k], [counts[c] if c >= 0 else 0 for c in order[:k]]


def ref_cohen(c0, c, alpha, lower):
    cA = ref_top(c0, 1)[0][0]
    pA = lower(c[cA], sum(c), alpha)
    return (-1, 0.0) if pA < 0.5 else (cA, SIGMA * stats.norm.ppf(pA))


def ref_two_step(c0, c, a0, a, lower, upper):
    """Section 2 with the tests on S0 at a0 and the bounds on S at a (a0 = a without a split)."""
    n = sum(c)
    (cA, cB, _), (nA, nB, nC) = ref_top(c0, 3)
    runner = cB if ref_binom(nB, nB + nC) <= a0 else -1
    if ref_binom(nA, nA + nB) > a0:
        return -1, 0.0, runner
    kA = c[cA]
    if runner >= 0 and kA + c[runner] != n:
        pA, pB = lower(kA, n, a / 2), upper(c[runner], n, a / 2)
    else:
        pA = lower(kA, n, a)
        pB = 1 - pA
    r = SIGMA / 2 * (stats.norm.ppf(pA) - stats.norm.ppf(pB))
    return (cA, r, runner) if r > 0 else (-1, 0.0, runner)


# ---------------------------------------------------------------- store
@pytest.fixture
def store(make_store):
    """8 inputs whose hard labels are i.i.d. with known class probabilities, kept for the references."""
    rng = np.random.default_rng(7)
    dists = [[0.9, 0.05, 0.05, 0], [0.7, 0.3, 0, 0], [0.55, 0.25, 0.2, 0], [0.4, 0.35, 0.25, 0],
             [0.3, 0.3, 0.2, 0.2], [0.99, 0.01, 0, 0], [1.0, 0, 0, 0], [0.6, 0.2, 0.1, 0.1]]
    hard = np.stack([rng.choice(M, size=N0 + N, p=d) for d in dists])
    # input 2's selection block: runner-up test binom_p(16, 20) = 0.012, between alpha/4 and alpha at alpha = 0.02
    hard[2, :N0] = rng.permutation(np.repeat([0, 1, 2], [40, 16, 4]))
    probs = np.stack([rows_from_labels(h, M, rng) for h in hard])
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 2])
    path = make_store(probs, labels, N0, sigma=SIGMA, core_predict=np.array([0, 1, 0, 1, 0, 0, 2, 2]))
    return path, hard


def counts(hard, i, t):
    return (list(np.bincount(hard[i, :N0], minlength=M)), list(np.bincount(hard[i, N0:N0 + t], minlength=M)))


def run(path, method, **kw):
    return certify(path, method, CertifyOptions(**kw), progress=False)


# ---------------------------------------------------------------- tests
def test_cohen_list_under_cp_bounds_every_prefix_at_alpha_over_L(store):
    path, hard = store
    table, meta = run(path, "cohen", n_use=PREFIXES, alpha=0.01)
    L = len(PREFIXES)
    assert list(table["n_use"]) == PREFIXES * len(hard)  # input-major, prefixes ascending within an input
    for row in table.itertuples():
        c0, c = counts(hard, int(row.idx), int(row.n_use))
        p, r = ref_cohen(c0, c, 0.01 / L, ref_cp_lower)
        assert row.predict == p and row.radius == pytest.approx(r, rel=1e-10, abs=1e-12)
    assert meta["n_use"] == PREFIXES and meta["interval"] == "cp"
    assert meta["prefixes"]["split"] == L and meta["prefixes"]["alpha_on_s"] == pytest.approx(0.01 / L)
    assert "jointly over the 4 listed prefixes" in meta["confidence_statement"]
    assert meta["confidence"] == pytest.approx(0.99)


def test_two_step_list_keeps_tests_on_s0_at_alpha_and_splits_only_the_bounds(store):
    path, hard = store
    table, _ = run(path, "two-step", n_use=PREFIXES, alpha=0.02)
    L = len(PREFIXES)
    seen_split_effect = False
    for row in table.itertuples():
        c0, c = counts(hard, int(row.idx), int(row.n_use))
        p, r, runner = ref_two_step(c0, c, 0.02, 0.02 / L, ref_cp_lower, ref_cp_upper)
        assert (row.predict, row.runner_up) == (p, runner)
        assert row.radius == pytest.approx(r, rel=1e-10, abs=1e-12)
        # with the S0 tests also split, some runner-up would be dropped or some input would abstain
        if ref_two_step(c0, c, 0.02 / L, 0.02 / L, ref_cp_lower, ref_cp_upper)[2] != runner:
            seen_split_effect = True
    assert seen_split_effect, "the store should have a runner-up whose S0 test passes at alpha but not at alpha/L"


def test_cohen_under_cs_uses_the_confidence_sequence_without_a_split(store):
    path, hard = store
    table, meta = run(path, "cohen", n_use=PREFIXES, alpha=0.01, interval="cs")
    for row in table.itertuples():
        c0, c = counts(hard, int(row.idx), int(row.n_use))
        p, r = ref_cohen(c0, c, 0.01, ref_cs_lower)
        assert row.predict == p and row.radius == pytest.approx(r, rel=1e-9, abs=1e-10)
        cA = ref_top(c0, 1)[0][0]
        assert row.p_lower <= ref_cs_lower(c[cA], sum(c), 0.01) + 1e-13  # never above the exact bound
    assert meta["interval"] == "cs" and meta["prefixes"]["split"] == 1
    assert "for every prefix simultaneously" in meta["confidence_statement"]
    assert meta["confidence"] == pytest.approx(0.99)


def test_two_step_under_cs_bounds_both_classes_with_the_sequence_and_keeps_the_integer_rule(store):
    path, hard = store
    table, meta = run(path, "two-step", n_use=PREFIXES, alpha=0.02, interval="cs")
    for row in table.itertuples():
        c0, c = counts(hard, int(row.idx), int(row.n_use))
        p, r, runner = ref_two_step(c0, c, 0.02, 0.02, ref_cs_lower, ref_cs_upper)
        assert (row.predict, row.runner_up) == (p, runner)
        assert row.radius == pytest.approx(r, rel=1e-9, abs=1e-10)
    assert meta["confidence"] == pytest.approx(0.96)
    # input 1 has only classes 0 and 1: the runner-up rule kA + kB == n gives pB = 1 - pA exactly
    rows = table[(table["idx"] == 1) & (table["runner_up"] >= 0)]
    assert len(rows) and np.allclose(rows["p_upper"], 1 - rows["p_lower"], rtol=0, atol=1e-15)


def test_cs_is_wider_than_cp_at_one_prefix_and_a_single_value_changes_nothing(store):
    path, _ = store
    cp, meta_cp = run(path, "cohen", n_use=1000, alpha=0.01)
    cs, meta_cs = run(path, "cohen", n_use=1000, alpha=0.01, interval="cs")
    plain, meta_plain = run(path, "cohen", n_use=1000, alpha=0.01)
    assert "n_use" not in cp.columns and "n_use" not in cs.columns
    assert meta_cp["n_use"] == 1000 and "prefixes" not in meta_cp
    pd.testing.assert_frame_equal(cp, plain)
    assert (cs["radius"] <= cp["radius"]).all() and (cs["radius"] < cp["radius"]).any()
    assert "for every prefix simultaneously" in meta_cs["confidence_statement"]


def test_one_value_list_adds_the_column_but_no_split(store):
    path, _ = store
    one, meta = run(path, "cohen", n_use=[1000], alpha=0.01)
    plain, _ = run(path, "cohen", n_use=1000, alpha=0.01)
    assert list(one["n_use"]) == [1000] * len(plain)
    pd.testing.assert_frame_equal(one.drop(columns="n_use"), plain)
    assert meta["prefixes"]["split"] == 1 and "jointly" not in meta["confidence_statement"]


@pytest.mark.parametrize("method", ["cohen-predict", "cdf", "soft", "aces", "aces-predict"])
def test_methods_without_tests_on_s0_run_each_prefix_at_alpha_over_L(store, method):
    path, _ = store
    L = len(PREFIXES)
    table, _ = run(path, method, n_use=PREFIXES, alpha=0.01, K=50)
    assert "n_use" in table.columns
    cols = list(table.columns)
    assert cols.index("n_use") < cols.index("predict")  # a setting column: before the results
    for t in PREFIXES:
        single, _ = run(path, method, n_use=t, alpha=0.01 / L, K=50)
        got = table[table["n_use"] == t].drop(columns="n_use").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, single)


def test_uncertainty_list_at_theta_inf_equals_two_step_list(store):
    path, _ = store
    unc, _ = run(path, "uncertainty", n_use=PREFIXES, alpha=0.02, theta=[math.inf], guarantee=["cc"])
    ts, _ = run(path, "two-step", n_use=PREFIXES, alpha=0.02)
    assert list(unc.columns).index("n_use") == list(unc.columns).index("guarantee") + 1
    for col in ("idx", "n_use", "predict", "radius", "runner_up"):
        np.testing.assert_array_equal(unc[col].to_numpy(), ts[col].to_numpy())


def test_refusals_are_one_line_and_name_the_option(store):
    path, _ = store
    cases = [
        (dict(method="adaptive", n_use=[100, 200], radius=0.1), "single --n-use"),
        (dict(method="uncertainty", interval="cs"), "--interval cs is available for --method cohen and two-step only"),
        (dict(method="cdf", interval="cs", n_use=[100, 200]), "not cdf"),
        (dict(method="cohen", n_use=[100, 3001]), "--n-use 3001 exceeds the store's n = 3000"),
        (dict(method="cohen", n_use=[100, 100]), "listed twice"),
        (dict(method="cohen", n_use=[0, 100]), "at least 1"),
        (dict(method="cohen", n_use=[]), "empty"),
        (dict(method="cohen", interval="wald"), "--interval must be one of cp, cs"),
    ]
    for kw, msg in cases:
        method = kw.pop("method")
        with pytest.raises(ValueError) as e:
            run(path, method, **kw)
        assert msg in str(e.value) and "\n" not in str(e.value), (kw, str(e.value))


def test_cli_certifies_a_prefix_list_with_the_confidence_sequence_and_reports_per_prefix(store, tmp_path):
    from smoothcert.cli import main

    path, hard = store
    out = tmp_path / "cs.csv"
    r = CliRunner().invoke(main, ["certify", str(path), "--method", "two-step", "--n-use", "100,1000,3000",
                                  "--interval", "cs", "--out", str(out), "--alpha", "0.01"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert list(table["n_use"][:3]) == [100, 1000, 3000] and len(table) == 3 * len(hard)
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["interval"] == "cs" and meta["n_use"] == [100, 1000, 3000]
    assert "for every prefix simultaneously" in meta["confidence_statement"]
    assert meta["options"]["n_use"] == [100, 1000, 3000] and meta["options"]["interval"] == "cs"
    r = CliRunner().invoke(main, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert "n_use" in r.output and len([ln for ln in r.output.splitlines() if "two-step" in ln]) == 3

    bad = CliRunner().invoke(main, ["certify", str(path), "--method", "cohen", "--n-use", "100,x",
                                    "--out", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 2 and "--n-use: expected an integer or a comma-separated list" in bad.output
    bad = CliRunner().invoke(main, ["certify", str(path), "--method", "soft", "--interval", "cs",
                                    "--out", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 2 and "--interval cs is available for --method cohen and two-step only, not soft" in bad.output
