"""Reports of ``--n-use`` tables (docs/methods.md section 11): samples needed per input, accuracy against n.

Pure functions over a certificate table with an ``n_use`` setting column
(one certificate per input, setting and listed prefix). The samples an input
needs for a target radius R is the smallest listed prefix whose certificate
is correct with radius >= R. Stopping at that prefix is sound when the
table's guarantee holds for every listed prefix at once, which is what
``--n-use LIST`` gives: jointly over the list under ``--interval cp`` (alpha
split over it), for every prefix under ``--interval cs``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import methods
from .report import curve_label, setting_columns

MAX_CURVES = 12


def _keys(df: pd.DataFrame) -> list[str]:
    keys = [c for c in setting_columns(df) if c != "n_use"]
    return (["_source"] if "_source" in df.columns else []) + keys


def _need_prefixes(df: pd.DataFrame) -> None:
    if "n_use" not in df.columns:
        raise ValueError("--samples-needed needs a table certified with a list of prefixes (certify --n-use N1,N2,...): "
                         "column 'n_use' missing")


def samples_needed(df: pd.DataFrame, radii) -> pd.DataFrame:
    """One row per (setting, input, target radius): ``n_needed``, the smallest listed prefix that certifies it.

    Certifies = ``correct == 1`` and ``radius >= R``; ``n_needed`` is NaN when
    no listed prefix does. Setting columns other than ``n_use`` are kept.
    """
    _need_prefixes(df)
    df = df[~df["method"].isin(_predict_only())]
    keys = _keys(df) + ["idx"]
    n_use = df["n_use"].to_numpy(dtype=np.float64)
    out = []
    for r in radii:
        ok = (df["correct"].to_numpy() == 1) & (df["radius"].to_numpy(dtype=np.float64) >= r)
        g = df[keys].assign(n_needed=np.where(ok, n_use, np.inf))
        res = g.groupby(keys, sort=False, dropna=False, observed=True)["n_needed"].min().reset_index()
        res.insert(len(keys), "target_radius", float(r))
        res["n_needed"] = res["n_needed"].replace(np.inf, np.nan)
        out.append(res)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def summarize_samples(per_input: pd.DataFrame, max_n=None) -> pd.DataFrame:
    """Per (setting, target radius): inputs, share certified by some listed prefix, mean and median samples needed
    over those inputs, and the share never certified (no listed prefix up to the largest)."""
    keys = [c for c in per_input.columns if c not in ("idx", "n_needed")]
    rows = []
    for key, g in per_input.groupby(keys, sort=False, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(keys, key))
        n = g["n_needed"].to_numpy(dtype=np.float64)
        ok = ~np.isnan(n)
        rec["inputs"] = len(g)
        rec["certified"] = float(ok.mean()) if len(n) else float("nan")
        rec["mean_n"] = float(n[ok].mean()) if ok.any() else float("nan")
        rec["median_n"] = float(np.median(n[ok])) if ok.any() else float("nan")
        rec["never"] = float((~ok).mean()) if len(n) else float("nan")
        rows.append(rec)
    return pd.DataFrame(rows)


def format_samples(summary: pd.DataFrame) -> str:
    s = summary.copy()
    s = s.drop(columns=[c for c in s.columns if s[c].isna().all() and c not in ("mean_n", "median_n")])
    for c in ("certified", "never"):
        s[c] = (100 * s[c]).map(lambda v: f"{v:.1f}")
    for c in ("mean_n", "median_n"):
        s[c] = s[c].map(lambda v: "-" if np.isnan(v) else f"{v:.0f}")
    s["target_radius"] = s["target_radius"].map(lambda v: f"{v:g}")
    return s.rename(columns={"_source": "table"}).to_string(index=False)


def accuracy_against_n(df: pd.DataFrame, radii) -> pd.DataFrame:
    """Per (setting, radius, n_use): certified accuracy at that prefix (``accuracy_at_n``) and the share of inputs
    certified at some listed prefix <= n (``certified_by_n``, what stopping at the first certifying prefix gives)."""
    _need_prefixes(df)
    df = df[~df["method"].isin(_predict_only())]
    keys = _keys(df)
    out = []
    for key, g in df.groupby(keys, sort=False, dropna=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values(["idx", "n_use"], kind="mergesort")
        idx, n_use = g["idx"].to_numpy(), g["n_use"].to_numpy()
        for r in radii:
            ok = (g["correct"].to_numpy() == 1) & (g["radius"].to_numpy(dtype=np.float64) >= r)
            by = pd.Series(ok).groupby(idx).cummax().to_numpy()
            agg = pd.DataFrame({"n_use": n_use, "at": ok, "by": by}).groupby("n_use", sort=True).mean()
            for t, rec in agg.iterrows():
                out.append({**dict(zip(keys, key)), "radius": float(r), "n_use": int(t),
                            "accuracy_at_n": float(rec["at"]), "certified_by_n": float(rec["by"])})
    return pd.DataFrame(out)


def plot_against_n(df: pd.DataFrame, path, radii, max_curves: int = MAX_CURVES) -> None:
    """Certified accuracy against n (log axis), one curve per radius (and setting): solid at each prefix,
    dashed for "certified by some listed prefix <= n" (stopping at the first that certifies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = accuracy_against_n(df, radii)
    keys = _keys(df)  # with _source when several tables are reported together
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = list(acc.groupby(keys + ["radius"], sort=False, dropna=False))
    several = len(acc.groupby(keys, sort=False, dropna=False)) > 1 if len(acc) else False
    for key, g in groups[:max_curves]:
        key = key if isinstance(key, tuple) else (key,)
        setting = {k: v for k, v in zip(keys, key[:-1]) if k != "_source"}
        source = dict(zip(keys, key)).get("_source")
        label = f"r={key[-1]:g}" + (f" {curve_label(setting)}" if several else "") + (f" [{source}]" if source else "")
        line, = ax.plot(g["n_use"], g["accuracy_at_n"], marker="o", ms=3, label=label)
        ax.plot(g["n_use"], g["certified_by_n"], ls="--", color=line.get_color(), lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("n (rows of the estimation block used)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="solid: at n; dashed: by n", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def guarantee_lines(metas: dict) -> list[str]:
    """One line per table with a sidecar: the interval and over which prefixes its confidence holds."""
    lines = []
    for path, meta in metas.items():
        if not meta:
            continue
        pre = meta.get("prefixes") or {}
        interval = meta.get("interval", "cp")
        what = ("for every prefix simultaneously (confidence sequence)" if interval == "cs"
                else pre.get("guarantee", "one prefix"))
        lines.append(f"{path}: --interval {interval}, n_use {pre.get('n_use', meta.get('n_use'))}: "
                     f"confidence {meta.get('confidence')} {what}")
    return lines


def report_lines(df: pd.DataFrame, radii_text, plot, samples_table, metas: dict, default_radii=(0.0, 0.25, 0.5)) -> list[str]:
    """What ``smoothcert report --samples-needed R1,R2`` prints (and writes): the summary, the plot, the table."""
    from ..parsing import parse_float_list

    out = []
    if radii_text is not None:
        radii = parse_float_list(radii_text, "samples-needed")
        if not radii:
            raise ValueError("--samples-needed: give at least one target radius")
        per = samples_needed(df, radii)
        out += ["", "samples needed: smallest listed prefix n_use certifying each input (correct, radius >= target)"]
        out += guarantee_lines(metas)
        out.append(format_samples(summarize_samples(per)))
        if samples_table:
            from .table import write_table

            write_table(per.drop(columns=[c for c in ("_source",) if c in per.columns]), samples_table)
            out.append(f"samples needed per input -> {samples_table}")
    elif samples_table:
        raise ValueError("--samples-table needs --samples-needed R1,R2,...")
    if plot and "n_use" in df.columns and df["n_use"].nunique() > 1:
        radii = parse_float_list(radii_text, "samples-needed") if radii_text is not None else list(default_radii)
        stem = plot[:-4] if plot.lower().endswith(".png") else plot
        path = f"{stem}.n_use.png"
        plot_against_n(df, path, radii)
        out.append(f"plot -> {path}")
    return out


def _predict_only() -> list[str]:
    """The registered methods whose radius is 0 by definition (nothing to count or plot against n)."""
    return [m.name for m in methods() if m.predict_only]
