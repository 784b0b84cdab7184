"""The package's shape: one import name, layers that point one way, no import cycles.

The import graph is read from the installed package's source with ``ast``
(every ``import`` statement, at module level and inside functions alike, and
every ``"module:function"`` name a registry entry imports on first use), so
a lazy import cannot hide a cycle or an upward dependency.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import smoothcert

PKG = "smoothcert"
PKG_DIR = Path(smoothcert.__file__).resolve().parent

# Layer of each top-level part of the package: an import may point to the same or a lower layer only, and the two
# middle layers never import each other (the sampler writes stores, the certifier reads them; neither knows the other).
LAYERS = {
    "store": 0, "stats": 0, "parsing": 0,
    "sampler": 1, "certifier": 1,
    "cli": 2, "demo": 2, "__main__": 2, "": 2,   # "" is the package's own __init__ (the notebook API)
}
SIBLINGS_APART = {("sampler", "certifier"), ("certifier", "sampler")}
PACKAGE_PARTS = ("store", "stats", "sampler", "certifier")


def package_modules(pkg_dir: Path = PKG_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module the package installs."""
    mods = {}
    for f in sorted(pkg_dir.glob("*.py")):
        mods[PKG if f.stem == "__init__" else f"{PKG}.{f.stem}"] = f
    for part in PACKAGE_PARTS:
        for f in sorted((pkg_dir / part).rglob("*.py")):
            rel = f.relative_to(pkg_dir).with_suffix("")
            parts = [PKG, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _resolve(importer: str, is_pkg: bool, node: ast.AST, modules: dict) -> set[str]:
    """The project modules one import statement loads (names that are submodules count as modules)."""
    out = set()
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name == PKG or a.name.startswith(PKG + "."):
                out.add(_longest_module(a.name, modules))
        return out
    base_parts = importer.split(".") if is_pkg else importer.split(".")[:-1]
    if node.level:
        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if not (base == PKG or base.startswith(PKG + ".")):
        return out
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.add(sub if sub in modules else _longest_module(base, modules))
    return out


def _longest_module(name: str, modules: dict) -> str:
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


# A registry entry's function named "module:function" (certifier/registry.py, Ref): the module is imported when the
# function is first called, relative names to the certifier package.
REF = re.compile(r"^(\.[A-Za-z_][\w.]*|smoothcert(\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")
REF_PACKAGE = f"{PKG}.certifier"


def _ref_module(text: str, modules: dict) -> set[str]:
    module = text.partition(":")[0]
    module = REF_PACKAGE + module if module.startswith(".") else module
    found = _longest_module(module, modules)
    return {found} if found else set()


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (module level or inside functions), and
    the modules of the ``"module:function"`` names it hands to the registry."""
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _resolve(name, is_pkg, node, modules)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and REF.match(node.value):
                deps |= _ref_module(node.value, modules)
        deps.discard(name)
        deps.discard("")
        graph[name] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each a list of module names."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def part_of(module: str) -> str:
    """The top-level part a module belongs to ("store", "certifier", ..., "" for the package itself)."""
    rest = module[len(PKG) + 1:] if module != PKG else ""
    return rest.split(".")[0]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that points to a higher layer, or from sampler to certifier or back."""
    bad = []
    for src, deps in graph.items():
        a = part_of(src)
        for dst in deps:
            b = part_of(dst)
            if a == b:
                continue
            if LAYERS[b] > LAYERS[a] or (a, b) in SIBLINGS_APART:
                bad.append(f"{src} imports {dst} ({a or 'smoothcert'} -> {b or 'smoothcert'})")
    return sorted(bad)


# ------------------------------------------------------------------ the checker itself
def test_the_graph_reader_sees_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "smoothcert"
    for d in PACKAGE_PARTS:
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "store" / "api.py").write_text("def f():\n    from ..certifier import engine\n")
    (pkg / "certifier" / "engine.py").write_text("from ..store import api\nfrom ..sampler import run\n")
    (pkg / "sampler" / "run.py").write_text("import smoothcert.stats\n")
    (pkg / "certifier" / "entries.py").write_text('register(Method("x", ".engine:certify", report="x:y"))\n')
    mods = package_modules(pkg)
    g = import_graph(mods)
    assert g["smoothcert.store.api"] == {"smoothcert.certifier.engine"}
    assert g["smoothcert.certifier.engine"] == {"smoothcert.store.api", "smoothcert.sampler.run"}
    assert g["smoothcert.certifier.entries"] == {"smoothcert.certifier.engine"}
    assert g["smoothcert.sampler.run"] == {"smoothcert.stats"}
    assert find_cycles(g) == [["smoothcert.certifier.engine", "smoothcert.store.api"]]
    assert layer_violations(g) == [
        "smoothcert.certifier.engine imports smoothcert.sampler.run (certifier -> sampler)",
        "smoothcert.store.api imports smoothcert.certifier.engine (store -> certifier)",
    ]


# ------------------------------------------------------------------ the package
def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in package_modules() if part_of(m) not in LAYERS)
    assert not unknown, f"modules outside every layer (add them to LAYERS): {unknown}"


def test_the_import_graph_is_read_and_not_empty():
    g = import_graph(package_modules())
    assert "smoothcert.store.format" in g["smoothcert.store.api"]
    assert any(d.startswith("smoothcert.store") for d in g["smoothcert.certifier.engine"])
    assert sum(len(v) for v in g.values()) > 50


def test_no_import_cycle_among_the_project_modules():
    cycles = find_cycles(import_graph(package_modules()))
    assert not cycles, "import cycles (module- or function-level imports):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_layers_point_one_way_and_sampler_and_certifier_never_import_each_other():
    bad = layer_violations(import_graph(package_modules()))
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_the_notebook_api_is_three_documented_functions():
    for name in ("sample", "open_store", "certify"):
        fn = getattr(smoothcert, name)
        assert callable(fn) and fn.__doc__ and len(fn.__doc__.strip()) > 40, name
        assert fn.__module__.startswith("smoothcert."), (name, fn.__module__)


def test_importing_smoothcert_loads_neither_torch_nor_the_certifier():
    code = ("import sys, smoothcert\n"
            "print(sorted(m for m in ('torch', 'numba', 'pandas', 'smoothcert.certifier', 'smoothcert.sampler')"
            " if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_wheel_installs_only_the_smoothcert_package(tmp_path):
    """`pip install .` adds one top-level name: the wheel holds smoothcert/ and its dist-info, nothing else."""
    root = Path(__file__).resolve().parent.parent
    assert (root / "pyproject.toml").is_file()
    src = tmp_path / "src"   # a copy, so that setuptools' build/ folder never lands in the checkout
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "bench-out",
                                                             "demo-out", "*.zarr", ".pytest_cache", ".hypothesis"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("smoothcert-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"smoothcert"}, sorted(tops)
    for needed in ("smoothcert/__init__.py", "smoothcert/cli.py", "smoothcert/store/FORMAT.md",
                   "smoothcert/sampler/assets/digits_cnn_sigma0.25.pt", "smoothcert/certifier/engine.py",
                   "smoothcert/stats/bounds.py"):
        assert needed in names, needed
    assert not any(n.startswith(("smoothcert/tests/", "smoothcert/bench/", "smoothcert/docs/")) for n in names)
