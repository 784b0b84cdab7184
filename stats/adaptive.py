"""The stopping rule of adaptive certification (CERTIFYADP), shared by the offline replay and the online sampler.

Horvath et al., "Boosting Randomized Smoothing with Variance Reduced
Classifiers" (ICLR 2022, arXiv 2106.06946), Theorem 6.1: for a target radius
r and stages n_1 < ... < n_s, certify at the first stage whose
Clopper-Pearson lower bound at alpha/s gives a radius >= r; abort early when
the upper bound at beta/(s-1) cannot reach r. Nested prefixes of one sample
are sound (the Bonferroni bound needs no independence).
"""
from __future__ import annotations

import numpy as np

from .bounds import cp_lower, cp_upper
from .normal import norm_ppf

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
        rL = sigma * norm_ppf(pL)
    cert = (pL > 0.5) & (rL >= r)
    if s > 1:
        pU = np.atleast_2d(cp_upper(k, nn, beta / (s - 1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            abort = sigma * norm_ppf(pU) < r
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
