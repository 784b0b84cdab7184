"""docs/adding-a-method.md, followed literally in a copy of the repository, passes the tests its own commands run.

The steps are read from the page itself, so the page cannot drift from this
test: a heading ``### N. ... `PATH.py` `` followed by a code block is a step
that writes PATH (a new file is created with the block, an existing one gets
the block appended, as a contributor adds a line); the code block of the one
step whose heading names no file holds the commands, run one by one in the
copy with ``smoothcert`` imported from the copy. The copy keeps the checkout's
``__pycache__`` folders (and so Numba's cached kernels). Its commands run the
contract and methods-table tests once more, in a subprocess: about half a
minute on 2 cores.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "adding-a-method.md"
NOT_COPIED = {".git", "bench-out", "demo-out", ".pytest_cache", ".ruff_cache"}
STEP = re.compile(r"^###\s+(\d+)\.\s+(.*)$")
FENCE = re.compile(r"^```")


def steps(text: str) -> dict[int, tuple[str, str]]:
    """{step number: (its heading, the first code block under it)} of the walk-through."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        m = STEP.match(lines[i])
        i += 1
        if not m:
            continue
        while i < len(lines) and not FENCE.match(lines[i]) and not lines[i].startswith("#"):
            i += 1
        if i < len(lines) and FENCE.match(lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if FENCE.match(lines[j]))
            out[int(m[1])] = (m[2], "\n".join(lines[i + 1:end]) + "\n")
            i = end + 1
    return out


def copy_of_the_repository(dest: Path) -> Path:
    """The checkout copied to ``dest`` (without .git, benchmark stores and demo outputs), timestamps kept."""
    shutil.copytree(ROOT, dest, symlinks=True, ignore=lambda d, names: [n for n in names if n in NOT_COPIED])
    return dest


def test_the_walk_through_passes_its_own_commands_when_followed_literally(tmp_path):
    walk = steps(DOC.read_text())
    files = {n: re.search(r"`([\w./-]+\.py)`", heading) for n, (heading, _) in walk.items()}
    writes = sorted(n for n, target in files.items() if target)
    commands_step = [n for n, target in files.items() if not target]
    assert writes and writes[0] == 1 and len(commands_step) == 1 and commands_step[0] > writes[-1], (
        f"docs/adding-a-method.md: steps {sorted(walk)}; expected steps that write files, then one step of commands")
    repo = copy_of_the_repository(tmp_path / "repo")
    for n in writes:
        path = repo / files[n][1]
        if n == 1:
            assert not path.exists(), f"step 1 writes {files[n][1]}, which the checkout already has"
        with path.open("a") as f:   # a new file: the block; an existing one: the block appended
            f.write(walk[n][1])
    pp = tmp_path / "pythonpath"
    pp.mkdir()
    (pp / "smoothcert").symlink_to(repo, target_is_directory=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "PYTHONPATH": str(pp),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    step = commands_step[0]
    commands = [ln.strip() for ln in walk[step][1].splitlines() if ln.strip()]
    assert any("pytest" in c for c in commands), commands
    for command in commands:
        r = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"step {step}: $ {command}\nexit status {r.returncode}\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    # the commands refreshed the copy's methods table with the new method's row, and left the checkout's alone
    registering = "\n".join(walk[n][1] for n in writes)
    name = re.search(r'Method\(\s*"([\w-]+)"', registering)[1]     # the method the steps register
    row = f"| `{name}` |"
    assert row in (repo / "docs" / "methods.md").read_text() and row not in (ROOT / "docs" / "methods.md").read_text()
