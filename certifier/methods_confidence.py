"""The computations of ``cdf`` (certified confidence, docs/methods.md section 4) and ``soft`` (section 7).

Both pick the class c on S0 only (argmax of the mean S0 row) and estimate on S
only. Picking a class is not a test and spends no alpha, so:

- ``cdf``: 1 - alpha for each (input, measure, bound). One bound holds for
  every radius and every threshold at once (the one-sided DKW band covers all
  s; Hoeffding is one event on the mean), so all thresholds of a row group
  share that one 1 - alpha.
- ``soft``: 1 - alpha: alpha/2 for the lower bound on E[p_c] plus (m - 1) upper
  bounds at alpha/(2(m-1)) each (Bonferroni), alpha/2 + (m-1) alpha/(2(m-1)) = alpha.

``--joint-alpha`` changes nothing here: neither method spends alpha twice.

On a compact store that keeps its selection rows whole both run on bounds of
the values outside each row's top K (``compact_confidence``, docs/methods.md
section 9), by ``--compact-rule``: ``spec`` (default; certificate
``bounded``) or ``dominated`` (``conservative``); on an older compact store
they refuse in one line. Their registry entries are in ``entries_confidence``.
"""
from __future__ import annotations

import numpy as np

from . import cdf as C
from . import compact_confidence as CC
from . import soft as S
from .registry import frame, level


def cdf_settings(opts):
    """Validated (measures, bounds, thresholds per measure) of a cdf run; ValueError on bad options."""
    measures = [C.get_measure(m) for m in (opts.measure or list(C.MEASURES))]
    bounds = list(opts.bound) if opts.bound else list(C.BOUNDS)
    for b in bounds:
        if b not in C.BOUNDS:
            raise ValueError(f"--bound: {b!r} is not one of {', '.join(C.BOUNDS)} for --method cdf")
    thr = {ms.name: C.check_thresholds(ms, opts.threshold if len(opts.threshold) else [ms.cutoff]) for ms in measures}
    return measures, bounds, thr


def soft_settings(opts):
    """Validated bounds of a soft run (default bernstein); ValueError on bad options."""
    bounds = list(opts.bound) if opts.bound else ["bernstein"]
    for b in bounds:
        if b not in S.SOFT_BOUNDS:
            raise ValueError(f"--bound: {b!r} is not one of {', '.join(S.SOFT_BOUNDS)} for --method soft")
    return bounds


def _compact(block) -> bool:
    """A block of a compact store with whole selection rows (section 9): its values come from compact_confidence."""
    return block.rows is None and block.compact is not None


def certify_cdf(block, opts):
    """One row per (input, measure, bound, threshold): w.p. >= 1 - alpha, E[z_c(x + d)] >= threshold for ||d|| <= radius.

    predict = c (argmax of the S0 mean) when lower0 >= threshold, else -1
    (radius 0). Below the measure's cutoff a certificate bounds the
    confidence of c but does not imply that c stays the smoothed argmax.
    """
    settings = cdf_settings(opts)
    alpha = level(opts, spends_twice=False)
    if _compact(block):
        cls, values, terms = CC.cdf_values(block, opts, alpha)
    else:
        cls = C.predicted_class(block.s0_rows())

        def values(measure):
            return C.measure_values(block.rows, cls, measure.name, start=block.n0, stop=block.n0 + block.n_i), None

        def terms(z_sorted, bound, measure, bounded):
            return C.input_terms(z_sorted, bound, measure, opts.K, alpha)

    return cdf_table(cls, settings, block.n_i, block.sigma, values, terms, rows_bounded=_compact(block))


