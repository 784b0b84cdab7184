"""Options of a certify run, validated at the boundary: the common ones declared here, the rest by each method.

``CertifyOptions`` has one attribute per declared option: the common options
below (``--alpha`` ... ``--n-use``, and the ensemble options, which apply to
every method) and every ``Option`` a registered method declares
(``Method.options`` in registry.py). Its defaults, validation and the
command line's parsing all come from those declarations, so a new method's
options need no edit here or in cli.py.
"""
from __future__ import annotations

import copy
import math

from ..parsing import parse_float_list, parse_int_list, parse_names  # noqa: F401  (re-exported for the CLI)
from ..stats.hypotheses import ALTERNATIVES
from .prefixes import INTERVALS, check_n_use, parse_n_use
from .registry import Ints, Option, method_options


def _alpha(v):
    if not (isinstance(v, (int, float)) and 0 < v < 0.5):
        raise ValueError(f"--alpha must be in (0, 0.5), got {v!r}")


def _binom_test(v):
    if v not in ALTERNATIVES:
        raise ValueError(f"--binom-test must be one of {', '.join(ALTERNATIVES)}, got {v!r}")


def _interval(v):
    if v not in INTERVALS:
        raise ValueError(f"--interval must be one of {', '.join(INTERVALS)}, got {v!r}")


def at_least(flag: str, low: int):
    """Validator: None, or a number >= ``low`` (``--FLAG must be at least LOW, got V``)."""

    def check(v):
        if v is not None and v < low:
            raise ValueError(f"{flag} must be at least {low}, got {v}")

    check.__qualname__ = f"at_least({flag}, {low})"
    return check


def at_least_one(flag: str):
    """Validator: None, or an integer >= 1 (``--FLAG must be at least 1, got V``)."""
    return at_least(flag, 1)


_n0_use = at_least_one("--n0-use")
_consensus = at_least_one("--consensus")

# The options every method reads (before the methods' own, in this order).
COMMON = (
    Option("alpha", 0.001, "Failure probability of each test/bound.", type=float, validate=_alpha, bad="0.7"),
    Option("binom_test", "two-sided", "Binomial test of PREDICT steps (two-sided as Cohen et al.'s code; greater as "
           "Däubener et al. 2024).", type=tuple(ALTERNATIVES), validate=_binom_test),
    Option("joint_alpha", False, "Run every test and bound of a method that spends alpha twice at alpha/2: overall "
           "1 - alpha.", type=bool),
    Option("n0_use", None, "Use only the first N0 rows of the selection block.", type=int, validate=_n0_use, bad="0"),
    Option("n_use", None, "Use only the first N rows of the estimation block. A list (1000,10000,100000) gives one "
           "certificate per prefix (column n_use) with the confidence holding over the whole list: under --interval cp "
           "every test and bound on S runs at alpha/L (L prefixes). Not for --method adaptive.",
           parse=lambda text, name: parse_n_use(text), validate=check_n_use, metavar="N[,N,...]", bad="0"),
    Option("interval", "cp", "Bounds on S: cp (Clopper-Pearson, one fixed n) or cs (confidence sequence, valid for "
           "every prefix at once; cohen and two-step only): see docs/anytime.md.", type=INTERVALS, validate=_interval),
    Option("alpha_s0", None, "internal: tests on S0 at this level when a prefix list split alpha on S.", cli=False),
)
# Ensembles (docs/methods.md section 6): any method, on a store with per-member rows (after the methods' options).
ENSEMBLE = (
    Option("members", None, "ensembles: member indices, e.g. 0,2,3 [default: all stored].", parse=Ints(), bad="x"),
    Option("consensus", None, "ensembles: K-consensus over the --members order.", type=int, validate=_consensus,
           bad="0"),
    Option("order_from", None, "ensembles: order members by accuracy on this VALIDATION store (never the certified "
           "store)."),
)


def declared() -> dict[str, Option]:
    """Every option of a certify run by name, in order: common, each registered method's, ensemble."""
    out = {o.name: o for o in COMMON}
    common = {o.name for o in COMMON + ENSEMBLE}
    for o, per in method_options():
        if o.name in common:
            raise ValueError(f"method {per[0][0]}: {o.flag_name} is a common option of every method; "
                             f"read opts.{o.name} without declaring it")
        out.setdefault(o.name, o)
    for o in ENSEMBLE:
        out.setdefault(o.name, o)
    return out


def _fields() -> dict[str, Option]:
    return {k: o for k, o in declared().items() if o.field}


class CertifyOptions:
    """Every option of ``smoothcert certify`` as an attribute; each method reads the ones it uses.

    ``CertifyOptions(alpha=0.01, theta=[0.5])``: keywords are the declared
    options' names (TypeError for any other); the rest take their declared
    defaults (fresh copies). ``validate()`` runs every declared validation
    and returns the object.
    """

    def __init__(self, **values):
        fields = _fields()
        for k in values:
            if k not in fields:
                raise TypeError(f"CertifyOptions: unknown option {k!r}; known: {', '.join(fields)}")
        for name, o in fields.items():
            setattr(self, name, values[name] if name in values else o.fresh_default())

    def __getattr__(self, name):  # an option registered after this object was made: its default
        o = _fields().get(name) if not name.startswith("__") else None
        if o is None:
            raise AttributeError(f"CertifyOptions has no option {name!r}")
        return o.fresh_default()

    def validate(self) -> "CertifyOptions":
        for o in _fields().values():
            if o.validate is not None:
                o.validate(getattr(self, o.name))
        return self

    def to_dict(self) -> dict:
        """{option: value} (deep copies), declared options in order, then any other attribute set on the object."""
        names = list(_fields()) + [k for k in vars(self) if k not in _fields()]
        return {k: copy.deepcopy(getattr(self, k)) for k in names}

    def replace(self, **changes) -> "CertifyOptions":
        """A copy with ``changes`` applied (the object itself is not changed)."""
        new = copy.copy(self)
        new.__dict__ = copy.deepcopy(self.__dict__)
        for k, v in changes.items():
            if k not in _fields():
                raise TypeError(f"CertifyOptions: unknown option {k!r}")
            setattr(new, k, v)
        return new

    def __eq__(self, other):
        return isinstance(other, CertifyOptions) and _same(self.to_dict(), other.to_dict())

    def __repr__(self) -> str:
        return "CertifyOptions(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def _same(a: dict, b: dict) -> bool:
    def eq(x, y):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y

    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)


def from_command_line(values: dict) -> tuple[CertifyOptions, list]:
    """``CertifyOptions`` from command-line values ({option name: text or value}), plus the options to apply.

    Each list option's text is parsed by its declaration (ValueError naming
    the option); an option not given (None) takes its declared default.
    Returns ``(opts, [(Option, value), ...])``: the second part are the given
    options that are not attributes but are applied before the run
    (``Option.apply``, e.g. ``--theta-from``).
    """
    opts = {}
    apply = []
    for name, o in declared().items():
        if not o.cli or name not in values:
            continue
        v = values[name]
        if o.parse is not None and v is not None:
            v = o.parse(v, o.flag_name[2:])
        if not o.field:
            if v is not None and o.apply is not None:
                apply.append((o, v))
            continue
        if v is None:
            continue
        opts[name] = v
    return CertifyOptions(**opts), apply
