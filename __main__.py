"""``python -m smoothcert``: the same command line as the ``smoothcert`` console script."""
from smoothcert.cli import main

if __name__ == "__main__":
    main(prog_name="smoothcert")
