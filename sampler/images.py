"""Image folders as torchvision's ImageFolder reads them, with the field's evaluation preprocessing.

A folder ``ROOT/<class>/<image>`` is read the way the field's code reads it
(torchvision's ``ImageFolder`` with ``Resize(S)``, ``CenterCrop(C)``,
``ToTensor()``), without needing torchvision:

* **labels**: the class sub-folders in sorted order get labels 0, 1, ...
  (ImageFolder's ``find_classes``; hidden folders are skipped), or, with a
  class-list file, the line on which a folder's name stands (for a folder
  holding some of the classes, e.g. a few of ImageNet's 1,000 synsets in
  their standard order). Images are taken in sorted order of their path
  within each class, so ``--indices 0:50000:100`` picks the images the
  field's code picks;
* **pixels**: every image is converted to RGB with PIL (``convert("RGB")``,
  as ImageFolder's loader does: palette, grey, grey + alpha, RGBA, CMYK and
  16-bit images all become 3 x H x W; 16-bit values above 255 saturate, as
  there); then, if asked, the shorter side is resized to S with PIL's
  bilinear filter and the long side to ``int(S * long / short)``
  (torchvision's ``Resize(S)`` on a PIL image), and a C x C centre crop is
  taken at offsets ``round((H - C) / 2)``, ``round((W - C) / 2)`` (Python's
  rounding, torchvision's ``CenterCrop(C)``). An image smaller than C after
  resizing is refused (torchvision would pad it with zeros).

Every failure is one ValueError line naming the folder and, where there is
one, the file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
PRESETS = {"imagenet": (256, 224)}      # --preprocess NAME: (resize, crop) of the field's ImageNet evaluation
RESAMPLE = "bilinear"                    # the filter of --resize (PIL's, as torchvision's Resize on PIL images)


def resolve_preprocess(preset: str | None, resize: int | None, crop: int | None) -> tuple:
    """(resize, crop) from ``--preprocess NAME`` and/or ``--resize``/``--crop``; ValueError if they disagree."""
    if preset is None:
        return resize, crop
    if preset not in PRESETS:
        raise ValueError(f"--preprocess {preset}: unknown preset; known: "
                         + ", ".join(f"{k} (--resize {s} --crop {c})" for k, (s, c) in PRESETS.items()))
    s, c = PRESETS[preset]
    for name, given, want in (("--resize", resize, s), ("--crop", crop, c)):
        if given is not None and given != want:
            raise ValueError(f"--preprocess {preset} means --resize {s} --crop {c}; {name} {given} contradicts it")
    return s, c


def check_sizes(resize, crop) -> tuple:
    """``resize``/``crop`` as positive ints or None; ValueError naming the option otherwise (crop <= resize)."""
    out = []
    for name, v in (("--resize", resize), ("--crop", crop)):
        if v is not None and (isinstance(v, bool) or not float(v).is_integer() or v < 1):
            raise ValueError(f"{name} must be a positive integer (pixels), got {v}")
        out.append(None if v is None else int(v))
    if out[0] is not None and out[1] is not None and out[1] > out[0]:
        raise ValueError(f"--crop {out[1]} is larger than --resize {out[0]}: the crop must fit in the resized image")
    return tuple(out)


# ------------------------------------------------------------------ labels and files
def read_class_list(path, spec: str) -> list[str]:
    """The class names of a class-list file: the first word of each non-blank line, in order (line order = label)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"data {spec}: cannot read the class list {p} ({type(e).__name__}: {e})") from None
    names = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
    if not names:
        raise ValueError(f"data {spec}: the class list {p} names no class (one folder name per line)")
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"data {spec}: the class list {p} names {n!r} twice")
        seen.add(n)
    return names


def class_folders(root: Path, spec: str) -> list[str]:
    """The class sub-folders of ``root`` in sorted order (hidden ones skipped); ValueError if there are none."""
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        loose = sum(1 for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        found = f"it holds {loose} images but no class sub-folders" if loose else "it has no class sub-folders"
        raise ValueError(f"data {spec}: {found}; an image folder is DIR/<class>/<image>, labels from the sorted "
                         f"sub-folder names")
    return folders


def list_images(root: Path, spec: str, classes_file=None):
    """(files, labels, class names) of an image folder; labels from sorted sub-folders or the class list."""
    folders = class_folders(root, spec)
    if classes_file is None:
        names = folders
    else:
        names = read_class_list(classes_file, spec)
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise ValueError(f"data {spec}: sub-folder {unknown[0]!r} is not in the class list {classes_file} "
                             f"({len(unknown)} of its {len(folders)} sub-folders are not)")
    present = set(folders)
    files, labels = [], []
    for label, name in enumerate(names):
        if name not in present:
            continue
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label)
    if not files:
        raise ValueError(f"data {spec}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class sub-folders")
    return files, np.asarray(labels, dtype=np.int64), names


