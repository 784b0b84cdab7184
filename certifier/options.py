"""Options of a certify run, validated at the boundary (one object for every method)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..parsing import parse_float_list, parse_int_list, parse_names  # noqa: F401  (re-exported for the CLI)
from ..stats.hypotheses import ALTERNATIVES
from .prefixes import INTERVALS, check_n_use


@dataclass
class CertifyOptions:
    """Every option of ``smoothcert certify``; each method reads the ones it uses."""

    alpha: float = 0.001
    binom_test: str = "two-sided"
    joint_alpha: bool = False
    n0_use: int | None = None
    n_use: int | list | None = None  # a list: one certificate per prefix (certifier/prefixes.py)
    interval: str = "cp"  # cp (Clopper-Pearson) or cs (confidence sequence, cohen and two-step)
    alpha_s0: float | None = None  # internal: tests on S0 at this level when a prefix list split alpha on S
    # uncertainty
    uncertainty: list = field(default_factory=lambda: ["entropy"])
    theta: list = field(default_factory=list)
    guarantee: list = field(default_factory=lambda: ["cc", "ncl", "ncl-strict"])
    theta_by_uncertainty: dict | None = None  # uncertainty: per-function thetas, e.g. from --theta-from CALIB.json
    # cdf / soft
    measure: list = field(default_factory=lambda: ["score", "margin"])
    bound: list = field(default_factory=list)
    threshold: list = field(default_factory=list)
    K: int = 10_000
    # adaptive
    radius: float | None = None
    stages: list = field(default_factory=lambda: [1_000, 10_000, 125_000])
    beta: float = 0.0001
    # ensembles
    members: list | None = None
    consensus: int | None = None
    order_from: str | None = None
    # incremental
    base: str | None = None

    def validate(self) -> "CertifyOptions":
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 0.5):
            raise ValueError(f"--alpha must be in (0, 0.5), got {self.alpha!r}")
        if self.binom_test not in ALTERNATIVES:
            raise ValueError(f"--binom-test must be one of {', '.join(ALTERNATIVES)}, got {self.binom_test!r}")
        if self.n0_use is not None and self.n0_use < 1:
            raise ValueError(f"--n0-use must be at least 1, got {self.n0_use}")
        check_n_use(self.n_use)
        if self.interval not in INTERVALS:
            raise ValueError(f"--interval must be one of {', '.join(INTERVALS)}, got {self.interval!r}")
        if self.K < 1:
            raise ValueError(f"--K must be at least 1, got {self.K}")
        if not (0 < self.beta < 1):
            raise ValueError(f"--beta must be in (0, 1), got {self.beta}")
        if self.radius is not None and not (self.radius >= 0 and math.isfinite(self.radius)):
            raise ValueError(f"--radius must be a finite number >= 0, got {self.radius}")
        if self.consensus is not None and self.consensus < 1:
            raise ValueError(f"--consensus must be at least 1, got {self.consensus}")
        if any(s < 1 for s in self.stages):
            raise ValueError(f"--stages must be positive integers, got {self.stages}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)
