"""Build a store from arrays computed elsewhere (``smoothcert store import``).

Everything in the source is validated before a single byte is written; the
store is built in a temporary sibling and moved into place only when every
input is written (``publish.publish_store``), so a failure never leaves a
store that looks complete. Any layout can be imported into: full rows, or
with ``topk`` the compact top-k with whole selection rows (equal to
compacting the full import).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from . import format as F
from .api import create_store
from .errors import StoreError
from .layouts import CompactFullS0, FullRows
from .publish import publish_store
from .topk import MAX_TOPK

SUM_TOLERANCE = 1e-3
MAX_SOURCE_BYTES = 64 * 2**30


def load_npz(path) -> dict:
    """Arrays of an .npz file, never unpickling; refuses absurd declared sizes before reading."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"source {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise StoreError(f"source {path} is not an .npz file")
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
            if total > MAX_SOURCE_BYTES:
                raise StoreError(f"source {path} declares {total} bytes of arrays, more than the {MAX_SOURCE_BYTES} allowed")
            for info in zf.infolist():
                _check_npy_header(zf, info, path)
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"source {path}: unreadable .npz ({type(e).__name__}: {e})") from e
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        msg = str(e)
        if "allow_pickle" in msg or "pickle" in msg.lower():
            raise StoreError(f"source {path}: cannot read arrays without unpickling ({msg})") from e
        raise StoreError(f"source {path}: unreadable .npz ({msg})") from e
    except Exception as e:
        raise StoreError(f"source {path}: unreadable .npz ({type(e).__name__}: {e})") from e


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> None:
    """Refuse a member whose .npy header declares more data than the member holds, or objects.

    np.load allocates the array its header declares before reading any data,
    so a few forged header bytes could otherwise ask for terabytes.
    """
    if not info.filename.endswith(".npy"):
        return
    name = info.filename[:-4]
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=10_000)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10_000)
            header = f.tell()
    except Exception as e:
        raise StoreError(f"source {path}: array '{name}' cannot be read ({type(e).__name__}: {e})") from e
    if dtype.hasobject:
        raise StoreError(f"source {path}: array '{name}' holds Python objects ({dtype}); "
                         f"they cannot be read without unpickling, which smoothcert never does")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > info.file_size - header:
        raise StoreError(f"source {path}: array '{name}' declares shape {shape} of {dtype} ({need} bytes) "
                         f"but its member holds {info.file_size - header} bytes")


def _first_bad(mask: np.ndarray):
    """(input, row) of the first True in a (N, R, ...) mask, or None."""
    if not mask.any():
        return None
    flat = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
    sub = mask[flat].reshape(mask.shape[1], -1).any(axis=1) if mask.ndim > 1 else np.array([True])
    return int(flat), int(np.flatnonzero(sub)[0]) if sub.ndim else 0


