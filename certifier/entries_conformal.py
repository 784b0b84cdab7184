"""The registry entry of ``--method conformal``: robust conformal prediction sets (docs/methods.md section 12).

Its options (validated here, cheaply, for every certify command) and its
registration; the checks against the stores, the per-block statistics, the
sets and the coverage claim its sidecar states are in ``methods_conformal``
(imported when it runs), the mathematics in ``conformal``, the report in
``report_conformal``.
"""
from __future__ import annotations

import math

from .options import at_least
from .registry import Compact, Floats, Method, Names, Option, register

VARIANTS = ("rscp+", "cas")
SCORES = ("hps", "aps")
MEAN_BOUNDS = ("bernstein", "hoeffding")
COMPACT_WHY = ("bounded: hps only; a class outside an estimation row's top-k lies in [0, t_i]: calibration scores "
               "use 0 there, the test side t_i (section 12), sound at the same coverage; under --mean-bound "
               "hoeffding every set contains the full store's, with k = m they are equal")


# ------------------------------------------------------------------------------------ options
def _fraction(v):
    if v is not None and not (isinstance(v, (int, float)) and 0 < v < 1):
        raise ValueError(f"--calibration-split must be in (0, 1), got {v!r}")


_split_seed = at_least("--split-seed", 0)
_aps_seed = at_least("--aps-seed", 0)


def _miscoverage(v):
    if not len(v):
        raise ValueError("--miscoverage: give at least one level")
    bad = [x for x in v if not 0 < x < 1]
    if bad:
        raise ValueError(f"--miscoverage must be in (0, 1), got {bad[0]:g}")


def _epsilon(v):
    if not len(v):
        raise ValueError("--epsilon: give at least one radius")
    bad = [x for x in v if not (x >= 0 and math.isfinite(x))]
    if bad:
        raise ValueError(f"--epsilon must be finite and >= 0, got {bad[0]:g}")


def _choice(flag, allowed):
    def check(v):
        if v not in allowed:
            raise ValueError(f"{flag} must be one of {', '.join(allowed)}, got {v!r}")

    check.__qualname__ = f"_choice({flag})"
    return check


OPTIONS = (
    Option("calibration", None, "calibration store CAL (labelled inputs exchangeable with STORE's; same "
           "sigma, n0, n, classes, noise, dtype and model); every input of STORE is a test input.", metavar="CAL"),
    Option("calibration_split", None, "calibrate on a share F of STORE's inputs instead (0 < F < 1; "
           "inputs ordered by dataset index, permuted with --split-seed); the table holds the rest.", type=float,
           validate=_fraction, metavar="F", bad="1.5"),
    Option("split_seed", 0, "seed of the --calibration-split permutation.", type=int, validate=_split_seed,
           bad="-1"),
    Option("miscoverage", [0.1], "miscoverage levels m (each set covers the label w.p. >= 1 - m; m > "
           "2 alpha).", parse=Floats(), validate=_miscoverage, metavar="M[,M,...]", bad="1.5"),
    Option("epsilon", [0.0], "L2 perturbation radii the coverage must survive.", parse=Floats(),
           validate=_epsilon, metavar="EPS[,EPS,...]", bad="-0.5"),
    Option("score", "hps", "conformity score hps (the class's probability) or aps (one minus the "
           "randomised mass ranked above it; full stores only).", validate=_choice("--score", SCORES),
           metavar="hps|aps", bad="x"),
    Option("aps_seed", 0, "seed of aps's per-input randomisation u.", type=int, validate=_aps_seed,
           bad="-1"),
    Option("robust", ["rscp+"], "rscp+ (Lipschitz step on the mean, Yan et al. 2024) and/or cas "
           "(CDF-aware, after Zargarbashi et al. 2024); a list gives one set per variant (setting column "
           "robust, present when more than one is listed).",
           parse=Names(VARIANTS), metavar="rscp+|cas[,...]", bad="x"),
    Option("mean_bound", "bernstein", "upper bound on the test input's smoothed score, bernstein or "
           "hoeffding.", validate=_choice("--mean-bound", MEAN_BOUNDS), metavar="bernstein|hoeffding", bad="x"),
)


register(Method(
    "conformal", None, ".methods_conformal:confidence", section="12",
    summary="Robust conformal prediction sets (RSCP+ of Yan et al. 2024, CAS after Zargarbashi et al. 2024): per "
            "test input a set of classes covering the label w.p. >= 1 - m after any L2 perturbation <= epsilon "
            "(--calibration CAL or --calibration-split F).",
    certifies="per (miscoverage m, epsilon): a set of classes that contains the label with probability >= 1 - m "
              "at every input within L2 distance epsilon (marginal coverage; radius = epsilon, predict = the set's "
              "only class)",
    overall="coverage >= 1 - m per (m, epsilon) setting (not 1 - alpha)",
    options=OPTIONS, check=".methods_conformal:check_options", fields=("rows",), settings=("miscoverage", "epsilon", "robust"),
    example={"calibration_split": 0.5, "miscoverage": [0.5]},
    compact=Compact(True, COMPACT_WHY, reads=("compact",), certificate="bounded"),
    statistics=".methods_conformal:statistics", finalize=".methods_conformal:finalize", reference="calibration", set_valued=True,
    report=".report_conformal:format_conformal_report", plot=".report_conformal:plot_conformal",
))
