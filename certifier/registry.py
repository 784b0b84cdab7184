"""The registry of certificate methods: everything a ``--method`` is, in one entry.

A method is a pure function from a ``Block`` (and the options) to a table
with one row per (input, setting). The engine does all reading, checking and
parallelism; a method only computes. Its ``Method`` entry says everything
else the rest of smoothcert needs to know about it, as data:

- its name, one-line summary (``smoothcert certify --help``) and the row of
  the methods table in docs/methods.md (what it certifies, overall
  confidence, section);
- the options it reads beyond the common ones, as ``Option`` declarations
  (default, parsing, validation, help); the command line, ``CertifyOptions``
  and the help text are built from them;
- a check of its options against each other and the store, run before any
  work;
- the store fields it reads, whether it needs ``core_predict`` or accepts
  inputs with fewer rows, and what it does on a compact store (``Compact``);
- its overall confidence, extra sidecar summary, and its sections and plots
  in ``smoothcert report``;
- for a method whose table needs every input first (a step across inputs,
  as conformal prediction's calibration quantile): ``statistics``, computed
  per block in place of ``compute``, and ``finalize``, which turns every
  block's statistics (and those of a second store named by the option
  ``reference``, when given) into the table.

An entry names its functions as ``"module:function"`` strings (``Ref``),
imported on their first call: the entries themselves are light, so that the
command line and ``--help`` are built from every method while a run imports
only its own method's computation (numba kernels, scipy, pandas). Adding a
method is one computation module and one ``register(Method(...))`` in an
entries module that ``certifier/__init__.py`` imports
(docs/adding-a-method.md). This module imports only the bottom layer
(``parsing``), so every other certifier module may import it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import import_module
from importlib.util import resolve_name
from typing import Any, Callable

import numpy as np

from ..parsing import parse_float_list, parse_int_list, parse_names


# ---------------------------------------------------------- lazy functions
@dataclass(frozen=True)
class Ref:
    """A function named ``"module:function"``, imported on its first call; calling the reference calls it.

    A module name that starts with ``.`` is relative to this package
    (``".cohen:certify"`` is ``smoothcert.certifier.cohen.certify``). Two
    references to the same name are equal.
    """

    target: str

    def __post_init__(self):
        module, sep, name = self.target.partition(":")
        if not (module and sep and name.isidentifier()):
            raise ValueError(f"{self.target!r} is not a function name of the form 'module:function'")

    @property
    def module(self) -> str:
        """The absolute name of the module that defines the function."""
        module = self.target.partition(":")[0]
        return resolve_name(module, __package__) if module.startswith(".") else module

    def resolve(self) -> Callable:
        """The function itself (its module is imported on the first call, then found in ``sys.modules``)."""
        return getattr(import_module(self.module), self.target.partition(":")[2])

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)


def _refs(obj, names: tuple) -> None:
    """Turn the ``"module:function"`` strings among ``obj``'s fields ``names`` into ``Ref``s (a frozen dataclass)."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, str):
            object.__setattr__(obj, name, Ref(v))


# Column order of the certificate table (docs/methods.md, the certificate table). A method may declare setting
# columns beyond these in ``Method.settings``; they follow these, in registration order.
SETTING_COLUMNS = ("uncertainty", "theta", "guarantee", "measure", "bound", "threshold", "members", "consensus", "n_use",
                   "miscoverage", "epsilon")
EXTRA_COLUMNS = ("runner_up", "p_lower", "p_upper", "lower0", "selection", "rows_used", "rows_bounded", "set",
                 "set_size", "tau", "n_cal")


# ------------------------------------------------------------------- options
@dataclass(frozen=True)
class Names:
    """Parser of a comma list of names, each one of ``allowed`` (``--uncertainty entropy,margin``)."""

    allowed: tuple

    def __call__(self, text, name: str):
        return parse_names(text, name, self.allowed)


@dataclass(frozen=True)
class Floats:
    """Parser of a comma list of numbers and start:stop:count grids (``--theta 0:1:11,inf``)."""

    def __call__(self, text, name: str):
        return parse_float_list(text, name)


@dataclass(frozen=True)
class Ints:
    """Parser of a comma (or +) list of integers (``--stages 1000,10000``)."""

    def __call__(self, text, name: str):
        return parse_int_list(text, name)