# ------------------------------------------------------------------ pixels
def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(short)``: shorter side ``short``, longer ``int(short * long / short_side)``."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's ``CenterCrop(crop)`` on a ``width`` x ``height`` image at least ``crop`` wide and high."""
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return left, top, left + crop, top + crop


def read_rgb(path: Path, resize: int | None, crop: int | None, where: str) -> np.ndarray:
    """One image file as uint8 (3, H, W): converted to RGB, then resized and centre-cropped if asked."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except Exception as e:      # PIL raises many types for unreadable files and modes it cannot convert
        raise ValueError(f"{where}: cannot read {path} as an RGB image ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from None
    if resize is not None:
        w, h = resized_size(*rgb.size, resize)
        if (w, h) != rgb.size:
            rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    if crop is not None:
        w, h = rgb.size
        if w < crop or h < crop:
            hint = "" if resize is not None else f"; add --resize {crop} (or more) to scale it first"
            raise ValueError(f"{where}: {path} is {w}x{h}, smaller than --crop {crop}{hint}")
        rgb = rgb.crop(crop_box(w, h, crop))
    return np.asarray(rgb).transpose(2, 0, 1)


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_folder(spec: str, resize: int | None = None, crop: int | None = None, classes=None):
    """An image folder as ``(n, get, labels, record, notes, check)``: ``get(i) -> (uint8 (3, H, W), label)``.

    ``record`` is the store's ``data_preprocessing`` metadata (store/FORMAT.md);
    ``notes`` are lines for the user (a folder read at native resolution);
    ``check(sel)`` refuses, from the file headers alone, a selection whose
    images would not all have one size.
    Guarantee: every input is the RGB image of ImageFolder's loader after
    torchvision's ``Resize(resize)`` and ``CenterCrop(crop)`` (each when
    given); inputs of different sizes are refused by name when read.
    """
    resize, crop = check_sizes(resize, crop)
    root = Path(spec)
    files, labels, names = list_images(root, spec, classes)
    record = {"form": "image folder", "mode": "RGB", "resize": resize, "crop": crop,
              "resample": RESAMPLE if resize is not None else None,
              "classes": None if classes is None else str(classes),
              "classes_sha256": None if classes is None else _file_sha256(classes),
              "num_class_names": len(names)}
    notes = []
    if resize is None and crop is None:
        notes.append(f"smoothcert sample: note: data {spec}: images are sampled at their native resolution "
                     f"(no --resize/--crop); the field's ImageNet evaluation uses --resize 256 --crop 224")

    def out_size(w: int, h: int) -> tuple[int, int]:
        if crop is not None:
            return crop, crop
        return resized_size(w, h, resize) if resize is not None else (w, h)

    first = {}

    def check_size(i, size):
        """Refuse input ``i`` whose (width, height) after preprocessing differs from the first one's."""
        want = first.setdefault("size", size)
        if size != want:
            hint = ("give --resize 256 --crop 224 (the field's ImageNet evaluation, or --preprocess imagenet) to "
                    "bring every image to one size" if resize is None else
                    f"add --crop {resize} (or less) to bring every image to one size")
            raise ValueError(f"data {spec}: input {i} ({files[i]}) is {size[0]}x{size[1]}, the first image read "
                             f"was {want[0]}x{want[1]}; {hint}")

    def check(sel):
        """Every selected image's size after preprocessing, from the file headers only (no decoding)."""
        from PIL import Image

        for i in sel:
            try:
                with Image.open(files[i]) as im:
                    size = im.size
            except Exception:
                continue                  # an unreadable file is named when it is read
            check_size(i, out_size(*size))

    def get(i):
        a = read_rgb(files[i], resize, crop, f"data {spec}: input {i}")
        check_size(i, (a.shape[2], a.shape[1]))
        return a, int(labels[i])

    return len(files), get, labels, record, notes, check
