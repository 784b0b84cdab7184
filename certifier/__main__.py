"""``python -m smoothcert.certifier --markdown [--write docs/methods.md]``: the methods table from the registry.

``--markdown`` prints the table (one row per registered method: what it
certifies, overall confidence, docs/methods.md section); ``--write FILE``
replaces the table between the ``<!-- methods-table:begin -->`` and
``<!-- methods-table:end -->`` markers of FILE with it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .registry import methods_markdown, replace_methods_table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smoothcert.certifier",
                                 description="The methods table of docs/methods.md, generated from the registry.")
    ap.add_argument("--markdown", action="store_true", help="print the methods table as markdown")
    ap.add_argument("--write", metavar="FILE", help="refresh the table between the markers of FILE (docs/methods.md)")
    args = ap.parse_args(argv)
    if not (args.markdown or args.write):
        ap.error("give --markdown and/or --write FILE")
    if args.markdown:
        sys.stdout.write(methods_markdown())
    if args.write:
        path = Path(args.write)
        try:
            text = path.read_text()
            path.write_text(replace_methods_table(text))
        except (OSError, ValueError) as e:
            print(f"python -m smoothcert.certifier: error: {e}", file=sys.stderr)
            return 2
        print(f"methods table -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
