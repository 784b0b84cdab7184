"""``smoothcert report`` sections and plots for ``--method uncertainty`` (Däubener et al. 2024, Tables I-III, Fig. 8).

The reference radius R is the two-step radius: the ``cc`` rows at
``theta = inf`` of the same table (identical to ``two-step``), or, when the
table has none, ``two-step`` rows of the same table or of the only two-step
table given to the report. Rows are matched per input by (results file, idx).
All shares are over inputs.

- Table I: certified accuracy (%) of R_CC, R, R_NCL and ncl-strict at radii.
- Table II: mean per-input relative change (R_g - R) / R, over the inputs
  that R certifies correctly (R > 0 and R's prediction is the label).
- Table III: over the inputs both R and R_CC classify correctly (neither
  abstains), the shares with R_CC - R > 0, < 0 and = 0, and their number.
- Fig. 8 shares (cc rows): V predicted (PREDICT's top class is V), V the
  runner-up, no runner-up identified, V without mass on S (no row of S
  labelled V), and abstain (predict = -1, which includes V predicted); per
  results file when several are given (e.g. an ID and an OOD store).

Text tables show at most ``MAX_THETAS`` thresholds per function (evenly
spread over the distinct thetas, always with inf); the plots show them all.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_THETAS = 8
NAMES = {"cc": "R_CC", "ncl": "R_NCL", "ncl-strict": "R_NCL-strict"}
SOURCE = "_source"


def _with_source(df: pd.DataFrame) -> pd.DataFrame:
    if SOURCE not in df.columns:
        df = df.assign(**{SOURCE: ""})
    return df


def reference_radius(df: pd.DataFrame) -> pd.DataFrame | None:
    """Per (source, idx) of the uncertainty rows: R's radius and prediction (``r_ref``, ``pred_ref``); None without R.

    R comes from the ``cc`` rows at theta = inf of the same table (any
    function: they are equal there), else from ``two-step`` rows: those of the
    same table, or of the only two-step table given (e.g. ``report
    two-step.csv sweep.parquet``, both certified on the same store).
    """
    df = _with_source(df)
    cols = [SOURCE, "idx", "radius", "predict", "label"]
    two = df[df["method"] == "two-step"]
    two_sources = list(dict.fromkeys(two[SOURCE]))
    parts = []
    for src, u in df[df["method"] == "uncertainty"].groupby(SOURCE, sort=False):
        inf = u[(u["guarantee"].astype(str) == "cc") & np.isposinf(u["theta"].astype(float))]
        if len(inf):
            ref = inf
        elif src in two_sources:
            ref = two[two[SOURCE] == src]
        elif len(two_sources) == 1:
            ref = two
        else:
            continue
        parts.append(ref.drop_duplicates([SOURCE, "idx"])[cols].assign(**{SOURCE: src}))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True).rename(columns={"radius": "r_ref", "predict": "pred_ref"})


def shown_thetas(thetas) -> list:
    """At most MAX_THETAS of the distinct thetas, evenly spread, +inf always kept when present."""
    t = sorted(set(float(x) for x in thetas))
    if len(t) <= MAX_THETAS:
        return t
    finite = [x for x in t if not math.isinf(x)]
    k = MAX_THETAS - (1 if math.inf in t else 0)
    idx = np.unique(np.round(np.linspace(0, len(finite) - 1, k)).astype(int))
    out = [finite[i] for i in idx]
    return out + ([math.inf] if math.inf in t else [])


def _fmt_theta(v) -> str:
    return "inf" if math.isinf(v) else f"{v:.6g}"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def _cert_acc(g: pd.DataFrame, r: float) -> float:
    return float(((g["correct"].to_numpy() == 1) & (g["radius"].to_numpy() >= r)).mean()) if len(g) else float("nan")


def table_i(u: pd.DataFrame, ref: pd.DataFrame | None, radii) -> pd.DataFrame:
    """Certified accuracy (share) per (source, uncertainty, theta, radius): columns R_CC, R, R_NCL, R_NCL-strict."""
    out = []
    ref_acc = {}
    if ref is not None:
        for src, g in ref.groupby(SOURCE, sort=False):
            cor = (g["pred_ref"].to_numpy() == g["label"].to_numpy())
            ref_acc[src] = {r: float((cor & (g["r_ref"].to_numpy() >= r)).mean()) for r in radii}
    for (src, f, th), g in u.groupby([SOURCE, "uncertainty", "theta"], sort=False, observed=True):
        for r in radii:
            rec = {"source": src, "uncertainty": f, "theta": _fmt_theta(th), "radius": r}
            for gname, label in NAMES.items():
                sub = g[g["guarantee"].astype(str) == gname]
                rec[label] = _cert_acc(sub, r) if len(sub) else float("nan")
                if gname == "cc":
                    rec["R"] = ref_acc.get(src, {}).get(r, float("nan"))
            out.append(rec)
    cols = ["source", "uncertainty", "theta", "radius", "R_CC", "R", "R_NCL", "R_NCL-strict"]
    return pd.DataFrame(out, columns=cols)


def table_ii_iii(u: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Per (source, uncertainty, theta): Table II's mean relative changes and Table III's shares."""
    j = u.merge(ref[[SOURCE, "idx", "r_ref", "pred_ref"]], on=[SOURCE, "idx"], how="inner")
    out = []
    for (src, f, th), g in j.groupby([SOURCE, "uncertainty", "theta"], sort=False, observed=True):
        rec = {"source": src, "uncertainty": f, "theta": _fmt_theta(th)}
        for gname, label in NAMES.items():
            s = g[g["guarantee"].astype(str) == gname]
            base = (s["r_ref"].to_numpy() > 0) & (s["pred_ref"].to_numpy() == s["label"].to_numpy())
            rel = (s["radius"].to_numpy()[base] - s["r_ref"].to_numpy()[base]) / s["r_ref"].to_numpy()[base]
            rec[f"({label}-R)/R"] = float(rel.mean()) if rel.size else float("nan")
        s = g[g["guarantee"].astype(str) == "cc"]
        both = (s["predict"].to_numpy() == s["label"].to_numpy()) & (s["pred_ref"].to_numpy() == s["label"].to_numpy())
        d = s["radius"].to_numpy()[both] - s["r_ref"].to_numpy()[both]
        n = int(both.sum())
        rec.update({"R_CC-R>0": (d > 0).mean() if n else float("nan"), "R_CC-R<0": (d < 0).mean() if n else float("nan"),
                    "R_CC-R=0": (d == 0).mean() if n else float("nan"), "total": n})
        out.append(rec)
    return pd.DataFrame(out)


