"""Data sets the sampler reads: arrays, image folders, CIFAR batches, or a Python dataset.

Every form is turned into a ``Data`` object whose ``get(i)`` returns the clean
input as float32 (C, H, W) in [0, 1] pixel space and its integer label; the
noise is added to exactly these values. Forms of ``--data``:

* ``FILE.npz`` with ``x`` (N, C, H, W) or (N, H, W) and ``y`` (N,); float in
  [0, 1], or uint8 scaled by 1/255;
* ``IMAGES.npy,LABELS.npy``: the same two arrays as separate ``.npy`` files
  (memory-mapped, so large arrays are not read whole);
* a folder of images in class sub-folders (``DIR/<class>/<image>``), read as
  torchvision's ImageFolder reads it: always RGB, labels from the sorted
  sub-folder names or a class-list file, with the field's evaluation
  preprocessing ``resize``/``crop`` when asked (``sampler.images``);
* a CIFAR-10/100 python batch (``cifar-10-batches-py/test_batch``,
  ``cifar-100-python/test``) or the folder holding it, read by a restricted
  unpickler that runs no pickled code (``sampler.cifar``);
* ``package.module:callable``: called without arguments, it returns a
  dataset (``len`` and ``ds[i] -> (image, label)``, image a tensor/array
  (C, H, W) float in [0, 1] or uint8, label an int or a 0-d tensor), or a
  tuple/dict of arrays ``(x, y)``; from Python, such a dataset object itself
  (a torchvision dataset with ``transform=ToTensor()``, for instance). A
  PIL image in place of the tensor is refused with a hint to add ToTensor.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys

import numpy as np

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def import_object(spec: str, what: str):
    """Import ``package.module:name`` (the current directory is importable) or raise ValueError naming ``spec``."""
    mod_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"{what} {spec}: cannot import module {mod_name!r} ({e})") from e
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ValueError(f"{what} {spec}: module {mod_name!r} has no attribute {attr!r}") from None


def is_callable_spec(spec: str) -> bool:
    """True if ``spec`` reads as ``package.module:callable`` and is not an existing path."""
    return bool(_CALLABLE.match(spec)) and not os.path.exists(spec)


def _to_chw_float(img, where: str) -> np.ndarray:
    """One image (tensor or array) as float32 (C, H, W); uint8 is scaled by 1/255. A PIL image is refused."""
    try:
        import torch

        if isinstance(img, torch.Tensor):
            img = img.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if hasattr(img, "getbands") and hasattr(img, "convert"):   # a PIL image
        raise ValueError(f"{where}: the dataset returned a PIL image ({img.mode} {img.size[0]}x{img.size[1]}), not a "
                         f"tensor; add transforms.ToTensor() to its transform (image tensors C x H x W in [0, 1])")
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{where}: an image must have shape (C, H, W), got {a.shape}")
    if a.shape[0] > 4 and a.shape[-1] in (1, 3, 4):
        raise ValueError(f"{where}: the image has shape {a.shape}, which looks like (H, W, C); give (C, H, W) "
                         f"(transforms.ToTensor() does, or x.transpose(2, 0, 1))")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype.kind != "f":
        raise ValueError(f"{where}: images must be float in [0, 1] or uint8, got dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


def _check_pixels(x: np.ndarray, where: str) -> None:
    """Raise ValueError naming ``where`` unless every pixel is finite and in [0, 1]."""
    if not np.isfinite(x).all():
        raise ValueError(f"{where} has non-finite pixel values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{where} has pixel values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; "
                         f"the sampler adds noise in [0, 1] pixel space (give uint8 or scale to [0, 1]; "
                         f"normalisation belongs in --mean/--std)")


class Data:
    """A data set: ``len(data)`` inputs, ``data.get(i) -> (x float32 (C, H, W) in [0, 1], label int)``.

    ``spec``: the data set's name in messages and in the store (``data``);
    ``preprocessing``: how its pixels were made (the store's
    ``data_preprocessing``, store/FORMAT.md), None for arrays and datasets
    taken as they are; ``notes``: lines the sampler shows the user once.
    """

    def __init__(self, spec: str, n: int, getter, labels=None, preprocessing=None, notes=(), check=None):
        self.spec = spec
        self._n = int(n)
        self._get = getter
        self._labels = labels
        self.preprocessing = preprocessing
        self.notes = list(notes)
        self._check = check

    def check(self, sel) -> None:
        """Cheap checks of a selection before any input is read (an image folder: one size); ValueError if bad."""
        if self._check is not None:
            self._check(sel)

    def __len__(self) -> int:
        return self._n

    def get(self, i: int):
        """Input ``i`` as float32 (C, H, W) in [0, 1] and its label; ValueError naming the input if bad."""
        if not (0 <= i < self._n):
            raise ValueError(f"data {self.spec}: index {i} outside 0..{self._n - 1}")
        x, y = self._get(i)
        where = f"data {self.spec}: input {i}"
        x = _to_chw_float(x, where)
        _check_pixels(x, where)
        if hasattr(y, "item") and getattr(y, "ndim", 1) == 0:     # a 0-d tensor or numpy scalar
            y = y.item()
        try:
            y_int = int(y)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: label {y!r} is not an integer") from None
        if isinstance(y, bool) or y_int != y or y_int < 0:
            raise ValueError(f"{where}: label {y!r} is not a non-negative integer")
        return np.ascontiguousarray(x), y_int


# ---------------------------------------------------------------- the forms
def _arrays(spec: str, x, y) -> Data:
    """A ``Data`` over in-memory (or memory-mapped) arrays x, y, after checking their shapes and dtypes."""
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"data {spec}: x must have shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if x.shape[1] > 4 and x.shape[-1] in (1, 3, 4):
        raise ValueError(f"data {spec}: x has shape {x.shape}, which looks like (N, H, W, C); "
                         f"give (N, C, H, W), e.g. x.transpose(0, 3, 1, 2)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"data {spec}: y must have shape ({x.shape[0]},), got {y.shape}")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise ValueError(f"data {spec}: x must be float in [0, 1] or uint8, got dtype {x.dtype}")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"data {spec}: y must hold integer labels, got dtype {y.dtype}")
    return Data(spec, x.shape[0], lambda i: (x[i], y[i]), labels=y)


def _load_npz(spec: str) -> Data:
    """The ``FILE.npz`` form (arrays ``x`` and ``y``, read without pickle)."""
    with np.load(spec, allow_pickle=False) as z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            raise ValueError(f"data {spec}: the .npz must hold arrays 'x' and 'y'; it has {sorted(z.files)}")
        x, y = z["x"], z["y"]
    return _arrays(spec, x, y)


def _load_npy_pair(spec: str) -> Data:
    """The ``IMAGES.npy,LABELS.npy`` form (images memory-mapped, read without pickle)."""
    parts = spec.split(",")
    if len(parts) != 2 or not all(p.endswith(".npy") for p in parts):
        raise ValueError(f"data {spec}: a .npy file holds one array; give IMAGES.npy,LABELS.npy "
                         f"or an .npz with 'x' and 'y'")
    for p in parts:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"data {spec}: no such file {p}")
    x = np.load(parts[0], mmap_mode="r", allow_pickle=False)
    y = np.load(parts[1], allow_pickle=False)
    return _arrays(spec, x, y)


def _load_folder(spec: str, resize=None, crop=None, classes=None) -> Data:
    """The class-sub-folder form, as torchvision's ImageFolder reads it (``sampler.images``)."""
    from .images import open_folder

    n, get, labels, record, notes, check = open_folder(spec, resize=resize, crop=crop, classes=classes)
    return Data(spec, n, get, labels=labels, preprocessing=record, notes=notes, check=check)


