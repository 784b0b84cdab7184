"""The registry entries of the hard-label methods ``cohen``, ``cohen-predict`` and ``two-step``.

Their computations are in ``methods_basic`` (imported when one of them runs).
"""
from __future__ import annotations

from .registry import OVERALL_ONCE, OVERALL_TWICE, Method, confidence_once, confidence_twice, register

register(Method(
    "cohen", ".methods_basic:certify_cohen", confidence_once, section="1", overall=OVERALL_ONCE,
    summary="Cohen et al. CERTIFY: one-vs-all radius sigma * Phi^-1(pA).",
    certifies="the smoothed classifier's prediction stays the class picked on S0 within the L2 radius "
              "sigma Phi^-1(pA)"))
register(Method(
    "cohen-predict", ".methods_basic:predict_cohen", confidence_once, section="1", overall=OVERALL_ONCE,
    predict_only=True,
    summary="Cohen et al. PREDICT on S: the class, or abstain (radius 0).",
    certifies="the returned class is the smoothed classifier's prediction (radius 0; abstains otherwise)"))
register(Method(
    "two-step", ".methods_basic:certify_two_step", confidence_twice, section="2", overall=OVERALL_TWICE,
    summary="Runner-up aware radius sigma/2 (Phi^-1(pA) - Phi^-1(pB)) (Däubener et al. 2024).",
    certifies="the prediction stays the class picked on S0 within sigma/2 (Phi^-1(pA) - Phi^-1(pB)), pB bounding "
              "the runner-up found by a test on S0"))
