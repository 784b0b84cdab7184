"""The sample store format: names, dtypes, codecs and the version number.

Everything that defines what bytes a store holds lives here, so that the
writer, the reader and ``FORMAT.md`` agree. Bump ``FORMAT_VERSION`` on any
change that an older reader would misread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORMAT_NAME = "smoothcert-store"
FORMAT_VERSION = 3          # the newest version: a store is written with its layout's (``layouts.Layout.format_version``)
READABLE_VERSIONS = (1, 2, 3)  # 1: no metadata checksum; 3: layout "compact-s0" (compact with whole selection rows)
ATTRS_KEY = "smoothcert"

# Version 2 seals the group metadata (sigma, n0, n, ...) with a crc32c, as every
# input's arrays are sealed by their record: a flipped bit in ``zarr.json``
# would otherwise change every radius and still pass ``store verify``.
META_CRC_KEY = "metadata_crc32c"

ROW_DTYPES = ("float16", "float32")
DEFAULT_SAMPLER_DTYPE = "float16"

# Per-input arrays; every one is chunked one input per chunk along axis 0, so
# that no two writers (shard processes) ever touch the same chunk.
ROWS = "rows"                  # (N, R, m) float16|float32, fill NaN
ARGMAX = "argmax"              # (N, R) uint16, fill 65535: hard label of the full-precision row
MEMBERS = "member_logprobs"    # (N, R, k, m) float32, fill NaN (ensembles only)
INPUTS = "inputs"              # (N, 8) int64, fill -1: one record per input, written last (see INPUT_FIELDS)

# Columns of the per-input record. ``complete`` is 1 only in a record written
# after every other array of the input; the crc columns hold crc32c values of
# [rows], [argmax + (label, idx, n_rows, core_predict)] and [member_logprobs].
INPUT_FIELDS = ("idx", "label", "n_rows", "core_predict", "crc_rows", "crc_argmax", "crc_members", "complete")
COL = {name: i for i, name in enumerate(INPUT_FIELDS)}

ARGMAX_FILL = np.iinfo(np.uint16).max
MAX_CLASSES = int(ARGMAX_FILL)  # class indices must fit below the fill value

# Chunks of the row arrays are cut along the row axis when one input is
# larger than this (uncompressed), e.g. 1,000 classes x 100,100 rows.
MAX_CHUNK_BYTES = 32 * 2**20

# Limits on metadata read from an untrusted store, checked before allocating.
# Readers hold every input's record (64 bytes) at once, and at least one whole
# input decoded (rows as float32, hard labels as int64, member rows as float32):
# metadata beyond these limits is refused when the store is opened.
MAX_INPUTS = 10**7
MAX_ROWS_PER_INPUT = 10**9
MAX_INPUT_BYTES = 2**33


@dataclass(frozen=True)
class StoreShape:
    """The dimensions of a store: inputs, selection and estimation rows per input, classes, ensemble members."""
    n_inputs: int
    n0: int
    n: int
    num_classes: int
    members: int = 0

    @property
    def total_rows(self) -> int:
        return self.n0 + self.n


def metadata_crc(attrs: dict) -> int:
    """crc32c of the canonical JSON of ``attrs`` without its own checksum (sorted keys, compact separators)."""
    import json

    import crc32c

    body = {k: v for k, v in attrs.items() if k != META_CRC_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return int(crc32c.crc32c(text.encode("ascii")))


def sealed(attrs: dict) -> dict:
    """A copy of ``attrs`` normalised as JSON stores it, with its checksum under META_CRC_KEY."""
    import json

    a = json.loads(json.dumps({k: v for k, v in attrs.items() if k != META_CRC_KEY}, allow_nan=True))
    a[META_CRC_KEY] = metadata_crc(a)
    return a


def compressors():
    """zstd level 1 with its frame checksum: a flipped byte becomes a read error."""
    from zarr.codecs import ZstdCodec

    return (ZstdCodec(level=1, checksum=True),)


def row_chunk(total_rows: int, row_bytes: int) -> int:
    """Rows per chunk so that one chunk stays under MAX_CHUNK_BYTES (never crossing inputs)."""
    per_input = total_rows * row_bytes
    pieces = max(1, math.ceil(per_input / MAX_CHUNK_BYTES))
    return max(1, math.ceil(total_rows / pieces))
