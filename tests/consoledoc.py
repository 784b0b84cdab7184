"""The ```console blocks of README.md and docs/*.md as tests: parsing, scaling and output matching.

Pure functions over the text of a Markdown file; tests/test_docs_console.py
runs the commands. The rules (tests/README.md says the same for authors):

* Every ```console block runs, in file order, in one temporary directory per
  file (a later block may use what an earlier one made), unless the line
  immediately above its opening fence is a marker:

  - ``<!-- console: skip (reason) -->``: not run (GPU, SLURM, S3, a real
    ImageNet folder, a checkpoint that cannot be downloaded, a benchmark
    whose output is a measurement). The reason is required.
  - ``<!-- console: scaled -->``: the small scale every block runs at
    (``scale``: ``smoothcert sample`` at n <= 1,000 and at most 200 inputs;
    ``smoothcert demo`` stood for by a quick demo, ``demo_out``) changes
    this block's numbers, so every number of its output is masked: the
    words, the columns and the number of lines are checked, not the counts.
  - ``<!-- console: file NAME -->`` above a fenced block of any language:
    its text is written to NAME in the run directory when the run reaches it
    (a script the page tells the reader to save).

* In a block, a line starting ``$ `` is a command (continued on the next
  lines while it ends with ``\\``); the lines after it, up to the next
  command, are its expected output. A line ``...`` (optionally followed by a
  comment in parentheses) matches any run of lines, ``...`` inside a line
  any text in that line; blank lines are ignored. A command shown without
  any output line is run but its output is not compared. A command ending
  in ``&`` runs in the background until the file is done. Output is what a
  terminal shows: stdout and stderr in the order written, a carriage return
  overwrites its line, and progress bars are left out (as the docs do).

* Before comparing, both sides are normalised by ``normalise``: runs of
  blanks collapse to one, and what differs from run to run is masked
  (``MASKS``: durations, rates, sizes, dates and run ids, hexadecimal
  fingerprints, version numbers, the store's user@host, load averages);
  numbers with more than 9 significant digits are compared at 9.

* A command may exit non-zero only when its expected output shows an error
  (a line containing ``error``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^\s*<!--\s*console:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
WILDCARD_LINE = re.compile(r"^\.\.\.(\s+\(.*\))?$")


@dataclass(frozen=True)
class Command:
    line: int                   # line of the ``$ `` in the file, 1-based
    text: str                   # the command as bash reads it (continuation lines joined with newlines)
    expected: tuple[str, ...]   # the lines shown after it


@dataclass(frozen=True)
class Block:
    path: str
    line: int                   # line of the opening fence, 1-based
    kind: str                   # "run", "scaled", "skip" or "file"
    arg: str = ""               # the skip reason, or the file name
    commands: tuple[Command, ...] = ()
    text: str = ""              # a file block's contents


class DocError(ValueError):
    """A console block or marker that does not follow the rules; the message names the file and line."""


def parse(text: str, path: str = "<doc>") -> list[Block]:
    """The console blocks and file blocks of a Markdown text, in order, each with its marker applied."""
    lines = text.split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m["indent"], m["fence"], m["lang"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise DocError(f"{path}:{i + 1}: fence {fence}{lang} is never closed")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:end]]
        mark = MARKER.match(lines[i - 1]) if i > 0 else None
        kind, arg = (mark["kind"], mark["arg"]) if mark else ("run", "")
        where = f"{path}:{i + 1}"
        if kind == "file":
            if not arg or "/" in arg or arg.startswith("."):
                raise DocError(f"{where}: <!-- console: file NAME --> needs a plain file name, got {arg!r}")
            blocks.append(Block(path, i + 1, "file", arg, text="\n".join(body) + "\n"))
        elif lang == "console":
            if kind not in ("run", "skip", "scaled"):
                raise DocError(f"{where}: unknown marker 'console: {kind}' (use skip (reason), scaled or file NAME)")
            if kind == "skip" and not re.fullmatch(r"\(.+\)", arg):
                raise DocError(f"{where}: a skipped console block needs its reason: <!-- console: skip (reason) -->")
            if kind == "scaled" and arg:
                raise DocError(f"{where}: <!-- console: scaled --> takes no argument, got {arg!r}")
            blocks.append(Block(path, i + 1, kind, arg[1:-1] if kind == "skip" else "",
                                commands=_commands(body, i + 2, where)))
        elif mark:
            raise DocError(f"{where}: marker 'console: {kind}' above a {lang or 'plain'} block (only 'file' applies there)")
        i = end + 1
    return blocks


def _commands(body: list[str], first: int, where: str) -> tuple[Command, ...]:
    """The ``$ `` commands of a console block's lines (``first`` is the file line of ``body[0]``)."""
    cmds: list[Command] = []
    i = 0
    while i < len(body):
        ln = body[i]
        if not ln.startswith("$ "):
            if ln.strip():
                raise DocError(f"{where}: line {first + i} is output before any '$ ' command "
                               "(a quoted message belongs in a ```text block)")
            i += 1
            continue
        start, parts = i, [ln[2:]]
        while parts[-1].endswith("\\") and i + 1 < len(body):
            i += 1
            parts.append(body[i])
        i += 1
        out = []
        while i < len(body) and not body[i].startswith("$ "):
            out.append(body[i])
            i += 1
        cmds.append(Command(first + start, "\n".join(parts), tuple(out)))
    return tuple(cmds)


