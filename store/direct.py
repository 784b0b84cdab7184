"""Whole-chunk reads of a local store on the calling thread, without zarr's asynchronous pipeline.

A certify task reads every input of its block whole: one chunk per input
and array. zarr reads a chunk on its event-loop thread, decodes it on its
thread pool and copies it into the result on the loop thread again; for the
2 MB zstd chunks of a (100,100 x 10) float16 input that hand-off costs as
much CPU as the decoding itself (bench store: 3.7-4.5 s of CPU for 480
inputs through zarr, 2.3 s here, the same bytes). Here the file is read and
decoded in the caller's thread and the result is a view of the decoded
buffer.

Only the layout smoothcert writes qualifies: a local directory store
(``zarr.storage.LocalStore``), one chunk per input along the first axis,
the codecs ``bytes`` (little endian) then ``zstd``, no sharding or
transposition. Anything else (zip, fsspec URLs, other codecs) returns
``None`` from :func:`reader` and the caller reads through zarr. A missing
chunk file reads as the array's fill value, as zarr reads it; bytes zstd
cannot decode raise ``ValueError`` (the caller names the input).
"""
from __future__ import annotations

import os

import numpy as np

ENABLED = True                 # False: every read goes through zarr (the tests compare both)


class ChunkReader:
    """Reads input slot ``i`` of one array: ``read(i)`` -> ndarray of the chunk's shape without its first axis."""

    def __init__(self, directory: str, chunk_shape, dtype, fill_value, key_of):
        from numcodecs import Zstd

        self.directory = directory
        self.shape = tuple(int(s) for s in chunk_shape[1:])
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.fill_value = fill_value
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._key_of = key_of
        self._zstd = Zstd()

    def read(self, i: int) -> np.ndarray:
        path = os.path.join(self.directory, self._key_of(i))
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return np.full(self.shape, self.fill_value, dtype=self.dtype)
        size = frame_content_size(raw)
        if size is not None and size != self.nbytes:      # refused before any allocation of that size
            raise ValueError(f"chunk {path} holds {size} bytes, expected {self.nbytes}")
        try:
            buf = self._zstd.decode(raw, out=np.empty(self.nbytes, np.uint8)) if size is not None \
                else self._zstd.decode(raw)
        except Exception as e:
            raise ValueError(f"zstd cannot decode chunk {path} ({type(e).__name__}: {e})") from e
        if len(memoryview(buf).cast("B")) != self.nbytes:
            raise ValueError(f"chunk {path} decodes to {len(memoryview(buf).cast('B'))} bytes, expected {self.nbytes}")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.shape)


def frame_content_size(raw: bytes) -> int | None:
    """The decompressed size a zstd frame's header declares (RFC 8878, 3.1.1.1), or None when it declares none."""
    if len(raw) < 6 or raw[:4] != b"\x28\xb5\x2f\xfd":
        return None
    fhd = raw[4]
    single = (fhd >> 5) & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]        # window descriptor, dictionary id
    width = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    if width == 0 or len(raw) < pos + width:
        return None
    v = int.from_bytes(raw[pos:pos + width], "little")
    return v + 256 if width == 2 else v


def reader(zarr_array) -> ChunkReader | None:
    """A :class:`ChunkReader` for ``zarr_array`` when its layout qualifies (module docstring), else ``None``."""
    try:
        from zarr.codecs import BytesCodec, ZstdCodec
        from zarr.storage import LocalStore

        md = zarr_array.metadata
        sp = zarr_array.store_path
        if type(sp.store) is not LocalStore or getattr(md, "zarr_format", None) != 3:
            return None
        codecs = tuple(md.codecs)
        if len(codecs) != 2 or type(codecs[0]) is not BytesCodec or type(codecs[1]) is not ZstdCodec:
            return None
        endian = getattr(codecs[0].endian, "value", codecs[0].endian)
        if endian not in ("little", None):
            return None
        chunks = tuple(zarr_array.chunks)
        shape = tuple(zarr_array.shape)
        if chunks[0] != 1 or chunks[1:] != shape[1:]:
            return None
        dtype = np.dtype(zarr_array.dtype)
        if dtype.kind not in "fiu" or (dtype.itemsize > 1 and dtype.byteorder == ">"):
            return None
        fill = md.fill_value
        directory = os.path.join(str(sp.store.root), sp.path) if sp.path else str(sp.store.root)
        zeros = (0,) * (len(shape) - 1)
        return ChunkReader(directory, chunks, dtype, fill, lambda i: md.encode_chunk_key((int(i),) + zeros))
    except Exception:
        return None
