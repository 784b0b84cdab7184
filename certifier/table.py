"""Write and read certificate tables (.csv, .jsonl, .parquet) and their meta sidecar.

Radii keep full float64 precision (``repr``); infinities are written as ``inf``.
A table is written to a temporary file and renamed into place, so an
existing file is never left half-written.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".csv", ".jsonl", ".parquet")
TEXT_COLUMNS = ("set",)  # read back as text: a conformal set "3" is not the number 3, and "" is the empty set


def _suffix(path) -> str:
    """The table format of ``--out`` (its suffix); ValueError naming ``--out`` for any other."""
    s = Path(path).suffix.lower()
    if s not in SUFFIXES:
        raise ValueError(f"--out {path}: unknown table format {s or '(none)'!r}; use one of {', '.join(SUFFIXES)}")
    return s


def _json_value(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if math.isnan(v):
            return None
        return v
    return v


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_table(table: pd.DataFrame, path, meta: dict | None = None) -> None:
    """Write ``table`` to ``path`` by suffix and ``meta`` to ``path + '.meta.json'``."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".csv":
        _atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, float_format=None))
    elif suffix == ".jsonl":
        cols = list(table.columns)

        def w(tmp):
            with open(tmp, "w") as f:
                for rec in table.itertuples(index=False, name=None):
                    f.write(json.dumps({c: _json_value(v) for c, v in zip(cols, rec)}) + "\n")

        _atomic_write(path, w)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"--out {path}: writing .parquet needs pyarrow (pip install 'smoothcert[parquet]')") from None
        _atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    if meta is not None:
        _atomic_write(Path(str(path) + ".meta.json"),
                      lambda tmp: Path(tmp).write_text(json.dumps(_clean(meta), indent=2) + "\n"))


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, inf/nan to strings/null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    return _json_value(obj)


def read_table(path) -> pd.DataFrame:
    """Read a certificate table written by ``write_table`` (``inf`` parsed back to float), or a published result file.

    A file whose first line is the tab-separated header ``idx label predict
    radius correct [time]`` is one of the field's published result files,
    whatever its name (``certifier.published``); any other file is read by
    its suffix. Errors name the file as ``results file PATH``.
    """
    from .published import is_published, read_published

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results file {path} does not exist")
    if path.is_file() and is_published(path):
        return read_published(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"results file {path}: unknown format: not a certificate table ({', '.join(SUFFIXES)}) nor a "
                         f"tab-separated result file with the header 'idx label predict radius correct [time]'")
    text = {c: str for c in TEXT_COLUMNS}
    if suffix == ".csv":
        df = pd.read_csv(path, dtype=text)
    elif suffix == ".jsonl":
        df = pd.read_json(path, lines=True, dtype=text)
    else:
        df = pd.read_parquet(path)
    for c in TEXT_COLUMNS:  # "" (an empty set) reads back as a missing value from .csv
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    for c in ("theta", "threshold", "radius"):
        if c in df.columns and df[c].dtype == object:
            df[c] = df[c].astype(float)
    for c in ("predict", "label", "correct"):
        if c not in df.columns:
            raise ValueError(f"results file {path} is not a certificate table: column {c!r} missing")
    return df


def read_results(path) -> pd.DataFrame:
    """``read_table``, plus the settings a table's sidecar records instead of a column (what ``report`` reads).

    A conformal table of one variant has no ``robust`` column (its sidecar
    names the variant): it is added from the sidecar, after ``epsilon``, so
    that the tables of several runs are reported and plotted by variant.
    """
    path = Path(path)
    df = read_table(path)
    if "robust" in df.columns or "epsilon" not in df.columns or not (df["method"] == "conformal").any():
        return df
    variants = ((read_meta(path) or {}).get("conformal") or {}).get("robust")
    if isinstance(variants, list) and len(variants) == 1:
        df = df.copy()
        df.insert(df.columns.get_loc("epsilon") + 1, "robust", variants[0])
    return df


def read_meta(path) -> dict | None:
    p = Path(str(path) + ".meta.json")
    if not p.exists():
        return None
    return json.loads(p.read_text())
