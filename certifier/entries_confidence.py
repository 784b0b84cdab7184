"""The registry entries of ``cdf`` (certified confidence, docs/methods.md section 4) and ``soft`` (section 7).

Their options, their behaviour on compact stores (section 9, by
``--compact-rule``) and their report; the computations are in
``methods_confidence`` (imported when one of them runs).
"""
from __future__ import annotations

from .registry import OVERALL_ONCE, Compact, Floats, Method, Names, Option, register

# As the computations define them (a test checks that they agree): cdf's measures (cdf.MEASURES), the compact rules
# (compact_confidence.RULES) and the absolute precision of a cdf radius, found by bisection (cdf.TOL).
MEASURES = ("score", "margin")
COMPACT_RULES = ("spec", "dominated")
CDF_RADIUS_TOL = 1e-4

# Why cdf and soft refuse a compact store that does not keep its selection rows whole (after "--method NAME").
REFUSED = ("needs full softmax rows: its class is the argmax of the mean of the S0 rows, and a compact store "
           "does not know the probabilities outside each row's top-k, so the certificate could be neither exact nor "
           "provably conservative")
_PICKED = "the class is picked on the whole selection rows"
COMPACT_WHY = {
    ("cdf", "spec"): (f"bounded: {_PICKED}; a class outside an estimation row's top-k is bounded by [0, t_i] (score 0, "
                      "margin -p_(1)) and the bound of section 4 runs unchanged on these values (--compact-rule spec): "
                      "sound at the same confidence, equal to the full-row certificate where rows_bounded = 0, rarely "
                      "above it elsewhere (exact tie counting is not monotone)"),
    ("cdf", "dominated"): (f"conservative: {_PICKED}; a class outside an estimation row's top-k is bounded by [0, t_i] "
                           "(score 0, margin -p_(1)) and the cdf bound then credits no ties (--compact-rule dominated): "
                           "never above the full-row certificate, equal to it where rows_bounded = 0"),
    ("soft", "spec"): (f"bounded: {_PICKED}; values outside a row's top-k are bounded by [0, t_i] (the lower bound of "
                       "the class from 0, the upper bounds of the others from t_i) and section 7 runs unchanged on "
                       "them, bernstein with their sample variances (--compact-rule spec): sound at the same "
                       "confidence, equal to the full-row certificate when k = m, rarely above it otherwise (the "
                       "sample variance is not monotone)"),
    ("soft", "dominated"): (f"conservative: {_PICKED}; values outside a row's top-k are bounded by [0, t_i] (the lower "
                            "bound of the class from 0, the upper bounds of the others from t_i), bernstein with a "
                            "variance bound over every column the top-k allow (--compact-rule dominated): never above "
                            "the full-row certificate, equal to it where rows_bounded = 0 (always when k = m)"),
}


def _compact_rule(v):
    if v not in COMPACT_RULES:
        raise ValueError(f"--compact-rule must be one of {', '.join(COMPACT_RULES)}, got {v!r}")


# One declaration for both methods (one option name means one thing).
COMPACT_RULE = Option("compact_rule", "spec", "on a compact store with whole selection rows (docs/methods.md "
                      "section 9): spec (sections 4 and 7 unchanged on the bounded values) or dominated (never above "
                      "the full store's certificate); ignored on a full store.", validate=_compact_rule,
                      metavar="spec|dominated", bad="x")


def on_compact(method: str, radius_tol: float = 0.0) -> Compact:
    """The compact-store entry of ``cdf``/``soft``: section 9 on a store keeping its selection rows whole, the
    certificate by ``--compact-rule``; refused (as on every older compact store) without them."""
    labels = {"spec": "bounded", "dominated": "conservative"}
    return Compact(True, COMPACT_WHY[(method, "spec")], reads=("argmax", "compact", "rows0"), certificate="bounded",
                   radius_tol=radius_tol, needs_full_s0=True, without_full_s0=REFUSED, option="compact_rule",
                   choices=tuple((r, labels[r], COMPACT_WHY[(method, r)]) for r in COMPACT_RULES))


def _at_least_one_K(v):
    if v < 1:
        raise ValueError(f"--K must be at least 1, got {v}")


BOUNDS = Names(("cdf", "hoeffding", "bernstein"))  # one parser for both methods' --bound: one error message
CDF_OPTIONS = (
    Option("measure", list(MEASURES), "score and/or margin.", parse=Names(MEASURES), bad="x"),
    Option("bound", [], "cdf,hoeffding [default both].", parse=BOUNDS, bad="x"),
    Option("threshold", [], "confidence thresholds (default: the measure's cutoff, 0.5 or 0).", parse=Floats(),
           bad="x"),
    Option("K", 10_000, "number of CDF thresholds (capped at n).", type=int, flag="--K", validate=_at_least_one_K,
           bad="0"),
    COMPACT_RULE,
)

register(Method("cdf", ".methods_confidence:certify_cdf", ".methods_confidence:confidence_cdf",
                fields=("argmax", "rows"), section="4",
                summary="Certified confidence (Kumar et al.): radius within which the smoothed score/margin of the "
                        "S0-mean argmax stays >= threshold (CDF or Hoeffding bound).",
                certifies="the smoothed score or margin of the class picked on S0 stays >= the threshold within the "
                          "radius (Kumar et al. 2020)",
                overall="1 - alpha per (input, measure, bound), all thresholds at once",
                options=CDF_OPTIONS, check=".methods_confidence:check_cdf", settings=("measure", "bound", "threshold"),
                example={"threshold": [0.5, 0.8], "K": 100},
                compact=on_compact("cdf", radius_tol=CDF_RADIUS_TOL),
                report=".report_confidence:format_confidence_report", plot=".report_confidence:plot_confidence"))
register(Method("soft", ".methods_confidence:certify_soft", ".methods_confidence:confidence_soft",
                fields=("argmax", "rows"), section="7",
                summary="Soft-classifier radius sigma/2 (Phi^-1(lower_c) - Phi^-1(pB)), every other class bounded "
                        "(Bonferroni); bernstein (default) or hoeffding mean bounds.",
                certifies="the argmax of the smoothed soft classifier stays the class picked on S0 within "
                          "sigma/2 (Phi^-1(lower_c) - Phi^-1(pB))",
                overall=OVERALL_ONCE,
                options=(Option("bound", [], "bernstein|hoeffding [default bernstein].", parse=BOUNDS, bad="x"),
                         COMPACT_RULE),
                check=".methods_confidence:check_soft", settings=("bound",),
                example={"bound": ["bernstein", "hoeffding"]}, compact=on_compact("soft")))
