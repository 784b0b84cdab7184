"""Cohen et al. (2019) CERTIFY and PREDICT (docs/methods.md section 1).

Pure functions over per-input count vectors; vectorised over inputs.
"""
from __future__ import annotations

import numpy as np

from ..stats.bounds import cp_lower
from ..stats.confseq import cs_lower
from ..stats.hypotheses import binom_p
from ..stats.counts import top_k
from ..stats.normal import norm_ppf


def certify(counts0: np.ndarray, counts: np.ndarray, n, sigma: float, alpha: float, interval: str = "cp"):
    """CERTIFY: with prob. >= 1 - alpha, g(x + d) = predict for all ||d|| < radius (abstain: -1, 0).

    cA is chosen on the selection counts ``counts0`` only; pA is the
    Clopper-Pearson lower bound of counts[cA] in n rows. pA == 0.5 gives
    radius 0, not an abstention. Returns (predict, radius, p_lower).
    ``interval="cs"``: pA is the confidence-sequence bound instead
    (docs/methods.md section 11), and the guarantee holds for every n at once.
    """
    cA = top_k(counts0, 1)[0][:, 0]
    kA = np.take_along_axis(counts, cA[:, None], axis=1)[:, 0]
    pA = np.atleast_1d((cs_lower if interval == "cs" else cp_lower)(kA, n, alpha))
    ok = pA >= 0.5
    radius = np.where(ok, sigma * norm_ppf(np.where(ok, pA, 0.5)), 0.0)
    predict = np.where(ok, cA, -1)
    return predict.astype(np.int64), radius.astype(np.float64), pA


def predict(counts: np.ndarray, alpha: float, alternative: str = "two-sided"):
    """PREDICT: returns the top class of ``counts`` unless the binomial test of nA vs nB exceeds alpha (-1).

    With prob. >= 1 - alpha a returned class is the smoothed classifier's prediction.
    Returns (predict, p_value).
    """
    cls, vals = top_k(counts, 2)
    p = np.atleast_1d(binom_p(vals[:, 0], vals[:, 0] + vals[:, 1], alternative))
    return np.where(p <= alpha, cls[:, 0], -1).astype(np.int64), p
