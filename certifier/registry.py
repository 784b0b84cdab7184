"""The registry of certificate methods: what each reads, computes and guarantees.

A method is a pure function from a ``Block`` (and the options) to a table
with one row per (input, setting). The engine does all reading, checking and
parallelism; a method only computes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

# Column order of the certificate table (docs/methods.md, the certificate table).
SETTING_COLUMNS = ("uncertainty", "theta", "guarantee", "measure", "bound", "threshold", "members", "consensus", "n_use")
EXTRA_COLUMNS = ("runner_up", "p_lower", "p_upper", "lower0", "selection", "rows_used")


@dataclass(frozen=True)
class Method:
    """One ``--method``: store fields it reads, its computation and its overall confidence."""

    name: str
    compute: Callable  # (Block, CertifyOptions) -> DataFrame with _pos, settings, predict, radius, extras
    confidence: Callable  # (CertifyOptions) -> (level: float, text: str)
    fields: tuple = ("argmax",)
    summary: str = ""
    variable_rows: bool = False  # accepts inputs that stored fewer than n0 + n rows
    needs_core_predict: bool = False
    extra_summary: Callable | None = None  # (DataFrame of all rows, CertifyOptions) -> dict for the meta sidecar
    notes: tuple = field(default_factory=tuple)


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"--method: unknown method {name!r}; available: {', '.join(available_methods())}") from None


def available_methods() -> list[str]:
    return list(_METHODS)


def frame(pos, **cols) -> pd.DataFrame:
    """A method's result table: ``_pos`` (input position in the block) plus the given columns."""
    d = {"_pos": np.asarray(pos, dtype=np.int64)}
    for k, v in cols.items():
        d[k] = np.asarray(v) if not np.isscalar(v) else np.full(len(d["_pos"]), v)
    return pd.DataFrame(d)


def level(opts, spends_twice: bool) -> float:
    """Alpha for each test and bound: alpha, or alpha/2 under --joint-alpha where alpha is spent twice."""
    return opts.alpha / 2 if (spends_twice and opts.joint_alpha) else opts.alpha


def confidence_twice(opts):
    """Overall confidence of a method that tests on S0 and bounds on S."""
    if opts.joint_alpha:
        return 1 - opts.alpha, f"1 - alpha = {1 - opts.alpha:g} (--joint-alpha: test on S0 and bounds on S at alpha/2 each)"
    return 1 - 2 * opts.alpha, f"1 - 2 alpha = {1 - 2 * opts.alpha:g} (a test on S0 at alpha, bounds on S at alpha)"


def confidence_once(opts):
    """Overall confidence of a method that spends alpha once."""
    return 1 - opts.alpha, f"1 - alpha = {1 - opts.alpha:g}"
