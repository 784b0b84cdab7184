"""The contract every registered method keeps, checked for each one taken from the registry at collection time.

A method added to the registry is covered here without editing this file:
on a small real store (with core_predict or per-member rows when its entry
asks for them) its table is well formed and keeps the abstain rule, the
sidecar states the overall confidence written in this file (CONFIDENCE), a
compact store gets exactly the declared behaviour, and each option's
declared bad value is a one-line error naming the option. The toy method of
docs/adding-a-method.md is run through the same checks, registered at run
time, to show that a new method needs no other edit.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from smoothcert import certifier, cli
from smoothcert.certifier import registry
from smoothcert.certifier.options import COMMON, ENSEMBLE, CertifyOptions, declared

ROOT = Path(__file__).resolve().parent.parent
M, N0, N = 4, 40, 400
METHODS = [m.name for m in registry.methods()]

# per input: (S0 counts, S counts, label); certified, wrong, runner-up, near-tie and abstaining inputs
INPUTS = [
    ([40, 0, 0, 0], [392, 4, 4, 0], 0),
    ([2, 34, 4, 0], [40, 330, 30, 0], 1),
    ([0, 4, 22, 14], [0, 30, 220, 150], 2),
    ([11, 10, 10, 9], [104, 100, 100, 96], 3),
    ([30, 10, 0, 0], [260, 140, 0, 0], 1),
    ([0, 0, 6, 34], [0, 0, 60, 340], 3),
]


def build(make_store, method: registry.Method, inputs, name, seed=0):
    """A store with exactly the given hard-label counts, plus what the method's entry asks for:
    ``core_predict`` (right on half the inputs) when it needs one, two members' rows when it reads them.

    Returns (store path, labels, core_predict or None).
    """
    from conftest import rows_from_labels

    rng = np.random.default_rng(seed)
    labels = np.array([y for _, _, y in inputs])
    probs = np.empty((len(inputs), N0 + N, M), np.float32)
    for i, (c0, c, _) in enumerate(inputs):
        lab = np.concatenate([rng.permutation(np.repeat(np.arange(M), c0)), rng.permutation(np.repeat(np.arange(M), c))])
        probs[i] = rows_from_labels(lab, M, rng)
    extra = {}
    core = None
    if method.needs_core_predict:
        core = extra["core_predict"] = (labels + np.arange(len(labels)) % 2) % M
    if "member_logprobs" in method.fields:  # two members that both give the stored rows
        extra["member_logprobs"] = np.repeat(np.log(probs)[:, :, None, :], 2, axis=2)
    store = make_store(probs, labels, N0, name=f"{method.name}-{name}", **extra)
    if method.companion:  # a second store STORE replays: the same rows (an unchanged model), recorded as its base
        from smoothcert.store import open_store

        base = make_store(probs, labels, N0, name=f"{method.name}-{name}-base", **extra)
        with open_store(base) as b:
            fp = b.fingerprint()
        with open_store(store, mode="a") as st:
            st.set_attrs(replay_of={"location": str(base), "fingerprint": fp})
        COMPANIONS[str(store)] = {method.companion: str(base)}
    return store, labels, core


COMPANIONS: dict[str, dict] = {}  # store path -> the companion-store option its method needs (see build)


def example_for(method: registry.Method, store) -> dict:
    """The method's example options, plus the companion store built beside ``store`` when the method reads one."""
    return {**method.example, **COMPANIONS.get(str(store), {})}


def flags(values: dict) -> list[str]:
    """Command-line arguments for {option name: value} (lists as comma lists)."""
    out = []
    decl = declared()
    for name, v in values.items():
        o = decl[name]
        if o.type is bool:
            out += [o.flag_name] if v else []
        else:
            text = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            out.append(f"{o.flag_name}={text}")  # --theta=-0.5,inf: a negative value is not taken for a flag
    return out


