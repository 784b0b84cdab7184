"""Untrusted stores, sources and checkpoints: nothing is unpickled or evaluated, nothing escapes,
absurd metadata is refused before any allocation, and corrupted inputs give one-line errors.

Every command judged here either succeeds with correct output (a certificate
table equal to the intact store's) or fails with exit != 0 and exactly one
``smoothcert: error: ...`` line and no traceback (``store verify`` lists the
damaged inputs and exits 1). See docs/faults.md for the table of cases.
"""
from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faultkit import ROOT, assert_one_line_error, assert_refused, invoke, make_arrays, make_store, message_lines

SOURCE_DIRS = ("store", "stats", "certifier", "sampler", "bench")
SOURCE_FILES = ("__init__.py", "__main__.py", "cli.py", "demo.py", "parsing.py")


def source_files():
    files = [ROOT / f for f in SOURCE_FILES]
    for d in SOURCE_DIRS:
        files += sorted((ROOT / d).rglob("*.py"))
    return files


# ---------------------------------------------------------------- 1. nothing unpickled or evaluated
def _call_name(node):
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    # the root of the chain: a name, or "<expr>" for a call on any other expression (``f(x).eval()`` is a
    # method of f's result, never the builtin ``eval``)
    parts.append(f.id if isinstance(f, ast.Name) else "<expr>")
    return ".".join(reversed(parts))


def _kw(node, name):
    for k in node.keywords:
        if k.arg == name:
            return k.value
    return None


def _module_string_constants(tree) -> set:
    """Names assigned a string literal at module level (source code the module itself carries)."""
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


