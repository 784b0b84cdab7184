"""The computations of the hard-label methods ``cohen``, ``cohen-predict`` and ``two-step`` over a block.

Their registry entries are in ``entries_basic``.
"""
from __future__ import annotations

import numpy as np

from . import cohen, two_step
from .kernels import class_counts
from .prefixes import s0_opts
from .registry import frame, level


def _counts(block):
    c0 = class_counts(block.argmax, 0, block.n0_use, block.m)
    c = class_counts(block.argmax, block.n0, block.n0 + block.n_i, block.m)
    return c0, c


def certify_cohen(block, opts):
    """One row per input: the class picked on S0 and radius sigma Phi^-1(pA) w.p. >= 1 - alpha (else -1, 0)."""
    c0, c = _counts(block)
    pred, rad, pA = cohen.certify(c0, c, block.n_i, block.sigma, opts.alpha, opts.interval)
    return frame(np.arange(len(block)), predict=pred, radius=rad, p_lower=pA)


def predict_cohen(block, opts):
    """One row per input: the smoothed classifier's class w.p. >= 1 - alpha (else -1); radius 0."""
    c = class_counts(block.argmax, block.n0, block.n0 + block.n_i, block.m)
    pred, _ = cohen.predict(c, opts.alpha, opts.binom_test)
    return frame(np.arange(len(block)), predict=pred, radius=0.0)


def certify_two_step(block, opts):
    """One row per input: w.p. >= 1 - 2 alpha (1 - alpha with --joint-alpha) the S0 class within radius
    sigma/2 (Phi^-1(pA) - Phi^-1(pB)), pB bounding the runner-up its test on S0 found (else -1, 0)."""
    c0, c = _counts(block)
    a = level(opts, spends_twice=True)  # on S; alpha/L of a --n-use list under cp (certifier/prefixes.py)
    cA, cB = two_step.predict(c0, level(s0_opts(opts), spends_twice=True), opts.binom_test)
    pred, rad, pA, pB = two_step.certify(c, cA, cB, block.n_i, block.sigma, a, opts.interval)
    pA, pB = np.where(cA >= 0, pA, np.nan), np.where(cA >= 0, pB, np.nan)  # no bounds when PREDICT abstained
    return frame(np.arange(len(block)), predict=pred, radius=rad, runner_up=cB, p_lower=pA, p_upper=pB)

