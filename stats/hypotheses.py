"""Exact binomial tests of hypotheses (vectorised over inputs).

``binom_p(k1, k1 + k2)`` is the p-value of k1 successes in k1 + k2 trials against
p = 0.5, as docs/methods.md section 0 pins it: two-sided by default (what Cohen
et al.'s reference code computes), one-sided ``greater`` on request.
"""
from __future__ import annotations

import numpy as np

ALTERNATIVES = ("two-sided", "greater")


def binom_half_cdf_sf():
    """``(cdf, sf)``: the ufuncs ``scipy.stats.binom`` evaluates for ``cdf(k, n, p)`` and ``sf(k, n, p)`` at
    0 <= k < n, taken from ``scipy.special`` (importing ``scipy.stats`` costs about half a second per process).

    A scipy without them gets ``scipy.stats.binom``'s own methods, which give the same values at those k.
    """
    try:
        from scipy.special._ufuncs import _binom_cdf, _binom_sf
    except ImportError:  # pragma: no cover - other scipy versions
        from scipy.stats import binom

        return binom.cdf, binom.sf
    return _binom_cdf, _binom_sf


def binom_p(k, n, alternative: str = "two-sided"):
    """P-value of ``k`` successes in ``n`` trials against p = 0.5; 1 when n = 0.

    two-sided equals ``scipy.stats.binomtest(k, n).pvalue``; greater equals
    ``binomtest(k, n, alternative="greater").pvalue``.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"binomial test alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    k, n = np.broadcast_arrays(k, n)
    out = np.ones(k.shape, dtype=np.float64)
    pos = n > 0
    kk, nn = k[pos], n[pos]
    cdf, sf = binom_half_cdf_sf()
    if alternative == "greater":
        # P(X >= k) = sf(k - 1); binom.sf is 1 below its support (k = 0)
        some = kk > 0
        p = np.ones(kk.shape, dtype=np.float64)
        p[some] = sf(kk[some] - 1.0, nn[some], 0.5)
        out[pos] = p
    else:
        # For p = 0.5 the distribution is symmetric, so binomtest's two-sided
        # p-value is 2 * P(X <= min(k, n - k)) (capped at 1), and exactly 1
        # when k == n / 2.
        lo = np.minimum(kk, nn - kk)
        p = 2.0 * cdf(lo.astype(np.float64), nn, 0.5)  # lo <= n / 2 < n: inside the support
        p = np.where(2 * kk == nn, 1.0, p)
        out[pos] = np.minimum(p, 1.0)
    return out if out.ndim else float(out)
