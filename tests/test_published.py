"""``smoothcert report`` on the field's published result files, and ``certify`` without ``--out``.

The published files are Cohen et al.'s own (tests/fixtures/published/README.md
gives the source). Certified accuracies are recomputed here with the csv
module, independently of smoothcert's reader and report, and checked against
the numbers Cohen et al. print in their paper.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from smoothcert import cli
from smoothcert.certifier.published import read_published, seconds

ROOT = Path(__file__).resolve().parent
PUBLISHED = ROOT / "fixtures" / "published" / "locuslab-smoothing" / "certify"
CIFAR = PUBLISHED / "cifar10" / "resnet110" / "noise_0.25" / "test" / "sigma_0.25"
IMAGENET = {s: PUBLISHED / "imagenet" / "resnet50" / f"noise_{s}" / "test" / f"sigma_{s}" for s in ("0.25", "0.50", "1.00")}


def invoke(*args):
    r = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def by_hand(path) -> dict:
    """Certified accuracy (%) at radii, ACR and abstain rate (%) of a published file, with the csv module only."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    radius = [float(r["radius"]) for r in rows]
    correct = [int(r["correct"]) for r in rows]
    n = len(rows)
    acc = {r: 100.0 * sum(1 for rad, c in zip(radius, correct) if c == 1 and rad >= r) / n
           for r in (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)}
    return {"n": n, "acc": acc, "ACR": sum(rad * c for rad, c in zip(radius, correct)) / n,
            "abstain": 100.0 * sum(1 for r in rows if r["predict"] == "-1") / n}


