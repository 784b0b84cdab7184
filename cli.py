"""The ``smoothcert`` command line: each command wires options to a library function.

The data flow is visible here: ``sample`` (sampler/) writes a store, ``store``
commands (store/) inspect and move it, ``certify``/``calibrate``/``report``
(certifier/) read it. No computation lives in this file.
"""
from __future__ import annotations

import sys

import click


class SmoothcertGroup(click.Group):
    """Turns library errors into one-line messages on stderr with a non-zero exit."""

    def invoke(self, ctx):
        from store.errors import StoreError

        try:
            return super().invoke(ctx)
        except (StoreError, ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError) as e:
            if isinstance(e, click.exceptions.ClickException):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            click.echo(f"smoothcert: error: {msg}", err=True)
            sys.exit(2)


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("smoothcert")
    except md.PackageNotFoundError:
        return "0+unknown"


@click.group(cls=SmoothcertGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), prog_name="smoothcert")
def main():
    """Randomized-smoothing certification from stored samples.

    \b
    1. smoothcert sample ...   evaluate a classifier once on n0 + n noisy copies per input
    2. smoothcert certify ...  compute any certificate offline from the store
    3. smoothcert report ...   certified accuracy, ACR and plots from certificate tables
    """


# --------------------------------------------------------------------------- store
@main.group("store")
def store_group():
    """Inspect, import, verify, merge and export sample stores."""


if __name__ == "__main__":
    main()
