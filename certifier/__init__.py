"""smoothcert's certifier: certificates recomputed offline from a sample store.

Importing the package registers every method; ``certify`` runs one over a store.
"""
from . import methods_basic  # noqa: F401  (registers cohen, cohen-predict, two-step)
from . import methods_confidence, report_confidence  # noqa: F401  (registers cdf, soft and their report)
from . import methods_uncertainty, report_uncertainty  # noqa: F401  (registers uncertainty and its report)
from . import aces, report_aces  # noqa: F401  (registers aces, aces-predict and their report)
from . import adaptive  # noqa: F401  (registers adaptive)
from . import methods_incremental, report_incremental  # noqa: F401  (registers incremental and its report)
from .engine import certify
from .options import CertifyOptions
from .registry import available_methods, get_method

__all__ = ["certify", "CertifyOptions", "available_methods", "get_method"]