@dataclass(frozen=True)
class Option:
    """One option of ``smoothcert certify``: an attribute of ``CertifyOptions`` and a command-line flag.

    ``type``: ``float``, ``int``, ``str``, ``bool`` (a flag) or a tuple of
    choices; values of these are converted by the command line itself.
    ``parse``: for list-valued options, ``parse(text, name)`` turns the
    command-line text into the value (a ``Names``/``Floats``/``Ints``, or any
    function), raising ValueError with a one-line message naming ``--name``.
    ``validate(value)`` raises ValueError (one line, naming the option) on a
    bad value; ``CertifyOptions.validate`` runs it for every declared option.
    ``cli=False``: an attribute set by code only (no flag); ``field=False``:
    a flag that is not an attribute, resolved by ``apply(opts, value,
    store_location) -> (sidecar record, warning or None)`` before the run
    (the record goes to the sidecar under ``name``). ``bad``: a value the
    option refuses (the method contract test checks its one-line error).

    Two methods may declare the same name (``--theta`` of uncertainty and
    aces): the declarations must then agree on everything but ``help``, and
    the help texts are shown side by side.
    """

    name: str
    default: Any = None
    help: str = ""
    type: Any = str
    parse: Callable | None = None
    validate: Callable | None = None
    flag: str | None = None
    metavar: str | None = None
    cli: bool = True
    field: bool = True
    apply: Callable | None = None
    bad: str | None = None

    def __post_init__(self):
        _refs(self, ("parse", "validate", "apply"))

    @property
    def flag_name(self) -> str:
        """The command-line spelling, e.g. ``--n0-use``."""
        return self.flag or "--" + self.name.replace("_", "-")

    def fresh_default(self):
        """A copy of the default (lists are never shared between option objects)."""
        return copy.deepcopy(self.default)

    def default_text(self) -> str | None:
        """The default as the command line writes it (``entropy``, ``1000,10000,125000``), or None when unset."""
        d = self.default
        if d is None or d is False or (isinstance(d, (list, tuple)) and not d):
            return None
        if isinstance(d, (list, tuple)):
            return ",".join(str(v) for v in d)
        return str(d)

    def signature(self) -> tuple:
        """Everything two declarations of one option must agree on."""
        return (self.default, self.type, self.parse, self.validate, self.flag_name, self.metavar, self.cli,
                self.field, self.apply)


# ------------------------------------------------------------- compact stores
@dataclass(frozen=True)
class Compact:
    """What a method does on a compact store (per row the top-k probabilities, the argmax and the entropy).

    ``supported``: certify from the compact statistics, reading ``reads``
    (default: the method's fields with ``rows`` replaced by ``compact``); the
    sidecar states ``certificate`` and ``why``. Refused: ``why`` is the
    one-line reason, written after ``--method NAME``.

    ``certificate`` says how the table relates to the full store's (the
    contract test checks each as stated):

    - ``exact``: the full store's table, bit for bit;
    - ``conservative``: the same rows; a class only where the full store
      certifies it, and never a larger radius (up to ``radius_tol``, the
      precision of a radius found by bisection);
    - ``bounded``: computed by the method's own procedure on sound bounds of
      the values the store lacks, so as valid as the full store's at the
      same confidence, but not always at or below it (docs/methods.md
      section 9); the same rows, and where both certify, the same class.

    ``needs_full_s0``: supported only on a compact store that keeps its n0
    selection rows whole (the store object's ``keeps_full_s0``; a store
    object without that attribute is taken not to); on any other compact
    store the method refuses with the reason ``without_full_s0``.
    ``option`` and ``choices``: the certificate and why depend on the value
    of the method's option ``option``, as ``((value, certificate, why),
    ...)`` (the first two fields above are then ``supported`` and the
    default's why). ``Method.on_compact(store, opts)`` resolves all this to
    a plain entry.
    """

    supported: bool
    why: str
    reads: tuple | None = None
    certificate: str = "exact"
    radius_tol: float = 0.0
    needs_full_s0: bool = False
    without_full_s0: str = ""
    option: str | None = None
    choices: tuple = ()


CERTIFICATES = ("exact", "conservative", "bounded")
HARD_LABEL = ("exact: the method counts hard labels only, and a compact store keeps every row's stored argmax "
              "(the full-precision row's hard label) whole")
NEEDS_ROWS = "needs full softmax rows, which a compact store does not keep"


def exact_on_compact(why: str, reads: tuple | None = None) -> Compact:
    """A method whose certificate from a compact store equals the full store's, for the reason ``why``."""
    return Compact(True, why, reads)


def refused_on_compact(why: str) -> Compact:
    """A method that refuses a compact store with ``--method NAME <why>; store ... is compact ...``."""
    return Compact(False, why)


