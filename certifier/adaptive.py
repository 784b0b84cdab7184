"""Adaptive certification CERTIFYADP replayed on stored rows (seed 003 Alg. 2, Thm 6.1; CERTIFICATES.md section 6).

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
short input), and SampleRF = n / mean rows_used.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .bounds import cp_lower, cp_upper
from .kernels import class_counts, top_k
from .registry import Method, frame, register

CERTIFIED, ABORTED, ABSTAINED, SHORT = "certified", "aborted", "abstained", "short"


def plan_stages(requested, n: int):
    """``(stages, clipped)``: requested stage sizes clipped to n with duplicates dropped; ValueError unless strictly increasing."""
    req = [int(v) for v in requested]
    if not req:
        raise ValueError("--stages: give at least one stage size")
    if any(v < 1 for v in req):
        raise ValueError(f"--stages must be positive integers, got {req}")
    if any(b <= a for a, b in zip(req, req[1:])):
        raise ValueError(f"--stages must be strictly increasing (n_1 < ... < n_s), got {','.join(map(str, req))}")
    used = sorted({min(v, int(n)) for v in req})
    return used, used != req


def replay(k_prefix, stages, n_avail, sigma: float, alpha: float, beta: float, r: float):
    """CERTIFYADP on nested prefixes: per input, the first deciding stage of ``k_prefix`` (B, s) counts of cA.

    Guarantee: an input is certified (at the first stage i with
    CP_lower(k_i, n_i, alpha/s) > 1/2 and sigma Phi^-1 of it >= r) only if no
    earlier stage aborted, and aborted (stage i < s) only when
    sigma Phi^-1(CP_upper(k_i, n_i, beta/(s-1))) < r; stages beyond an input's
    ``n_avail`` rows are never used (outcome short). Returns a dict of (B,)
    arrays: certified (bool), radius, rows_used, outcome (str), stage
    (1-based deciding stage, 0 for short before stage 1), p_lower, p_upper.
    """
    k = np.asarray(k_prefix, dtype=np.int64)
    B, s = k.shape
    st = np.asarray(stages, dtype=np.int64)
    n_avail = np.broadcast_to(np.asarray(n_avail, np.int64), (B,))
    nn = np.broadcast_to(st[None, :], (B, s))
    pL = np.atleast_2d(cp_lower(k, nn, alpha / s))
    with np.errstate(invalid="ignore", divide="ignore"):
        rL = sigma * norm.ppf(pL)
    cert = (pL > 0.5) & (rL >= r)
    if s > 1:
        pU = np.atleast_2d(cp_upper(k, nn, beta / (s - 1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            abort = sigma * norm.ppf(pU) < r
        abort[:, s - 1] = False
    else:
        pU = np.full((B, s), np.nan)
        abort = np.zeros((B, s), bool)
    avail = nn <= n_avail[:, None]
    short = ~avail
    decide = short | cert | abort
    any_dec = decide.any(axis=1)
    j = np.where(any_dec, np.argmax(decide, axis=1), s - 1)
    rows = np.arange(B)
    is_short = any_dec & short[rows, j]
    is_cert = any_dec & ~is_short & cert[rows, j]
    is_abort = any_dec & ~is_short & ~is_cert & abort[rows, j]
    outcome = np.full(B, ABSTAINED, dtype=object)
    outcome[is_cert] = CERTIFIED
    outcome[is_abort] = ABORTED
    outcome[is_short] = SHORT
    prev = np.concatenate([[0], st])[j]  # rows of the last completed stage (for short inputs)
    rows_used = np.where(is_short, prev, st[j])
    stage = np.where(is_short, j, j + 1)
    radius = np.where(is_cert, rL[rows, j], 0.0)
    jj = np.maximum(np.where(is_short, j - 1, j), 0)
    have = ~(is_short & (j == 0))
    return {"certified": is_cert, "radius": radius.astype(np.float64), "rows_used": rows_used.astype(np.int64),
            "outcome": outcome, "stage": stage.astype(np.int64),
            "p_lower": np.where(have, pL[rows, jj], np.nan), "p_upper": np.where(have, pU[rows, jj], np.nan)}


def online_plan(radius, stages, alpha: float, beta: float, n: int) -> dict:
    """The stopping rule of an online adaptive sampling run, validated: target radius, stages clipped to n, alpha, beta.

    Guarantee: the returned stages are what ``certify --method adaptive`` on
    the resulting store (same radius, stages, alpha, beta) replays, so its
    decisions are exactly the sampler's.
    """
    radius = float(radius)
    if not (radius >= 0 and np.isfinite(radius)):
        raise ValueError(f"--adaptive-radius must be a finite number >= 0, got {radius}")
    if not (0 < alpha < 0.5):
        raise ValueError(f"--adaptive-alpha must be in (0, 0.5), got {alpha}")
    if not (0 < beta < 1):
        raise ValueError(f"--adaptive-beta must be in (0, 1), got {beta}")
    used, _ = plan_stages(stages, n)
    return {"radius": radius, "stages": used, "stages_requested": [int(v) for v in stages],
            "alpha": float(alpha), "beta": float(beta)}


def online_decision(k_seen, stages, sigma: float, alpha: float, beta: float, r: float):
    """After the first ``len(k_seen)`` stages (k_seen: counts of cA in each prefix): the outcome, or None to sample on.

    Guarantee: it returns exactly the outcome ``replay`` gives for an input
    whose stored rows end at the last stage seen (the same code decides).
    """
    j = len(k_seen)
    k = np.zeros((1, len(stages)), np.int64)
    k[0, :j] = k_seen
    res = replay(k, stages, int(stages[j - 1]), sigma, alpha, beta, r)
    out = res["outcome"][0]
    return None if out == SHORT else out


def _check(opts, store=None):
    if opts.radius is None:
        raise ValueError("--method adaptive needs --radius R (the target radius to certify)")
    n = store.n if store is not None else None
    if store is not None and opts.n_use is not None:
        n = int(opts.n_use)
    plan_stages(opts.stages, n if n is not None else max(opts.stages))


def _adaptive(block, opts):
    _check(opts)
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


_adaptive.check_options = _check


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


def _confidence(opts):
    return 1 - opts.alpha, (f"1 - alpha = {1 - opts.alpha:g} (CERTIFYADP: each of s stages bounds at alpha/s, Bonferroni; "
                            f"an early abort is wrong with probability <= beta = {opts.beta:g})")


register(Method("adaptive", _adaptive, _confidence, fields=("argmax",), variable_rows=True, extra_summary=summary,
                summary="CERTIFYADP (seed 003 Alg. 2): certify a target --radius on nested stages of S, abort early "
                        "when the upper bound rules it out; rows_used per input, SampleRF in the report."))


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


def _register_report():
    from .report import EXTRA_REPORTS

    EXTRA_REPORTS["adaptive"] = adaptive_report


_register_report()
