"""The ```console blocks of README.md and docs/*.md run as tests, one test per file (rules: tests/consoledoc.py).

Each file's blocks run in order, in one temporary directory that holds links
to the checkout's top-level files and folders (so ``sampler/assets/...`` and
``docs/examples/...`` resolve as from the repository root), with
``smoothcert`` and ``python -m smoothcert`` taken from this checkout. A
failure names the file and the line of the command, and shows the documented
and the printed lines. ``smoothcert demo`` runs once per session, quick, and
stands for the documented demo (tests/consoledoc.py, ``demo_out``).
"""
from __future__ import annotations

import difflib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from consoledoc import (Block, Command, DocError, console_files, demo_out, matches, normalise, parse, scale,
                        shows_error, terminal_lines, unmatched, unquick)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600                                   # seconds for one documented command (on a busy machine)
DASK_PORT = "8786"                              # dask's default scheduler port, as the docs write it
NOT_LINKED = {"bench-out", "demo-out", "__pycache__"}


def doc_blocks(path: Path) -> list[Block]:
    return parse(path.read_text(), str(path.relative_to(ROOT)))


def files_that_run() -> list[Path]:
    """The pages with a console block that runs (and any page that does not parse: its test shows why)."""
    def runs(path):
        try:
            return any(b.kind in ("run", "scaled") for b in doc_blocks(path))
        except DocError:
            return True

    return [p for p in console_files(ROOT) if runs(p)]


@pytest.fixture(scope="session")
def console_env(tmp_path_factory) -> dict:
    """The environment of every documented command: this checkout as ``smoothcert``, unbuffered output, no colours."""
    pp = tmp_path_factory.mktemp("pythonpath")
    (pp / "smoothcert").symlink_to(ROOT, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SMOOTHCERT", "DASK_", "COLUMNS"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(pp),
               PYTHONUNBUFFERED="1", MPLBACKEND="Agg", NO_COLOR="1", TZ="UTC", LC_ALL="C.UTF-8")
    return env


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory, console_env) -> tuple[Path, str]:
    """``smoothcert demo --quick --out demo-out``, once per session: (its folder, what it printed)."""
    where = tmp_path_factory.mktemp("demo")
    r = subprocess.run(["smoothcert", "demo", "--quick", "--out", "demo-out"], cwd=where, env=console_env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    printed = r.stdout.decode(errors="replace")
    assert r.returncode == 0, printed[-3000:]
    return where / "demo-out", printed


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


class Shell:
    """Runs one file's commands in ``workdir``; background commands (``cmd &``) live until ``close``.

    Port 8786 in a command becomes a free port (shown as 8786 in the output), so that test runs side by side on
    one machine do not start their Dask schedulers on the same port.
    """

    def __init__(self, workdir: Path, env: dict, demo=None):
        self.workdir, self.env, self.demo, self.background = workdir, env, demo, []
        self.port = free_port()
        for entry in ROOT.iterdir():
            if not entry.name.startswith(".") and entry.name not in NOT_LINKED:
                (workdir / entry.name).symlink_to(entry)

    def run(self, command: str) -> tuple[int, str]:
        """(exit status, stdout and stderr as a terminal shows them) of one command."""
        out_dir = demo_out(command)
        if out_dir is not None:
            return self.stand_in_demo(out_dir)
        text = command.replace(DASK_PORT, self.port).rstrip()
        if text.endswith("&") and not text.endswith("&&"):
            log = open(self.workdir / f".background-{len(self.background)}.log", "w")  # noqa: SIM115 (closed with it)
            self.background.append((subprocess.Popen(["bash", "-c", text[:-1]], cwd=self.workdir, env=self.env,
                                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
                                    log))
            return 0, ""
        r = subprocess.run(["bash", "-c", text], cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TIMEOUT)  # bytes: text mode would turn \r into \n
        printed = r.stdout.decode(errors="replace").replace(str(self.workdir), "<tmp>")
        return r.returncode, printed.replace(f":{self.port}", f":{DASK_PORT}")

    def stand_in_demo(self, out_dir: str) -> tuple[int, str]:
        folder, printed = self.demo()
        target = self.workdir / out_dir
        target.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            (target / unquick(entry.name)).symlink_to(entry)
        return 0, unquick(printed).replace("demo-out/", f"{out_dir.rstrip('/')}/")

    def close(self):
        for proc, log in self.background:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=10)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
            log.close()


def mismatch(block: Block, cmd: Command, ran: str, rc: int, printed: str, why: str) -> str:
    """The failure message: file and line, the command, and the documented against the printed lines."""
    scaled = block.kind == "scaled"
    want = [normalise(ln, scaled) for ln in cmd.expected if ln.strip()]
    got = [normalise(ln, scaled) for ln in terminal_lines(printed) if ln.strip()]
    diff = "\n".join(difflib.unified_diff(want, got, "documented (normalised)", "printed (normalised)", lineterm=""))
    head = f"{block.path}:{cmd.line}: $ {cmd.text}" + (f"\n(run as: {ran})" if ran != cmd.text else "")
    missing = unmatched(list(cmd.expected), terminal_lines(printed), scaled)
    hint = (f"\nno printed line matches the documented line\n    {missing}" if missing else
            "\nevery documented line is printed, but in another order or with other lines between them"
            " (a line '...' stands for lines the page leaves out)" if cmd.expected and rc == 0 else "")
    return (f"{head}\n{why} (exit status {rc}{', scaled block' if scaled else ''}){hint}\n{diff}\n--- printed:\n"
            + "\n".join(terminal_lines(printed)))


def run_blocks(blocks: list[Block], shell: Shell) -> None:
    """Run the blocks in order, failing at the first command whose output or exit status the page contradicts."""
    for block in blocks:
        if block.kind == "file":
            (shell.workdir / block.arg).write_text(block.text)
            continue
        if block.kind == "skip":
            continue
        for cmd in block.commands:
            ran = scale(cmd.text)
            rc, printed = shell.run(ran)
            if rc != 0 and not shows_error(cmd.expected):
                pytest.fail(mismatch(block, cmd, ran, rc, printed, "the command failed, and the page shows no error"),
                            pytrace=False)
            if cmd.expected and not matches(list(cmd.expected), terminal_lines(printed), block.kind == "scaled"):
                pytest.fail(mismatch(block, cmd, ran, rc, printed, "the output does not match the page"),
                            pytrace=False)


@pytest.mark.parametrize("path", files_that_run(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_console_blocks_of_the_page_run_as_shown(path, tmp_path, console_env, request):
    blocks = doc_blocks(path)
    needs_demo = any(demo_out(c.text) is not None for b in blocks if b.kind != "skip" for c in b.commands)
    shell = Shell(tmp_path, console_env, (lambda: request.getfixturevalue("quick_demo")) if needs_demo else None)
    try:
        run_blocks(blocks, shell)
    finally:
        shell.close()


def test_every_console_block_and_marker_of_the_docs_follows_the_rules():
    """Every page parses (markers known, skips with a reason, no output before a command), and at least one runs."""
    errors = []
    for path in console_files(ROOT):
        try:
            doc_blocks(path)
        except DocError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)
    assert ROOT / "README.md" in files_that_run()
