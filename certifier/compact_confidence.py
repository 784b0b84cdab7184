"""``cdf`` and ``soft`` on a block read from a compact store that keeps its selection rows whole (section 9).

The block interface (what the engine hands over, ``Block.compact``, from a
store whose ``keeps_full_s0`` is true):

- ``rows0``: (B, n0, m) float32, the n0 selection rows of each input, whole,
  in store order (``read_block`` field ``rows0``: the stored values widened
  to float32, as ``rows`` of a full store); the class is picked on
  ``rows0[:, :n0_use]`` exactly as ``cdf.predicted_class`` picks it on a
  full store;
- ``topk_p`` (B, R, K) float32 and ``topk_c`` (B, R, K) uint16 over all
  R = n0 + n rows in store order (``read_block`` field ``compact``); rows
  ``n0 : n0 + n_i`` (the estimation rows) are the ones used here.

A block without ``rows0`` (a compact store that does not keep its selection
rows) never reaches these functions: ``certifier.compact.compact_fields``
refuses it before any work, with the message of a plain compact store.

Both functions return the table of their full-store counterparts in
``methods_confidence`` (same rows, columns and order) plus ``rows_bounded``:

- ``cdf``: rows of S in which the class c is outside the top K (its value was
  replaced by a bound); 0 means the certificate equals the full store's
  (either rule).
- ``soft``: rows of S in which c, or the binding class (the other class whose
  upper bound is ``max_j upper_j``, lowest index on ties), is outside the top
  K. At 0, ``p_lower`` and the binding upper bound are the full rows' floats:
  under ``dominated`` the certificate then equals the full store's; under
  ``spec`` it is at least the full store's (another class's upper bound, from
  U, may have fallen below its full value).

``opts.compact_rule`` picks the rule (``compact_bounds`` says why, bound by
bound): ``spec`` runs sections 4 and 7 unchanged on the replaced values
(sound; rarely above the full store's certificate), ``dominated`` is never
above it. A ``cdf`` radius is found by bisection to within ``cdf.TOL`` below
its supremum, as on a full store, so two computed radii compare up to that
precision.
"""
from __future__ import annotations

import numpy as np

from . import cdf as C
from . import compact_bounds as CB
from . import soft as S
from .registry import frame, level

ROWS0 = "rows0"
RULES = ("spec", "dominated")


def rule_of(opts) -> str:
    """``opts.compact_rule`` (``spec`` when the options do not have it); ValueError naming the option otherwise."""
    rule = getattr(opts, "compact_rule", "spec")
    if rule not in RULES:
        raise ValueError(f"--compact-rule must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def has_full_selection(block) -> bool:
    """Whether ``block`` was read from a compact store that keeps its selection rows whole."""
    comp = getattr(block, "compact", None)
    return comp is not None and comp.get(ROWS0) is not None


def _parts(block):
    """(class per input, topk_p, topk_c) of a compact block with full selection rows; ValueError otherwise."""
    if not has_full_selection(block):
        raise ValueError("cdf/soft on a compact block need its full selection rows (Block.compact['rows0'])")
    comp = block.compact
    rows0 = np.asarray(comp[ROWS0])
    if rows0.ndim != 3 or rows0.shape[0] != len(block) or rows0.shape[1] < block.n0_use or rows0.shape[2] != block.m:
        raise ValueError(f"Block.compact['rows0'] must have shape ({len(block)}, >= {block.n0_use}, {block.m}), "
                         f"got {rows0.shape}")
    cls = C.predicted_class(rows0[:, : block.n0_use])
    return cls, comp["topk_p"], comp["topk_c"]


def certify_cdf(block, opts, settings):
    """``methods_confidence.certify_cdf`` on section 9's values; ``settings`` = ``cdf_settings(opts)``.

    One row per (input, measure, bound, threshold), in the full-store order.
    ``spec``: section 4's procedure on the replaced values. ``dominated``:
    where ``rows_bounded > 0`` the ``cdf`` bound counts without crediting
    ties (``compact_bounds.tie_free_cdf_terms``). Where ``rows_bounded`` is
    0, either is the full store's procedure on the full store's values.
    """
    measures, bounds, thr = settings
    tie_free = rule_of(opts) == "dominated"
    alpha = level(opts, spends_twice=False)
    cls, topk_p, topk_c = _parts(block)
    B = len(block)
    n_i = block.n_i
    n_set = len(bounds) * max(len(t) for t in thr.values())
    cols = {k: [] for k in ("_pos", "measure", "bound", "threshold", "predict", "radius", "lower0", "rows_bounded",
                            "_order")}
    for mi, ms in enumerate(measures):
        t = thr[ms.name]
        z, bounded = CB.measure_lower_values(topk_p, topk_c, cls, ms.name, start=block.n0, stop=block.n0 + n_i)
        z.sort(axis=1)
        for b in range(B):
            zs = z[b, : n_i[b]]
            for bi, bound in enumerate(bounds):
                w, u = CB.input_terms(zs, bound, ms, opts.K, alpha, bounded=tie_free and bool(bounded[b] > 0))
                rad, lower0 = C.certified_radii(ms.a, w, u, block.sigma, t)
                ok = lower0 >= t
                T = t.size
                cols["_pos"].append(np.full(T, b))
                cols["measure"].append([ms.name] * T)
                cols["bound"].append([bound] * T)
                cols["threshold"].append(t)
                cols["predict"].append(np.where(ok, cls[b], -1))
                cols["radius"].append(np.where(ok, rad, 0.0))
                cols["lower0"].append(np.full(T, lower0))
                cols["rows_bounded"].append(np.full(T, bounded[b], dtype=np.int64))
                cols["_order"].append((b * len(measures) + mi) * n_set + bi * T + np.arange(T))
    if not cols["_pos"]:
        return frame(np.zeros(0, np.int64), measure=np.zeros(0, object), bound=np.zeros(0, object),
                     threshold=np.zeros(0), predict=np.zeros(0, np.int64), radius=np.zeros(0), lower0=np.zeros(0),
                     rows_bounded=np.zeros(0, np.int64))
    cat = {k: np.concatenate([np.asarray(v) for v in vs]) for k, vs in cols.items()}
    order = np.argsort(cat.pop("_order"), kind="stable")
    pos = cat.pop("_pos")[order]
    return frame(pos, **{k: v[order] for k, v in cat.items()})


def certify_soft(block, opts, bounds):
    """``methods_confidence.certify_soft`` on section 9's statistics; ``bounds`` = ``soft_settings(opts)``.

    ``soft.soft_certify`` runs unchanged on ``SoftStats.for_class(c)`` (the
    rule's means and variances): one row per (input, bound), in the
    full-store order.
    """
    rule = rule_of(opts)
    cls, topk_p, topk_c = _parts(block)
    n_i = block.n_i
    st = CB.soft_stats(topk_p, topk_c, block.m, block.n0, block.n0 + n_i, rule=rule)
    mean, var = st.for_class(cls)
    parts = []
    for bound in bounds:
        pred, rad, pl, pu = S.soft_certify(mean, var, n_i, cls, block.sigma, opts.alpha, bound)
        other = CB.binding_class(st, n_i, cls, opts.alpha, bound)
        rb = CB.rows_bounded_soft(topk_c, cls, other, block.n0, block.n0 + n_i)
        parts.append(frame(np.arange(len(block)), bound=bound, predict=pred, radius=rad, p_lower=pl, p_upper=pu,
                           rows_bounded=rb))
    import pandas as pd

    df = pd.concat(parts, ignore_index=True)
    return df.sort_values("_pos", kind="mergesort").reset_index(drop=True)
