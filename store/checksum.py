"""Per-input checksums (crc32c), written with the data and checked on every read."""
from __future__ import annotations

import crc32c as _crc32c
import numpy as np


def crc_of(*arrays) -> int:
    """crc32c over the little-endian, C-ordered bytes of the given arrays, in order."""
    crc = 0
    for a in arrays:
        if a is None:
            continue
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        crc = _crc32c.crc32c(memoryview(a).cast("B"), crc)
    return int(crc)


def scalars_vector(label: int, idx: int, n_rows: int, core_predict: int) -> np.ndarray:
    """The per-input scalars as the int64 vector that the argmax checksum covers."""
    return np.array([label, idx, n_rows, core_predict], dtype=np.int64)
