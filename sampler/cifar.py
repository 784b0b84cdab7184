"""CIFAR-10 and CIFAR-100 as researchers keep them: the python batches, read without running any pickled code.

``cifar-10-batches-py/test_batch`` and ``cifar-100-python/test`` (Krizhevsky,
2009, "Learning Multiple Layers of Features from Tiny Images") are Python
pickles of a dict: ``b'data'`` (N, 3072) uint8, each row the 32 x 32 red,
then green, then blue plane (channel-major), and ``b'labels'`` (CIFAR-10)
or ``b'fine_labels'`` (CIFAR-100, its 100 classes), a list of N ints. A
folder given as DATA means its test batch (``test_batch``, or ``test``).

A pickle can call any importable function while it is read, so these files
are read by ``NumpyOnlyUnpickler``: it builds dicts, lists, tuples, bytes,
strings and numbers (the pickle machine's own opcodes), and of all named
objects only numpy's array and dtype reconstruction (``ALLOWED``); any
other name a pickle asks for (``os.system``, ``builtins.eval``, ...) is
refused before anything is called. The real batches, pickled by Python 2
with protocol 2, and batches written again by Python 3 with
``pickle.dump`` (protocol 4 or 5) read alike; Python 3 at protocols 2 or 3
stores bytes through ``_codecs.encode``, which is refused (write such a
batch again with the default protocol).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

# (module, name) -> the object, under both numpy 1's and numpy 2's module names
_ARRAY_FUNCS = {
    ("multiarray", "_reconstruct"): _multiarray._reconstruct,   # protocols 0-4: an empty array, then its __setstate__
    ("multiarray", "scalar"): _multiarray.scalar,               # a numpy scalar from its dtype and bytes
    ("numeric", "_frombuffer"): _numeric._frombuffer,           # protocol 5: an array over the pickled bytes
}
ALLOWED = {
    **{(f"numpy.{core}.{mod}", name): f for (mod, name), f in _ARRAY_FUNCS.items() for core in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
TEST_BATCH = ("test_batch", "test")      # the test batch of cifar-10-batches-py/, of cifar-100-python/
LABEL_KEYS = (b"labels", b"fine_labels")
PIXELS = 3 * 32 * 32


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy's array and dtype reconstruction (``ALLOWED``); any other name raises."""

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays, lists, dicts, bytes "
                                         f"and numbers may be unpickled") from None


def restricted_loads(data: bytes):
    """The object pickled in ``data``, built by ``NumpyOnlyUnpickler`` (bytes kept as bytes, as for Python 2 pickles)."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def looks_like_pickle(path) -> bool:
    """True if the file starts as a pickle of protocol 2 or later does (the PROTO opcode)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def batch_file(path) -> Path | None:
    """The batch file DATA names: the file itself, or a folder's test batch; None if it is neither."""
    p = Path(path)
    if p.is_file():
        return p if looks_like_pickle(p) else None
    if p.is_dir() and not any(d.is_dir() for d in p.iterdir()):
        for name in TEST_BATCH:
            if (p / name).is_file() and looks_like_pickle(p / name):
                return p / name
    return None


def _key(d: dict, key: bytes):
    """``d[key]``, also when the dict was pickled with str keys (a batch written again by Python 3)."""
    if key in d:
        return d[key]
    return d.get(key.decode())


def load_batch(path, spec: str):
    """(x uint8 (N, 3, 32, 32), y int64 (N,), label key) of a CIFAR python batch; ValueError naming ``spec``."""
    where = f"data {spec}"
    try:
        obj = restricted_loads(Path(path).read_bytes())
    except pickle.UnpicklingError as e:
        raise ValueError(f"{where}: {path} is not a readable CIFAR python batch ({e})") from None
    except Exception as e:      # a truncated or damaged pickle raises EOFError, ValueError, KeyError, ...
        raise ValueError(f"{where}: {path} is not a readable CIFAR python batch, the pickle is damaged "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: {path} holds a {type(obj).__name__}, not a CIFAR batch (a dict with b'data' "
                         f"and b'labels' or b'fine_labels')")
    x = _key(obj, b"data")
    label_key = next((k for k in LABEL_KEYS if _key(obj, k) is not None), None)
    if x is None or label_key is None:
        have = sorted(str(k) for k in obj)
        raise ValueError(f"{where}: {path} is not a CIFAR batch: it needs b'data' and b'labels' (CIFAR-10) or "
                         f"b'fine_labels' (CIFAR-100); it has {', '.join(have)}")
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == PIXELS):
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{where}: {path}: b'data' must be uint8 of shape (N, {PIXELS}), got {desc}")
    try:
        y = np.asarray(_key(obj, label_key))
    except Exception:
        y = np.asarray([], dtype=object)
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
        raise ValueError(f"{where}: {path}: {label_key!r} must be {x.shape[0]} non-negative integer labels, got "
                         f"{y.dtype} {y.shape}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64), label_key.decode()