def run_cli(args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def certify_cli(store, method, out, **extra):
    """``smoothcert certify`` with the method's example options (and ``extra``): (table as written, sidecar)."""
    from smoothcert.certifier.table import read_table

    r = run_cli(["certify", store, "--method", method.name, "--out", out, "-q", *flags({**example_for(method, store), **extra})])
    assert r.exit_code == 0, r.output
    return read_table(out), json.loads(Path(f"{out}.meta.json").read_text())


def certify_api(store, method, **extra):
    from smoothcert.certifier import certify

    return certify(store, method.name, CertifyOptions(**{**example_for(method, store), **extra}), progress=False)


# ------------------------------------------------------------------ checks
def check_table(table: pd.DataFrame, method: registry.Method, labels) -> None:
    """Columns in the documented order and dtypes; radius >= 0 (finite or inf); abstain means radius 0; correct."""
    cols = list(table.columns)
    settings = [c for c in registry.setting_columns() if c in cols]
    assert cols[:3] == ["idx", "label", "method"]
    assert cols[3:3 + len(settings)] == settings
    declared = [c for c in registry.setting_columns() if c in method.settings]
    assert settings == [c for c in declared if c in cols]
    # a declared setting column may be left out only when it is named after one of the method's list options
    # (conformal's robust: a column when several variants are listed, the sidecar names a single one)
    assert {c for c in declared if c not in cols} <= {o.name for o in method.options if o.parse is not None}
    assert cols[3 + len(settings):6 + len(settings)] == ["predict", "radius", "correct"]
    extras = cols[6 + len(settings):]
    documented = [c for c in extras if c in registry.EXTRA_COLUMNS]
    assert extras[:len(documented)] == [c for c in registry.EXTRA_COLUMNS if c in documented]
    for c in ("idx", "label", "predict", "correct"):
        assert table[c].dtype == np.int64, (c, table[c].dtype)
    assert table["radius"].dtype == np.float64
    assert (table["method"] == method.name).all()
    rad, pred = table["radius"].to_numpy(), table["predict"].to_numpy()
    assert not np.isnan(rad).any() and (rad >= 0).all() and not np.isneginf(rad).any()
    assert ((pred >= -1) & (pred < M)).all()
    per = table.groupby("idx").size()
    if method.set_valued:
        check_sets(table)
        # the test inputs (some of the store's), each with the same settings
        assert set(per.index) <= set(range(len(labels))) and len(per) and per.nunique() == 1
    else:
        assert (rad[pred == -1] == 0).all()
        if method.predict_only:
            assert (rad == 0).all()
        assert (table["correct"].to_numpy() == (pred == table["label"].to_numpy())).all()
        # every input, each with the same settings
        assert sorted(per.index) == list(range(len(labels))) and per.nunique() == 1
    # each input's label as stored
    assert (table["label"].to_numpy() == np.asarray(labels)[table["idx"].to_numpy()]).all()


def check_sets(table: pd.DataFrame) -> None:
    """Rows of prediction sets: ``set`` (classes ascending, single spaces) of ``set_size`` classes; predict its only
    class (-1 unless a singleton, an abstention or not); correct 1 exactly when the label is in it; radius the
    perturbation (``epsilon``) the set was made for."""
    for row in table.itertuples(index=False):
        classes = [int(c) for c in row.set.split()] if row.set else []
        assert classes == sorted(set(classes)) and all(0 <= c < M for c in classes) and row.set_size == len(classes)
        assert row.predict == (classes[0] if len(classes) == 1 else -1)
        assert row.correct == int(row.label in classes) and row.radius == row.epsilon


# The overall confidence each sidecar must state, written here from docs/methods.md (sections 0-11), not read
# from the registry: per method, (level, how the statement begins) for three option sets: the method's example
# options at the default alpha 0.001; alpha 0.01 with --joint-alpha; alpha 0.001 with --n-use 100,400 (alpha
# split over the two prefixes on S, the table's confidence unchanged). None: the method refuses that option set.
ONCE = ((0.999, "1 - alpha = 0.999"), (0.99, "1 - alpha = 0.99"), (0.999, "1 - alpha = 0.999"))
TWICE = ((0.998, "1 - 2 alpha = 0.998"), (0.99, "1 - alpha = 0.99 (--joint-alpha"), (0.998, "1 - 2 alpha = 0.998"))
CONFIDENCE = {
    "cohen": ONCE,
    "cohen-predict": ONCE,
    "two-step": TWICE,                     # PREDICT's runner-up test on S0 at alpha, the bounds on S at alpha
    "uncertainty": TWICE,                  # the same split as two-step
    "cdf": ONCE,                           # the class is picked on S0 without a test
    "soft": ONCE,                          # lower bound at alpha/2, the other classes at alpha/(2(m-1)) each
    "aces": ONCE,                          # pS and pA at alpha/2 each; --joint-alpha changes nothing
    "aces-predict": ONCE,
    "adaptive": ONCE[:2] + (None,),        # s stages at alpha/s each; its stages are prefixes: no --n-use list
    "incremental": TWICE,                  # pA on the base at alpha, zeta on the lost votes at alpha
    "majority": ONCE,                      # docs/adding-a-method.md's example method
    # prediction sets: the coverage claim 1 - m (the example's miscoverage 0.5), never 1 - alpha; alpha is each
    # bound's failure probability, paid out of m, and a prefix list does not split it (one claim per prefix)
    "conformal": ((0.5, "coverage: "),) * 3,
}
CASES = ("example", "joint", "n_use")
CASE_OPTIONS = {"example": {}, "joint": {"alpha": 0.01, "joint_alpha": True}, "n_use": {"n_use": [100, 400]}}
N_USE_STATEMENT = ("; jointly over the 2 listed prefixes n_use = 100,400 (Bonferroni: every test and bound on S at "
                   "alpha/2 = 0.0005; tests on S0 at alpha)")


def check_sidecar(meta: dict, method: registry.Method, case: str = "example") -> None:
    """The sidecar states the confidence CONFIDENCE writes for this method and option set (CASES)."""
    assert method.name in CONFIDENCE, (f"{method.name}: add its overall confidence per option set to CONFIDENCE "
                                       f"(from its section of docs/methods.md)")
    level, start = CONFIDENCE[method.name][CASES.index(case)]
    assert meta["method"] == method.name
    assert meta["confidence"] == pytest.approx(level, abs=1e-12), (case, meta["confidence"])
    assert meta["confidence_statement"].startswith(start), (case, meta["confidence_statement"])
    if case == "n_use" and method.set_valued:   # one coverage claim per prefix: nothing split over the list
        assert "n_use) setting separately" in meta["confidence_statement"], meta["confidence_statement"]
    elif case == "n_use":
        assert meta["confidence_statement"].endswith(N_USE_STATEMENT), meta["confidence_statement"]
        assert meta["prefixes"] == {"n_use": [100, 400], "split": 2, "alpha_on_s": 0.0005,
                                    "guarantee": "jointly over the 2 listed prefixes (Bonferroni)"}


def check_tie(table: pd.DataFrame, method: registry.Method, core) -> None:
    """Votes split evenly between two classes: nothing is certified at a positive radius, and a method abstains
    unless its entry names a fallback (core_predict), whose class it may return at radius 0."""
    assert (table["radius"] == 0).all()
    pred = table["predict"].to_numpy()
    if method.needs_core_predict:
        assert ((pred == -1) | (pred == np.asarray(core)[table["idx"].to_numpy()])).all()
    else:
        assert (pred == -1).all()


def check_compact(full, compact, method: registry.Method, tmp_path) -> None:
    """A compact store gets what the entry declares, for each option value its entry names: the full store's
    table (exact), a table never above it (conservative), a table of the same rows and classes (bounded), or a
    one-line refusal."""
    from smoothcert.certifier import certify

    for extra, policy in method.compact_cases():
        opts = CertifyOptions(**{**example_for(method, full), **extra})
        assert policy.certificate in registry.CERTIFICATES
        if not policy.supported:
            check_compact_refusal(compact, method, policy.why, tmp_path, extra)
            continue
        want, _ = certify(full, method.name, opts, progress=False)
        got, meta = certify(compact, method.name, opts, progress=False)
        assert meta["compact"] == {"layout": "compact", "topk": 2, "certificate": policy.certificate,
                                   "why": policy.why}
        assert method.on_compact(None, opts) == policy
        if policy.certificate == "exact":
            pd.testing.assert_frame_equal(want, got, check_exact=True)
            continue
        first = want.groupby("idx")["label"].first()   # every input's label (a set-valued method: the test inputs')
        labels = np.full(int(first.index.max()) + 1, -1)
        labels[first.index.to_numpy()] = first.to_numpy()
        check_table(got, method, labels)
        # the same rows, in the same order, with the same settings
        assert len(got) == len(want) and (got["idx"].to_numpy() == want["idx"].to_numpy()).all()
        for col in [c for c in registry.setting_columns() if c in want.columns]:
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), col
        p, w = got["predict"].to_numpy(), want["predict"].to_numpy()
        if policy.certificate == "conservative":  # a class only where the full store gives it, never a larger radius
            assert ((p == -1) | (p == w)).all()
            assert (got["radius"].to_numpy() <= want["radius"].to_numpy() + policy.radius_tol).all()
        else:  # bounded: where both certify, the same class
            assert ((p == -1) | (w == -1) | (p == w)).all()


