"""What a certificate gets from a compact store (top-k per row plus exact per-row entropy).

A compact store (``store/compact.py``) keeps each row's hard label, its K
largest probabilities with their classes, and its entropy, all bit-identical
to what the certifier computes from the full store's rows. Each method's
``Method.compact`` entry (registry.py) says what it does with one:

- methods that count hard labels only (``cohen``, ``cohen-predict``,
  ``two-step``, ``adaptive``) are **exact** without declaring anything: the
  stored argmax is kept whole;
- ``uncertainty`` and ``aces``/``aces-predict`` declare themselves exact:
  u(p) per row is the stored float64 entropy, ``-p_(1)`` or
  ``-(p_(1) - p_(2))`` from the stored top-2 values, each the very float the
  full-row kernels compute (``uncertainty.extended_counts_per_function_of``,
  ``aces.selection_counts_of``);
- ``cdf`` and ``soft`` declare a certificate computed on bounds
  (docs/methods.md section 9), on a compact store that keeps its selection
  rows whole only (``needs_full_s0``: their class is the argmax of the
  *mean* of the S0 rows, which needs every class's probability in every
  row); on an older compact store without them they refuse in one line.
  Which certificate (``bounded`` or ``conservative``) depends on their
  option ``--compact-rule``.

Ensemble options (``--members``, ``--consensus``) are refused whatever the
method: a compact store keeps no per-member rows.

The engine asks ``compact_fields`` which store fields a method reads on a
compact store (or gets the refusal), and ``statement`` for the sidecar. No
method is named here.
"""
from __future__ import annotations

from .registry import compact_methods


def compact_fields(method, store, fields, opts=None) -> list:
    """The fields ``method`` reads on the compact ``store`` (``rows`` becomes ``compact``), or ValueError naming why not."""
    fields = list(fields)
    if "member_logprobs" in fields:
        raise ValueError(f"--method {method.name} needs per-member rows; store {store.location} is compact "
                         f"(top-{store.topk}) and keeps none")
    policy = method.on_compact(store, opts)
    if not policy.supported:
        raise ValueError(f"--method {method.name} {policy.why}; store {store.location} is compact "
                         f"(top-{store.topk}): certify the full store (exact on compact stores: "
                         f"{', '.join(compact_methods())})")
    if policy.reads is not None:
        return list(policy.reads)
    return ["compact" if f == "rows" else f for f in fields]


def statement(method, store, opts=None) -> dict:
    """The sidecar entry saying how a certificate computed from the compact ``store`` relates to the full-row one."""
    policy = method.on_compact(store, opts)
    return {"layout": "compact", "topk": store.topk, "certificate": policy.certificate, "why": policy.why}
