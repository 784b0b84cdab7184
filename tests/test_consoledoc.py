"""The rules of the docs test (tests/consoledoc.py) on small pages written here: what runs, what is compared."""
from __future__ import annotations

import pytest

from consoledoc import (DocError, demo_out, matches, normalise, parse, scale, shows_error, terminal_lines, unmatched,
                        unquick)

PAGE = """# A page

Some prose.

```console
$ smoothcert store verify s.zarr
s.zarr: all 20 inputs complete and intact
$ smoothcert sample --model m.pt --data d.npz --sigma 0.25 \\
      --n 100000 out.zarr
...

$ cmp a.csv b.csv && echo identical
identical
```

<!-- console: skip (needs a GPU) -->
```console
$ smoothcert sample --device cuda --model m.pt --data d.npz --sigma 0.5 out.zarr
```

<!-- console: file make.py -->
```python
print("made")
```

<!-- console: scaled -->
```console
$ smoothcert demo --out demo-out
...
```

```bash
$ not a console block, never run
```
"""


def test_a_page_gives_its_console_and_file_blocks_in_order_with_their_markers():
    blocks = parse(PAGE, "page.md")
    assert [(b.kind, b.line) for b in blocks] == [("run", 5), ("skip", 17), ("file", 22), ("scaled", 27)]
    first = blocks[0].commands
    assert [c.line for c in first] == [6, 8, 12]
    assert first[0].text == "smoothcert store verify s.zarr"
    assert first[0].expected == ("s.zarr: all 20 inputs complete and intact",)
    assert first[1].text == "smoothcert sample --model m.pt --data d.npz --sigma 0.25 \\\n      --n 100000 out.zarr"
    assert first[1].expected == ("...", "")
    assert blocks[1].arg == "needs a GPU"
    assert blocks[2].arg == "make.py" and blocks[2].text == 'print("made")\n'


@pytest.mark.parametrize("page,message", [
    ("```console\nsmoothcert: error: x\n```\n", "page.md:1: line 2 is output before any '$ ' command"),
    ("<!-- console: skip -->\n```console\n$ ls\n```\n", "page.md:2: a skipped console block needs its reason"),
    ("<!-- console: fast -->\n```console\n$ ls\n```\n", "page.md:2: unknown marker 'console: fast'"),
    ("<!-- console: scaled (why) -->\n```console\n$ ls\n```\n", "page.md:2: <!-- console: scaled --> takes no argument"),
    ("<!-- console: file ../x.py -->\n```python\nx\n```\n", "page.md:2: <!-- console: file NAME --> needs a plain"),
    ("<!-- console: skip (x) -->\n```python\nx = 1\n```\n", "page.md:2: marker 'console: skip' above a python block"),
    ("```console\n$ ls\n", "page.md:1: fence ```console is never closed"),
])
def test_a_page_that_breaks_the_rules_is_one_error_naming_file_and_line(page, message):
    with pytest.raises(DocError) as e:
        parse(page, "page.md")
    assert str(e.value).startswith(message)


def test_the_documented_lines_match_what_a_run_printed_under_the_masks():
    doc = ["smoothcert sample: 100 inputs (1,010,000 noisy samples) in 14.6 s, 69,325 samples/s on cpu; 0 already complete",
           "made by: root@vm, 2026-11-22T05:25:13+00:00 (UTC), source merge, with smoothcert 0.1.0, zarr 3.1.6",
           "checksums: 200 of 200 inputs complete; fingerprint e9c2fe62401dc073e3d146862eea9c7bf4d08e0f4fb94dfee76e928eaf5f6aab",
           "run part0.20261122T052333-vm-19761: started=...",
           "0,2,two-step,2,0.5081553016229154,1,-1,0.9789545963388017,0.021045403661198336",
           "exported x.zarr to x.zip: 200 of 200 inputs complete, 5.0 MiB; load average 1.6"]
    run = ["smoothcert sample: 100 inputs (1,010,000 noisy samples) in 9.1 s, 110,989 samples/s on cpu; 0 already complete",
           "made by: ci@runner-7, 2027-01-02T10:00:00+00:00 (UTC), source merge, with smoothcert 0.2.0, zarr 3.2.0",
           "checksums: 200 of 200 inputs complete; fingerprint 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
           "run part0.20270102T100000-runner-7-4242: started=2027-01-02T10:00:00+00:00, shard=0/1",
           "0,2,two-step,2,0.5081553016229161,1,-1,0.9789545963388021,0.0210454036611983",
           "exported x.zarr to x.zip: 200 of 200 inputs complete, 5.1 MiB; load average 7.3"]
    assert matches(doc, run)
    assert not matches(doc, [*run[:4], run[4].replace("0.508155301", "0.508155401"), run[5]])  # the 9th digit counts
    assert not matches(doc, [run[0].replace("100 inputs", "99 inputs"), *run[1:]])            # so do counts
    assert normalise("a   b\tc  ") == "a b c"


