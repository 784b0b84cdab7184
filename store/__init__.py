"""smoothcert's sample store: a versioned zarr v3 group of noisy-copy softmax rows.

See ``FORMAT.md`` in this folder for the format. The sampler writes with
``create_store`` / ``SampleStore.write_input``; the certifier reads with
``open_store`` / ``SampleStore.read_block``. What a store keeps per input is
its layout (``layouts.py``: ``FullRows``, ``CompactRows``, ``CompactFullS0``), chosen at create
and read back from the attributes at open.
"""
from .api import SampleStore, StoreShape, create_store, open_store, software_versions
from .errors import StoreError
from .format import FORMAT_VERSION
from .layouts import LAYOUTS, CompactFullS0, CompactRows, FullRows, Layout

__all__ = ["SampleStore", "StoreShape", "StoreError", "create_store", "open_store", "software_versions", "FORMAT_VERSION",
           "Layout", "FullRows", "CompactRows", "CompactFullS0", "LAYOUTS"]
