"""Runner-up aware two-step certification (Däubener et al. 2024, Alg. 1-2; docs/methods.md section 2).

PREDICT picks the top class and, if it is significantly ahead of the
third, the runner-up, on the selection counts; CERTIFY bounds both on the
estimation counts. Pure functions, vectorised over inputs.
"""
from __future__ import annotations

import numpy as np

from ..stats.bounds import cp_lower, cp_upper
from ..stats.confseq import cs_lower, cs_upper
from ..stats.hypotheses import binom_p
from ..stats.counts import top_k
from ..stats.normal import norm_ppf

NONE = -1


def predict(counts0: np.ndarray, alpha: float, alternative: str = "two-sided"):
    """PREDICT on selection counts: (cA or -1 on abstain, cB or -1 for NONE).

    Abstains when binom_p(nA, nA + nB) > alpha; keeps the runner-up cB only
    when binom_p(nB, nB + nC) <= alpha. The runner-up is reported on abstain too.
    """
    cls, vals = top_k(counts0, 3)
    nA, nB, nC = vals[:, 0], vals[:, 1], vals[:, 2]
    p_top = np.atleast_1d(binom_p(nA, nA + nB, alternative))
    p_run = np.atleast_1d(binom_p(nB, nB + nC, alternative))
    cA = np.where(p_top <= alpha, cls[:, 0], NONE)
    cB = np.where(p_run <= alpha, cls[:, 1], NONE)
    return cA.astype(np.int64), cB.astype(np.int64)


def bounds(kA, kB, has_b, n, alpha: float, interval: str = "cp"):
    """(pA, pB) on the estimation block, each side at alpha/2 (or alpha when one bound implies the other).

    With a runner-up whose count leaves no other mass (kA + kB == n, the
    integer form of Däubener et al.'s "pA + pB > 1" case) and without a runner-up,
    pA = CP_lower(kA, n, alpha) and pB = 1 - pA. ``interval="cs"``: the
    confidence-sequence bounds at the same levels (docs/methods.md section 11).
    """
    kA = np.asarray(kA)
    kB = np.asarray(kB)
    n = np.broadcast_to(np.asarray(n), kA.shape)
    split = has_b & (kA + kB != n)
    lower, upper = (cs_lower, cs_upper) if interval == "cs" else (cp_lower, cp_upper)
    pA_full = np.atleast_1d(lower(kA, n, alpha))
    pA_half = np.atleast_1d(lower(kA, n, alpha / 2))
    pB_half = np.atleast_1d(upper(kB, n, alpha / 2))
    pA = np.where(split, pA_half, pA_full)
    pB = np.where(split, pB_half, 1.0 - pA_full)
    return pA, pB


def radius_from_bounds(pA, pB, sigma: float):
    """sigma/2 (Phi^-1(pA) - Phi^-1(pB)); NaN (both bounds degenerate) counts as no radius."""
    with np.errstate(invalid="ignore"):
        r = 0.5 * sigma * (norm_ppf(pA) - norm_ppf(pB))
    return np.where(np.isnan(r), -np.inf, r)


def certify(counts: np.ndarray, cA, cB, n, sigma: float, alpha: float, interval: str = "cp"):
    """CERTIFY: with prob. >= 1 - alpha (given PREDICT's classes), g(x + d) = cA for ||d|| < radius.

    Returns (predict, radius, pA, pB); abstains (-1, 0) when PREDICT abstained
    or the radius is not positive.
    """
    cA = np.asarray(cA)
    cB = np.asarray(cB)
    has_a = cA >= 0
    has_b = cB >= 0
    kA = np.where(has_a, np.take_along_axis(counts, np.maximum(cA, 0)[:, None], axis=1)[:, 0], 0)
    kB = np.where(has_b, np.take_along_axis(counts, np.maximum(cB, 0)[:, None], axis=1)[:, 0], 0)
    pA, pB = bounds(kA, kB, has_b, n, alpha, interval)
    r = radius_from_bounds(pA, pB, sigma)
    ok = has_a & (r > 0)
    return np.where(ok, cA, -1).astype(np.int64), np.where(ok, r, 0.0), pA, pB