def validate_source(src: dict, n0: int, name: str = "source") -> dict:
    """Check shapes, dtypes and values; return the normalised arrays. Raises StoreError naming input and row."""
    if "probs" not in src:
        raise StoreError(f"{name}: missing array 'probs' (N, n0+n, m); found {sorted(src)}")
    if "labels" not in src:
        raise StoreError(f"{name}: missing array 'labels' (N,); found {sorted(src)}")
    probs = src["probs"]
    if probs.dtype.kind != "f":
        raise StoreError(f"{name}: 'probs' must be a float array, got dtype {probs.dtype}")
    if probs.ndim != 3:
        raise StoreError(f"{name}: 'probs' must have shape (N, n0+n, m), got {probs.shape}")
    N, R, m = probs.shape
    if N < 1:
        raise StoreError(f"{name}: 'probs' holds no inputs")
    if m < 2 or m > F.MAX_CLASSES:
        raise StoreError(f"{name}: 'probs' must have 2..{F.MAX_CLASSES} classes, got {m}")
    if n0 < 1:
        raise StoreError(f"{name}: n0 must be at least 1, got {n0}")
    if R - n0 < 1:
        raise StoreError(f"{name}: 'probs' has {R} rows per input; with n0 = {n0} that leaves n = {R - n0} < 1")
    labels = src["labels"]
    if labels.dtype.kind not in "iu" or labels.shape != (N,):
        raise StoreError(f"{name}: 'labels' must be an integer array of shape ({N},), got {labels.dtype} {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= m))
    if bad.size:
        raise StoreError(f"{name}: input {int(bad[0])}: label {int(labels[bad[0]])} outside 0..{m - 1}")
    idx = src.get("idx")
    if idx is None:
        idx = np.arange(N)
    if idx.dtype.kind not in "iu" or idx.shape != (N,):
        raise StoreError(f"{name}: 'idx' must be an integer array of shape ({N},), got {idx.dtype} {idx.shape}")
    if (idx < 0).any():
        raise StoreError(f"{name}: input {int(np.flatnonzero(idx < 0)[0])}: negative dataset index")
    uniq, cnt = np.unique(idx, return_counts=True)
    if (cnt > 1).any():
        d = int(uniq[cnt > 1][0])
        where = np.flatnonzero(idx == d)[:2]
        raise StoreError(f"{name}: duplicate dataset index {d} at inputs {int(where[0])} and {int(where[1])}")
    for i in range(N):  # per input, so that memory stays at one input's temporaries
        p = probs[i]
        fin = np.isfinite(p)
        if not fin.all():
            r = int(np.flatnonzero(~fin.all(axis=1))[0])
            raise StoreError(f"{name}: input {i} (idx {int(idx[i])}), row {r}: NaN or Inf in probs")
        neg = p < 0
        if neg.any():
            r = int(np.flatnonzero(neg.any(axis=1))[0])
            raise StoreError(f"{name}: input {i} (idx {int(idx[i])}), row {r}: negative probability {float(p[r].min())!r}")
        s = p.sum(axis=1, dtype=np.float64)
        off = np.abs(s - 1.0) > SUM_TOLERANCE
        if off.any():
            r = int(np.flatnonzero(off)[0])
            raise StoreError(f"{name}: input {i} (idx {int(idx[i])}), row {r}: probabilities sum to {float(s[r])!r}, not 1 (tolerance {SUM_TOLERANCE})")
    out = {"probs": probs, "labels": labels.astype(np.int64), "idx": idx.astype(np.int64)}
    cp = src.get("core_predict")
    if cp is not None:
        if cp.dtype.kind not in "iu" or cp.shape != (N,):
            raise StoreError(f"{name}: 'core_predict' must be an integer array of shape ({N},), got {cp.dtype} {cp.shape}")
        bad = np.flatnonzero((cp < 0) | (cp >= m))
        if bad.size:
            raise StoreError(f"{name}: input {int(bad[0])}: core_predict {int(cp[bad[0]])} outside 0..{m - 1}")
        out["core_predict"] = cp.astype(np.int64)
    if "member_logprobs" in src and "member_probs" in src:
        raise StoreError(f"{name}: give either 'member_logprobs' or 'member_probs', not both")
    for key in ("member_logprobs", "member_probs"):
        if key not in src:
            continue
        mem = src[key]
        if mem.dtype.kind != "f" or mem.ndim != 4 or mem.shape[:2] != (N, R) or mem.shape[3] != m:
            raise StoreError(f"{name}: '{key}' must be a float array of shape ({N}, {R}, k, {m}), got {mem.dtype} {mem.shape}")
        if key == "member_probs":
            if (mem < 0).any() or not np.isfinite(mem).all():
                raise StoreError(f"{name}: 'member_probs' must be finite and non-negative")
            with np.errstate(divide="ignore"):
                mem = np.log(mem)
        elif np.isnan(mem).any() or (mem > 1e-3).any() or np.isposinf(mem).any():
            i = int(np.flatnonzero(np.isnan(mem).reshape(N, -1).any(1) | (mem > 1e-3).reshape(N, -1).any(1))[0]) if (np.isnan(mem).any() or (mem > 1e-3).any()) else 0
            raise StoreError(f"{name}: input {i}: 'member_logprobs' must be log-probabilities (<= 0, not NaN)")
        out["member_logprobs"] = mem.astype(np.float32)
    return out


def _source_fingerprint(src: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(src):
        h.update(k.encode())
        h.update(np.ascontiguousarray(src[k]).tobytes())
    return h.hexdigest()


def import_npz(src_path, location, *, sigma: float, n0: int, dtype: str | None = None, topk: int | None = None,
               storage_options: dict | None = None, progress=None) -> dict:
    """Create the store at ``location`` from ``src_path`` (.npz); lossless unless dtype narrows it.

    Hard labels are the argmax of the source rows at their full precision,
    ties towards the lowest index, so float16 and float32 stores from the
    same rows give identical hard-label certificates. ``topk`` (``store
    import --compact-topk K``) writes a compact store instead: rows cast to
    ``dtype`` first, then compacted (selection rows kept whole), so it
    equals compacting the full import.
    Returns ``{inputs}`` (and ``topk`` for a compact import).
    """
    if not (isinstance(sigma, (int, float)) and np.isfinite(sigma) and sigma > 0):
        raise StoreError(f"--sigma must be a positive number, got {sigma!r}")
    raw = load_npz(src_path)
    src = validate_source(raw, n0, name=f"source {src_path}")
    probs = src["probs"]
    N, R, m = probs.shape
    layout = FullRows() if topk is None else CompactFullS0(topk)
    members = src.get("member_logprobs")
    if members is not None and not layout.has_members:
        raise StoreError(f"source {src_path}: a {layout.name} store keeps no member rows; "
                         f"drop member_logprobs/member_probs")
    if dtype is None:
        dtype = "float16" if probs.dtype == np.float16 else "float32"  # float64 sources: float32, the widest stored
    if dtype not in F.ROW_DTYPES:
        raise StoreError(f"--dtype must be one of {F.ROW_DTYPES}, got {dtype!r}")
    if topk is not None and not (isinstance(topk, (int, np.integer)) and 2 <= topk <= min(m, MAX_TOPK)):
        raise StoreError(f"--compact-topk must be in 2..{min(m, MAX_TOPK)} for {m} classes, got {topk!r}")
    k = 0 if members is None else members.shape[2]
    meta = {"source": "import", "source_file": Path(str(src_path)).name, "data_fingerprint": _source_fingerprint(raw),
            "model_fingerprint": None, "seed": None, "device": None}
    has_cp = "core_predict" in src

    def build(target, so):
        st = create_store(target, n_inputs=N, n0=n0, n=R - n0, num_classes=m, sigma=float(sigma), dtype=dtype,
                          members=k, core_predict=has_cp, metadata=meta, storage_options=so, layout=layout)
        try:
            for i in range(N):
                st.write_input(i, rows=probs[i], argmax=np.argmax(probs[i], axis=1), label=int(src["labels"][i]),
                               idx=int(src["idx"][i]), member_logprobs=None if members is None else members[i],
                               core_predict=int(src["core_predict"][i]) if has_cp else None)
                if progress is not None:
                    progress(1)
        finally:
            st.close()

    final = str(location)
    publish_store(final, build, storage_options=storage_options,
                  exists=f"store {final} already exists; choose a new path (import never overwrites)",
                  appeared=f"store {final} was created by another process during this import; not overwriting it")
    return {"inputs": N} if topk is None else {"inputs": N, "topk": int(topk)}