def fig8_shares(u: pd.DataFrame) -> pd.DataFrame:
    """Per (source, uncertainty, theta), over the cc rows: the shares of Fig. 8 of Däubener et al. 2024."""
    cc = u[u["guarantee"].astype(str) == "cc"]
    out = []
    for (src, f, th), g in cc.groupby([SOURCE, "uncertainty", "theta"], sort=False, observed=True):
        m = g["num_classes"].to_numpy()
        out.append({"source": src, "uncertainty": f, "theta": _fmt_theta(th), "inputs": len(g),
                    "V predicted": float((g["top_class"].to_numpy() == m).mean()),
                    "V runner-up": float((g["runner_up"].to_numpy() == m).mean()),
                    "no runner-up": float((g["runner_up"].to_numpy() == -1).mean()),
                    "V no mass": float((g["n_uncertain"].to_numpy() == 0).mean()),
                    "abstain": float((g["predict"].to_numpy() == -1).mean())})
    return pd.DataFrame(out)


def _text(df: pd.DataFrame, pct_cols) -> str:
    s = df.copy()
    if "source" in s.columns and (s["source"] == "").all():
        s = s.drop(columns=["source"])
    for c in pct_cols:
        if c in s.columns:
            s[c] = s[c].map(_pct)
    return s.to_string(index=False)