# ---------------------------------------------------------------- scaling
SCALE_N = 1000      # smoothcert sample: at most this many estimation rows ...
SCALE_INPUTS = 200  # ... this many inputs of a given --indices range ...
SCALE_WHOLE = 20    # ... and this many when it samples a whole data set (no --indices)


def _scale_n(m: re.Match) -> str:
    return f"{m['flag']}{min(int(m['n'].replace('_', '')), SCALE_N)}"


def _scale_indices(m: re.Match) -> str:
    start, stop, step = int(m["start"]), int(m["stop"]), int(m["step"] or 1)
    stop = min(stop, start + SCALE_INPUTS * step)
    return f"{m['flag']}{start}:{stop}" + (f":{m['step']}" if m["step"] else "")


SAMPLE = re.compile(r"(?<![\w-])smoothcert sample\b")
SCALE = (  # (pattern, replacement) applied to every `smoothcert sample` command that runs
    (re.compile(r"(?P<flag>--n[ =])(?P<n>\d[\d_]*)(?![\w.])"), _scale_n),
    (re.compile(r"(?P<flag>--indices[ =])(?P<start>\d+):(?P<stop>\d+)(?::(?P<step>\d+))?"), _scale_indices),
)


def scale(command: str) -> str:
    """The command as the docs test runs it: ``smoothcert sample`` at n <= 1,000 and at most 200 inputs.

    ``--n N`` becomes ``--n min(N, 1000)``; ``--indices A:B[:S]`` keeps its
    first 200 inputs; a sample command with neither ``--indices`` nor
    ``--replay-of`` (a whole data set) gets ``--indices 0:20``. Other
    commands are unchanged.
    The rows of S that remain are the first 1,000 of the documented run (the
    noise of a row depends on the seed, the input and the row only), so
    what reads only those rows (``calibrate``'s default ``--rows 1000``) is
    unchanged, and a page's stores of up to 200 inputs keep their inputs.
    """
    if not SAMPLE.search(command):
        return command
    for pattern, repl in SCALE:
        command = pattern.sub(repl, command)
    if "--indices" not in command and "--replay-of" not in command:
        command = SAMPLE.sub(f"smoothcert sample --indices 0:{SCALE_WHOLE}", command, count=1)
    return command


# ---------------------------------------------------------------- matching
_NUM = r"\d(?:[\d,]*\d)?(?:\.\d+)?"
MASKS = (  # (pattern, replacement), in this order, on both sides
    (re.compile(r"\x1b\[[0-9;]*m"), ""),                                                     # terminal colours
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?"), "<date>"),
    (re.compile(r"\b\d{8}T\d{6}-[\w.-]+-\d+\b"), "<run-id>"),                              # a writer run's id
    (re.compile(r"(?<![\w.])[0-9a-f]{12,}(?!\w)"), "<hex>"),                                 # fingerprints, hashes
    (re.compile(r"(made by: )[^,]+"), r"\1<user@host>"),
    (re.compile(r"\b\d+\.\d+\.\d+(?:[+.][\w]+)*"), "<version>"),
    (re.compile(r"load average " + _NUM), "load average <load>"),
    (re.compile(rf"(?<![\w.]){_NUM}\s?(?:samples|inputs|rows|blocks)/s\b"), "<rate>"),
    (re.compile(rf"(?<![\w.]){_NUM}\s?(?:B|kB|KiB|MB|MiB|GB|GiB)\b"), "<size>"),
    (re.compile(rf"(?<![\w.@]){_NUM}\s?(?:s|ms|min)\b(?![/\w])"), "<time>"),
)
LONG_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{9,}(?:e[-+]?\d+)?")
NUMBER = re.compile(r"(?<![\w<])-?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-+]?\d+)?x?(?![\w>])")  # 1.7x is a number too


