"""Adaptive certification CERTIFYADP replayed on stored rows (Horváth et al. 2022, ensembles Alg. 2, Thm 6.1; docs/methods.md section 6).

For a target radius r and stages n_1 < ... < n_s: cA is the top class of S0;
at stage i the first n_i rows of S give ``k_i`` = count of cA and

- certify when ``pA = CP_lower(k_i, n_i, alpha/s) > 1/2`` and ``sigma Phi^-1(pA) >= r``
  (radius ``sigma Phi^-1(pA)``, which is >= r);
- else, before the last stage, abort when
  ``sigma Phi^-1(CP_upper(k_i, n_i, beta/(s-1))) < r``;
- abstain after stage s.

Nested prefixes of one sample are sound: the Bonferroni bound over the s
stages needs no independence, so a certificate holds with probability
>= 1 - alpha, and an early abort wrongly gives up on an input that is robust
at r with probability <= beta.

Offline, the stages are clipped to the n used (the store's n, or --n-use)
and duplicates dropped; s is the number of distinct stages left, fixed
before any row is read. An input stored with fewer rows (online adaptive
sampling) that the replay would need beyond its rows abstains with outcome
``short`` (never a certificate from rows that do not exist); the meta
sidecar and the report count such inputs. ``rows_used`` is n_i of the
deciding stage (n_s after the last stage; the last completed stage for a
short input), and SampleRF = n / mean rows_used. The registry entry and
options are in ``entries_adaptive``.
"""
from __future__ import annotations

import numpy as np

from ..stats.adaptive import ABORTED, ABSTAINED, CERTIFIED, SHORT, online_decision, online_plan, plan_stages, replay  # noqa: F401
from ..stats.counts import top_k
from .kernels import class_counts
from .registry import frame


def check_options(opts, store=None):
    """ValueError without --radius or with stages that cannot be planned on the store's n, before any work."""
    if opts.radius is None:
        raise ValueError("--method adaptive needs --radius R (the target radius to certify)")
    n = store.n if store is not None else None
    if store is not None and opts.n_use is not None:
        n = int(opts.n_use)
    plan_stages(opts.stages, n if n is not None else max(opts.stages))


def certify_adaptive(block, opts):
    """One row per input: CERTIFYADP replayed on nested prefixes of S (certified w.p. >= 1 - alpha)."""
    check_options(opts)
    stages, clipped = plan_stages(opts.stages, block.n_use)
    B = len(block)
    n_i = block.n_i
    c0 = class_counts(block.argmax, 0, block.n0_use, block.m)
    cA = top_k(c0, 1)[0][:, 0]
    k = np.empty((B, len(stages)), np.int64)
    for j, nj in enumerate(stages):
        c = class_counts(block.argmax, block.n0, block.n0 + np.minimum(nj, n_i), block.m)
        k[:, j] = np.take_along_axis(c, cA[:, None], axis=1)[:, 0]
    res = replay(k, stages, n_i, block.sigma, opts.alpha, opts.beta, float(opts.radius))
    return frame(np.arange(B), predict=np.where(res["certified"], cA, -1), radius=res["radius"],
                 p_lower=res["p_lower"], p_upper=res["p_upper"], rows_used=res["rows_used"],
                 outcome=res["outcome"], stage=res["stage"], target_radius=float(opts.radius),
                 stages="+".join(map(str, stages)), stages_requested="+".join(str(int(v)) for v in opts.stages),
                 n_full=int(block.n_use))


def summary(table, opts) -> dict:
    """Run-level numbers for the meta sidecar: SampleRF = n / mean rows_used, outcomes per stage, clipping."""
    if not len(table):
        return {}
    n_full = int(table["n_full"].iloc[0])
    stages = [int(v) for v in str(table["stages"].iloc[0]).split("+")]
    mean_rows = float(table["rows_used"].mean())
    out = {"target_radius": float(opts.radius), "stages": stages, "stages_requested": [int(v) for v in opts.stages],
           "stages_clipped": stages != [int(v) for v in opts.stages], "s": len(stages), "n": n_full,
           "mean_rows_used": mean_rows, "SampleRF": n_full / mean_rows if mean_rows > 0 else float("inf"),
           "short_inputs": int((table["outcome"] == SHORT).sum())}
    for j in range(1, len(stages) + 1):
        at = table["stage"] == j
        out[f"certified_stage{j}"] = float(np.mean(at & (table["outcome"] == CERTIFIED)))
        out[f"aborted_stage{j}"] = float(np.mean(at & (table["outcome"] == ABORTED)))
    return {"adaptive": out}


# ------------------------------------------------------------------ report
def adaptive_report(df, radii) -> str:
    """The adaptive section of ``smoothcert report``: acc_cert, outcomes per stage, SampleRF, and whether stages were clipped."""
    import pandas as pd

    lines = ["Adaptive certification (CERTIFYADP): certified accuracy at the target radius, share decided per stage "
             "(ASC certified, ASA aborted; %), SampleRF = n / mean rows_used:"]
    keys = [c for c in ("target_radius", "stages", "stages_requested", "n_full", "members", "consensus") if c in df.columns]
    recs = []
    notes = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        rec = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        stages = [int(v) for v in str(rec["stages"]).split("+")]
        rec["inputs"] = len(g)
        rec["acc_cert"] = f"{100 * float(np.mean((g['correct'] == 1) & (g['predict'] >= 0))):.1f}"
        for j in range(1, len(stages) + 1):
            at = g["stage"] == j
            rec[f"ASC{j}"] = f"{100 * float(np.mean(at & (g['outcome'] == CERTIFIED))):.1f}"
            rec[f"ASA{j}"] = f"{100 * float(np.mean(at & (g['outcome'] == ABORTED))):.1f}"
        mean_rows = float(g["rows_used"].mean())
        rec["mean_rows"] = f"{mean_rows:.0f}"
        rec["SampleRF"] = f"{int(rec['n_full']) / mean_rows:.2f}" if mean_rows > 0 else "inf"
        recs.append(rec)
        if str(rec["stages"]) != str(rec["stages_requested"]):
            notes.append(f"note: stages {rec['stages_requested']} were clipped to the stored n = {rec['n_full']}: "
                         f"{rec['stages']} (s = {len(stages)})")
        short = int((g["outcome"] == SHORT).sum())
        if short:
            notes.append(f"note: {short} inputs had fewer stored rows than the replay needed (adaptive store); "
                         "they abstain (outcome 'short')")
    lines.append(pd.DataFrame(recs).drop(columns=["stages_requested"]).to_string(index=False))
    lines.extend(dict.fromkeys(notes))
    return "\n".join(lines)