def cdf_table(cls, settings, n_i, sigma: float, values, terms, rows_bounded: bool = False):
    """The cdf rows of a block, input by input (then measure, bound, threshold): ``predict = cls`` and the radius
    of ``cdf.certified_radii`` where the lower bound at radius 0 reaches the threshold, else -1 and 0.

    ``values(measure)`` -> (values of the rows of S (B, R), rows_bounded (B,)
    or None); ``terms(sorted values of input b, bound, measure,
    rows_bounded[b] or None)`` -> the bound's ``(w, u)``. With
    ``rows_bounded`` the table has that column too.
    """
    measures, bounds, thr = settings
    B = len(cls)
    names = ("_pos", "measure", "bound", "threshold", "predict", "radius", "lower0") + \
        (("rows_bounded",) if rows_bounded else ()) + ("_order",)
    cols = {k: [] for k in names}
    n_set = len(bounds) * max(len(t) for t in thr.values())
    for mi, ms in enumerate(measures):
        t = thr[ms.name]
        z, bounded = values(ms)
        z.sort(axis=1)
        for b in range(B):
            zs = z[b, : n_i[b]]
            for bi, bound in enumerate(bounds):
                w, u = terms(zs, bound, ms, None if bounded is None else bounded[b])
                rad, lower0 = C.certified_radii(ms.a, w, u, sigma, t)
                ok = lower0 >= t
                T = t.size
                cols["_pos"].append(np.full(T, b))
                cols["measure"].append([ms.name] * T)
                cols["bound"].append([bound] * T)
                cols["threshold"].append(t)
                cols["predict"].append(np.where(ok, cls[b], -1))
                cols["radius"].append(np.where(ok, rad, 0.0))
                cols["lower0"].append(np.full(T, lower0))
                if rows_bounded:
                    cols["rows_bounded"].append(np.full(T, bounded[b], dtype=np.int64))
                cols["_order"].append((b * len(measures) + mi) * n_set + bi * T + np.arange(T))
    if not cols["_pos"]:
        empty = dict(measure=np.zeros(0, object), bound=np.zeros(0, object), threshold=np.zeros(0),
                     predict=np.zeros(0, np.int64), radius=np.zeros(0), lower0=np.zeros(0))
        return frame(np.zeros(0, np.int64), **empty, **({"rows_bounded": np.zeros(0, np.int64)} if rows_bounded else {}))
    cat = {k: np.concatenate([np.asarray(v) for v in vs]) for k, vs in cols.items()}
    order = np.argsort(cat.pop("_order"), kind="stable")
    pos = cat.pop("_pos")[order]
    return frame(pos, **{k: v[order] for k, v in cat.items()})


def certify_soft(block, opts):
    """One row per (input, bound): w.p. >= 1 - alpha, c = argmax E[p(x + d)] for ||d|| < radius (else -1, 0)."""
    bounds = soft_settings(opts)
    n_i = block.n_i
    if _compact(block):
        cls, mean, var, extra = CC.soft_values(block, opts)
    else:
        cls = C.predicted_class(block.s0_rows())
        mean, var = S.mean_var(block.rows, block.n0, block.n0 + n_i)

        def extra(bound):
            return {}

    parts = []
    for bound in bounds:
        pred, rad, pl, pu = S.soft_certify(mean, var, n_i, cls, block.sigma, opts.alpha, bound)
        parts.append(frame(np.arange(len(block)), bound=bound, predict=pred, radius=rad, p_lower=pl, p_upper=pu,
                           **extra(bound)))
    import pandas as pd

    df = pd.concat(parts, ignore_index=True)
    return df.sort_values("_pos", kind="mergesort").reset_index(drop=True)


def confidence_cdf(opts):
    """Overall confidence of ``cdf`` (validates the options first, so bad ones fail before any work)."""
    cdf_settings(opts)
    a = opts.alpha
    return 1 - a, (f"1 - alpha = {1 - a:g} per (input, measure, bound), all thresholds and radii at once "
                   f"(class picked on S0: no alpha spent; one DKW band / one Hoeffding bound on S at alpha)")


def confidence_soft(opts):
    """Overall confidence of ``soft`` (validates the options first)."""
    soft_settings(opts)
    a = opts.alpha
    return 1 - a, (f"1 - alpha = {1 - a:g} (class picked on S0; on S, lower bound on E[p_c] at alpha/2 and "
                   f"upper bounds on every other class at alpha/(2(m-1)) each: Bonferroni sums to alpha)")


def check_cdf(opts, store=None):
    """ValueError on bad cdf options, before any row is read."""
    cdf_settings(opts)


def check_soft(opts, store=None):
    """ValueError on bad soft options, before any row is read."""
    soft_settings(opts)
