"""The hard-label methods ``cohen``, ``cohen-predict`` and ``two-step`` as registry entries."""
from __future__ import annotations

import numpy as np

from . import cohen, two_step
from .kernels import class_counts
from .prefixes import s0_opts
from .registry import OVERALL_ONCE, OVERALL_TWICE, Method, confidence_once, confidence_twice, frame, level, register


def _counts(block):
    c0 = class_counts(block.argmax, 0, block.n0_use, block.m)
    c = class_counts(block.argmax, block.n0, block.n0 + block.n_i, block.m)
    return c0, c


def _cohen(block, opts):
    c0, c = _counts(block)
    pred, rad, pA = cohen.certify(c0, c, block.n_i, block.sigma, opts.alpha, opts.interval)
    return frame(np.arange(len(block)), predict=pred, radius=rad, p_lower=pA)


def _cohen_predict(block, opts):
    c = class_counts(block.argmax, block.n0, block.n0 + block.n_i, block.m)
    pred, _ = cohen.predict(c, opts.alpha, opts.binom_test)
    return frame(np.arange(len(block)), predict=pred, radius=0.0)


def _two_step(block, opts):
    c0, c = _counts(block)
    a = level(opts, spends_twice=True)  # on S; alpha/L of a --n-use list under cp (certifier/prefixes.py)
    cA, cB = two_step.predict(c0, level(s0_opts(opts), spends_twice=True), opts.binom_test)
    pred, rad, pA, pB = two_step.certify(c, cA, cB, block.n_i, block.sigma, a, opts.interval)
    pA, pB = np.where(cA >= 0, pA, np.nan), np.where(cA >= 0, pB, np.nan)  # no bounds when PREDICT abstained
    return frame(np.arange(len(block)), predict=pred, radius=rad, runner_up=cB, p_lower=pA, p_upper=pB)


register(Method(
    "cohen", _cohen, confidence_once, section="1", overall=OVERALL_ONCE,
    summary="Cohen et al. CERTIFY: one-vs-all radius sigma * Phi^-1(pA).",
    certifies="the smoothed classifier's prediction stays the class picked on S0 within the L2 radius "
              "sigma Phi^-1(pA)"))
register(Method(
    "cohen-predict", _cohen_predict, confidence_once, section="1", overall=OVERALL_ONCE, predict_only=True,
    summary="Cohen et al. PREDICT on S: the class, or abstain (radius 0).",
    certifies="the returned class is the smoothed classifier's prediction (radius 0; abstains otherwise)"))
register(Method(
    "two-step", _two_step, confidence_twice, section="2", overall=OVERALL_TWICE,
    summary="Runner-up aware radius sigma/2 (Phi^-1(pA) - Phi^-1(pB)) (Däubener et al. 2024).",
    certifies="the prediction stays the class picked on S0 within sigma/2 (Phi^-1(pA) - Phi^-1(pB)), pB bounding "
              "the runner-up found by a test on S0"))
