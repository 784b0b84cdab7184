"""Start-up: the command line is built from every method's light entry, a run imports only its own method.

``import smoothcert.certifier`` and ``smoothcert certify --help`` load the
registry entries (numpy and the standard library) and no method's
computation, nor pandas, scipy, numba, Dask or zarr; ``smoothcert certify
--method cohen`` loads cohen's computation and no other method's, and never
``scipy.stats`` or ``distributed``. Each of these runs in a fresh
interpreter that reports its ``sys.modules``.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from smoothcert.certifier import registry
from smoothcert.certifier.registry import Ref

HEAVY = ("pandas", "scipy", "numba", "dask", "distributed", "zarr", "torch")

PROBE = r"""
import contextlib, io, json, sys
args = json.loads(sys.argv[1])
if args:
    from smoothcert.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(args, standalone_mode=False, prog_name="smoothcert")
        except SystemExit as e:
            assert not e.code, e.code
print(json.dumps({"modules": sorted(sys.modules), "output": out.getvalue() if args else ""}))
"""


def probe(args: list[str], imports: str = "") -> dict:
    """Run the command line ``args`` (or only ``imports``) in a fresh interpreter: its modules and output."""
    code = imports + "\n" + PROBE
    r = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def computation_modules(skip=()) -> set[str]:
    """The modules the registered methods' entries name for their functions (all but the methods ``skip``)."""
    return {ref.module for m in registry.methods() if m.name not in skip for ref in m.refs()}


def loaded(modules, names) -> list[str]:
    """The ``names`` (packages count with their submodules) among ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_every_registered_method_names_its_computation_and_it_resolves():
    assert computation_modules(), "the built-in entries name their functions as 'module:function'"
    for m in registry.methods():
        computation = m.compute if m.compute is not None else m.statistics   # a step across inputs: statistics
        assert isinstance(computation, Ref), m.name
        for ref in m.refs():
            assert ref.module.startswith("smoothcert.certifier."), (m.name, ref.target)
            assert callable(ref.resolve()), (m.name, ref.target)


def test_importing_the_certifier_loads_no_method_computation_and_no_heavy_library():
    mods = probe([], "import smoothcert.certifier")["modules"]
    assert loaded(mods, HEAVY) == []
    assert loaded(mods, computation_modules()) == []
    assert "smoothcert.certifier.engine" not in mods  # certify is imported on first use
    assert {f"smoothcert.certifier.entries_{f}" for f in ("basic", "confidence", "uncertainty")} <= set(mods)


def test_certify_help_is_built_from_every_entry_without_importing_their_computations():
    r = probe(["certify", "--help"])
    assert loaded(r["modules"], HEAVY) == []
    assert loaded(r["modules"], computation_modules()) == []
    for m in registry.methods():
        assert f"{m.name}:" in r["output"]
        for o in m.options:
            assert not o.cli or o.flag_name in r["output"], o.flag_name


def test_certify_with_one_method_imports_that_methods_computation_only(make_store, tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(2, 60)).astype(np.float32)
    store = make_store(probs, [0, 1], 20)
    r = probe(["certify", str(store), "--method", "cohen", "--out", str(tmp_path / "c.csv")])
    mods = r["modules"]
    assert {"smoothcert.certifier.methods_basic", "smoothcert.certifier.cohen", "pandas"} <= set(mods)
    assert loaded(mods, computation_modules(skip=("cohen", "cohen-predict", "two-step"))) == []
    assert loaded(mods, ("scipy.stats", "distributed", "torch")) == []
    assert (tmp_path / "c.csv").exists() and "2 certificates" in r["output"]


def test_a_ref_is_its_name_resolved_on_the_first_call():
    ref = Ref("json:dumps")
    assert ref == Ref("json:dumps") and ref != Ref("json:loads") and ref.module == "json"
    assert ref([1, math.inf]) == "[1, Infinity]"
    assert Ref(".cohen:certify").module == "smoothcert.certifier.cohen"
    for bad in ("json", "json:", ":dumps", "json:1x"):
        with pytest.raises(ValueError, match="module:function"):
            Ref(bad)


def test_an_entry_given_a_name_keeps_a_ref_and_one_given_a_function_keeps_the_function():
    m = registry.Method("probe-only", ".methods_basic:certify_cohen", registry.confidence_once,
                        options=(registry.Option("probe_x", 1, validate=".prefixes:check_n_use"),))
    assert m.compute == Ref(".methods_basic:certify_cohen") and m.confidence is registry.confidence_once
    assert m.refs() == [m.compute, m.options[0].validate]
    with pytest.raises(ValueError, match="--n-use must be at least 1"):
        m.options[0].validate(0)


def test_the_entries_declare_the_values_their_computations_accept():
    from smoothcert.certifier import (cdf, compact_confidence, entries_confidence, entries_incremental,
                                      entries_uncertainty, report_incremental, uncertainty)

    assert entries_uncertainty.FUNCTIONS == uncertainty.FUNCTIONS
    assert entries_uncertainty.GUARANTEES == uncertainty.GUARANTEES
    assert entries_confidence.MEASURES == tuple(cdf.MEASURES)
    assert entries_confidence.COMPACT_RULES == compact_confidence.RULES
    assert entries_confidence.CDF_RADIUS_TOL == cdf.TOL
    assert entries_incremental.DIRECT == report_incremental.DIRECT
