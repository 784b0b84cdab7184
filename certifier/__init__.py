"""smoothcert's certifier: certificates recomputed offline from a sample store.

Importing the package registers every method (one import per method module
below; each module calls ``registry.register``); ``certify`` runs one over a
store. A new method is one new module plus one line here
(docs/adding-a-method.md).
"""
from . import methods_basic  # noqa: F401  (registers cohen, cohen-predict, two-step)
from . import methods_confidence  # noqa: F401  (registers cdf, soft)
from . import methods_uncertainty  # noqa: F401  (registers uncertainty)
from . import aces  # noqa: F401  (registers aces, aces-predict)
from . import adaptive  # noqa: F401  (registers adaptive)
from . import methods_incremental, report_incremental  # noqa: F401  (registers incremental and its report)
from . import methods_conformal  # noqa: F401  (registers conformal)
from .engine import certify
from .options import CertifyOptions
from .registry import available_methods, get_method

__all__ = ["certify", "CertifyOptions", "available_methods", "get_method"]
