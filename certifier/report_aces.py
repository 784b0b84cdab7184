"""ACES summaries (Table 1 of Horváth et al. 2022, ACES) and the Pareto plot of ACR against natural accuracy.

Per threshold theta (and ensemble setting, when present):
- NAC: share of inputs that ``aces-predict`` classifies correctly (needs the
  aces-predict table; reported as missing otherwise);
- ACR and certified accuracy at radii (section 8), from the ``aces`` table;
- certified selection rate at radius r: share of inputs whose selection
  model certifiably selects the certification network with a selection
  radius ``R_select >= r`` (``select_radius`` column). This is the reading of
  the ACES paper's Tables 1, 3, 5, ...: at theta = 1 it is 100 % up to the largest
  radius n samples can certify, whatever the class bound.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .report import certified_accuracy

_KEYS = ("theta", "members", "consensus")


def _keys(df: pd.DataFrame) -> list[str]:
    return [c for c in _KEYS if c in df.columns and df[c].notna().any()]


def _key_frame(df: pd.DataFrame, keys) -> pd.DataFrame:
    out = df[keys].copy()
    if "theta" in out:
        out["theta"] = out["theta"].astype(float).round(12)
    if "consensus" in out:
        out["consensus"] = out["consensus"].astype("Float64")
    if "members" in out:
        out["members"] = out["members"].astype(str)
    return out


def aces_summary(df: pd.DataFrame, radii) -> pd.DataFrame:
    """One row per (theta, ensemble setting): inputs, NAC, ACR, certified accuracy and selection rate at ``radii``.

    Guarantee: every number is the share (or mean) section 8 defines, over the
    rows of that setting; NAC is NaN when no aces-predict rows are given, and
    the certificate columns are NaN when no aces rows are given.
    """
    cert = df[df["method"] == "aces"]
    pred = df[df["method"] == "aces-predict"]
    keys = sorted(set(_keys(cert)) | set(_keys(pred)), key=_KEYS.index)
    if not keys:
        keys = ["theta"]
    parts = {}
    for name, sub in (("aces", cert), ("aces-predict", pred)):
        if not len(sub):
            continue
        sub = sub.reset_index(drop=True)
        kf = _key_frame(sub.reindex(columns=keys), keys)
        for key, g in kf.groupby(keys, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            parts.setdefault(key, {})[name] = sub.iloc[g.index.to_numpy()]
    recs = []
    for key, d in parts.items():
        rec = dict(zip(keys, key))
        g = d.get("aces")
        p = d.get("aces-predict")
        rec["inputs"] = len(g) if g is not None else len(p)
        rec["NAC"] = float(np.mean(p["correct"].to_numpy() == 1)) if p is not None else np.nan
        if g is not None:
            rad = g["radius"].to_numpy(dtype=float)
            cor = g["correct"].to_numpy()
            rec["ACR"] = float(np.mean(rad * cor))
            for r in radii:
                rec[f"acc@{r:g}"] = certified_accuracy(rad, cor, r)
            srad = g["select_radius"].to_numpy(dtype=float) if "select_radius" in g else None
            for r in radii:
                rec[f"sel@{r:g}"] = (float(np.mean((srad > 0) & (srad >= r))) if srad is not None else np.nan)
        else:
            rec["ACR"] = np.nan
            for r in radii:
                rec[f"acc@{r:g}"] = np.nan
            for r in radii:
                rec[f"sel@{r:g}"] = np.nan
        recs.append(rec)
    out = pd.DataFrame(recs)
    if len(out) and "theta" in out:
        out = out.sort_values([k for k in keys if k != "theta"] + ["theta"], kind="mergesort").reset_index(drop=True)
    return out


def format_aces(summary: pd.DataFrame) -> str:
    """Plain text: shares as percentages with one decimal, ACR with three, missing values as '-'."""
    s = summary.copy()
    for c in s.columns:
        if c == "NAC" or c.startswith("acc@") or c.startswith("sel@"):
            s[c] = s[c].map(lambda v: "-" if pd.isna(v) else f"{100 * v:.1f}")
        elif c == "ACR":
            s[c] = s[c].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
        elif c == "theta":
            s[c] = s[c].map(lambda v: f"{v:g}")
    return s.to_string(index=False)


def aces_report(df: pd.DataFrame, radii) -> str:
    """The ACES section of ``smoothcert report``: the ACES paper's Table 1 per threshold, with what is missing said."""
    summ = aces_summary(df, radii)
    lines = ["ACES per threshold (NAC from aces-predict; acc@r certified accuracy, sel@r certified selection rate "
             "of the certification network with selection radius >= r; %):", format_aces(summ)]
    has_c = (df["method"] == "aces").any()
    has_p = (df["method"] == "aces-predict").any()
    if not has_p:
        lines.append("NAC needs an aces-predict table: pass both tables to report.")
    if not has_c:
        lines.append("ACR, certified accuracy and selection rates need an aces table: pass both tables to report.")
    return "\n".join(lines)


def pareto_plot(df: pd.DataFrame, stem) -> list[str]:
    """Write ``STEM-aces-pareto.png``: ACR against NAC, one point per theta (per ensemble setting).

    Without aces-predict rows the x axis is the certified accuracy at r = 0
    (labelled so); without aces rows there is nothing to plot.
    """
    if not (df["method"] == "aces").any():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = aces_summary(df, [0.0])
    has_nac = summ["NAC"].notna().any()
    xcol = "NAC" if has_nac else "acc@0"
    others = [c for c in ("members", "consensus") if c in summ.columns]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    groups = summ.groupby(others, sort=False, dropna=False) if others else [((), summ)]
    for key, g in groups:
        g = g.sort_values("theta")
        label = " ".join(f"{k}={v}" for k, v in zip(others, key if isinstance(key, tuple) else (key,))) or "ACES"
        ax.plot(100 * g[xcol], g["ACR"], "o-", ms=3, label=label)
        for _, row in g.iloc[:: max(1, len(g) // 6)].iterrows():
            ax.annotate(f"{row['theta']:g}", (100 * row[xcol], row["ACR"]), fontsize=6, alpha=0.7)
    ax.set_xlabel("natural accuracy NAC (%)" if has_nac else "certified accuracy at r = 0 (%) (no aces-predict table)")
    ax.set_ylabel("ACR")
    ax.set_title("ACES: ACR against natural accuracy (labels: theta)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{stem}-aces-pareto.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
