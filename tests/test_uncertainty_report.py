"""The uncertainty sections of ``smoothcert report``: Tables I-III and the Fig. 8 shares, per store."""
import math

import numpy as np
import pandas as pd
import pytest


def _table():
    """Two stores x 4 inputs x thetas (0.5, inf) x guarantees, with hand-set radii and roles of V (m = 3)."""
    rows = []
    for src in ("id.csv", "ood.csv"):
        for i in range(4):
            label = i % 3
            r_ref = [0.5, 0.4, 0.0, 0.2][i]
            pred_ref = label if i != 2 else -1
            for th in (0.5, math.inf):
                for g in ("cc", "ncl", "ncl-strict"):
                    if math.isinf(th):
                        rad, pred, top, run, nv = r_ref, pred_ref, pred_ref, -1, 0
                    else:
                        rad = {"cc": [0.6, 0.2, 0.0, 0.2][i], "ncl": [0.7, 0.5, 0.0, 0.3][i], "ncl-strict": [0.55, 0.3, 0.0, 0.2][i]}[g]
                        pred = label if rad > 0 else -1
                        top = 3 if (src == "ood.csv" and i == 2) else (label if rad > 0 else -1)
                        run = 3 if (g == "cc" and i == 1) else -1
                        nv = 0 if i == 3 else 10
                    rows.append(dict(idx=i, label=label, method="uncertainty", uncertainty="entropy", theta=th, guarantee=g,
                                     predict=pred, radius=rad, correct=int(pred == label), runner_up=run, p_lower=0.9,
                                     p_upper=0.1, top_class=top, n_uncertain=nv, num_classes=3, _source=src))
    return pd.DataFrame(rows)


def test_tables_and_shares():
    from smoothcert.certifier.report_uncertainty import fig8_shares, reference_radius, table_i, table_ii_iii

    df = _table()
    u = df[df["method"] == "uncertainty"]
    ref = reference_radius(df)
    t1 = table_i(u, ref, [0.0, 0.3])
    row = t1[(t1["source"] == "id.csv") & (t1["theta"] == "0.5") & (t1["radius"] == 0.3)].iloc[0]
    assert row["R_CC"] == pytest.approx(1 / 4)        # only input 0 (0.6) reaches 0.3 with cc
    assert row["R"] == pytest.approx(2 / 4)           # inputs 0 and 1 (0.5, 0.4)
    assert row["R_NCL"] == pytest.approx(3 / 4)       # 0.7, 0.5, 0.3
    assert row["R_NCL-strict"] == pytest.approx(2 / 4)
    t23 = table_ii_iii(u, ref)
    r = t23[(t23["source"] == "id.csv") & (t23["theta"] == "0.5")].iloc[0]
    # over inputs R certifies correctly (0, 1, 3): cc (0.6-0.5)/0.5, (0.2-0.4)/0.4, (0.2-0.2)/0.2
    assert r["(R_CC-R)/R"] == pytest.approx(np.mean([0.2, -0.5, 0.0]))
    assert r["(R_NCL-R)/R"] == pytest.approx(np.mean([0.4, 0.25, 0.5]))
    assert (r["R_CC-R>0"], r["R_CC-R<0"], r["R_CC-R=0"], r["total"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3),
                                                                        pytest.approx(1 / 3), 3)
    f8 = fig8_shares(u)
    ood = f8[(f8["source"] == "ood.csv") & (f8["theta"] == "0.5")].iloc[0]
    idd = f8[(f8["source"] == "id.csv") & (f8["theta"] == "0.5")].iloc[0]
    assert ood["V predicted"] == 0.25 and idd["V predicted"] == 0.0
    assert idd["V runner-up"] == 0.25 and idd["no runner-up"] == 0.75
    assert idd["V no mass"] == 0.25 and idd["abstain"] == 0.25


def test_report_text_and_plots(tmp_path):
    from smoothcert.certifier.report_uncertainty import plots, report

    df = _table()
    text = report(df, [0.0, 0.25])
    for part in ("Table I", "Table II", "Table III", "Fig. 8", "NOT a guarantee", "ood.csv"):
        assert part in text
    paths = plots(df, str(tmp_path / "p"))
    assert len(paths) == 4 and all((tmp_path / p.split("/")[-1]).exists() for p in paths)
    # without R (no theta = inf, no two-step rows) the tables that need it are left out, with a note
    text = report(df[np.isfinite(df["theta"])], [0.0])
    assert "no R" in text and "Table II" not in text