def test_three_dots_match_any_lines_or_any_text_within_a_line_and_blank_lines_do_not_count():
    doc = ["header", "...", "certified cohen 100 rows in 0.7 s -> cohen.csv (confidence ...)", "",
           "   ...   (12 rows, as above)", "last"]
    assert matches(doc, ["header", "certified cohen 100 rows in 2.0 s -> cohen.csv (confidence 1 - alpha = 0.999)",
                         "last"])
    assert matches(doc, ["header", "x", "", "y", "certified cohen 100 rows in 2.0 s -> cohen.csv (confidence z)",
                         "a", "b", "last"])
    assert not matches(doc, ["header", "certified cohen 100 rows in 2.0 s -> cohen.csv (confidence z)"])  # no "last"
    assert not matches(doc, ["certified cohen 100 rows in 2.0 s -> cohen.csv (confidence z)", "last"])  # no header
    assert not matches(["a", "b"], ["a", "c", "b"])      # without "...", every line is accounted for
    assert matches(["..."], []) and matches([], [""]) and not matches([], ["x"])
    assert unmatched(doc, ["header", "certified cohen 100 rows in 2.0 s -> cohen.csv (confidence z)"]) == "last"
    assert unmatched(["a", "...", "b"], ["b", "a"]) is None       # each line is printed, only the order is wrong


def test_a_scaled_block_checks_words_columns_and_line_counts_not_numbers():
    doc = ["  method  inputs acc@0 acc@0.25   ACR abstain", "two-step     100  98.0     91.0 0.542     2.0",
           "100 certificates -> two-step.csv (overall confidence 1 - 2 alpha = 0.998)"]
    run = ["  method  inputs acc@0 acc@0.25   ACR abstain", "two-step      20 100.0     95.0 0.480     0.0",
           "20 certificates -> two-step.csv (overall confidence 1 - 2 alpha = 0.998)"]
    assert matches(doc, run, scaled=True) and not matches(doc, run)
    assert not matches(doc, [run[0], run[1].replace("two-step", "cohen"), run[2]], scaled=True)        # a word
    assert not matches(doc, [run[0], run[1] + " 0.1", run[2]], scaled=True)                            # a column
    assert not matches(doc, [run[0], run[1], run[1], run[2]], scaled=True)                             # a line
    assert normalise("33.2x smaller, top-5, acc@0.25, -1", scaled=True) == "<n> smaller, top-<n>, acc@<n>, <n>"


def test_what_a_terminal_shows_without_progress_bars():
    printed = "\rcertify: 0%|  | 0/4\rcertify: 25%|#| 1/4\r        \r  method  inputs\ntwo-step 20\n"
    assert terminal_lines(printed) == ["  method  inputs", "two-step 20", ""]
    bar = "\rsampling:  13%|#3   | 131k/1.01M [00:33<03:46, 3.88ksample/s]\rsampling: 100%|#####| 1.01M/1.01M [03:17<00:00]"
    assert terminal_lines(f"{bar}\nsmoothcert sample: 100 inputs |a|b| [1:2]") == ["smoothcert sample: 100 inputs |a|b| [1:2]"]


def test_sample_commands_are_scaled_down_and_nothing_else_is():
    assert scale("smoothcert sample --model m --data d --sigma 0.25 --n0 100 --n 100000 --indices 0:500:1 s.zarr") == \
        "smoothcert sample --model m --data d --sigma 0.25 --n0 100 --n 1000 --indices 0:200:1 s.zarr"
    assert scale("smoothcert sample --data d --n 2000 --indices 100:200 b.zarr") == \
        "smoothcert sample --data d --n 1000 --indices 100:200 b.zarr"
    assert scale("smoothcert sample --data d --n=500 --indices=0:10000:20 b.zarr") == \
        "smoothcert sample --data d --n=500 --indices=0:4000:20 b.zarr"
    assert scale("smoothcert sample --model m --data d --n 100000 --topk 5 top5.zarr") == \
        "smoothcert sample --indices 0:20 --model m --data d --n 1000 --topk 5 top5.zarr"
    assert scale("smoothcert sample --model new.pt --replay-of base --n 10000 out") == \
        "smoothcert sample --model new.pt --replay-of base --n 1000 out"
    for other in ("smoothcert certify s --method cohen --n-use 100000 --out c.csv", "python bench/scale.py --n 100000"):
        assert scale(other) == other


def test_the_demo_command_is_recognised_with_its_folder_and_the_quick_names_read_as_the_full_ones():
    assert demo_out("smoothcert demo") == "demo-out"
    assert demo_out("smoothcert demo --out my-demo   # a comment") == "my-demo"
    assert demo_out("smoothcert demo --quick --out=d") == "d"
    assert demo_out("smoothcert demo-like") is None and demo_out("smoothcert certify demo-out/store") is None
    assert unquick("-> demo-out/certificates-quick/cohen.csv, demo-out/store-quick, plot-quick.png") == \
        "-> demo-out/certificates/cohen.csv, demo-out/store, plot.png"


def test_a_command_may_fail_only_where_the_page_shows_an_error():
    assert shows_error(["smoothcert: error: --threshold 0.0 is at or below the minimum"])
    assert not shows_error(["imported 100 inputs", "..."]) and not shows_error([])
