"""The registry entry of ``--method adaptive`` (CERTIFYADP, Horváth et al. 2022; docs/methods.md section 6).

The replay and its report are in ``adaptive`` (imported when it runs).
"""
from __future__ import annotations

import math

from .registry import Ints, Method, Option, register


def confidence(opts):
    """Overall confidence of CERTIFYADP: 1 - alpha (Bonferroni over the s stages); early aborts wrong w.p. <= beta."""
    return 1 - opts.alpha, (f"1 - alpha = {1 - opts.alpha:g} (CERTIFYADP: each of s stages bounds at alpha/s, Bonferroni; "
                            f"an early abort is wrong with probability <= beta = {opts.beta:g})")


def _radius(v):
    if v is not None and not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"--radius must be a finite number >= 0, got {v}")


def _stages(v):
    if any(s < 1 for s in v):
        raise ValueError(f"--stages must be positive integers, got {v}")


def _beta(v):
    if not (0 < v < 1):
        raise ValueError(f"--beta must be in (0, 1), got {v}")


OPTIONS = (
    Option("radius", None, "target radius r.", type=float, validate=_radius, bad="-1"),
    Option("stages", [1_000, 10_000, 125_000], "stage sizes n_1 < ... < n_s.", parse=Ints(), validate=_stages,
           bad="0,5"),
    Option("beta", 0.0001, "early-abort level.", type=float, validate=_beta, bad="1"),
)

register(Method("adaptive", ".adaptive:certify_adaptive", confidence, fields=("argmax",), variable_rows=True,
                extra_summary=".adaptive:summary",
                section="6", overall="1 - alpha (early aborts wrong with probability <= beta)",
                summary="CERTIFYADP (Horváth et al. 2022, ensembles Alg. 2): certify a target --radius on nested stages of S, abort early "
                        "when the upper bound rules it out; rows_used per input, SampleRF in the report.",
                certifies="the prediction stays cA within a radius >= the target --radius, decided on nested stages "
                          "of S with early aborts",
                options=OPTIONS, check=".adaptive:check_options", example={"radius": 0.25},
                report=".adaptive:adaptive_report"))