def keeps_full_s0(store) -> bool:
    """Whether ``store`` keeps its n0 selection rows whole (its ``keeps_full_s0``; False when it does not say)."""
    return bool(getattr(store, "keeps_full_s0", False))


# -------------------------------------------------------------------- method
@dataclass(frozen=True)
class Method:
    """One ``--method``: what it reads, computes and guarantees, and how the rest of smoothcert shows it.

    Each function (``compute``, ``confidence``, ``check``, ``report``,
    ``plot``, ``extra_summary``, ``read_extra``, and an option's ``parse``,
    ``validate``, ``apply``) may be given as a ``"module:function"`` string,
    kept as a ``Ref`` and imported on its first call.
    """

    name: str
    compute: Callable  # (Block, CertifyOptions) -> DataFrame with _pos, settings, predict, radius, extras
    confidence: Callable  # (CertifyOptions) -> (level: float, text: str)
    summary: str = ""  # one line: smoothcert certify --help
    certifies: str = ""  # docs/methods.md methods table: what a certificate of a row says
    overall: str = ""  # docs/methods.md methods table: the overall confidence, in words
    section: str = ""  # docs/methods.md section
    options: tuple = ()  # Option declarations it reads beyond the common ones
    check: Callable | None = None  # (CertifyOptions, store or None) -> None; ValueError before any work
    example: dict = field(default_factory=dict)  # options of a typical run (required ones included)
    fields: tuple = ("argmax",)  # store fields it reads
    settings: tuple = ()  # setting columns of its table (before any ensemble's members/consensus)
    compact: Compact | None = None  # None: exact when it reads hard labels only, else refused
    report: Callable | None = None  # (rows, radii) -> text: its section of smoothcert report
    plot: Callable | None = None  # (rows, path stem) -> written paths: its plots in smoothcert report --plot
    report_rows: tuple = ()  # methods whose rows report and plot get (default: its own)
    predict_only: bool = False  # radius 0 by definition (left out of the certified-accuracy plot)
    variable_rows: bool = False  # accepts inputs that stored fewer than n0 + n rows
    needs_core_predict: bool = False
    extra_summary: Callable | None = None  # (DataFrame of all rows, CertifyOptions) -> dict for the meta sidecar
    # the columns extra_summary reads (None: every column): all the engine keeps of a table it streams to a file
    summary_reads: tuple | None = None
    # arrays it reads from a second store for a block's inputs, after the block is read (incremental: the base's):
    # (Block, CertifyOptions, storage_options, start, stop, verify_all) -> dict, set as ``block.extra``
    read_extra: Callable | None = None
    # the option naming a second store it reads beside STORE, a store that STORE replays (incremental: "base");
    # the contract test builds such a pair for it
    companion: str | None = None
    # A step across inputs (docs/adding-a-method.md, "Methods that need every input first"). ``statistics(Block,
    # opts, role) -> {name: array}``, each array with the block's inputs on axis 0, runs per block (Dask) in place
    # of ``compute``; role is "store" for STORE's inputs and "reference" for those of the second store named by the
    # option ``reference`` (when it is set). ``finalize(stats, reference_stats, opts, info) -> (frame, sidecar
    # dict)`` gets every block's arrays concatenated in slot order (plus ``idx`` and ``label``; reference_stats
    # None without a second store) and ``info`` (sigma, n0, n, num_classes, compact); its frame's ``_pos`` indexes
    # STORE's inputs, and it may leave some out (a test split). With a ``--n-use`` list the method handles the
    # prefixes itself (no alpha split by the engine) and states its claim per prefix.
    statistics: Callable | None = None
    finalize: Callable | None = None
    reference: str | None = None
    # rows are prediction sets (conformal): predict is the set's only class (-1 otherwise, which is no abstention),
    # radius the perturbation the set's coverage survives, correct 1 when the label is in the set (the method
    # writes it); rows may cover only some inputs (the test split)
    set_valued: bool = False
    notes: tuple = field(default_factory=tuple)

    FUNCTION_FIELDS = ("compute", "confidence", "check", "report", "plot", "extra_summary", "read_extra", "statistics",
                       "finalize")

    def __post_init__(self):
        _refs(self, self.FUNCTION_FIELDS)

    def refs(self) -> list[Ref]:
        """The functions of this entry (and of its options) named as ``"module:function"``, imported when used."""
        funcs = [getattr(self, f) for f in self.FUNCTION_FIELDS]
        funcs += [getattr(o, f) for o in self.options for f in ("parse", "validate", "apply")]
        return [f for f in funcs if isinstance(f, Ref)]

    def on_compact(self, store=None, opts=None) -> Compact:
        """The compact-store behaviour: as declared (or the default for what the method reads), resolved.

        ``store``: the compact store (None: one that keeps its selection rows
        whole); ``opts``: the options (None: the declared option's default).
        The result has no ``needs_full_s0``, ``option`` or ``choices`` left.
        """
        c = self.compact
        if c is None:
            return refused_on_compact(NEEDS_ROWS) if "rows" in self.fields else exact_on_compact(HARD_LABEL)
        if c.needs_full_s0 and store is not None and not keeps_full_s0(store):
            return refused_on_compact(c.without_full_s0)
        certificate, why = c.certificate, c.why
        if c.option is not None:
            value = getattr(opts, c.option) if opts is not None else self.option_default(c.option)
            found = [(cert, w) for v, cert, w in c.choices if v == value]
            if not found:
                raise ValueError(f"--method {self.name}: no compact-store behaviour declared for "
                                 f"--{c.option.replace('_', '-')} {value!r}")
            certificate, why = found[0]
        return Compact(c.supported, why, c.reads, certificate, c.radius_tol)

    def compact_cases(self) -> list[tuple[dict, Compact]]:
        """Every declared compact-store behaviour on a store keeping its selection rows whole, with the option
        values that give it: ``[({option: value} or {}, resolved Compact), ...]`` (for the contract test)."""
        c = self.compact
        if c is None or c.option is None:
            return [({}, self.on_compact())]
        return [({c.option: v}, Compact(c.supported, w, c.reads, cert, c.radius_tol)) for v, cert, w in c.choices]

    def option_default(self, name: str):
        """The declared default of this method's option ``name``."""
        for o in self.options:
            if o.name == name:
                return o.fresh_default()
        raise ValueError(f"method {self.name} declares no option {name!r}")

    def rows_read_by_report(self) -> tuple:
        return self.report_rows or (self.name,)