def check_compact_refusal(compact, method, why, tmp_path, extra=None) -> None:
    """``--method NAME <why>; store ...`` as one line, from the API and the command line, nothing written."""
    from smoothcert.certifier import certify

    example = {**example_for(method, compact), **(extra or {})}
    with pytest.raises(ValueError) as e:
        certify(compact, method.name, CertifyOptions(**example), progress=False)
    assert str(e.value).startswith(f"--method {method.name} {why}; store ")
    out = tmp_path / "refused.csv"
    r = run_cli(["certify", compact, "--method", method.name, "--out", out, "-q", *flags(example)])
    assert r.exit_code != 0 and r.stderr.splitlines() == [f"smoothcert: error: {e.value}"]
    assert not out.exists()


def bad_options(method: registry.Method) -> list:
    """(Option, bad value) of every option the method reads that declares a value it refuses."""
    own = [o for o in method.options if o.cli]
    return [(o, o.bad) for o in COMMON + ENSEMBLE + tuple(own) if o.bad is not None]


def check_bad_option(store, method: registry.Method, option, value, tmp_path) -> None:
    out = tmp_path / "bad.csv"
    args = flags({k: v for k, v in example_for(method, store).items() if k != option.name})
    r = run_cli(["certify", store, "--method", method.name, "--out", out, "-q", *args, f"{option.flag_name}={value}"])
    assert r.exit_code != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smoothcert: error: "), r.output
    assert re.search(rf"(?<![\w-]){re.escape(option.flag_name)}(?![\w-])", lines[0]), lines[0]
    assert not out.exists()