def normalise(line: str, scaled: bool = False) -> str:
    """A line as it is compared: masks applied, long floats at 9 significant digits, blanks collapsed;
    with ``scaled`` every remaining number is masked too."""
    for pattern, repl in MASKS:
        line = pattern.sub(repl, line)
    line = LONG_FLOAT.sub(lambda m: f"{float(m[0]):.9g}", line)
    if scaled:
        line = NUMBER.sub("<n>", line)
    return " ".join(line.split())


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def matches(expected: list[str], actual: list[str], scaled: bool = False) -> bool:
    """True when the output lines ``actual`` match the documented lines ``expected`` under the rules above."""
    exp = ["..." if WILDCARD_LINE.match(ln.strip()) else normalise(ln, scaled) for ln in expected if ln.strip()]
    act = [normalise(ln, scaled) for ln in actual if ln.strip()]
    # glob matching over lines: ok[i][j] = exp[i:] matches act[j:]
    ok = [[False] * (len(act) + 1) for _ in range(len(exp) + 1)]
    ok[len(exp)][len(act)] = True
    for i in range(len(exp) - 1, -1, -1):
        for j in range(len(act), -1, -1):
            if exp[i] == "...":
                ok[i][j] = ok[i + 1][j] or (j < len(act) and ok[i][j + 1])
            else:
                ok[i][j] = j < len(act) and _line_matches(exp[i], act[j]) and ok[i + 1][j + 1]
    return ok[0][0]


PROGRESS_BAR = re.compile(r"^[^|]*\b\d+%\|[^|]*\|.*\[\d+:\d+.*\]\s*$")


def unmatched(expected: list[str], actual: list[str], scaled: bool = False) -> str | None:
    """The first documented line (not ``...``) that matches no printed line, if any: where a page most likely drifted."""
    act = [normalise(ln, scaled) for ln in actual if ln.strip()]
    for ln in expected:
        if ln.strip() and not WILDCARD_LINE.match(ln.strip()):
            if not any(_line_matches(normalise(ln, scaled), a) for a in act):
                return ln
    return None


def terminal_lines(printed: str) -> list[str]:
    """The lines a terminal would show for ``printed`` (a carriage return overwrites its line), less the progress
    bars that stay on screen (``sampling: 100%|####| 1.01M/1.01M [00:14<00:00, ...]``), which the docs leave out."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in printed.split("\n")]
    return [ln for ln in lines if not PROGRESS_BAR.match(ln)]


def shows_error(expected) -> bool:
    """True when the documented output shows an error (the command may then exit non-zero)."""
    return any("error" in ln.lower() for ln in expected)


def console_files(root: Path) -> list[Path]:
    """README.md and every docs/**/*.md under ``root``, the files whose console blocks are tests."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ---------------------------------------------------------------- the demo's stand-in
DEMO = re.compile(r"^smoothcert demo(?P<args>(?:\s+--?[\w-]+(?:[ =](?!-)\S+)?)*)\s*(?:#.*)?$")
QUICK_NAME = re.compile(r"(?<=\w)-quick\b")


def demo_out(command: str) -> str | None:
    """For a ``smoothcert demo [--out DIR] ...`` command, DIR (default ``demo-out``); None for any other command.

    The docs test runs the demo once per session as ``smoothcert demo --quick``
    and lets that run stand for every documented ``smoothcert demo``: DIR gets
    links to what it wrote, under the full run's names (``store`` for
    ``store-quick``, see ``unquick``), and its output is the command's.
    """
    m = DEMO.match(command.strip())
    if not m:
        return None
    out = re.search(r"--out[ =](\S+)", m["args"])
    return out[1] if out else "demo-out"


def unquick(text: str) -> str:
    """A quick demo's names as the full demo's: ``store-quick`` -> ``store``, ``certificates-quick`` -> ``certificates``."""
    return QUICK_NAME.sub("", text)
