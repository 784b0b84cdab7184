"""Data sets the sampler reads: arrays, image folders, or a Python callable.

Every form is turned into a ``Data`` object whose ``get(i)`` returns the clean
input as float32 (C, H, W) in [0, 1] pixel space and its integer label; the
noise is added to exactly these values. Forms of ``--data``:

* ``FILE.npz`` with ``x`` (N, C, H, W) or (N, H, W) and ``y`` (N,); float in
  [0, 1], or uint8 scaled by 1/255;
* ``IMAGES.npy,LABELS.npy``: the same two arrays as separate ``.npy`` files
  (memory-mapped, so large arrays are not read whole);
* a folder of images in class sub-folders (``DIR/<class>/<image>``); classes
  are the sub-folders in sorted order (as torchvision's ImageFolder), images
  are read with PIL as 8-bit grey (if the first selected image is grey) or RGB;
* ``package.module:callable``: called without arguments, it returns a
  dataset (``len`` and ``ds[i] -> (image, label)``, image a tensor/array
  (C, H, W) in [0, 1], a uint8 array, or a PIL image), or a tuple/dict of
  arrays ``(x, y)``.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
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
    """One image (tensor, array or PIL image) as float32 (C, H, W); uint8 is scaled by 1/255."""
    try:
        import torch

        if isinstance(img, torch.Tensor):
            img = img.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if hasattr(img, "getbands") and hasattr(img, "convert"):   # a PIL image
        bands = len(img.getbands())
        img = np.asarray(img.convert("L" if bands == 1 else "RGB"))
        img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{where}: an image must have shape (C, H, W), got {a.shape}")
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
    """A data set: ``len(data)`` inputs, ``data.get(i) -> (x float32 (C, H, W) in [0, 1], label int)``."""

    def __init__(self, spec: str, n: int, getter, labels=None):
        self.spec = spec
        self._n = int(n)
        self._get = getter
        self._labels = labels

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
        try:
            y_int = int(y)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: label {y!r} is not an integer") from None
        if y_int != y or y_int < 0:
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


def _load_folder(spec: str) -> Data:
    """The class-sub-folder form: label = position of the sub-folder in sorted order, images in sorted order."""
    root = Path(spec)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"data {spec}: the folder has no class sub-folders (expected DIR/<class>/<image>)")
    files, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(c)
    if not files:
        raise ValueError(f"data {spec}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class sub-folders")
    state = {"mode": None, "size": None}

    def get(i):
        from PIL import Image

        with Image.open(files[i]) as im:
            if state["mode"] is None:
                state["mode"] = "L" if len(im.getbands()) == 1 else "RGB"
                state["size"] = im.size
            if im.size != state["size"]:
                raise ValueError(f"data {spec}: input {i} ({files[i]}) is {im.size[0]}x{im.size[1]}, the first image read "
                                 f"was {state['size'][0]}x{state['size'][1]}; resize the images or use package.module:callable")
            a = np.asarray(im.convert(state["mode"]))
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return a, labels[i]

    d = Data(spec, len(files), get, labels=np.asarray(labels))
    d.classes = classes
    d.files = files
    return d


def _load_callable(spec: str) -> Data:
    """The ``package.module:callable`` form: a map-style dataset or a pair of arrays."""
    fn = import_object(spec, "data")
    try:
        ds = fn()
    except Exception as e:
        raise ValueError(f"data {spec}: calling it failed: {type(e).__name__}: {e}") from e
    if isinstance(ds, dict) and "x" in ds and "y" in ds:
        return _arrays(spec, np.asarray(ds["x"]), np.asarray(ds["y"]))
    if isinstance(ds, tuple) and len(ds) == 2 and all(hasattr(a, "shape") for a in ds):
        return _arrays(spec, np.asarray(ds[0]), np.asarray(ds[1]))
    if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
        raise ValueError(f"data {spec}: it returned {type(ds).__name__}, not a dataset (len and ds[i] -> (image, label)) "
                         f"or a pair of arrays (x, y)")

    def get(i):
        item = ds[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise ValueError(f"data {spec}: ds[{i}] must be (image, label), got {type(item).__name__}")
        y = item[1]
        if hasattr(y, "item"):
            y = y.item()
        return item[0], y

    return Data(spec, len(ds), get)


def load_data(spec: str) -> Data:
    """Open ``--data`` in any of its forms, or raise ValueError/FileNotFoundError with a one-line message."""
    spec = str(spec)
    if "," in spec and spec.endswith(".npy"):
        return _load_npy_pair(spec)
    if os.path.isdir(spec):
        return _load_folder(spec)
    if spec.endswith(".npz"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"data {spec}: no such file")
        return _load_npz(spec)
    if spec.endswith(".npy"):
        return _load_npy_pair(spec)
    if is_callable_spec(spec):
        return _load_callable(spec)
    if not os.path.exists(spec):
        raise FileNotFoundError(f"data {spec}: no such file or folder (expected FILE.npz, IMAGES.npy,LABELS.npy, "
                                f"a folder of class sub-folders, or package.module:callable)")
    raise ValueError(f"data {spec}: unknown form (expected FILE.npz, IMAGES.npy,LABELS.npy, "
                     f"a folder of class sub-folders, or package.module:callable)")


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


def fingerprint(data: Data, sel, progress=None) -> str:
    """sha256 over the selected inputs as the sampler sees them: index, label, shape and float32 pixels."""
    h = hashlib.sha256(b"smoothcert-data-v1\0")
    for i in sel:
        x, y = data.get(i)
        h.update(np.array([i, y, *x.shape], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(x, dtype="<f4").tobytes())
        if progress is not None:
            progress(1)
    return h.hexdigest()