# ------------------------------------------------------------------- tests
@pytest.fixture
def method_store(make_store):
    """(store, labels, core_predict or None) for a method, built with what its entry asks for."""

    def _make(method, inputs=INPUTS, name="s"):
        return build(make_store, method, inputs, name)

    return _make


TIE = [([20, 20, 0, 0], [200, 200, 0, 0], i % 2) for i in range(4)]


def test_the_methods_are_taken_from_the_registry():
    assert METHODS == certifier.available_methods() and len(METHODS) >= 9
    assert {"cohen", "two-step", "uncertainty", "cdf", "soft", "aces", "adaptive"} <= set(METHODS)


def test_the_store_builder_gives_a_method_what_its_entry_asks_for(method_store):
    from smoothcert.certifier.kernels import class_counts
    from smoothcert.store import open_store

    needs = registry.Method("needs-all", lambda block, opts: None, registry.confidence_once,
                            fields=("argmax", "rows", "member_logprobs"), needs_core_predict=True)
    store, labels, core = method_store(needs)
    with open_store(store) as st:
        assert st.members == 2 and st.has_core_predict
        b = st.read_block(0, len(INPUTS), fields=("argmax",))
    assert (class_counts(b["argmax"].astype(np.int64), 0, N0, M) == [c0 for c0, _, _ in INPUTS]).all()
    assert (class_counts(b["argmax"].astype(np.int64), N0, N0 + N, M) == [c for _, c, _ in INPUTS]).all()
    assert (b["core_predict"] == core).all() and (b["label"] == labels).all()
    plain, _, none = method_store(registry.get_method("cohen"))
    with open_store(plain) as st:
        assert st.members == 0 and not st.has_core_predict and none is None


@pytest.mark.parametrize("name", METHODS)
def test_the_table_is_well_formed_and_the_sidecar_states_the_methods_confidence(name, method_store, tmp_path):
    method = registry.get_method(name)
    store, labels, _ = method_store(method)
    table, _ = certify_api(store, method)
    check_table(table, method, labels)
    assert (table["predict"] >= 0).any() and (table["predict"] == -1).any()  # neither all certified nor all abstained
    written, meta = certify_cli(store, method, tmp_path / "t.csv")
    assert list(written.columns) == list(table.columns) and len(written) == len(table)
    check_sidecar(meta, method, "example")
    # another alpha and --joint-alpha, and a list of prefixes: the confidence CONFIDENCE writes for each
    _, meta2 = certify_cli(store, method, tmp_path / "t2.csv", **CASE_OPTIONS["joint"])
    check_sidecar(meta2, method, "joint")
    if CONFIDENCE[method.name][CASES.index("n_use")] is None:
        r = run_cli(["certify", store, "--method", name, "--out", tmp_path / "t3.csv", "-q", "--n-use", "100,400",
                     *flags(example_for(method, store))])
        assert r.exit_code != 0 and "--n-use" in r.output and not (tmp_path / "t3.csv").exists()
    else:
        _, meta3 = certify_cli(store, method, tmp_path / "t3.csv", **CASE_OPTIONS["n_use"])
        check_sidecar(meta3, method, "n_use")


