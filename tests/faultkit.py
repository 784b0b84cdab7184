"""Helpers shared by the fault and untrusted-input tests: run the CLI, judge its errors, build stores."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from smoothcert import cli; cli.main()"]
ERROR_PREFIX = "smoothcert: error: "


def run_cli(args, timeout=120, **kw):
    """The CLI in a fresh process: (returncode, stdout, stderr)."""
    r = subprocess.run(CLI + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)
    return r.returncode, r.stdout, r.stderr


def invoke(args):
    """The CLI in this process (click's runner): (exit code, stdout, stderr, exception other than SystemExit)."""
    from click.testing import CliRunner

    from smoothcert import cli

    r = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=True)
    exc = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    return r.exit_code, r.stdout, r.stderr, exc


def message_lines(stderr: str) -> list[str]:
    """stderr without progress-bar redraws: the lines a user reads."""
    out = []
    for line in stderr.replace("\r", "\n").splitlines():
        s = line.strip()
        if not s or ("|" in s and ("it/s" in s or "/s]" in s or "%" in s)):
            continue
        out.append(s)
    return out


def assert_one_line_error(code, stderr, exc=None, what=""):
    """A failure as the CLI promises it: exit != 0, one 'smoothcert: error: ...' line, no traceback."""
    assert exc is None, f"{what}: exception escaped: {exc!r}"
    assert code != 0, f"{what}: exit code 0"
    assert "Traceback" not in stderr, f"{what}: traceback:\n{stderr}"
    errs = [s for s in message_lines(stderr) if s.startswith(ERROR_PREFIX)]
    assert len(errs) == 1, f"{what}: expected one error line, got:\n{stderr}"
    assert "\n" not in errs[0]
    return errs[0]


def make_arrays(N=6, R=40, m=4, seed=0, members=0, core=True):
    """Import arrays: peaked rows with a clear class per input (certificates are non-trivial)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, m, N)
    logits = rng.normal(0, 1.0, size=(N, R, m))
    logits[np.arange(N), :, labels] += 3.0
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    out = {"probs": probs.astype(np.float32), "labels": labels}
    if core:
        out["core_predict"] = labels.copy()
    if members:
        lp = logits[:, :, None, :] + rng.normal(0, 0.5, size=(N, R, members, m))
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        out["member_logprobs"] = lp.astype(np.float32)
    return out


def make_store(path: Path, n0=10, sigma=0.5, dtype=None, **kw) -> Path:
    from smoothcert.store.importer import import_npz

    path = Path(path)
    src = path.parent / f"{path.name}.src.npz"
    np.savez(src, **make_arrays(**kw))
    import_npz(src, path, sigma=sigma, n0=n0, dtype=dtype)
    return path


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).rglob("*") if p.is_file())


def tree_snapshot(path: Path) -> dict:
    """{relative path: bytes} of every file under ``path``."""
    return {str(p.relative_to(path)): p.read_bytes() for p in files_under(path)}


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def assert_refused(code, stdout, stderr, exc=None, what=""):
    """A command refusing bad input: a one-line error, or for ``store verify`` exit 1 with the damaged
    inputs listed on stdout and one summary line on stderr."""
    assert exc is None, f"{what}: exception escaped: {exc!r}"
    assert "Traceback" not in stderr, f"{what}: traceback:\n{stderr}"
    if code == 1 and any(s.endswith("inputs damaged or incomplete") for s in message_lines(stderr)):
        assert stdout.strip(), f"{what}: verify listed nothing"
        return "verify: " + message_lines(stderr)[-1]
    return assert_one_line_error(code, stderr, exc, what)