def _is_constant_code(node, consts) -> bool:
    """A string built only from literals and module-level string constants (not from data)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in consts
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("replace", "format", "strip"):
            return _is_constant_code(node.func.value, consts) and all(_is_constant_code(a, consts) for a in node.args)
        if isinstance(node.func, ast.Name) and node.func.id == "compile":
            return bool(node.args) and _is_constant_code(node.args[0], consts)
    return False


# The one unpickler the project has: CIFAR batches, resolving numpy's array reconstruction only
# (test_a_malicious_cifar_pickle_is_refused_and_runs_nothing shows it refusing code).
RESTRICTED_UNPICKLERS = {("sampler/cifar.py", "NumpyOnlyUnpickler")}


def _unpickler_subclass(node, path) -> str | None:
    """A class deriving from pickle.Unpickler that is not the allow-listed restricted one (or lacks find_class)."""
    if not isinstance(node, ast.ClassDef):
        return None
    bases = [ast.unparse(b) for b in node.bases]
    if not any(b.split(".")[-1] in ("Unpickler", "_Unpickler") for b in bases):
        return None
    rel = str(path.relative_to(ROOT))
    has_find_class = any(isinstance(n, ast.FunctionDef) and n.name == "find_class" for n in node.body)
    if (rel, node.name) in RESTRICTED_UNPICKLERS and has_find_class:
        return None
    return f"{rel}:{node.lineno} class {node.name}({', '.join(bases)}) (an unpickler not on the allow-list)"


def dangerous_calls(path: Path) -> list[str]:
    """Calls that could unpickle or evaluate data: pickle/dill/marshal/joblib loads, eval/exec/compile/
    __import__ of anything but the module's own constant source, np.load(allow_pickle=True), torch.load
    without weights_only=True, yaml.load, pd.read_pickle, zip/tar extraction without a path guard, and
    any Unpickler subclass but the allow-listed restricted one."""
    tree = ast.parse(path.read_text(), str(path))
    consts = _module_string_constants(tree)
    bad = []
    for node in ast.walk(tree):
        sub = _unpickler_subclass(node, path)
        if sub:
            bad.append(sub)
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        last = name.split(".")[-1]
        where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
        if name in ("eval", "exec", "compile", "__import__"):
            if not (node.args and _is_constant_code(node.args[0], consts)):
                bad.append(where)
        elif last in ("read_pickle", "unsafe_load"):
            bad.append(where)
        elif last in ("load", "loads", "Unpickler") and name.split(".")[0] in ("pickle", "cPickle", "dill", "marshal",
                                                                               "joblib", "shelve", "cloudpickle"):
            bad.append(where)
        elif last == "load" and name.split(".")[0] in ("np", "numpy"):
            v = _kw(node, "allow_pickle")
            if v is not None and not (isinstance(v, ast.Constant) and v.value is False):
                bad.append(where + " (allow_pickle not False)")
        elif name in ("torch.load",):
            v = _kw(node, "weights_only")
            if not (isinstance(v, ast.Constant) and v.value is True):
                bad.append(where + " (without weights_only=True)")
        elif name in ("yaml.load",):
            bad.append(where)
        elif last in ("extractall", "extract") and "safe_member_name" not in path.read_text():
            bad.append(where + " (extraction without a path guard)")
    return bad


def test_no_source_file_unpickles_evaluates_or_extracts():
    files = source_files()
    assert len(files) > 20
    bad = [b for f in files for b in dangerous_calls(f)]
    assert not bad, "\n".join(bad)


def test_the_scan_catches_what_it_looks_for(tmp_path):
    p = ROOT / "tests" / "_scan_probe_tmp.py"
    p.write_text("import pickle, numpy as np, torch\npickle.loads(b'')\nnp.load('x', allow_pickle=True)\n"
                 "torch.load('w')\ntorch.load('w', weights_only=False)\neval(input())\nimport zipfile\n"
                 "zipfile.ZipFile('a').extractall('b')\nnp.load('x', allow_pickle=False)\n"
                 "torch.load('w', weights_only=True)\nexec(compile('x = 1', 'f', 'exec'))\n__import__('os')\ntorch.nn.Linear(1, 1).eval()\n"  # a method, not the builtin
                 "class U(pickle.Unpickler):\n    def find_class(self, m, n):\n        return object\n")
    try:
        bad = dangerous_calls(p)
    finally:
        p.unlink()
    assert len(bad) == 7, bad
    assert any("class U(pickle.Unpickler)" in b for b in bad)


def test_a_zarr_v2_store_with_a_pickle_codec_is_refused_without_unpickling(tmp_path):
    """A store written as zarr v2 whose record array is a pickled object array: zarr 3 has no pickle
    codec for it, and nothing runs."""
    good = make_store(tmp_path / "good")
    attrs = json.loads((good / "zarr.json").read_text())["attributes"]
    evil = tmp_path / "v2"
    (evil / "inputs").mkdir(parents=True)
    (evil / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (evil / ".zattrs").write_text(json.dumps(attrs))
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    obj = np.empty((1, 8), dtype=object)
    obj[0, :] = [Evil() for _ in range(8)]
    (evil / "inputs" / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [6, 8], "chunks": [1, 8], "dtype": "|O", "compressor": None, "fill_value": None,
        "order": "C", "filters": [{"id": "pickle", "protocol": 5}], "dimension_separator": "."}))
    payload = pickle.dumps(obj, protocol=5)
    for s in range(6):
        (evil / "inputs" / f"{s}.0").write_bytes(payload)
    for args in (["store", "info", evil], ["store", "verify", evil],
                 ["certify", evil, "--method", "cohen", "--out", tmp_path / "o.csv", "-q"]):
        code, out, err, exc = invoke(args)
        assert_refused(code, out, err, exc, what=args[:2])
    assert not marker.exists()


def test_a_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    """--weights are read with torch.load(weights_only=True): a pickle with code in it is an error, not a run."""
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    w = tmp_path / "evil.pt"
    with open(w, "wb") as f:
        pickle.dump({"conv.weight": Evil()}, f)
    from smoothcert.sampler import testing as T

    x, y = T.tiny_data(n=2)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, out, err, exc = invoke(["sample", "--model", "smoothcert.sampler.testing:tiny", "--weights", w, "--data",
                                  tmp_path / "d.npz", "--sigma", "0.25", "--n0", "2", "--n", "4", "--device", "cpu",
                                  "--no-progress", tmp_path / "s"])
    line = assert_one_line_error(code, err, exc)
    assert "weights_only=True" in line
    assert not marker.exists()
    assert not (tmp_path / "s").exists()


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Write:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


class _Eval:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def test_a_malicious_cifar_pickle_is_refused_and_runs_nothing(tmp_path):
    """CIFAR python batches are pickles: read by an unpickler that resolves numpy's array reconstruction only."""
    from smoothcert.sampler.data import load_data

    marker = tmp_path / "PWNED"
    data = np.zeros((2, 3072), np.uint8)
    cases = {
        "os.system in a value": {b"data": data, b"labels": [0, 1], b"x": _System(f"touch {marker}")},
        "os.system as the whole file": _System(f"touch {marker}"),
        "a file write inside the labels": {b"data": data, b"labels": [0, _Write(marker)]},
        "eval by name": {b"data": data, b"labels": [0, 1], b"e": _Eval(f"open({str(marker)!r}, 'w').write('x')")},
    }
    for name, obj in cases.items():
        d = tmp_path / name.replace(" ", "_") / "cifar-10-batches-py"
        d.mkdir(parents=True)
        with open(d / "test_batch", "wb") as f:
            pickle.dump(obj, f)
        with pytest.raises(ValueError, match=r"not a readable CIFAR python batch \(refused to load "
                                             r"(posix\.system|pathlib\.Path\.write_text|builtins\.eval): only numpy"):
            load_data(str(d))
        assert not marker.exists(), name
        store = tmp_path / f"store-{d.parent.name}"
        code, out, err, exc = invoke(["sample", "--model", "smoothcert.sampler.testing:tiny_cifar10", "--data", d,
                                      "--sigma", "0.25", "--n0", "2", "--n", "4", "--device", "cpu", "--no-progress", store])
        assert "refused to load" in assert_one_line_error(code, err, exc, what=name)
        assert not marker.exists() and not store.exists(), name


