"""The field's own result files: one tab-separated row per certified input, as the papers publish them.

Cohen et al.'s code (locuslab/smoothing, ICML 2019, arXiv:1902.02918) and
the works built on it write one line per test input with the columns
``idx label predict radius correct`` and usually ``time`` (seconds, or
``H:MM:SS.ffffff`` as Python prints a ``datetime.timedelta``); ``predict``
is -1 where the procedure abstained. Such a file has any name, so it is
recognised by its header line. ``read_published`` turns it into rows of a
certificate table (``idx``, ``label``, ``method``, ``predict``, ``radius``,
``correct``, ``time`` in seconds) whose ``method`` is the file's path, so
that ``smoothcert report`` tabulates and plots it as one setting beside
smoothcert's own tables.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

COLUMNS = ("idx", "label", "predict", "radius", "correct")
OPTIONAL = ("time",)
_HMS = re.compile(r"^(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")


def header(path) -> list[str] | None:
    """The tab-separated names of the file's first line, or None when it has no tab-separated first line."""
    try:
        with open(path, "rb") as f:
            line = f.readline(4096)
    except OSError:
        return None
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text.split("\t") if "\t" in text else None


def is_published(path) -> bool:
    """True if the file's header is ``idx label predict radius correct`` (tab-separated), optionally then ``time``."""
    h = header(path)
    return h is not None and tuple(h[:len(COLUMNS)]) == COLUMNS and set(h[len(COLUMNS):]) <= set(OPTIONAL)


def seconds(text: str) -> float:
    """A ``time`` value in seconds: a number, or ``H:MM:SS[.ffffff]`` (optionally ``D days, `` first)."""
    try:
        return float(text)
    except ValueError:
        pass
    m = _HMS.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is neither seconds nor H:MM:SS.ffffff")
    d, h, mi, s = m.groups()
    return ((int(d or 0) * 24 + int(h)) * 60 + int(mi)) * 60 + float(s)


def read_published(path) -> pd.DataFrame:
    """The file's rows as a certificate table (method = the path); ValueError naming the file and row if one is bad.

    Guarantee: every row has integer ``idx``, ``label``, ``predict`` (-1 or
    a class), ``correct`` equal to ``predict == label``, and a radius that
    is a number >= 0 (0 where ``predict`` is -1); nothing else is accepted.
    """
    name = str(path)
    where = f"results file {name}"
    cols = header(path)
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:
        raise ValueError(f"{where}: cannot read it as a tab-separated result file ({type(e).__name__}: {e})") from None
    if list(raw.columns) != cols:
        raise ValueError(f"{where}: its rows do not match its header {cols}")
    out = {}
    for c in ("idx", "label", "predict", "correct"):
        v = pd.to_numeric(raw[c], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(v.to_numpy(dtype=float)) | (v.to_numpy(dtype=float) % 1 != 0))
        if len(bad):
            raise ValueError(f"{where}: row {bad[0] + 2}: {c} {raw[c].iloc[bad[0]]!r} is not an integer")
        out[c] = v.to_numpy(dtype=np.int64)
    radius = pd.to_numeric(raw["radius"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(np.isnan(radius) | (radius < 0))
    if len(bad):
        raise ValueError(f"{where}: row {bad[0] + 2}: radius {raw['radius'].iloc[bad[0]]!r} is not a number >= 0")
    checks = (
        ("correct must be 0 or 1", ~np.isin(out["correct"], (0, 1))),
        ("correct must be 1 exactly where predict == label", out["correct"] != (out["predict"] == out["label"])),
        ("predict must be -1 (abstain) or a class >= 0", out["predict"] < -1),
        ("an abstention (predict -1) must have radius 0", (out["predict"] == -1) & (radius != 0)),
    )
    for text, mask in checks:
        bad = np.flatnonzero(mask)
        if len(bad):
            raise ValueError(f"{where}: row {bad[0] + 2}: {text}")
    df = pd.DataFrame({"idx": out["idx"], "label": out["label"], "method": name, "predict": out["predict"],
                       "radius": radius, "correct": out["correct"]})
    if "time" in raw.columns:
        try:
            df["time"] = [seconds(t) for t in raw["time"]]
        except ValueError as e:
            raise ValueError(f"{where}: column time: {e}") from None
    return df