@pytest.mark.parametrize("name", METHODS)
def test_votes_split_evenly_between_two_classes_certify_nothing(name, method_store):
    method = registry.get_method(name)
    store, labels, core = method_store(method, TIE, "tie")
    table, _ = certify_api(store, method)
    check_table(table, method, labels)
    check_tie(table, method, core)


@pytest.mark.parametrize("name", METHODS)
def test_a_compact_store_gets_the_declared_behaviour(name, method_store, tmp_path):
    from smoothcert.store.compact import compact_store

    method = registry.get_method(name)
    store, _, _ = method_store(method)
    compact = tmp_path / "compact"
    compact_store(str(store), str(compact), topk=2)
    check_compact(store, compact, method, tmp_path)


def compact_without_selection_rows(full, path):
    """The compact store of ``full`` in the layout written before format version 3 (no whole S0 rows)."""
    from smoothcert.store import CompactRows, create_store, open_store

    with open_store(full) as f:
        st = create_store(path, n_inputs=f.n_inputs, n0=f.n0, n=f.n, num_classes=f.num_classes, sigma=f.sigma,
                          dtype=f.dtype, core_predict=f.has_core_predict, layout=CompactRows(2))
        for s in range(f.n_inputs):
            st.write_input(s, **f.read_input(s))
        st.close()
    return path


@pytest.mark.parametrize("name", [m.name for m in registry.methods() if m.compact is not None
                                  and m.compact.needs_full_s0])
def test_a_compact_store_without_whole_selection_rows_gets_the_declared_refusal(name, method_store, tmp_path):
    from smoothcert.store import open_store

    method = registry.get_method(name)
    store, _, _ = method_store(method)
    old = compact_without_selection_rows(store, tmp_path / "old")
    with open_store(old) as st:
        assert not st.keeps_full_s0
        policy = method.on_compact(st)
    assert not policy.supported and policy.why == method.compact.without_full_s0
    for extra, _ in method.compact_cases():
        check_compact_refusal(old, method, policy.why, tmp_path, extra)


@pytest.mark.parametrize("name,flag", [(m.name, o.flag_name) for m in registry.methods() for o, _ in bad_options(m)])
def test_a_bad_option_value_is_a_one_line_error_naming_the_option(name, flag, method_store, tmp_path):
    method = registry.get_method(name)
    store, _, _ = method_store(method)
    option, value = next((o, v) for o, v in bad_options(method) if o.flag_name == flag)
    check_bad_option(store, method, option, value, tmp_path)


@pytest.mark.parametrize("name", METHODS)
def test_certify_help_lists_the_method_and_its_options_from_their_declarations(name):
    method = registry.get_method(name)
    r = run_cli(["certify", "--help"])
    assert r.exit_code == 0
    text = unwrapped(r.output)
    assert unwrapped(f"{method.name}: {method.summary}") in text
    for o in method.options:
        if o.cli:
            assert o.flag_name in text and unwrapped(o.help)[:40] in text


def unwrapped(text: str) -> str:
    """``text`` without blanks: click wraps help lines at spaces and after hyphens (``--min-`` / ``share``)."""
    return "".join(text.split())


def test_every_method_declares_a_bad_value_for_each_option_that_refuses_values():
    for m in registry.methods():
        for o in m.options:
            if o.cli and (o.parse is not None or o.validate is not None or o.apply is not None):
                assert o.bad is not None, f"{m.name}: {o.flag_name} declares no bad value for the contract test"