def test_there_is_no_unsafe_checkpoint_flag_or_its_help_warns():
    from smoothcert import cli

    sample = cli.main.commands["sample"]
    for p in sample.params:
        names = " ".join(p.opts).lower()
        if any(w in names for w in ("unsafe", "pickle", "weights-only", "trust")):
            assert "warn" in (p.help or "").lower() or "unsafe" in (p.help or "").lower(), p.opts


# ---------------------------------------------------------------- 2. zip members cannot escape
def _zip_with_escaping_members(tmp_path) -> Path:
    folder = make_store(tmp_path / "src")
    z = tmp_path / "shared" / "evil.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        for name in ("../evil", "../../evil2", "rows/../../evil3", "/tmp/smoothcert-evil-abs", "rows/c/../../../evil4"):
            zf.writestr(zipfile.ZipInfo(name), b"escaped")
    return z


def _escaped(tmp_path) -> list[str]:
    found = [str(p) for p in tmp_path.rglob("evil*") if p.name != "evil.zip"]
    if Path("/tmp/smoothcert-evil-abs").exists():
        found.append("/tmp/smoothcert-evil-abs")
    return found


def test_zip_members_cannot_escape(tmp_path):
    z = _zip_with_escaping_members(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    ref = make_store(tmp_path / "ref")
    outcomes = {}
    for name, args in {
        "info": ["store", "info", z],
        "verify": ["store", "verify", z],
        "certify": ["certify", z, "--method", "two-step", "--out", work / "z.csv", "-q"],
        "export": ["store", "export", z, work / "copy.zip"],
        "merge": ["store", "merge", z, ref, work / "merged", "--assume-same-data"],
    }.items():
        code, out, err, exc = invoke(args)
        assert exc is None, (name, exc)
        assert "Traceback" not in err
        if code != 0:
            outcomes[name] = assert_one_line_error(code, err, exc, what=name)
        else:
            outcomes[name] = "ok"
        assert not _escaped(tmp_path), (name, _escaped(tmp_path))
    # reading a zip store never extracts: info, verify and certify work on the intact members
    assert outcomes["info"] == outcomes["verify"] == outcomes["certify"] == "ok", outcomes
    # packing refuses the unsafe member names
    assert "not a safe relative path" in outcomes["export"], outcomes["export"]


def test_the_member_name_guard():
    from smoothcert.store.share import safe_member_name
    from smoothcert.store.errors import StoreError

    for ok in ("zarr.json", "rows/c/0/0/0", "runs/a-b.c/zarr.json"):
        assert safe_member_name(ok) == ok
    for bad in ("../x", "a/../../x", "/abs", "a//b", "", ".", "a/./b", "..", "a\\..\\b", "C:/x"):
        with pytest.raises(StoreError):
            safe_member_name(bad)


# ---------------------------------------------------------------- 3. absurd metadata, refused before allocation
ABSURD_SCRIPT = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), resource.RLIM_INFINITY))
from click.testing import CliRunner
from smoothcert import cli
out = []
import signal