_METHODS: dict[str, Method] = {}
_OPTIONS: dict[str, list] = {}  # name -> [(method name, Option), ...] in registration order
_VERSION = [0]  # bumped by every change, so that what is built from the registry (the CLI's options) can tell


def version() -> int:
    """A number that changes whenever a method is registered or removed."""
    return _VERSION[0]


def _check_compact(method: Method) -> None:
    """ValueError unless the method's ``Compact`` entry names known certificates and, for ``option``, an option of
    the method whose default has a declared behaviour."""
    c = method.compact
    if c is None:
        return
    certs = [c.certificate] + [cert for _, cert, _ in c.choices]
    bad = [x for x in certs if x not in CERTIFICATES]
    if bad:
        raise ValueError(f"method {method.name}: compact certificate {bad[0]!r} is not one of {', '.join(CERTIFICATES)}")
    if c.needs_full_s0 and not c.without_full_s0:
        raise ValueError(f"method {method.name}: a compact entry with needs_full_s0 must say why it refuses without")
    if c.option is not None:
        default = method.option_default(c.option)
        if default not in [v for v, _, _ in c.choices]:
            raise ValueError(f"method {method.name}: compact choices declare no behaviour for the default "
                             f"{default!r} of option {c.option!r}")


def register(method: Method) -> Method:
    """Add ``method`` (replacing one of the same name); ValueError when its options conflict with another's."""
    _check_compact(method)
    for opt in method.options:
        for other, decl in _OPTIONS.get(opt.name, []):
            if other != method.name and decl.signature() != opt.signature():
                raise ValueError(f"method {method.name}: option {opt.flag_name} differs from the declaration of "
                                 f"method {other}; one option name must mean one thing")
    for decls in _OPTIONS.values():
        decls[:] = [(m, o) for m, o in decls if m != method.name]
    for opt in method.options:
        _OPTIONS.setdefault(opt.name, []).append((method.name, opt))
    for name in [k for k, v in _OPTIONS.items() if not v]:
        del _OPTIONS[name]
    _METHODS[method.name] = method
    _VERSION[0] += 1
    return method


def unregister(name: str) -> None:
    """Remove method ``name`` and its option declarations (for tests that register a toy method)."""
    _METHODS.pop(name, None)
    for decls in _OPTIONS.values():
        decls[:] = [(m, o) for m, o in decls if m != name]
    for k in [k for k, v in _OPTIONS.items() if not v]:
        del _OPTIONS[k]
    _VERSION[0] += 1


