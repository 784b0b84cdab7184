"""smoothcert's certifier: certificates recomputed offline from a sample store.

Importing the package registers every method: each ``entries_*`` module
below calls ``registry.register`` with a light declaration whose functions
are named ``"module:function"``, so the command line, ``--help`` and the
methods table are built from every method while a run imports only its own
method's computation. ``certify`` (the engine, with pandas, Dask and the
store) is imported on first use. A new method is one computation module and
one registration in an entries module imported here
(docs/adding-a-method.md).
"""
from . import entries_basic  # noqa: F401  (registers cohen, cohen-predict, two-step)
from . import entries_confidence  # noqa: F401  (registers cdf, soft)
from . import entries_uncertainty  # noqa: F401  (registers uncertainty)
from . import entries_aces  # noqa: F401  (registers aces, aces-predict)
from . import entries_adaptive  # noqa: F401  (registers adaptive)
from . import entries_incremental  # noqa: F401  (registers incremental)
from . import entries_conformal  # noqa: F401  (registers conformal)
from .options import CertifyOptions
from .registry import available_methods, get_method

__all__ = ["certify", "CertifyOptions", "available_methods", "get_method"]


def __getattr__(name: str):
    if name == "certify":
        from .engine import certify

        return certify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