class Slow(BaseException):
    pass


def alarm(*a):
    raise Slow()


signal.signal(signal.SIGALRM, alarm)
for case, args in json.loads(sys.argv[3]):
    t = time.time()
    signal.alarm(int(sys.argv[4]))
    try:
        r = CliRunner().invoke(cli.main, args, catch_exceptions=True)
        exc = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
        res = dict(code=r.exit_code, stderr=r.stderr, exc=exc)
    except Slow:
        res = dict(code=None, stderr="", exc=None)
    finally:
        signal.alarm(0)
    out.append(dict(case=case, args=args, seconds=time.time() - t, **res))
print(json.dumps(out))
try:  # this process's own peak (kB): Linux carries the parent's peak into ru_maxrss across fork and exec,
    # so ru_maxrss would report pytest's own memory late in a full run (2.2 GB in CI), not this process's.
    peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak, file=sys.stderr)
"""


def _set_attrs(d: Path, **kv):
    """Change group metadata as an adversary who knows the format would: re-sealed with a valid checksum."""
    from smoothcert.store.format import sealed

    p = d / "zarr.json"
    j = json.loads(p.read_text())
    j["attributes"]["smoothcert"].update(kv)
    j["attributes"]["smoothcert"] = sealed(j["attributes"]["smoothcert"])
    p.write_text(json.dumps(j))


def _set_array(d: Path, name: str, shape=None, chunks=None, **kv):
    p = d / name / "zarr.json"
    j = json.loads(p.read_text())
    if shape is not None:
        j["shape"] = shape
    if chunks is not None:
        j["chunk_grid"]["configuration"]["chunk_shape"] = chunks
    j.update(kv)
    p.write_text(json.dumps(j))


BIG = 10**9
ABSURD = {
    # name: (mutation, does `store info` have to fail too?)
    "n_inputs 1e9 (arrays resized too)": (lambda d: (_set_attrs(d, n_inputs=BIG), _set_array(d, "inputs", [BIG, 8]),
                                                     _set_array(d, "rows", [BIG, 40, 4]), _set_array(d, "argmax", [BIG, 40])), True),
    "n_inputs 1e15": (lambda d: _set_attrs(d, n_inputs=10**15), True),
    "n 1e9 rows per input (arrays resized)": (lambda d: (_set_attrs(d, n=BIG - 10), _set_array(d, "rows", [6, BIG, 4]),
                                                         _set_array(d, "argmax", [6, BIG])), True),
    "num_classes 65535 x 1e8 rows": (lambda d: (_set_attrs(d, num_classes=65535, n=10**8 - 10),
                                                _set_array(d, "rows", [6, 10**8, 65535])), True),
    "members 1024 x 1e6 rows": (lambda d: _set_attrs(d, members=1024, n=10**6), True),
    "negative n0": (lambda d: _set_attrs(d, n0=-5), True),
    "n0 as a string": (lambda d: _set_attrs(d, n0="10"), True),
    "n as a float": (lambda d: _set_attrs(d, n=30.0), True),
    "num_classes as a bool": (lambda d: _set_attrs(d, num_classes=True), True),
    "n_inputs as a list": (lambda d: _set_attrs(d, n_inputs=[6]), True),
    "sigma as a string": (lambda d: _set_attrs(d, sigma="0.5"), True),
    "sigma NaN": (lambda d: _set_attrs(d, sigma=float("nan")), True),
    "dtype object": (lambda d: _set_attrs(d, dtype="object"), True),
    "format version 99": (lambda d: _set_attrs(d, format_version=99), True),
    "attributes not a dict": (lambda d: (lambda p, j: (j["attributes"].update(smoothcert=[1, 2]), p.write_text(json.dumps(j))))(
        d / "zarr.json", json.loads((d / "zarr.json").read_text())), True),
    "rows chunk 1e9 rows": (lambda d: _set_array(d, "rows", chunks=[1, BIG, 4]), False),
    "records chunk 1e9 inputs": (lambda d: _set_array(d, "inputs", chunks=[BIG, 8]), False),
    "rows shape disagrees": (lambda d: _set_array(d, "rows", [6, 41, 4]), False),
    "rows data_type int8": (lambda d: _set_array(d, "rows", data_type="int8"), False),
    "argmax data_type float64": (lambda d: _set_array(d, "argmax", data_type="float64"), False),
    "rows codec unknown": (lambda d: _set_array(d, "rows", codecs=[{"name": "bytes", "configuration": {"endian": "little"}},
                                                                  {"name": "numcodecs.pickle"}]), False),
}


def test_absurd_metadata_is_refused_fast_without_a_large_allocation(tmp_path):
    good = make_store(tmp_path / "good", N=6, R=40, m=4)
    cases = []
    for i, (name, (mutate, _info_fails)) in enumerate(ABSURD.items()):
        d = tmp_path / f"case{i}"
        shutil.copytree(good, d)
        mutate(d)
        cases.append((name, ["store", "info", str(d)]))
        cases.append((name, ["store", "verify", str(d)]))
        cases.append((name, ["certify", str(d), "--method", "cohen", "--out", str(tmp_path / f"o{i}.csv"), "-q"]))
    limit = 6 * 2**30  # address space: a multi-GB allocation attempt fails loudly (MemoryError) instead of swapping
    # Warm numba's on-disk cache with the good store first: on a fresh clone the first certify compiles its
    # kernels, and LLVM's memory would otherwise count in the peak below, which is about the damaged metadata.
    warm = subprocess.run([sys.executable, "-m", "smoothcert", "certify", str(good), "--method", "cohen", "--out",
                           str(tmp_path / "warm.csv"), "-q"], capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", ABSURD_SCRIPT, str(ROOT), str(limit), json.dumps(cases), "15"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    peak_mb = int(r.stderr.strip().splitlines()[-1]) / 1024
    problems = []
    for res in results:
        name, cmd = res["case"], " ".join(res["args"][:2])
        info_must_fail = ABSURD[name][1]
        ok_success = res["code"] == 0 and cmd == "store info" and not info_must_fail
        if res["code"] is None:
            problems.append(f"{name}: {cmd}: still running after {res['seconds']:.0f} s")
        elif res["exc"]:
            problems.append(f"{name}: {cmd}: exception {res['exc']}")
        elif "MemoryError" in res["stderr"] or "Unable to allocate" in res["stderr"]:
            problems.append(f"{name}: {cmd}: tried a huge allocation: {message_lines(res['stderr'])[-1:]}")
        elif res["seconds"] > 20:
            problems.append(f"{name}: {cmd}: took {res['seconds']:.0f} s")
        elif not ok_success:
            if cmd == "store verify" and res["code"] == 1 and "Traceback" not in res["stderr"]:
                continue  # verify names each damaged input and exits 1
            try:
                assert_one_line_error(res["code"], res["stderr"], what=f"{name}: {cmd}")
            except AssertionError as e:
                problems.append(str(e).splitlines()[0] + " " + " | ".join(message_lines(res["stderr"])[:3]))
    assert not problems, "\n".join(problems)
    assert peak_mb < 2000, f"peak memory {peak_mb:.0f} MB"


# ---------------------------------------------------------------- 4. fuzz: corrupted stores and sources
def _reference_table(store: Path, tmp: Path, method: str) -> pd.DataFrame:
    code, out, err, exc = invoke(["certify", store, "--method", method, "--out", tmp / f"ref-{method}.csv", "-q"])
    assert code == 0, err
    return pd.read_csv(tmp / f"ref-{method}.csv")


DAMAGE = ("flip-chunk", "flip-array-meta", "truncate", "flip-chunk", "delete", "garbage-meta", "flip-chunk",
          "empty-file", "swap-chunks", "group-meta-broken", "flip-group-meta")


def _corrupt(store: Path, rng, kind=None) -> str:
    """One damage (``kind``, random by default) to a store folder; returns what was done."""
    files = [p for p in store.rglob("*") if p.is_file()]
    meta = [p for p in files if p.name == "zarr.json"]
    chunks = [p for p in files if p.name != "zarr.json"]
    kind = kind or rng.choice(DAMAGE)
    if kind in ("flip-chunk", "flip-array-meta", "flip-group-meta"):
        p = {"flip-chunk": lambda: rng.choice(chunks), "flip-group-meta": lambda: store / "zarr.json",
             "flip-array-meta": lambda: rng.choice([m for m in meta if m.parent != store])}[kind]()
        b = bytearray(p.read_bytes())
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(b))
    elif kind == "truncate":
        p = rng.choice(files)
        b = p.read_bytes()
        p.write_bytes(b[: int(rng.integers(0, max(1, len(b))))])
    elif kind == "delete":
        p = rng.choice(files)
        p.unlink()
    elif kind == "garbage-meta":
        p = rng.choice(meta)
        p.write_bytes(rng.bytes(int(rng.integers(1, 300))))
    elif kind == "empty-file":
        p = rng.choice(chunks)
        p.write_bytes(b"")
    elif kind == "swap-chunks":  # two inputs' chunks of one array exchanged: every byte still decodes
        arr = rng.choice([a.name for a in store.iterdir() if (a / "c").is_dir()])
        cs = sorted((store / arr / "c").rglob("*"))
        cs = [c for c in cs if c.is_file()]
        a, b = rng.choice(len(cs), 2, replace=False)
        A, B = cs[a].read_bytes(), cs[b].read_bytes()
        cs[a].write_bytes(B)
        cs[b].write_bytes(A)
        p = cs[a]
    else:  # group zarr.json: valid JSON, broken structure
        p = store / "zarr.json"
        j = json.loads(p.read_text())
        j["attributes"] = [None, [], {"smoothcert": None}, {"smoothcert": {"format": "smoothcert-store"}}][int(rng.integers(0, 4))]
        p.write_text(json.dumps(j))
    return f"{kind} {p.relative_to(store)}"


def _judge_certify(code, err, exc, csv: Path, ref: pd.DataFrame, what):
    if code == 0:
        got = pd.read_csv(csv)
        pd.testing.assert_frame_equal(got, ref, check_exact=True, obj=f"{what}: certificates")
        return "ok"
    return assert_one_line_error(code, err, exc, what=what)


LAYOUTS = {  # layout: (how to build it, methods certified; soft reads the compact store's whole selection rows)
    "full": (lambda p: make_store(p, N=5, R=40, m=4, members=2), ("two-step", "soft")),
    "compact": (lambda p: _compact_store(p), ("two-step", "uncertainty", "soft")),
}


def _compact_store(path: Path) -> Path:
    src = path.parent / "compact-src.npz"
    np.savez(src, **make_arrays(N=5, R=40, m=6))
    code, out, err, exc = invoke(["store", "import", src, path, "--sigma", "0.5", "--n0", "10", "--compact-topk", "3"])
    assert code == 0, err
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fuzz_corrupted_stores(tmp_path, layout):
    build, methods = LAYOUTS[layout]
    good = build(tmp_path / "good")
    refs = {m: _reference_table(good, tmp_path, m) for m in methods}
    rng = np.random.default_rng(20240601 + len(layout))
    seen = {}
    for trial in range(30):
        d = tmp_path / f"bad{trial}"
        shutil.copytree(good, d)
        what = _corrupt(d, rng, DAMAGE[trial % len(DAMAGE)])
        code, out, err, exc = invoke(["store", "info", d])
        if code != 0:
            assert_one_line_error(code, err, exc, what=f"{what}: info")
        code, out, err, exc = invoke(["store", "verify", d])
        assert exc is None and "Traceback" not in err, (what, exc, err)
        verified = code == 0
        if code == 2:
            assert_one_line_error(code, err, exc, what=f"{what}: verify")
        elif code == 1:
            assert out.strip() and "damaged or incomplete" in err, (what, out, err)
        for method, ref in refs.items():
            csv = d.parent / f"bad{trial}-{method}.csv"
            code, out, err, exc = invoke(["certify", d, "--method", method, "--out", csv, "-q"])
            res = _judge_certify(code, err, exc, csv, ref, f"{what}: certify {method}")
            if verified:  # a store that verify passes must certify exactly as the intact one
                assert res == "ok", (what, res)
        seen[what.split()[0]] = seen.get(what.split()[0], 0) + 1
        shutil.rmtree(d)
    assert len(seen) >= 8, seen


def test_fuzz_corrupted_certificate_tables_for_report(tmp_path):
    good = make_store(tmp_path / "good")
    table = tmp_path / "t.csv"
    code, out, err, exc = invoke(["certify", good, "--method", "two-step", "--out", table, "-q"])
    assert code == 0, err
    data = table.read_bytes()
    rng = np.random.default_rng(3)
    variants = {"empty": b"", "garbage": rng.bytes(300), "no predict column": b"idx,label\n1,2\n",
                "radius not a number": data.replace(b"two-step,", b"two-step,x", 1),
                "truncated": data[: len(data) // 3]}
    for i in range(8):
        b = bytearray(data)
        b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        variants[f"flip{i}"] = bytes(b)
    for name, b in variants.items():
        for suffix in (".csv", ".jsonl", ".parquet"):
            p = tmp_path / f"{name}{suffix}"
            p.write_bytes(b)
            code, out, err, exc = invoke(["report", p])
            assert exc is None and "Traceback" not in err, (name, suffix, exc)
            if code != 0:
                assert_one_line_error(code, err, exc, what=f"report {name}{suffix}")


def _npz_bytes(tmp: Path, **arrays) -> bytes:
    p = tmp / "tmp-src.npz"
    np.savez(p, **arrays)
    b = p.read_bytes()
    p.unlink()
    return b


def _forged_header_npz(tmp: Path, shape) -> bytes:
    """An .npz whose 'probs' member declares ``shape`` in its .npy header but holds a few bytes."""
    import io

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("probs.npy", hdr.getvalue() + b"\0" * 64)
        a = io.BytesIO()
        np.save(a, np.zeros(2, np.int64))
        zf.writestr("labels.npy", a.getvalue())
    return buf.getvalue()


def test_fuzz_corrupted_sources_for_import(tmp_path):
    arrays = make_arrays(N=4, R=30, m=3)
    good = _npz_bytes(tmp_path, **arrays)
    rng = np.random.default_rng(7)
    cases = {}
    for i in range(12):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(0, len(b)))
            b[j] ^= 1 << int(rng.integers(0, 8))
        cases[f"flip{i}"] = bytes(b)
    for frac in (0.0, 0.1, 0.5, 0.9, 0.999):
        cases[f"truncate{frac}"] = good[: int(len(good) * frac)]
    cases["garbage"] = rng.bytes(5000)
    cases["header 1e12 x 100 x 10"] = _forged_header_npz(tmp_path, (10**12, 100, 10))
    cases["header 2e8 x 10 x 10"] = _forged_header_npz(tmp_path, (2 * 10**8, 10, 10))
    cases["header 2e6 x 10 x 10"] = _forged_header_npz(tmp_path, (2 * 10**6, 10, 10))  # 800 MB: below RAM
    obj = np.empty(3, dtype=object)
    cases["pickled object array"] = _npz_bytes(tmp_path, probs=obj, labels=np.zeros(3, np.int64))
    cases["probs float64 NaN"] = _npz_bytes(tmp_path, probs=np.full((2, 5, 3), np.nan), labels=np.zeros(2, np.int64))
    cases["labels 2-d"] = _npz_bytes(tmp_path, probs=arrays["probs"], labels=np.zeros((4, 2), np.int64))
    for name, data in cases.items():
        src = tmp_path / f"{name}.npz"
        src.write_bytes(data)
        dest = tmp_path / f"store-{name}"
        code, out, err, exc = invoke(["store", "import", src, dest, "--sigma", "0.5", "--n0", "10"])
        assert "MemoryError" not in err and "Unable to allocate" not in err, (name, err)
        if code == 0:  # a flip that the zip CRC missed cannot happen; if it imports, it imported what np.load reads
            from smoothcert.store import open_store

            with np.load(src, allow_pickle=False) as z:
                probs = z["probs"]
            with open_store(str(dest)) as st:
                rows = st.read_block(0, st.n_inputs, fields=("rows",))["rows"]
            np.testing.assert_array_equal(rows, probs.astype(np.float32), err_msg=name)
        else:
            line = assert_one_line_error(code, err, exc, what=name)
            assert not dest.exists(), name
            if name.startswith("header"):  # refused from the header, before np.load allocates
                assert "declares shape" in line, line
            if name.startswith("pickled"):
                assert "Python objects" in line, line
        assert not list(tmp_path.glob(f".store-{name}.partial-*")), name
