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

``cdf_values`` and ``soft_values`` give ``methods_confidence`` what the
full-store procedure takes (the class, the values or statistics of S), so
that one assembly builds both tables: a compact block's table is the full
store's (same rows, columns and order) plus ``rows_bounded``:

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


def cdf_values(block, opts, alpha: float):
    """Section 9's inputs of ``cdf`` on a compact block: ``(cls, values, terms)`` for ``methods_confidence``.

    ``values(measure)`` gives the lower values L of the rows of S (B, R) and
    ``rows_bounded`` (B,); ``terms(sorted L of one input, bound, measure,
    its rows_bounded)`` gives section 4's ``(w, u)``: unchanged under
    ``spec``; under ``dominated``, where rows were bounded, counting
    without crediting ties (``compact_bounds.tie_free_cdf_terms``). Where
    ``rows_bounded`` is 0, either is the full store's procedure on the full
    store's values.
    """
    tie_free = rule_of(opts) == "dominated"
    cls, topk_p, topk_c = _parts(block)
    start, stop = block.n0, block.n0 + block.n_i

    def values(measure):
        return CB.measure_lower_values(topk_p, topk_c, cls, measure.name, start=start, stop=stop)

    def terms(z_sorted, bound, measure, bounded):
        return CB.input_terms(z_sorted, bound, measure, opts.K, alpha, bounded=tie_free and bool(bounded > 0))

    return cls, values, terms


def soft_values(block, opts):
    """Section 9's inputs of ``soft`` on a compact block: ``(cls, mean, var, extra)`` for ``methods_confidence``.

    ``soft.soft_certify`` runs unchanged on ``mean, var`` =
    ``SoftStats.for_class(cls)`` (the rule's means and variances);
    ``extra(bound)`` is the ``rows_bounded`` column of that bound's rows.
    """
    rule = rule_of(opts)
    cls, topk_p, topk_c = _parts(block)
    n_i = block.n_i
    st = CB.soft_stats(topk_p, topk_c, block.m, block.n0, block.n0 + n_i, rule=rule)
    mean, var = st.for_class(cls)

    def extra(bound):
        other = CB.binding_class(st, n_i, cls, opts.alpha, bound)
        return {"rows_bounded": CB.rows_bounded_soft(topk_c, cls, other, block.n0, block.n0 + n_i)}

    return cls, mean, var, extra