def test_one_option_name_means_one_thing_across_methods():
    from smoothcert.certifier.registry import Floats, Method, Option, confidence_once

    def compute(block, opts):
        return None

    theta = registry.get_method("aces").options[0]
    with pytest.raises(ValueError, match=r"method clash: option --theta differs from the declaration of method"):
        registry.register(Method("clash", compute, confidence_once, options=(Option("theta", [0.5], parse=Floats()),)))
    assert "clash" not in certifier.available_methods()
    # the same declaration with other help is shared, and the help texts are shown side by side
    registry.register(Method("share", compute, confidence_once,
                             options=(Option("theta", [], "my own words.", parse=Floats(), bad="x"),)))
    try:
        helps = dict(next(per for o, per in registry.method_options() if o.name == "theta"))
        assert helps["share"] == "my own words." and helps["aces/aces-predict"] == theta.help
    finally:
        registry.unregister("share")
    registry.register(Method("common", compute, confidence_once, options=(Option("alpha", 0.01, type=float),)))
    try:
        with pytest.raises(ValueError, match="--alpha is a common option"):
            CertifyOptions()
    finally:
        registry.unregister("common")
    assert CertifyOptions().alpha == 0.001


# ------------------------------------------- the toy method of docs/adding-a-method.md
def doc_modules() -> dict[str, str]:
    """The walk-through's two modules, by file name: the computation and the entries module registering it
    (checking that the line it adds to certifier/__init__.py imports the entries module)."""
    text = (ROOT / "docs" / "adding-a-method.md").read_text()
    out = dict(re.findall(r"### \d\. [^\n]*`certifier/(\w+\.py)`\n\n```python\n(.*?)```", text, flags=re.S))
    assert set(out) == {"majority.py", "entries_majority.py", "__init__.py"}, sorted(out)
    assert out.pop("__init__.py").startswith("from . import entries_majority ")
    return out


@pytest.fixture
def majority(tmp_path):
    """The docs' majority method: the registered one when a contributor has added it (the page's steps 1-3), else
    the docs' two modules, saved in a folder added to smoothcert.certifier's path and registered by importing the
    entries module (for this test only)."""
    import importlib
    import sys

    if "majority" in certifier.available_methods():   # never unregister a contributor's real method
        yield registry.get_method("majority")
        return
    folder = tmp_path / "certifier-extra"
    folder.mkdir()
    for name, code in doc_modules().items():
        (folder / name).write_text(code)
    certifier.__path__.append(str(folder))
    try:
        importlib.import_module("smoothcert.certifier.entries_majority")
        assert "smoothcert.certifier.majority" not in sys.modules  # registering imports no computation
        yield registry.get_method("majority")
    finally:
        registry.unregister("majority")
        certifier.__path__.remove(str(folder))
        for mod in ("smoothcert.certifier.entries_majority", "smoothcert.certifier.majority"):
            sys.modules.pop(mod, None)
    assert "majority" not in certifier.available_methods() and "min_share" not in declared()


def test_the_method_of_the_adding_a_method_doc_keeps_the_contract_with_no_other_edit(majority, method_store, tmp_path):
    from scipy import stats

    assert "majority" in certifier.available_methods() and "min_share" in declared()
    r = run_cli(["certify", "--help"])
    assert "majority:" in r.output and "--min-share" in unwrapped(r.output)
    store, labels, _ = method_store(majority)
    table, meta = certify_cli(store, majority, tmp_path / "m.csv", min_share=0.6)
    check_table(table, majority, labels)
    check_sidecar(meta, majority, "example")
    assert meta["options"]["min_share"] == 0.6
    # its certificate, recomputed from the counts with scipy's beta quantile
    for (c0, c, _), (_, row) in zip(INPUTS, table.iterrows()):
        cA = int(np.argmax(c0))
        pA = 0.0 if c[cA] == 0 else stats.beta.ppf(0.001, c[cA], N - c[cA] + 1)
        assert row["p_lower"] == pytest.approx(pA, rel=1e-9)
        assert row["predict"] == (cA if pA > 0.6 else -1)
    tstore, tlabels, _ = method_store(majority, TIE, "tie")
    tt, _ = certify_api(tstore, majority)
    check_table(tt, majority, tlabels)
    check_tie(tt, majority, None)
    from smoothcert.store.compact import compact_store

    compact_store(str(store), str(tmp_path / "c"), topk=2)
    check_compact(store, tmp_path / "c", majority, tmp_path)
    for option, value in bad_options(majority):
        check_bad_option(store, majority, option, value, tmp_path)
    assert math.isclose(CertifyOptions().min_share, 0.5)