def _load_cifar(spec: str, path) -> Data:
    """A CIFAR-10/100 python batch (``sampler.cifar``), its uint8 planes as (N, 3, 32, 32)."""
    from .cifar import load_batch

    x, y, _ = load_batch(path, spec)
    return _arrays(spec, x, y)


def _from_dataset(spec: str, ds) -> Data:
    """A map-style dataset (``len(ds)``, ``ds[i] -> (image, label)``) as ``Data``."""
    def get(i):
        try:
            item = ds[i]
        except Exception as e:
            raise ValueError(f"data {spec}: ds[{i}] failed: {type(e).__name__}: {e}") from e
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise ValueError(f"data {spec}: ds[{i}] must be (image, label), got {type(item).__name__}")
        return item[0], item[1]

    try:
        n = len(ds)
    except Exception as e:
        raise ValueError(f"data {spec}: len() failed: {type(e).__name__}: {e}") from e
    return Data(spec, n, get)


def _from_object(spec: str, obj) -> Data:
    """A dataset object, or a tuple/dict of arrays ``(x, y)``, as ``Data`` (``spec`` names it in messages)."""
    if isinstance(obj, dict) and "x" in obj and "y" in obj:
        return _arrays(spec, np.asarray(obj["x"]), np.asarray(obj["y"]))
    if isinstance(obj, tuple) and len(obj) == 2 and all(hasattr(a, "shape") for a in obj):
        return _arrays(spec, np.asarray(obj[0]), np.asarray(obj[1]))
    if not (hasattr(obj, "__len__") and hasattr(obj, "__getitem__")):
        raise ValueError(f"data {spec}: {type(obj).__name__} is not a dataset (len and ds[i] -> (image, label)) "
                         f"or a pair of arrays (x, y)")
    return _from_dataset(spec, obj)


def _load_callable(spec: str) -> Data:
    """The ``package.module:callable`` form: a map-style dataset or a pair of arrays."""
    fn = import_object(spec, "data")
    try:
        ds = fn()
    except Exception as e:
        raise ValueError(f"data {spec}: calling it failed: {type(e).__name__}: {e}") from e
    return _from_object(spec, ds)