def report_rows(stdout: str) -> dict:
    """The report's summary table: {method: {column: text}}."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    head = lines[0].split()
    out = {}
    for ln in lines[1:]:
        parts = ln.split()
        if len(parts) != len(head):
            break
        out[parts[0]] = dict(zip(head[1:], parts[1:]))
    return out


def test_report_tabulates_the_published_cifar10_resnet110_file_as_computed_by_hand():
    code, out, err = invoke("report", CIFAR, "--radii", "0,0.25,0.5,0.75,1.0")
    assert code == 0, err
    rows = report_rows(out)
    assert list(rows) == [str(CIFAR)]                      # named by its path
    got, want = rows[str(CIFAR)], by_hand(CIFAR)
    assert got["inputs"] == "500" == str(want["n"])
    for r in (0, 0.25, 0.5, 0.75, 1.0):
        assert got[f"acc@{r:g}"] == f"{want['acc'][r]:.1f}", r
    assert got["ACR"] == f"{want['ACR']:.3f}" and got["abstain"] == f"{want['abstain']:.1f}"
    # the file's own numbers, pinned: 74.8 % at r = 0, 60.0 at 0.25, 42.8 at 0.5, 26.6 at 0.75, none at 1.0
    assert [got[f"acc@{r:g}"] for r in (0, 0.25, 0.5, 0.75, 1.0)] == ["74.8", "60.0", "42.8", "26.6", "0.0"]


def test_the_published_imagenet_files_give_the_accuracies_of_cohen_et_al_table_1():
    """Cohen et al. (ICML 2019, arXiv:1902.02918), Table 1: approximate certified accuracy on ImageNet at
    r = 0.5 (sigma 0.25): 49 %, r = 1.0 (sigma 0.50): 37 %, r = 2.0 and 3.0 (sigma 1.00): 19 % and 12 %,
    and the clean accuracies of those smoothed classifiers, 67 %, 57 % and 44 %."""
    table1 = {"0.25": {0.0: 67, 0.5: 49}, "0.50": {0.0: 57, 1.0: 37}, "1.00": {0.0: 44, 2.0: 19, 3.0: 12}}
    code, out, err = invoke("report", *IMAGENET.values(), "--radii", "0,0.5,1,2,3")
    assert code == 0, err
    rows = report_rows(out)
    for s, path in IMAGENET.items():
        got, want = rows[str(path)], by_hand(path)
        for r, paper in table1[s].items():
            assert got[f"acc@{r:g}"] == f"{want['acc'][r]:.1f}"
            assert round(float(got[f"acc@{r:g}"])) == paper, (s, r)
    assert rows[str(IMAGENET["0.25"])]["inputs"] == "427"  # that published file stops after 427 rows


def test_published_files_are_reported_and_plotted_beside_smoothcerts_own_tables(tmp_path, counts_store):
    store = counts_store(np.array([[90, 10], [20, 80], [50, 50]]), np.array([[990, 10], [100, 900], [500, 500]]),
                         [0, 1, 0], sigma=0.25)
    own = tmp_path / "cohen.csv"
    assert invoke("certify", store, "--method", "cohen", "--out", own, "-q")[0] == 0
    plot = tmp_path / "acc.png"
    code, out, err = invoke("report", own, CIFAR, "--plot", plot)
    assert code == 0, err
    rows = report_rows(out)
    assert set(rows) == {"cohen", str(CIFAR)} and rows["cohen"]["inputs"] == "3"
    assert plot.stat().st_size > 10_000 and f"plot -> {plot}" in out
    # a copy under any name, even a table suffix, is recognised by its header
    copy = tmp_path / "cohen-et-al.csv"
    copy.write_bytes(CIFAR.read_bytes())
    code, out, err = invoke("report", copy)
    assert code == 0 and report_rows(out)[str(copy)]["acc@0.5"] == "42.8", err


def test_time_columns_in_seconds_and_in_h_mm_ss():
    assert seconds("15.4") == 15.4 and seconds("0:02:31.238689") == pytest.approx(151.238689)
    assert seconds("1 day, 0:00:01.5") == pytest.approx(86401.5) and seconds("12:00:00") == 43200.0
    with pytest.raises(ValueError, match="neither seconds nor H:MM:SS"):
        seconds("2 minutes")
    assert read_published(CIFAR)["time"].iloc[0] == 15.4
    df = read_published(IMAGENET["0.50"])
    assert df["time"].iloc[0] == pytest.approx(seconds(open(IMAGENET["0.50"]).readlines()[1].split("\t")[5]))
    assert list(df.columns) == ["idx", "label", "method", "predict", "radius", "correct", "time"]


def test_bad_result_files_are_one_line_errors_that_name_the_file_and_never_out(tmp_path):
    good = CIFAR.read_text().splitlines()
    cases = {
        "radius": (good[:3] + ["40\t4\t4\tabc\t1\t15.7"], "row 4: radius 'abc' is not a number >= 0"),
        "negative": (good[:3] + ["40\t4\t4\t-0.5\t1\t15.7"], "row 4: radius '-0.5' is not a number >= 0"),
        "correct": (good[:3] + ["40\t4\t5\t0.3\t1\t15.7"], "row 4: correct must be 1 exactly where predict == label"),
        "abstain": (good[:3] + ["40\t4\t-1\t0.3\t0\t15.7"], "row 4: an abstention (predict -1) must have radius 0"),
        "idx": (good[:3] + ["x\t4\t4\t0.3\t1\t15.7"], "row 4: idx 'x' is not an integer"),
        "time": (good[:3] + ["40\t4\t4\t0.3\t1\tsoon"], "column time: 'soon' is neither seconds nor H:MM:SS.ffffff"),
        "columns": (good[:3] + ["40\t4\t4\t0.3"], "results file"),
        "predict-file": (["idx\tlabel\tpredict\tcorrect\ttime", "0\t0\t0\t1\t0:00:01"], "unknown format"),
        "garbage": (["\x00\x01 not a table"], "unknown format"),
    }
    for name, (lines, needle) in cases.items():
        p = tmp_path / name
        p.write_text("\n".join(lines) + "\n")
        code, out, err = invoke("report", p)
        msg = [ln for ln in err.splitlines() if ln.startswith("smoothcert: error:")]
        assert code != 0 and len(msg) == 1, (name, err)
        assert needle in msg[0] and str(p) in msg[0] and "--out" not in msg[0], (name, msg)
    code, out, err = invoke("report", tmp_path / "results.txt")
    assert code != 0 and "results file" in err and "--out" not in err


def test_certify_without_out_prints_the_summary_and_writes_nothing(tmp_path, counts_store, monkeypatch):
    store = counts_store(np.array([[90, 10], [20, 80]]), np.array([[990, 10], [100, 900]]), [0, 1], sigma=0.25)
    monkeypatch.chdir(tmp_path)

    def snapshot():
        return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))

    before = snapshot()
    code, out, err = invoke("certify", store, "--method", "two-step")
    assert code == 0, err
    assert "acc@0.25" in out and "2 certificates not written (no --out) (overall confidence 1 - 2 alpha" in out
    assert snapshot() == before
    code, out, err = invoke("certify", store, "--method", "two-step", "--out", tmp_path / "t.csv", "-q")
    assert code == 0 and (tmp_path / "t.csv").exists() and (tmp_path / "t.csv.meta.json").exists()
    code, out, err = invoke("certify", store, "--method", "two-step", "-q")
    assert code != 0 and "--quiet without --out would show and keep nothing" in err
    code, out, err = invoke("certify", "--help")
    assert "Without --out the summary is printed and nothing is written" in " ".join(out.split())
