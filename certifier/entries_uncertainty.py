"""The registry entry of ``--method uncertainty`` (docs/methods.md section 3): its options and report.

The computation is in ``methods_uncertainty`` (imported when it runs).
"""
from __future__ import annotations

import math
from pathlib import Path

from .registry import OVERALL_TWICE, Floats, Method, Names, Option, confidence_twice, exact_on_compact, register

# The names the options take, as certifier/uncertainty.py defines them (a test checks that they agree).
FUNCTIONS = ("entropy", "confidence", "margin")
GUARANTEES = ("cc", "ncl", "ncl-strict")

OPTIONS = (
    Option("uncertainty", ["entropy"], "comma list of entropy, confidence, margin.", parse=Names(FUNCTIONS),
           bad="x"),
    Option("theta", [], "LIST or start:stop:count (write negatives as --theta=-0.5,inf); rows with u >= theta are "
           "labelled V; default inf alone (plain labels, = two-step); add inf to get the reference R in the same "
           "table, e.g. --theta=0:2.3:1000,inf.", parse=Floats(), bad="x"),
    Option("theta_from", None, "also certify at the thetas of CALIB.json (written by 'smoothcert calibrate --json') "
           "for each --uncertainty function; warns when they were calibrated on STORE itself (post hoc).",
           type=Path, field=False, apply=".calibrate:apply_theta_from", bad="does-not-exist.json"),
    Option("guarantee", list(GUARANTEES), "cc (R_CC: same label, low uncertainty), ncl (Däubener et "
           "al.'s R_NCL: the merged outcome 'cA or V' keeps more mass than any single other class; NOT that the "
           "prediction stays in {cA, V}: with P = (cA .5, V .3, cB .2), R_NCL = 0.84 sigma yet g(x+d) = cB is "
           "possible at 0.8 sigma), ncl-strict (a smaller radius within which the prediction provably stays in "
           "{cA, V}).", parse=Names(GUARANTEES), bad="x"),
    Option("theta_by_uncertainty", None, "per-function thetas, e.g. from --theta-from CALIB.json", cli=False),
)

register(Method(
    "uncertainty", ".methods_uncertainty:certify_uncertainty", confidence_twice, fields=("argmax", "rows"),
    section="3", overall=OVERALL_TWICE,
    summary="R_CC / R_NCL (Däubener et al. 2024) and ncl-strict for entropy, confidence, margin at every --theta.",
    certifies="per uncertainty function, theta and guarantee: cc, the prediction stays cA with low uncertainty; "
              "ncl, Däubener et al.'s R_NCL ('cA or uncertain' outweighs any other class); ncl-strict, the "
              "prediction stays in {cA, uncertain}",
    options=OPTIONS, check=".methods_uncertainty:check_options", settings=("uncertainty", "theta", "guarantee"),
    example={"uncertainty": ["entropy", "margin"], "theta": [-0.5, 0.1, 0.5, math.inf]},
    compact=exact_on_compact("exact: entropy is stored per row as the same float64 the full-row kernel computes, "
                             "confidence and margin come from the stored top-2 probabilities (bit-identical values), "
                             "hard labels from the stored argmax"),
    report=".report_uncertainty:report", plot=".report_uncertainty:plots", report_rows=("uncertainty", "two-step"),
    extra_summary=".methods_uncertainty:summary", summary_reads=(),
    notes=("ncl is Däubener et al.'s R_NCL formula: within it 'cA or uncertain' keeps more mass than any other single "
           "class; it does not guarantee that the prediction stays in {cA, V}. ncl-strict does.",),
))
