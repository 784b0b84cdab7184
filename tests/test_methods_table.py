"""The methods table of docs/methods.md is the one the registry generates (python -m smoothcert.certifier --write)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smoothcert.certifier import registry

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "methods.md"


def test_docs_methods_md_holds_exactly_the_generated_table_between_its_markers():
    text = DOC.read_text()
    assert text.count(registry.TABLE_BEGIN) == 1 and text.count(registry.TABLE_END) == 1
    assert registry.methods_table_in(text) == registry.methods_markdown(), (
        "docs/methods.md is stale: run python -m smoothcert.certifier --write docs/methods.md")


def test_the_table_has_the_documented_columns_and_one_row_per_registered_method():
    lines = registry.methods_markdown().splitlines()
    assert lines[0] == "| method | what it certifies | overall confidence | section |"
    assert lines[1] == "|---|---|---|---|"
    rows = [line.split(" | ") for line in lines[2:]]
    assert [r[0] for r in rows] == [f"| `{m}`" for m in registry.available_methods()]
    for r, m in zip(rows, registry.methods()):
        assert len(r) == 4 and r[3] == f"{m.section} |"
        assert m.certifies and m.overall and m.section, f"{m.name}: certifies, overall and section are needed for the table"


def test_a_pipe_in_an_entry_cannot_break_the_table():
    m = registry.Method("pipe-test", lambda block, opts: None, registry.confidence_once,
                        certifies="a | b", overall="1 - alpha", section="1")
    registry.register(m)
    try:
        row = registry.methods_markdown().splitlines()[-1]
        assert row == "| `pipe-test` | a \\| b | 1 - alpha | 1 |"
    finally:
        registry.unregister("pipe-test")
    assert "pipe-test" not in registry.methods_markdown()


def test_the_module_prints_the_table_and_refreshes_a_stale_file(tmp_path):
    r = subprocess.run([sys.executable, "-m", "smoothcert.certifier", "--markdown"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == registry.methods_markdown()
    stale = tmp_path / "methods.md"
    stale.write_text(f"# Methods\n\nbefore\n{registry.TABLE_BEGIN}\n| old |\n{registry.TABLE_END}\nafter\n")
    r = subprocess.run([sys.executable, "-m", "smoothcert.certifier", "--write", str(stale)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert stale.read_text() == (f"# Methods\n\nbefore\n{registry.TABLE_BEGIN}\n{registry.methods_markdown()}"
                                 f"{registry.TABLE_END}\nafter\n")
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("no table here\n")
    r = subprocess.run([sys.executable, "-m", "smoothcert.certifier", "--write", str(no_markers)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "markers" in r.stderr
    assert no_markers.read_text() == "no table here\n"


def test_replacing_the_table_keeps_everything_outside_the_markers():
    text = f"a\n{registry.TABLE_BEGIN}\nx\n{registry.TABLE_END}\nb"
    out = registry.replace_methods_table(text)
    assert out.startswith(f"a\n{registry.TABLE_BEGIN}\n") and out.endswith(f"{registry.TABLE_END}\nb")
    assert registry.methods_table_in(out) == registry.methods_markdown()
    with pytest.raises(ValueError, match="markers"):
        registry.replace_methods_table("nothing")
