"""Summaries of certificate tables (docs/methods.md section 8) and their plots.

Pure functions over a table: certified accuracy at radii, ACR, abstain
rate, grouped by the method and its setting columns.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import get_method, methods
from .registry import setting_columns as _all_setting_columns

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def rows_for(df: pd.DataFrame, method) -> pd.DataFrame:
    """The rows ``method``'s report section and plot get: its own, or those of the methods it declares (``report_rows``)."""
    if isinstance(method, str):
        method = get_method(method)
    return df[df["method"].isin(method.rows_read_by_report())]


def extra_sections(df: pd.DataFrame, radii) -> list[str]:
    """Text of every registered method's report section whose rows are present in ``df`` (registration order)."""
    out = []
    for m in methods():
        if m.report is not None:
            sub = rows_for(df, m)
            text = m.report(sub, radii) if len(sub) else None
            if text:  # a section may have nothing to say about the rows it got (e.g. incremental without its rows)
                out.append(text)
    return out


def extra_plots(df: pd.DataFrame, stem) -> list[str]:
    """Write every registered method's plots whose rows are present in ``df``; the written paths."""
    paths = []
    for m in methods():
        if m.plot is not None:
            sub = rows_for(df, m)
            if len(sub):
                paths += list(m.plot(sub, stem))
    return paths


def setting_columns(df: pd.DataFrame) -> list[str]:
    """The columns that identify one setting (method plus the method's setting columns)."""
    return ["method"] + [c for c in _all_setting_columns() if c in df.columns]


def certified_accuracy(radius: np.ndarray, correct: np.ndarray, r: float) -> float:
    """Share of inputs with correct == 1 and radius >= r."""
    return float(np.mean((correct == 1) & (radius >= r))) if len(radius) else float("nan")


def summarize(df: pd.DataFrame, radii=DEFAULT_RADII) -> pd.DataFrame:
    """One row per setting: n inputs, certified accuracy at each radius, ACR, abstain rate."""
    keys = setting_columns(df)
    out = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rec = dict(zip(keys, key))
        rad = g["radius"].to_numpy(dtype=float)
        cor = g["correct"].to_numpy()
        rec["inputs"] = len(g)
        for r in radii:
            rec[f"acc@{r:g}"] = certified_accuracy(rad, cor, r)
        rec["ACR"] = float(np.mean(rad * cor))
        rec["abstain"] = float(np.mean(g["predict"].to_numpy() == -1))
        out.append(rec)
    return pd.DataFrame(out)


def format_table(summary: pd.DataFrame) -> str:
    """A plain-text table with shares as percentages (3 decimals for ACR)."""
    s = summary.copy()
    settings = _all_setting_columns()
    s = s.drop(columns=[c for c in s.columns if c in settings and s[c].isna().all()])
    for c in s.columns:
        if c in settings:
            s[c] = s[c].map(lambda v: "" if (v is None or (isinstance(v, float) and np.isnan(v))) else v)
    for c in s.columns:
        if c.startswith("acc@") or c == "abstain":
            s[c] = (100 * s[c]).map(lambda v: f"{v:.1f}")
        elif c == "ACR":
            s[c] = s[c].map(lambda v: f"{v:.3f}")
    return s.to_string(index=False)


CONSOLE_SETTINGS = 12


def console_summary(df: pd.DataFrame, out, limit: int = CONSOLE_SETTINGS) -> str:
    """The summary table ``certify`` prints: every setting up to ``limit``, else the first ``limit`` and a count.

    A 1,000-threshold sweep has thousands of settings; the console shows a few
    and points to ``smoothcert report``, which summarises them all (``out``
    None: the table was not written, and the hint says to write it). A table of
    prediction sets only (a set-valued method) gets its method's report.
    """
    summary = ConsoleSummary(limit)
    summary.add(df)
    return summary.text(out)


class ConsoleSummary:
    """``console_summary`` of a table given in parts (in order), keeping only the rows of the settings it shows.

    ``add`` each part; ``text(out)`` is then ``console_summary`` of the parts
    concatenated, and ``rows`` their number of rows.
    """

    def __init__(self, limit: int = CONSOLE_SETTINGS):
        self.limit = limit
        self.rows = 0
        self._order = {}  # setting -> its place in the order of first appearance
        self._kept = []
        self._sets = []   # parts of a table of prediction sets: its method's report reads every row
        self._empty = None

    def add(self, df: pd.DataFrame) -> None:
        self.rows += len(df)
        if self._empty is None:
            self._empty = df.iloc[:0]
        if not len(df):
            return
        if _set_valued(df):
            self._sets.append(df)
            return
        keys = setting_columns(df)
        codes = df.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
        first = np.unique(codes, return_index=True)[1]  # each setting's first row, settings in order of appearance
        order = np.empty(len(first), np.int64)
        for k, values in enumerate(df[keys].iloc[first].itertuples(index=False, name=None)):
            key = tuple(None if isinstance(v, float) and v != v else v for v in values)  # NaN equals NaN
            order[k] = self._order.setdefault(key, len(self._order))
        keep = order[codes] < self.limit
        if keep.any():
            self._kept.append(df.loc[keep, keys + ["predict", "radius", "correct"]])

    def text(self, out) -> str:
        if self._sets:  # prediction sets: coverage and sizes, not radii
            df = pd.concat(self._sets, ignore_index=True)
            return "\n".join(text for m in _set_methods() if len(rows_for(df, m))
                             for text in [m.report(rows_for(df, m), None)] if text)
        total = len(self._order)
        rows = pd.concat(self._kept, ignore_index=True) if self._kept else self._empty
        text = format_table(summarize(rows if rows is not None else pd.DataFrame()))
        if total <= self.limit:
            return text
        hint = f"smoothcert report {out}" if out is not None else "certify again with --out FILE, then smoothcert report FILE"
        return f"{text}\n... {total - self.limit} more settings ({total} in all): {hint}"


def _set_methods() -> list:
    return [m for m in methods() if m.set_valued and m.report is not None]


def _set_valued(df: pd.DataFrame) -> bool:
    """True when every row of ``df`` is of a set-valued method (conformal): its report replaces the radii's."""
    names = [m.name for m in _set_methods()]
    return bool(names) and "method" in df.columns and bool(df["method"].isin(names).all())


def curve_label(setting: dict) -> str:
    """'uncertainty entropy theta=0.1 cc' from a setting, leaving out absent (NaN) columns."""
    parts = []
    for k, v in setting.items():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        parts.append(str(v) if k in ("method", "uncertainty", "guarantee", "measure", "bound") else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def plot_certified_accuracy(df: pd.DataFrame, path, title: str | None = None, max_curves: int = 12) -> None:
    """Certified accuracy against radius, one curve per setting (the first ``max_curves``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = setting_columns(df)
    predict_only = [m.name for m in methods() if m.predict_only]
    df = df[~df["method"].isin(predict_only)]  # their radius is 0 by definition: nothing to plot
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rmax = float(np.nanmax(df["radius"].replace(np.inf, np.nan))) if len(df) else 1.0
    grid = np.linspace(0, max(rmax, 1e-3) * 1.05, 200)
    for i, (key, g) in enumerate(df.groupby(keys, sort=False, dropna=False)):
        if i >= max_curves:
            break
        key = key if isinstance(key, tuple) else (key,)
        rad = g["radius"].to_numpy(dtype=float)
        cor = g["correct"].to_numpy()
        acc = [certified_accuracy(rad, cor, r) for r in grid]
        ax.plot(grid, acc, label=curve_label(dict(zip(keys, key))))
    ax.set_xlabel("radius (L2)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
