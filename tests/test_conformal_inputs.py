"""``--method conformal`` from the command line: each bad input is one line on stderr and nothing written; the same
table from threads, a LocalCluster and any block size; ensembles through ``--members``; the report and its plot."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.certifier import CertifyOptions, certify
from smoothcert.store import open_store

from test_conformal import M, N0, SIGMA, make_probs


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(STORE, CAL, root): 40 and 30 labelled inputs of the same kind of rows, two members each (equal to the rows)."""
    from smoothcert.store.importer import import_npz

    root = tmp_path_factory.mktemp("conformal-cli")
    out = []
    for name, n, seed, base in (("store", 40, 11, 0), ("cal", 30, 12, 500)):
        probs, labels = make_probs(n, seed)
        member = np.log(np.maximum(probs, 1e-30))
        np.savez(root / f"{name}.npz", probs=probs, labels=labels, idx=base + np.arange(n),
                 member_logprobs=np.repeat(member[:, :, None, :], 2, axis=2))
        import_npz(root / f"{name}.npz", root / name, sigma=SIGMA, n0=N0)
        out.append(root / name)
    return out[0], out[1], root


def run(args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def refused(store, out, *args, expect):
    """``certify STORE --method conformal ARGS --out OUT`` fails with one line naming ``expect``; OUT not written."""
    r = run(["certify", store, "--method", "conformal", "--out", out, "-q", *args])
    lines = r.stderr.splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and lines[0].startswith("smoothcert: error: "), r.output
    assert expect in lines[0], lines[0]
    assert not out.exists() and not out.with_name(out.name + ".meta.json").exists()
    return lines[0]


def make_variant(root, name, n_inputs=20, **changes):
    """A small store like ``pair``'s with one setting changed (sigma, n0, n, classes, dtype, labels)."""
    from smoothcert.store.importer import import_npz

    m, n0, n = changes.get("m", M), changes.get("n0", N0), changes.get("n", 120)
    probs, labels = make_probs(n_inputs, 21, m=m, n=n + n0 - N0)
    np.savez(root / f"{name}.npz", probs=probs, labels=labels, idx=900 + np.arange(n_inputs))
    import_npz(root / f"{name}.npz", root / name, sigma=changes.get("sigma", SIGMA), n0=n0,
               dtype=changes.get("dtype"))
    return root / name


def test_bad_inputs_are_one_line_and_write_nothing(pair, tmp_path):
    store, cal, root = pair
    out = tmp_path / "t.csv"
    refused(store, out, expect="exactly one of --calibration CAL and --calibration-split F, got neither")
    refused(store, out, "--calibration", cal, "--calibration-split", "0.5",
            expect="got --calibration and --calibration-split")
    refused(store, out, "--calibration-split", "1.5", expect="--calibration-split must be in (0, 1), got 1.5")
    refused(store, out, "--calibration-split", "0", expect="--calibration-split must be in (0, 1)")
    refused(store, out, "--calibration-split", "0.01", expect="leaves no calibration input")
    refused(store, out, "--calibration-split", "0.5", "--miscoverage", "0.002",
            expect="--miscoverage 0.002 must exceed 2 alpha = 0.002")
    refused(store, out, "--calibration-split", "0.5", "--alpha", "0.05", "--miscoverage", "0.2,0.08",
            expect="--miscoverage 0.08 must exceed 2 alpha = 0.1")
    refused(store, out, "--calibration-split", "0.5", "--epsilon=0,-0.1", expect="--epsilon must be finite and >= 0")
    refused(store, out, "--calibration-split", "0.5", "--robust", "rscp", expect="--robust")
    refused(store, out, "--calibration-split", "0.5", "--score", "raps", expect="--score must be one of hps, aps")
    refused(store, out, "--calibration-split", "0.5", "--interval", "cs", expect="--interval cs is available")
    refused(store, out, "--calibration", store, expect="holds the same samples as store")
    refused(store, out, "--calibration", root / "missing", expect="missing")
    for name, change, words in (("sigma", {"sigma": 0.5}, "sigma 0.5 in CAL, 0.25 in STORE"),
                                ("n0", {"n0": 12}, "n0 12 in CAL, 10 in STORE"),
                                ("n", {"n": 100}, "n 100 in CAL, 120 in STORE"),
                                ("classes", {"m": 4}, "number of classes 4 in CAL, 5 in STORE"),
                                ("dtype", {"dtype": "float16"}, "dtype float16 in CAL, float32 in STORE")):
        other = make_variant(root, f"cal-{name}", **change)
        refused(store, out, "--calibration", other, expect=f"does not match store {store}: {words}")
    noise = make_variant(root, "cal-noise")
    with open_store(noise, mode="a") as st:
        st.set_attrs(noise_scheme="another-scheme")
    refused(store, out, "--calibration", noise, expect="noise scheme another-scheme in CAL, None in STORE")
    refused(store, out, "--calibration", make_variant(root, "cal-plain"), "--members", "0,1",
            expect="number of ensemble members 0 in CAL, 2 in STORE")


def test_compact_stores_refuse_aps_and_stores_without_labels_are_refused(pair, tmp_path):
    from smoothcert.store import create_store
    from smoothcert.store.compact import compact_store

    store, cal, root = pair
    out = tmp_path / "t.csv"
    compact = tmp_path / "compact"
    compact_store(str(cal), str(compact), topk=2)
    refused(compact, out, "--calibration-split", "0.5", "--score", "aps", expect="--score aps needs full rows")
    refused(store, out, "--calibration", compact, "--score", "aps", expect=f"--calibration {compact} is compact")
    probs, _ = make_probs(10, 5)
    unlabelled = create_store(tmp_path / "unlabelled", n_inputs=10, n0=N0, n=120, num_classes=M, sigma=SIGMA,
                              dtype="float32")
    for i in range(10):
        unlabelled.write_input(i, rows=probs[i], label=-1 if i == 4 else 0, idx=i)
    unlabelled.close()
    refused(tmp_path / "unlabelled", out, "--calibration-split", "0.5",
            expect="input 4 of store")
    line = refused(store, out, "--calibration", tmp_path / "unlabelled", expect="has label -1, not a class in 0..4")
    assert "unlabelled" in line


def test_the_table_does_not_depend_on_the_block_size(pair):
    """(Worker processes and a scheduler: tests/test_distributed.py, with the other methods.)"""
    store, cal, _ = pair
    opts = CertifyOptions(calibration=str(cal), robust=["rscp+", "cas"], miscoverage=[0.1, 0.3], epsilon=[0, 0.1])
    a, ma = certify(store, "conformal", opts, progress=False)
    b, mb = certify(store, "conformal", opts, progress=False, block_size=7)
    assert a.equals(b) and ma["calibration"] == mb["calibration"] and ma["conformal"] == mb["conformal"]


def test_ensemble_members_give_the_rows_sets(pair):
    """Both members equal the stored rows, so the ensemble rows (softmax of the members' mean log-probabilities) are
    the rows up to float rounding: the same sets, calibration store and STORE both through --members."""
    store, cal, _ = pair
    opts = CertifyOptions(calibration=str(cal), robust=["rscp+", "cas"], miscoverage=[0.2], epsilon=[0, 0.1])
    plain, _ = certify(store, "conformal", opts, progress=False)
    ens, meta = certify(store, "conformal", opts.replace(members=[0, 1]), progress=False)
    assert meta["ensemble"]["members"] == [0, 1] and (ens["members"] == "0+1").all()
    assert (plain["set"] == ens["set"]).mean() > 0.97 and (plain["tau"] - ens["tau"]).abs().max() < 1e-6


def test_certify_prints_coverage_and_report_plots_set_size_against_epsilon(pair, tmp_path):
    store, _, _ = pair
    out = tmp_path / "c.csv"
    r = run(["certify", store, "--method", "conformal", "--calibration-split", "0.5", "--split-seed", "3",
             "--robust", "rscp+,cas", "--epsilon", "0,0.125,0.25", "--n-use", "60,120", "--out", out])
    assert r.exit_code == 0, r.output
    assert "coverage mean size median size singleton empty" in " ".join(r.stdout.split())
    meta = json.loads((tmp_path / "c.csv.meta.json").read_text())
    assert meta["confidence"] == pytest.approx(0.9) and meta["confidence_statement"].startswith("coverage: for each")
    assert "n_use" in meta["confidence_statement"] and meta["conformal"]["prefixes"] == [60, 120]
    assert meta["conformal"]["split"] == {"kind": "calibration-split", "fraction": 0.5, "split_seed": 3,
                                          "n_cal": 20, "n_test": 20}
    r = run(["report", out, "--plot", tmp_path / "p.png"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith("conformal prediction sets"))
    table = lines[head + 2:head + 2 + 13]
    assert len([s for s in table if s.split()[:1] in (["cas"], ["rscp+"])]) == 12   # 2 variants x 2 n_use x 3 eps
    assert (tmp_path / "p-conformal.png").stat().st_size > 1000