def test_report_command_on_real_tables(tmp_path):
    """certify -> two tables (two stores) -> smoothcert report: per-store Fig. 8 shares, plots written."""
    from click.testing import CliRunner

    from smoothcert.cli import main
    from smoothcert.store.importer import import_npz

    rng = np.random.default_rng(2)
    paths = []
    for name, peak in (("id", 3.0), ("ood", 0.3)):
        labels = rng.integers(0, 4, 6)
        logits = rng.standard_normal((6, 120, 4))
        logits[np.arange(6), :, labels] += peak
        p = np.exp(logits)
        p /= p.sum(-1, keepdims=True)
        np.savez(tmp_path / f"{name}.npz", probs=p.astype(np.float32), labels=labels)
        import_npz(tmp_path / f"{name}.npz", tmp_path / f"{name}.zarr", sigma=0.25, n0=20)
        out = tmp_path / f"{name}.csv"
        r = CliRunner().invoke(main, ["certify", str(tmp_path / f"{name}.zarr"), "--method", "uncertainty",
                                      "--uncertainty", "entropy,margin", "--theta=-0.2,0.6,inf", "--alpha", "0.05",
                                      "--out", str(out), "-q"])
        assert r.exit_code == 0, r.output
        paths.append(str(out))
    r = CliRunner().invoke(main, ["report", *paths, "--plot", str(tmp_path / "rep.png")])
    assert r.exit_code == 0, r.output
    assert "Fig. 8" in r.stdout and "id.csv" in r.stdout and "ood.csv" in r.stdout
    assert (tmp_path / "rep-uncertainty-radius-1.png").exists() and (tmp_path / "rep-uncertainty-theta-0.png").exists()


def test_reference_from_a_separate_two_step_table():
    """report two-step.csv sweep.csv: R comes from the two-step table when the sweep has no theta = inf."""
    from smoothcert.certifier.report_uncertainty import reference_radius, table_ii_iii

    df = _table()
    u = df[(df["_source"] == "id.csv") & np.isfinite(df["theta"])].assign(_source="sweep.csv")
    inf = df[(df["_source"] == "id.csv") & np.isinf(df["theta"]) & (df["guarantee"] == "cc")]
    two = inf.assign(method="two-step", _source="two-step.csv", uncertainty=None, theta=np.nan, guarantee=None)
    both = pd.concat([two, u], ignore_index=True)
    ref = reference_radius(both)
    assert list(ref["_source"].unique()) == ["sweep.csv"] and len(ref) == 4
    t23 = table_ii_iii(both[both["method"] == "uncertainty"], ref)
    assert t23.iloc[0]["(R_CC-R)/R"] == pytest.approx(np.mean([0.2, -0.5, 0.0]))


def test_certify_prints_a_bounded_summary_for_a_sweep_and_report_prints_all(tmp_path):
    """A 1,000-threshold sweep must not flood the console: certify shows the first settings and a count."""
    from click.testing import CliRunner

    from smoothcert.certifier.report import CONSOLE_SETTINGS, console_summary, summarize
    from smoothcert.cli import main
    from conftest import rows_from_labels

    rng = np.random.default_rng(5)
    probs = np.stack([rows_from_labels(rng.integers(0, 3, 60), 3, rng) for _ in range(4)])
    from smoothcert.store import create_store

    st = create_store(tmp_path / "s.zarr", n_inputs=4, n0=10, n=50, num_classes=3, sigma=0.5, dtype="float32")
    for i in range(4):
        st.write_input(i, rows=probs[i], label=i % 3, idx=i)
    out = tmp_path / "sweep.csv"
    r = CliRunner().invoke(main, ["certify", str(tmp_path / "s.zarr"), "--method", "uncertainty", "--uncertainty",
                                  "entropy,margin", "--theta", "0:2:40", "--guarantee", "cc,ncl", "--out", str(out)])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    total = len(summarize(table))
    assert total == 2 * 40 * 2 and len(table) == 4 * total
    lines = [ln for ln in r.output.splitlines() if ln.startswith("uncertainty ")]
    assert len(lines) == CONSOLE_SETTINGS
    assert f"... {total - CONSOLE_SETTINGS} more settings ({total} in all): smoothcert report {out}" in r.output
    # the rows shown are the first settings' summaries, unchanged
    shown = console_summary(table, out).splitlines()[1:CONSOLE_SETTINGS + 1]
    from smoothcert.certifier.report import format_table

    assert shown == format_table(summarize(table)).splitlines()[1:CONSOLE_SETTINGS + 1]
    small = table[table["theta"] == table["theta"].min()]
    assert "more settings" not in console_summary(small, out)
