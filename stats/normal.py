"""The standard normal quantile Phi^-1 of the radius formulas, from ``scipy.special`` (pure, vectorised).

``scipy.stats.norm.ppf`` evaluates ``scipy.special.ndtri``; importing
``scipy.stats`` for it costs about half a second per process, which a
command line that certifies a store in a second pays on every call.
"""
from __future__ import annotations

import numpy as np
from scipy import special


def norm_ppf(p):
    """Phi^-1(p), bit for bit ``scipy.stats.norm.ppf(p)``: -inf at 0, inf at 1, NaN outside [0, 1].

    ``norm.ppf`` computes ``ndtri(p) * 1.0 + 0.0`` into a float64 array
    prefilled with NaN, which turns ``-0.0`` into ``0.0`` and leaves every
    other value as ``ndtri`` gives it (in the input's precision).
    """
    p = np.asarray(p)
    out = np.asarray(special.ndtri(p), dtype=np.float64) + 0.0
    out = np.where((p >= 0) & (p <= 1), out, np.nan)
    return out if out.ndim else out[()]