def get_method(name: str) -> Method:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"--method: unknown method {name!r}; available: {', '.join(available_methods())}") from None


def available_methods() -> list[str]:
    return list(_METHODS)


def methods() -> list[Method]:
    """Every registered method, in registration order."""
    return list(_METHODS.values())


def method_options() -> list[tuple[Option, tuple]]:
    """Each method option once, in registration order: (declaration, help per method as ((method, help), ...))."""
    out = []
    for decls in _OPTIONS.values():
        helps = {}
        for m, o in decls:
            helps.setdefault(o.help, []).append(m)
        out.append((decls[0][1], tuple(("/".join(ms), h) for h, ms in helps.items())))
    return out


def setting_columns() -> tuple:
    """The documented setting columns, then any a registered method declares beyond them."""
    extra = [c for m in _METHODS.values() for c in m.settings if c not in SETTING_COLUMNS]
    return SETTING_COLUMNS + tuple(dict.fromkeys(extra))


def compact_methods() -> list[str]:
    """Methods exact on every compact store: those reading hard labels only, then those reading compact statistics.

    (Methods whose compact certificate is not exact, or that need the
    selection rows whole, are not listed: the refusals name these methods as
    the ones that give the full store's certificate on any compact store.)
    """
    def exact_everywhere(m):
        c = m.compact
        if c is not None and (c.needs_full_s0 or c.option is not None):
            return False
        p = m.on_compact()
        return p.supported and p.certificate == "exact"

    ok = [m for m in _METHODS.values() if exact_everywhere(m)]
    return [m.name for m in ok if "rows" not in m.fields] + [m.name for m in ok if "rows" in m.fields]


# ------------------------------------------------------------ docs: the table
TABLE_BEGIN = "<!-- methods-table:begin -->"
TABLE_END = "<!-- methods-table:end -->"


def methods_markdown() -> str:
    """The methods table of docs/methods.md, generated from the registry (one row per method)."""

    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| method | what it certifies | overall confidence | section |", "|---|---|---|---|"]
    for m in _METHODS.values():
        lines.append(f"| `{m.name}` | {cell(m.certifies or m.summary)} | {cell(m.overall)} | {cell(m.section)} |")
    return "\n".join(lines) + "\n"


def replace_methods_table(text: str) -> str:
    """``text`` (docs/methods.md) with the table between the markers replaced by ``methods_markdown()``."""
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"docs/methods.md: markers {TABLE_BEGIN} and {TABLE_END} not found")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    return f"{head}{TABLE_BEGIN}\n{methods_markdown()}{TABLE_END}{tail}"


def methods_table_in(text: str) -> str:
    """The text between the methods-table markers of ``text`` (without the newline after the begin marker)."""
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"markers {TABLE_BEGIN} and {TABLE_END} not found")
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].removeprefix("\n")


# -------------------------------------------------------- helpers for methods
def frame(pos, **cols):
    """A method's result table (a pandas DataFrame): ``_pos`` (input position in the block) plus the given columns."""
    import pandas as pd  # a method's computation needs it, the command line built from the entries does not

    d = {"_pos": np.asarray(pos, dtype=np.int64)}
    for k, v in cols.items():
        d[k] = np.asarray(v) if not np.isscalar(v) else np.full(len(d["_pos"]), v)
    return pd.DataFrame(d)


def level(opts, spends_twice: bool) -> float:
    """Alpha for each test and bound: alpha, or alpha/2 under --joint-alpha where alpha is spent twice."""
    return opts.alpha / 2 if (spends_twice and opts.joint_alpha) else opts.alpha


def confidence_twice(opts):
    """Overall confidence of a method that tests on S0 and bounds on S."""
    if opts.joint_alpha:
        return 1 - opts.alpha, f"1 - alpha = {1 - opts.alpha:g} (--joint-alpha: test on S0 and bounds on S at alpha/2 each)"
    return 1 - 2 * opts.alpha, f"1 - 2 alpha = {1 - 2 * opts.alpha:g} (a test on S0 at alpha, bounds on S at alpha)"


def confidence_once(opts):
    """Overall confidence of a method that spends alpha once."""
    return 1 - opts.alpha, f"1 - alpha = {1 - opts.alpha:g}"


OVERALL_TWICE = "1 - 2 alpha (1 - alpha with `--joint-alpha`)"
OVERALL_ONCE = "1 - alpha"
