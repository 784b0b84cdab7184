"""``smoothcert report --samples-needed`` and the accuracy-against-n plot of ``--n-use`` tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import rows_from_labels
from smoothcert.certifier.report_prefixes import accuracy_against_n, samples_needed, summarize_samples


def hand_table():
    """Three inputs x prefixes 10, 100, 1000 of one method; radius grows with n where the input is correct."""
    rows = []
    radii = {0: [0.0, 0.2, 0.6], 1: [0.3, 0.1, 0.4], 2: [0.0, 0.0, 0.0]}  # input 1 dips: not monotone in n
    correct = {0: 1, 1: 1, 2: 0}
    for i in range(3):
        for j, t in enumerate((10, 100, 1000)):
            r = radii[i][j]
            pred = -1 if r == 0 and i != 2 else (0 if correct[i] else 1)
            rows.append(dict(idx=i, label=0, method="cohen", n_use=t, predict=pred, radius=r,
                             correct=int(pred == 0)))
    return pd.DataFrame(rows)


def brute_needed(df, idx, r):
    sub = df[df.idx == idx]
    ns = [t for t, rad, c in zip(sub.n_use, sub.radius, sub.correct) if c == 1 and rad >= r]
    return min(ns) if ns else np.nan


def test_samples_needed_is_the_smallest_certifying_prefix_per_input():
    df = hand_table()
    per = samples_needed(df, [0.0, 0.25, 0.5])
    assert list(per.columns) == ["method", "idx", "target_radius", "n_needed"]
    for rec in per.itertuples():
        ref = brute_needed(df, rec.idx, rec.target_radius)
        assert (np.isnan(ref) and np.isnan(rec.n_needed)) or rec.n_needed == ref
    got = per.set_index(["idx", "target_radius"])["n_needed"]
    assert got[(0, 0.25)] == 1000 and got[(1, 0.25)] == 10 and np.isnan(got[(2, 0.0)])
    assert got[(0, 0.0)] == 100  # radius 0 certifies once the input is correct and not abstained


def test_summary_gives_mean_over_certified_inputs_and_share_never_certified():
    s = summarize_samples(samples_needed(hand_table(), [0.25, 0.5])).set_index("target_radius")
    assert s.loc[0.25, "inputs"] == 3
    assert s.loc[0.25, "mean_n"] == pytest.approx((1000 + 10) / 2)
    assert s.loc[0.25, "never"] == pytest.approx(1 / 3) and s.loc[0.25, "certified"] == pytest.approx(2 / 3)
    assert s.loc[0.5, "mean_n"] == 1000 and s.loc[0.5, "never"] == pytest.approx(2 / 3)


def test_accuracy_against_n_at_and_by_each_prefix():
    acc = accuracy_against_n(hand_table(), [0.25]).set_index("n_use")
    assert list(acc["accuracy_at_n"]) == pytest.approx([1 / 3, 0.0, 2 / 3])  # input 1 dips at n = 100
    assert list(acc["certified_by_n"]) == pytest.approx([1 / 3, 1 / 3, 2 / 3])  # stop at the first: monotone


def test_samples_needed_refuses_a_table_without_prefixes():
    with pytest.raises(ValueError, match="--n-use N1,N2"):
        samples_needed(hand_table().drop(columns="n_use"), [0.25])


def test_report_cli_prints_samples_needed_writes_the_table_and_the_plot_against_n(make_store, tmp_path):
    from smoothcert.cli import main

    rng = np.random.default_rng(3)
    m, n0, n = 3, 40, 4000
    ps = [0.999, 0.97, 0.9, 0.75, 0.6, 0.4]
    hard = np.stack([np.where(rng.random(n0 + n) < p, 0, rng.integers(1, m, n0 + n)) for p in ps])
    probs = np.stack([rows_from_labels(h, m, rng) for h in hard])
    store = make_store(probs, np.zeros(len(ps), np.int64), n0, sigma=0.5)
    out = tmp_path / "t.csv"
    r = CliRunner().invoke(main, ["certify", str(store), "--method", "cohen", "--n-use", "50,200,1000,4000",
                                  "--interval", "cs", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    plot = tmp_path / "acc.png"
    per_path = tmp_path / "needed.csv"
    r = CliRunner().invoke(main, ["report", str(out), "--samples-needed", "0.25,0.5", "--plot", str(plot),
                                  "--samples-table", str(per_path)])
    assert r.exit_code == 0, r.output
    assert "samples needed" in r.output and "for every prefix simultaneously" in r.output
    assert "mean_n" in r.output and "never" in r.output
    assert (tmp_path / "acc.n_use.png").stat().st_size > 1000 and plot.stat().st_size > 1000
    per = pd.read_csv(per_path)
    table = pd.read_csv(out)
    assert len(per) == 2 * len(ps)
    for rec in per.itertuples():
        ref = brute_needed(table, rec.idx, rec.target_radius)
        assert (np.isnan(ref) and np.isnan(rec.n_needed)) or rec.n_needed == ref
    assert per.loc[(per.idx == 0) & (per.target_radius == 0.25), "n_needed"].item() <= 200  # p = 0.999: early
    assert per.loc[per.idx == 5, "n_needed"].isna().all()  # p = 0.4 of three classes: never at 0.25

    plain = tmp_path / "plain.csv"
    assert CliRunner().invoke(main, ["certify", str(store), "--method", "cohen", "--out", str(plain), "-q"]).exit_code == 0
    bad = CliRunner().invoke(main, ["report", str(plain), "--samples-needed", "0.25"])
    assert bad.exit_code == 2 and "column 'n_use' missing" in bad.output
