"""Report of ``conformal`` rows: coverage and set sizes per setting, and set size against epsilon.

Per (variant, miscoverage m, epsilon[, n_use][, ensemble setting][, table]):
the test inputs, the empirical coverage (share whose set holds the label;
the guarantee is >= 1 - m in expectation over calibration draws, so one
table's share scatters around it), the mean and median set size, and the
shares of singleton and of empty sets. The plot draws the mean set size
against epsilon, one line per variant (and per m and n_use when several).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

_KEYS = ("robust", "miscoverage", "n_use", "members", "consensus", "epsilon")


def _keys(df: pd.DataFrame) -> list[str]:
    keys = ["_source"] if "_source" in df.columns else []
    return keys + [c for c in _KEYS if c in df.columns and df[c].notna().any()]


def coverage_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: inputs, coverage, mean and median set size, singleton and empty shares (as fractions)."""
    keys = _keys(df)
    recs = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        size = g["set_size"].to_numpy(dtype=float)
        rec = dict(zip(keys, key))
        rec.update(inputs=len(g), coverage=float(g["correct"].mean()), mean_size=float(size.mean()),
                   median_size=float(np.median(size)), singleton=float(np.mean(size == 1)),
                   empty=float(np.mean(size == 0)))
        recs.append(rec)
    return pd.DataFrame(recs)


def format_conformal_report(df: pd.DataFrame, radii=None) -> str | None:
    """Text of ``coverage_table`` (shares in %); None without conformal rows."""
    df = df[df["method"] == "conformal"] if "method" in df.columns else df
    if not len(df):
        return None
    tab = coverage_table(df)
    shown = tab.rename(columns={"_source": "table", "mean_size": "mean size", "median_size": "median size"})
    for c in ("coverage", "singleton", "empty"):
        shown[c] = shown[c].map(lambda v: f"{100 * v:.1f}")
    shown["mean size"] = shown["mean size"].map(lambda v: f"{v:.2f}")
    shown["median size"] = shown["median size"].map(lambda v: f"{v:g}")
    for c in ("miscoverage", "epsilon"):
        shown[c] = shown[c].map(lambda v: f"{v:g}")
    head = ("conformal prediction sets (docs/methods.md section 12): coverage (%) = share of test inputs whose set "
            "holds the label\n(guaranteed >= 1 - miscoverage on average over calibration draws, at every input "
            "within epsilon), set sizes, singleton and empty sets (%)")
    return head + "\n" + shown.to_string(index=False)


def plot_conformal(df: pd.DataFrame, stem: str) -> list[str]:
    """Write ``{stem}-conformal.png``: mean set size against epsilon, one line per variant (and m, n_use, table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df[df["method"] == "conformal"] if "method" in df.columns else df
    tab = coverage_table(df)
    line_keys = [k for k in _keys(df) if k == "robust" or (k != "epsilon" and tab[k].nunique(dropna=False) > 1)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, g in tab.groupby(line_keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("epsilon")
        label = " ".join(str(v) if k in ("robust", "_source") else f"{k}={v:g}" for k, v in zip(line_keys, key))
        ax.plot(g["epsilon"], g["mean_size"], marker="o", label=label)
    ax.set_xlabel("epsilon (L2 perturbation)")
    ax.set_ylabel("mean set size")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("robust conformal sets: size against epsilon")
    fig.tight_layout()
    path = f"{stem}-conformal.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
