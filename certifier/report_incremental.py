"""Report of ``incremental`` rows, side by side with direct certificates of the same changed model.

``smoothcert report INC.csv DIRECT.csv``: INC from ``certify OUT --method
incremental --base BASE``, DIRECT from a direct certificate of the changed
model (``cohen`` or ``two-step`` on OUT itself, or on a full resampling).
Direct rows are taken from the other tables only: within one table (the
demo's, say) cohen and two-step certify the store's own model, not the
changed one. For the inputs present in every table: certified accuracy at each radius,
ACR and abstain rate per table, the incremental rows' P, mean paired
disagreement rate d/P and mean zeta, and how often the two certificates
agree.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .report import certified_accuracy

DIRECT = ("cohen", "two-step")


def _groups(df: pd.DataFrame):
    keys = ["_source", "method"] if "_source" in df.columns else ["method"]
    return [(dict(zip(keys, k if isinstance(k, tuple) else (k,))), g) for k, g in df.groupby(keys, sort=False)]


def side_by_side(df: pd.DataFrame, radii) -> tuple[pd.DataFrame, dict]:
    """One row per (table, method) over the inputs in all of them, and agreement numbers (incremental vs direct).

    Returns ``(summary, agreement)``; agreement compares the first
    incremental and the first direct group, input by input, and is empty
    without a direct group.
    """
    groups = _groups(df)
    if "_source" not in df.columns:  # one table: its other methods certify the store's own model, not f'
        groups = [(k, g) for k, g in groups if k["method"] == "incremental"]
    common = None
    for _, g in groups:
        ids = set(g["idx"].tolist())
        common = ids if common is None else common & ids
    common = np.array(sorted(common or ()), dtype=np.int64)
    recs = []
    for key, g in groups:
        g = g[g["idx"].isin(common)]
        rad, cor = g["radius"].to_numpy(dtype=float), g["correct"].to_numpy()
        rec = {"certificate": key["method"]}
        if "_source" in key:
            rec["table"] = key["_source"]
        rec["inputs"] = len(g)
        for r in radii:
            rec[f"acc@{r:g}"] = certified_accuracy(rad, cor, r)
        rec["ACR"] = float(np.mean(rad * cor)) if len(g) else float("nan")
        rec["abstain"] = float(np.mean(g["predict"].to_numpy() == -1)) if len(g) else float("nan")
        if key["method"] == "incremental" and len(g):
            P = g["rows_used"].to_numpy(dtype=float)
            rec["P"] = int(P[0]) if np.all(P == P[0]) else float(P.mean())
            rec["d/P"] = float(np.mean(g["disagreements"].to_numpy() / P))
            rec["zeta"] = float(g["zeta"].mean())
        recs.append(rec)
    agreement = {}
    inc = next((g for k, g in groups if k["method"] == "incremental"), None)
    direct = next((g for k, g in groups if k["method"] in DIRECT), None)
    if inc is not None and direct is not None and len(common):
        a = inc.drop_duplicates("idx").set_index("idx").loc[common]
        b = direct.drop_duplicates("idx").set_index("idx").loc[common]
        ra, rb = a["radius"].to_numpy(dtype=float), b["radius"].to_numpy(dtype=float)
        both = (a["predict"].to_numpy() >= 0) & (a["predict"].to_numpy() == b["predict"].to_numpy())
        agreement = {"inputs": len(common), "same_prediction": float(np.mean(a["predict"].to_numpy() == b["predict"].to_numpy())),
                     "incremental_not_larger": float(np.mean(ra <= rb)),
                     "median_radius_gap": float(np.median(rb[both] - ra[both])) if both.any() else float("nan")}
    return pd.DataFrame(recs), agreement


def format_incremental_report(df: pd.DataFrame, radii) -> str | None:
    """Text of the side-by-side table; None when ``df`` holds no incremental rows."""
    if not (df["method"] == "incremental").any():
        return None
    tab, agree = side_by_side(df, radii)
    shown = tab.copy()
    for c in shown.columns:
        if c.startswith("acc@") or c == "abstain":
            shown[c] = shown[c].map(lambda v: f"{100 * v:.1f}")
        elif c in ("ACR", "zeta"):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        elif c == "d/P":
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        elif c == "P":
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:g}")
    n = int(tab["inputs"].max()) if len(tab) else 0
    head = (f"incremental certification (Ugare et al. 2024; docs/methods.md section 10): certified accuracy (%) "
            f"on the {n} inputs in every table;\nincremental radius = sigma Phi^-1(pA - zeta), pA from the base "
            f"store, zeta the upper bound on the paired disagreement rate d/P")
    lines = [head, shown.to_string(index=False)]
    if agree:
        lines.append(f"incremental vs direct ({agree['inputs']} inputs): same prediction {100 * agree['same_prediction']:.1f}%, "
                     f"incremental radius <= direct radius {100 * agree['incremental_not_larger']:.1f}%, median radius "
                     f"gap (direct - incremental, inputs both certify alike) {agree['median_radius_gap']:.3f}")
    return "\n".join(lines)


