"""Certificate tables byte for byte as smoothcert wrote them before the sparse uncertainty counts and the streamed writer.

The reference tables in ``fixtures/tables`` were written by smoothcert at
commit 27f458a with ``python tests/fixtures/make_tables.py tests/fixtures/tables``
(the cases and stores are defined there); here the same stores are rebuilt
and the same commands run with the current code.
"""
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import make_tables  # noqa: E402

sys.path.remove(str(FIXTURES))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return make_tables.build_stores(tmp_path_factory.mktemp("tables") / "stores")


@pytest.mark.parametrize("name", sorted(make_tables.CASES))
def test_tables_equal_the_reference_bytes(stores, tmp_path, name):
    got = make_tables.run_case(name, stores, tmp_path)
    for fname, data in got.items():
        assert data == (FIXTURES / "tables" / fname).read_bytes(), fname


def test_compact_store_gives_the_full_stores_bytes(stores, tmp_path):
    """The 1,000-class top-5 store: the same table and summary as its full store (uncertainty is exact there)."""
    store, args, suffixes = make_tables.CASES["u-thousand"]
    make_tables.CASES["u-thousand-top5"] = ("thousand_top5", args, suffixes)
    try:
        got = make_tables.run_case("u-thousand-top5", stores, tmp_path)
    finally:
        del make_tables.CASES["u-thousand-top5"]
    for fname, data in got.items():
        assert data == (FIXTURES / "tables" / fname.replace("-top5", "")).read_bytes(), fname
