"""Report of ``cdf`` rows: certified accuracy against radius per threshold, CDF and Hoeffding side by side.

This is Fig. 5 of Kumar et al. (2020) as a text table and a plot: for each
measure and threshold t, the share of inputs with ``correct == 1`` and a
radius >= r within which the smoothed confidence provably stays >= t, under the
CDF bound (solid) and the Hoeffding bound (dashed).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .report import certified_accuracy

_GROUP = ("members", "consensus")  # ensemble settings, when present
_BOUND_ORDER = ("cdf", "hoeffding")


def _groups(df: pd.DataFrame) -> list[str]:
    return [c for c in _GROUP if c in df.columns and df[c].notna().any()]


def confidence_table(df: pd.DataFrame, radii) -> pd.DataFrame:
    """Certified accuracy (share) per (measure, threshold[, ensemble setting]) row and (radius, bound) column.

    Each cell is section 8's certified accuracy over that setting's inputs;
    a last pair of columns holds ACR per bound.
    """
    keys = ["measure", "threshold"] + _groups(df)
    bounds = [b for b in _BOUND_ORDER if b in set(df["bound"])] + sorted(set(df["bound"]) - set(_BOUND_ORDER))
    recs = []
    df = df.assign(_m=df["measure"].map({"score": 0, "margin": 1}).fillna(2))
    for key, g in df.groupby(["_m"] + keys, sort=True, dropna=False):
        key = key[1:]
        rec = dict(zip(keys, key))
        for b in bounds:
            gb = g[g["bound"] == b]
            rad = gb["radius"].to_numpy(dtype=float)
            cor = gb["correct"].to_numpy()
            for r in radii:
                rec[(f"r={r:g}", b)] = certified_accuracy(rad, cor, r)
            rec[("ACR", b)] = float(np.mean(rad * cor)) if len(gb) else float("nan")
        recs.append(rec)
    out = pd.DataFrame(recs).set_index(keys)
    cols = [(f"r={r:g}", b) for r in radii for b in bounds] + [("ACR", b) for b in bounds]
    out = out[cols]
    out.columns = pd.MultiIndex.from_tuples(cols, names=["radius", "bound"])
    return out


def format_confidence_report(df: pd.DataFrame, radii) -> str:
    """Text of the table above: certified accuracy in %, ACR with 3 decimals."""
    tab = confidence_table(df, radii)
    shown = tab.copy()
    for c in shown.columns:
        shown[c] = shown[c].map((lambda v: f"{v:.3f}") if c[0] == "ACR" else (lambda v: f"{100 * v:.1f}"))
    head = ("certified confidence (cdf): certified accuracy (%) at radius r, per measure and threshold t;\n"
            "cdf = CDF bound (Kumar et al. Thm 2), hoeffding = naive bound (Thm 1), as Fig. 5 of Kumar et al. 2020")
    return head + "\n" + shown.to_string()


def plot_confidence(df: pd.DataFrame, stem: str) -> list[str]:
    """Write ``{stem}-cdf.png``: one panel per measure, a colour per threshold, CDF solid and Hoeffding dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [m for m in ("score", "margin") if m in set(df["measure"])]
    fig, axes = plt.subplots(1, len(measures), figsize=(5.2 * len(measures), 4.0), squeeze=False)
    rad_all = df["radius"].replace(np.inf, np.nan).to_numpy(dtype=float)
    rmax = float(np.nanmax(rad_all)) if np.isfinite(rad_all).any() else 1.0
    grid = np.linspace(0, max(rmax, 1e-3) * 1.05, 200)
    cmap = plt.get_cmap("viridis")
    for ax, ms in zip(axes[0], measures):
        sub = df[df["measure"] == ms]
        thr = sorted(set(sub["threshold"].astype(float)))
        for k, t in enumerate(thr):
            color = cmap(k / max(len(thr) - 1, 1))
            for b, style in (("cdf", "-"), ("hoeffding", "--")):
                g = sub[(sub["threshold"].astype(float) == t) & (sub["bound"] == b)]
                if not len(g):
                    continue
                rad = g["radius"].to_numpy(dtype=float)
                cor = g["correct"].to_numpy()
                ax.plot(grid, [certified_accuracy(rad, cor, r) for r in grid], style, color=color,
                        label=f"t={t:g}" if b == "cdf" or "cdf" not in set(sub["bound"]) else None)
        ax.set_title(f"{ms}: CDF (solid) vs Hoeffding (dashed)")
        ax.set_xlabel("radius (L2)")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = f"{stem}-cdf.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
