"""The registry entries of ``aces`` and ``aces-predict`` (Horváth et al. 2022, ACES; docs/methods.md section 5).

Their computations are in ``aces`` (imported when one of them runs); the
confidence statements, worked out in that module's docstring, are here.
"""
from __future__ import annotations

from .registry import Floats, Method, Option, exact_on_compact, register


def confidence_certify(opts):
    """Overall confidence of ACES CERTIFY: 1 - alpha (two bounds on S at alpha/2, union bound)."""
    return 1 - opts.alpha, (f"1 - alpha = {1 - opts.alpha:g} (ACES CERTIFY: selection bound pS and class bound pA on S "
                            f"at alpha/2 each, union bound; --joint-alpha changes nothing)")


def confidence_predict(opts):
    """Overall confidence of ACES PREDICT: 1 - alpha (binomial tests on S at alpha/2, at most two per branch)."""
    return 1 - opts.alpha, (f"1 - alpha = {1 - opts.alpha:g} (ACES PREDICT: binomial tests on S at alpha/2, at most two "
                            f"per branch; --joint-alpha changes nothing)")


THETA = Option("theta", [], "normalised-entropy thresholds in [0, 1]: LIST or start:stop:count [default 0, 0.01, "
               "..., 1].", parse=Floats(), bad="x")
_ON_COMPACT = "exact: the selection's normalised entropy is the stored per-row entropy"

register(Method("aces", ".aces:certify_aces", confidence_certify, fields=("argmax", "rows"), needs_core_predict=True,
                section="5",
                summary="ACES CERTIFY (Horváth et al. 2022, ACES Alg. 1): entropy selection between the smoothed model and the core model, "
                        "one row per (input, theta in [0, 1]).",
                certifies="per theta: the entropy-selected classifier F_ACES returns the class within the radius "
                          "(selection 1), or the core model's clean prediction (selection 0, radius 0)",
                overall="1 - alpha", options=(THETA,), check=".aces:check_options", settings=("theta",),
                example={"theta": [0.1, 0.5, 1.0]},
                compact=exact_on_compact(f"{_ON_COMPACT} (bit-identical to the full-row kernel's) times 1/ln(m); "
                                         f"hard labels from the stored argmax"),
                report=".report_aces:aces_report", plot=".report_aces:pareto_plot",
                report_rows=("aces", "aces-predict"),
                notes=("selection 1: certified model, radius min(R_select, R_certify); 0: core model, radius 0; "
                       "-1: core and smoothed model agree (radius 0) or abstain",)))
register(Method("aces-predict", ".aces:predict_aces", confidence_predict, fields=("argmax", "rows"),
                needs_core_predict=True, section="5", predict_only=True,
                summary="ACES PREDICT (Horváth et al. 2022, ACES Alg. 4) on S: the class for natural accuracy (NAC), radius 0.",
                certifies="per theta: the returned class is F_ACES(x) (radius 0; natural accuracy NAC)",
                overall="1 - alpha", options=(THETA,), check=".aces:check_options", settings=("theta",),
                example={"theta": [0.1, 0.5, 1.0]},
                compact=exact_on_compact(f"{_ON_COMPACT} times 1/ln(m); hard labels from the stored argmax")))
