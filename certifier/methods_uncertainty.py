"""The computation of ``--method uncertainty``: R_CC, R_NCL and ncl-strict for every function and threshold.

One row per (input, uncertainty, theta, guarantee), in that nesting order
(functions and thresholds in the order given). Thresholds: ``--theta`` (a
list or start:stop:count, applied to every function) plus, per function, the
thresholds of ``--theta-from CALIB.json``; with neither, ``theta = inf``
alone (plain hard labels: cc and ncl then equal ``two-step``). Duplicate
thresholds of a function are dropped (first occurrence kept).

Extra columns: ``runner_up`` (m = the uncertain class V, -1 none),
``p_lower``/``p_upper`` (bounds on S: of cA for cc and ncl-strict, of cA + V
for ncl; of the runner-up), ``top_class`` (PREDICT's top class on S0, m for V,
-1 when its test abstained), ``n_uncertain`` (rows of S labelled V) and
``num_classes`` (m, the index that stands for V in ``runner_up`` and ``top_class``).
The registry entry and options are in ``entries_uncertainty``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import uncertainty as U
from .registry import level
from .prefixes import s0_opts


def thetas_per_function(opts) -> dict:
    """{function: [theta, ...]} of a run: --theta for every function plus its calibrated thresholds.

    Defaults to [inf] for a function with none; duplicates are dropped.
    """
    by = getattr(opts, "theta_by_uncertainty", None) or {}
    out = {}
    for f in dict.fromkeys(opts.uncertainty):
        vals = list(opts.theta) + list(by.get(f, []))
        seen, keep = set(), []
        for v in vals:
            v = float(v)
            if math.isnan(v):
                raise ValueError("--theta: NaN is not a threshold")
            if v not in seen:
                seen.add(v)
                keep.append(v)
        out[f] = keep or [math.inf]
    return out


def _names(values, allowed, option):
    """Distinct names in the given order, each checked against ``allowed``."""
    out = list(dict.fromkeys(values))
    if not out:
        raise ValueError(f"--{option}: give at least one of {', '.join(allowed)}")
    for v in out:
        if v not in allowed:
            raise ValueError(f"--{option}: {v!r} is not one of {', '.join(allowed)}")
    return out


def check_options(opts, store=None) -> None:
    """Refuse bad --uncertainty/--guarantee/--theta values before any row is read."""
    _names(opts.uncertainty, U.FUNCTIONS, "uncertainty")
    _names(opts.guarantee, U.GUARANTEES, "guarantee")
    by = getattr(opts, "theta_by_uncertainty", None) or {}
    for f in by:
        if f not in U.FUNCTIONS:
            raise ValueError(f"--theta-from: {f!r} is not one of {', '.join(U.FUNCTIONS)}")
    thetas_per_function(opts)


def certify_uncertainty(block, opts):
    """One row per (input, function, theta, guarantee), each at the level of ``confidence_twice`` (section 3)."""
    funcs = _names(opts.uncertainty, U.FUNCTIONS, "uncertainty")
    guarantees = _names(opts.guarantee, U.GUARANTEES, "guarantee")
    per_f = thetas_per_function(opts)
    S, G, B, m = sum(len(per_f[f]) for f in funcs), len(guarantees), len(block), block.m
    pair_f = np.repeat(np.arange(len(funcs), dtype=np.int64), [len(per_f[f]) for f in funcs])
    pair_theta = np.array([t for f in funcs for t in per_f[f]], dtype=np.float64)

    n_i = block.n_i
    lists = [per_f[f] for f in funcs]
    r = U.ranked_counts_of(block, funcs, lists, (0, block.n0_use), (block.n0, block.n0 + n_i))  # rows or compact
    a = level(opts, spends_twice=True)
    res = U.certify_ranked(r, np.repeat(n_i, S), m, block.sigma, a, opts.binom_test, guarantees,
                           alpha_s0=level(s0_opts(opts), spends_twice=True))

    def stack(key):  # (B*S,) per guarantee -> (B*S*G,) in (input, pair, guarantee) order
        return np.stack([res[g][key] for g in guarantees], axis=1).reshape(-1)

    n_uncertain = np.repeat(r["k_v"], G)
    # Categorical setting columns (written as plain strings): a sweep has millions of rows, and
    # codes keep concatenating and sorting them cheap.
    fcodes = np.tile(np.repeat(pair_f, G), B).astype(np.int8)
    gcodes = np.tile(np.arange(G), B * S).astype(np.int8)
    return pd.DataFrame({
        "_pos": np.repeat(np.arange(B, dtype=np.int64), S * G),
        "uncertainty": pd.Categorical.from_codes(fcodes, categories=funcs),
        "theta": np.tile(np.repeat(pair_theta, G), B),
        "guarantee": pd.Categorical.from_codes(gcodes, categories=guarantees),
        "predict": stack("predict").astype(np.int64),
        "radius": stack("radius").astype(np.float64),
        "runner_up": stack("runner_up").astype(np.int64),
        "p_lower": stack("p_lower"),
        "p_upper": stack("p_upper"),
        "top_class": stack("top_class").astype(np.int64),
        "n_uncertain": n_uncertain.astype(np.int64),
        "num_classes": np.full(B * S * G, m, dtype=np.int16),
    })


def summary(table, opts):
    """The sidecar's ``uncertainty`` entry: the thetas of each function and what each guarantee says."""
    per_f = thetas_per_function(opts)
    return {"uncertainty": {"thetas": {f: [("inf" if math.isinf(t) and t > 0 else t) for t in v] for f, v in per_f.items()},
                            "guarantees": {
                                "cc": "g(x + d) = cA with low uncertainty for ||d|| < radius",
                                "ncl": "Däubener et al.'s R_NCL: 'cA or uncertain' keeps more mass than any single other class; "
                                       "does NOT imply g(x + d) in {cA, V} (docs/methods.md section 3)",
                                "ncl-strict": "g(x + d) in {cA, V} for ||d|| < radius (bounds on S at alpha/3 each)"}}}