def object_name(obj) -> str:
    """How a dataset object given from Python is named in messages and in the store's ``data``."""
    t = type(obj)
    return f"<{t.__module__}.{t.__qualname__} object>"


def is_spec(data) -> bool:
    """True if ``data`` is written as text or a path (``--data``), False for a dataset object given from Python."""
    return isinstance(data, (str, os.PathLike))


def preprocessing_options(record) -> dict:
    """``load_data``'s ``resize``, ``crop`` and ``classes`` that read data as a store's ``data_preprocessing`` says."""
    record = record or {}
    return {k: record.get(k) for k in ("resize", "crop", "classes")}


FORMS = "FILE.npz, IMAGES.npy,LABELS.npy, a folder of class sub-folders, a CIFAR python batch, or package.module:callable"


def load_data(spec, resize=None, crop=None, classes=None) -> Data:
    """Open ``--data`` in any of its forms, or raise ValueError/FileNotFoundError with a one-line message.

    ``spec`` is the text of ``--data`` (or a path), or a dataset object given
    from Python. ``resize``, ``crop`` (the field's evaluation preprocessing)
    and ``classes`` (a class-list file) apply to image folders only and are
    refused for any other form.
    """
    if not is_spec(spec):
        d = _from_object(object_name(spec), spec)
    else:
        d = _load_spec(str(spec), resize, crop, classes)
    if d.preprocessing is None and (resize, crop, classes) != (None, None, None):
        given = " ".join(f"--{k} {v}" for k, v in (("resize", resize), ("crop", crop), ("classes", classes)) if v is not None)
        raise ValueError(f"data {d.spec}: {given} applies to image folders only (DIR/<class>/<image>); this data is "
                         f"used as it is")
    return d


def _load_spec(spec: str, resize, crop, classes) -> Data:
    """``load_data`` of a ``--data`` text."""
    from .cifar import batch_file

    if "," in spec and spec.endswith(".npy"):
        return _load_npy_pair(spec)
    if os.path.isdir(spec):
        batch = batch_file(spec)
        return _load_cifar(spec, batch) if batch is not None else _load_folder(spec, resize, crop, classes)
    if spec.endswith(".npz"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"data {spec}: no such file")
        return _load_npz(spec)
    if spec.endswith(".npy"):
        return _load_npy_pair(spec)
    if is_callable_spec(spec):
        return _load_callable(spec)
    if not os.path.exists(spec):
        raise FileNotFoundError(f"data {spec}: no such file or folder (expected {FORMS})")
    batch = batch_file(spec)
    if batch is not None:
        return _load_cifar(spec, batch)
    raise ValueError(f"data {spec}: unknown form (expected {FORMS})")


# ---------------------------------------------------------------- selection
def parse_indices(spec: str | None, n: int) -> range:
    """The dataset indices ``START:STOP:STEP`` selects from ``range(n)`` (Python slice rules); all when None."""
    if spec is None or str(spec).strip() in ("", ":"):
        return range(n)
    parts = str(spec).split(":")
    if len(parts) > 3:
        raise ValueError(f"--indices {spec}: expected START:STOP:STEP")
    try:
        vals = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise ValueError(f"--indices {spec}: START, STOP and STEP must be integers") from None
    if len(vals) == 1:          # a single index
        i = vals[0]
        if i is None or not (0 <= i < n):
            raise ValueError(f"--indices {spec}: index outside 0..{n - 1}")
        return range(i, i + 1)
    if len(vals) == 3 and vals[2] is not None and vals[2] <= 0:
        raise ValueError(f"--indices {spec}: STEP must be positive")
    sel = range(n)[slice(*vals)]
    if len(sel) == 0:
        raise ValueError(f"--indices {spec}: selects no input of the {n} in the data set")
    return sel


def indices_spec(sel: range) -> str:
    """A canonical ``START:STOP:STEP`` string for a selection (what the store records)."""
    return f"{sel.start}:{sel.stop}:{sel.step}"


def fingerprint(data, sel, progress=None) -> str:
    """sha256 over the selected inputs as the sampler sees them: index, label, shape and float32 pixels.

    When the pixels were resized or cropped (``data.preprocessing``), the
    preprocessing's settings are hashed first, so another --resize/--crop
    always gives another fingerprint; data read as it is hashes its pixels
    only (an image folder without preprocessing and the same images as an
    .npz have one fingerprint).
    """
    h = hashlib.sha256(b"smoothcert-data-v1\0")
    pre = getattr(data, "preprocessing", None) or {}
    if pre.get("resize") is not None or pre.get("crop") is not None:
        keys = {k: pre.get(k) for k in ("resize", "crop", "resample")}
        h.update(b"preprocessing\0" + json.dumps(keys, sort_keys=True).encode())
    for i in sel:
        x, y = data.get(i)
        h.update(np.array([i, y, *x.shape], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
        if progress is not None:
            progress(1)
    return h.hexdigest()