def _limit(u: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    notes, keep = [], []
    for f, g in u.groupby("uncertainty", sort=False, observed=True):
        th = g["theta"].astype(float)
        show = shown_thetas(th.unique())
        if len(show) < th.nunique():
            notes.append(f"{f}: {len(show)} of {th.nunique()} thetas shown (all in the plots)")
        keep.append(g[th.isin(show)])
    return (pd.concat(keep) if keep else u), notes


def report(df: pd.DataFrame, radii) -> str:
    """The uncertainty section of ``smoothcert report``: Tables I, II, III and the Fig. 8 shares."""
    df = _with_source(df)
    u = df[df["method"] == "uncertainty"].copy()
    if not len(u):
        return ""
    u["theta"] = u["theta"].astype(float)
    ref = reference_radius(df)
    shown, notes = _limit(u)
    radii = list(radii)
    lines = ["Uncertainty-aware certificates (Däubener et al. 2024): R = two-step radius (theta = inf), R_CC = cc, R_NCL = ncl "
             "(Däubener et al.'s formula: 'cA or uncertain' outweighs any other class; NOT a guarantee that the prediction "
             "stays in {cA, V}), R_NCL-strict = ncl-strict (prediction provably stays in {cA, V})."]
    lines += [f"  ({n})" for n in notes]
    if ref is None:
        lines.append("  (no R: include inf in --theta, or give a two-step table of the same store, for R and Tables II-III)")
    t1 = table_i(shown, ref, radii)
    lines += ["", "Table I: certified accuracy (%) at radius", _text(t1, ["R_CC", "R", "R_NCL", "R_NCL-strict"])]
    if ref is not None:
        t23 = table_ii_iii(shown, ref)
        rel = ["source", "uncertainty", "theta"] + [c for c in t23.columns if c.endswith("-R)/R")]
        lines += ["", "Table II: mean per-input relative change against R (%), over inputs R certifies correctly",
                  _text(t23[rel], rel[3:])]
        t3 = ["source", "uncertainty", "theta", "R_CC-R>0", "R_CC-R<0", "R_CC-R=0", "total"]
        lines += ["", "Table III: inputs classified correctly by R and R_CC (%): R_CC - R positive, negative, zero",
                  _text(t23[t3], t3[3:6])]
    f8 = fig8_shares(shown)
    lines += ["", "Fig. 8 shares (%, cc rows): V predicted, V runner-up, no runner-up, V without mass on S, abstain",
              _text(f8, ["V predicted", "V runner-up", "no runner-up", "V no mass", "abstain"])]
    return "\n".join(lines)


# ------------------------------------------------------------------------ plots
def _curve(rad, cor, grid):
    ok = cor == 1
    return [float((ok & (rad >= r)).mean()) for r in grid]


def plots(df: pd.DataFrame, stem) -> list[str]:
    """Certified accuracy against radius (per function, a few thetas) and against theta (all thetas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = _with_source(df)
    u = df[df["method"] == "uncertainty"].copy()
    if not len(u):
        return []
    u["theta"] = u["theta"].astype(float)
    u["guarantee"] = u["guarantee"].astype(str)
    u["uncertainty"] = u["uncertainty"].astype(str)
    ref = reference_radius(df)
    sources = list(dict.fromkeys(u[SOURCE]))
    paths = []
    colors = {"cc": "tab:blue", "ncl": "tab:orange", "ncl-strict": "tab:green"}
    for si, src in enumerate(sources):
        us = u[u[SOURCE] == src]
        funcs = list(dict.fromkeys(us["uncertainty"]))
        suffix = f"-{si}" if len(sources) > 1 else ""
        rs = ref[ref[SOURCE] == src] if ref is not None else None
        rmax = float(np.nanmax(us["radius"].replace(np.inf, np.nan))) if len(us) else 1.0
        grid = np.linspace(0, max(rmax, 1e-3) * 1.05, 120)

        fig, axes = plt.subplots(1, len(funcs), figsize=(5.2 * len(funcs), 4.0), squeeze=False)
        for ax, f in zip(axes[0], funcs):
            g = us[us["uncertainty"] == f]
            th = [t for t in shown_thetas(g["theta"].unique()) if not math.isinf(t)][:4] or [math.inf]
            styles = ["-", "--", ":", "-."]
            for ti, t in enumerate(th):
                for gname in colors:
                    s = g[(g["theta"] == t) & (g["guarantee"] == gname)]
                    if len(s):
                        ax.plot(grid, _curve(s["radius"].to_numpy(), s["correct"].to_numpy(), grid), styles[ti % 4],
                                color=colors[gname], label=f"{NAMES[gname]} theta={_fmt_theta(t)}", lw=1.2)
            if rs is not None and len(rs):
                ax.plot(grid, _curve(rs["r_ref"].to_numpy(), (rs["pred_ref"] == rs["label"]).astype(int).to_numpy(), grid),
                        color="black", lw=1.5, label="R (two-step)")
            ax.set_title(f"{f}{(' - ' + str(src)) if src else ''}", fontsize=9)
            ax.set_xlabel("radius (L2)")
            ax.set_ylabel("certified accuracy")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        p = f"{stem}-uncertainty-radius{suffix}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

        # against theta: certified accuracy at r = 0 (the same for every guarantee) and at r*, and ACR
        pos = us["radius"].to_numpy()
        base = rs["r_ref"].to_numpy() if rs is not None and len(rs) else pos
        base = base[base > 0]
        r_star = float(np.round(np.median(base), 2)) if base.size else 0.25
        fig, axes = plt.subplots(2, len(funcs), figsize=(5.2 * len(funcs), 6.6), squeeze=False)
        for col, f in enumerate(funcs):
            ax, ax2 = axes[0, col], axes[1, col]
            g = us[(us["uncertainty"] == f) & np.isfinite(us["theta"])]
            drawn0 = False
            for gname in colors:
                s = g[g["guarantee"] == gname]
                if not len(s):
                    continue
                ok = s["correct"].to_numpy() == 1
                rad = s["radius"].to_numpy()
                tmp = pd.DataFrame({"theta": s["theta"].to_numpy(), "a0": ok, "ar": ok & (rad >= r_star), "acr": rad * ok})
                agg = tmp.groupby("theta", sort=True).mean()
                if not drawn0:
                    ax.plot(agg.index, agg["a0"], ":", color="gray", label="every guarantee, r = 0")
                    drawn0 = True
                ax.plot(agg.index, agg["ar"], color=colors[gname], label=f"{NAMES[gname]}, r = {r_star:g}")
                ax2.plot(agg.index, agg["acr"], color=colors[gname], label=NAMES[gname])
            if rs is not None and len(rs):
                cor = (rs["pred_ref"] == rs["label"]).to_numpy()
                ax.axhline(float(cor.mean()), color="black", ls=":", lw=1, label="R, r = 0")
                ax.axhline(float((cor & (rs["r_ref"].to_numpy() >= r_star)).mean()), color="black", lw=1,
                           label=f"R, r = {r_star:g}")
                ax2.axhline(float((rs["r_ref"].to_numpy() * cor).mean()), color="black", lw=1, label="R")
            ax.set_title(f"{f}{(' - ' + str(src)) if src else ''}: certified accuracy", fontsize=9)
            ax2.set_title(f"{f}: ACR", fontsize=9)
            ax.set_ylim(0, 1)
            for a_ in (ax, ax2):
                a_.set_xlabel("theta (rows with u >= theta are uncertain)")
                a_.grid(alpha=0.3)
                a_.legend(fontsize=6, loc="best")
        fig.tight_layout()
        p = f"{stem}-uncertainty-theta{suffix}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
