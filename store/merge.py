"""``smoothcert store merge A B ... OUT``: one store from stores sampled separately.

Parts are merged only when every input could have come from one sampling
run: the same format version, noise level, n0, n, classes, dtype, layout,
ensemble, seed, noise scheme, model, preprocessing and data set. Each
difference is refused with its own message before anything is written.

The data check. A part's ``data_fingerprint`` covers only the inputs it
sampled (its ``--indices``), so parts of one data set sampled on different
index ranges always have different fingerprints. Parts therefore pass the
data check when their fingerprints are equal, or when ``data=DATA`` is given
and every part's fingerprint is recomputed from DATA at that part's recorded
indices (recursively through the parts of a merged store); otherwise the
merge is refused ("data fingerprint differs").

Only complete parts are merged: a part with an incomplete input is refused
(finish its sampling first), so a merged store never mixes in a half-written
input. Every input is read with its checksums verified and written again
through the store API (identical stored bytes, identical checksums); inputs
are ordered by dataset index, so the argument order does not change the
result. The merged store records each part (location, fingerprint, every
attribute) in ``merged_from`` and keeps each part's runs as
``runs/part<i>.<run>``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import numpy as np

from . import format as F
from .backend import is_url, is_zip, local_path, open_zarr_store
from .errors import StoreError

# (attribute, how the refusal names it), checked in this order after the format version.
IDENTITY = (
    ("sigma", "sigma"),
    ("n0", "n0"),
    ("n", "n"),
    ("num_classes", "number of classes"),
    ("dtype", "dtype"),
    ("layout", "layout"),
    ("topk", "compact top-k"),
    ("members", "number of ensemble members"),
    ("core_predict", "core_predict (ACES core model)"),
    ("seed", "seed"),
    ("noise_scheme", "noise scheme"),
    ("model_fingerprint", "model fingerprint"),
    ("member_fingerprints", "member model fingerprints"),
    ("core_model_fingerprint", "core model fingerprint"),
    ("normalisation", "normalisation"),
    ("amp", "amp"),
    ("adaptive", "adaptive sampling rule"),
)
# Attributes describing one part only; they live in merged_from, not at the top level.
PER_PART = ("created", "host", "user", "versions", "device", "device_name", "indices", "data_fingerprint",
            "source", "source_file", "merged_from", "throughput", "data", "model", "weights", "core_model")


def _short(v):
    """A 64-character hex fingerprint cut to 12 characters for messages; anything else unchanged."""
    return v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v


def _raw_attrs(location, storage_options) -> dict:
    """The smoothcert attributes of the group at ``location``, without checking their version."""
    import zarr

    zstore = open_zarr_store(location, mode="r", storage_options=storage_options)
    try:
        root = zarr.open_group(zstore, mode="r")
        a = root.attrs.get(F.ATTRS_KEY)
    except Exception as e:
        raise StoreError(f"store {location} is not a zarr group ({type(e).__name__}: {e})") from e
    finally:
        try:
            zstore.close()
        except Exception:
            pass
    if not isinstance(a, dict) or a.get("format") != F.FORMAT_NAME:
        raise StoreError(f"store {location} is not a smoothcert store")
    return a


def _same(key, a, b) -> bool:
    """Whether two parts agree on ``key`` (absent members/topk/layout read as their defaults)."""
    if key == "sigma" and a is not None and b is not None:
        return float(a) == float(b)
    if key in ("members", "topk"):
        return (a or 0) == (b or 0)
    if key in ("core_predict",):
        return bool(a) == bool(b)
    if key == "layout":
        return (a or "full") == (b or "full")
    return a == b


def _selections(attrs: dict):
    """(indices spec, data fingerprint) of every sampled selection a store holds (its parts for a merged store)."""
    if attrs.get("merged_from"):
        for p in attrs["merged_from"]:
            yield from _selections(p.get("attrs") or {})
    else:
        yield attrs.get("indices"), attrs.get("data_fingerprint"), attrs.get("source")


def check_data(parts, data=None, assume_same_data: bool = False) -> str:
    """Refuse parts whose data fingerprints do not show one data set; return how the data check passed."""
    fps = [p.attrs.get("data_fingerprint") for p in parts]
    if all(f == fps[0] for f in fps):
        return "equal data fingerprints"
    if data is None and assume_same_data:
        return "not checked: asserted by the user (--assume-same-data)"
    if data is None:
        a, b = next((p, q) for p in parts for q in parts if p.attrs.get("data_fingerprint") != q.attrs.get("data_fingerprint"))
        hint = ("parts sampled on different --indices have different fingerprints: pass --data DATA to check each "
                "part against the data set it was sampled from")
        if any(_source(p.attrs) != "sample" for p in (a, b)):
            hint = ("an imported store's fingerprint covers its own .npz, so it cannot be checked: pass "
                    "--assume-same-data to merge anyway (recorded in the merged store)")
        raise StoreError(f"cannot merge {a.location} and {b.location}: data fingerprint differs "
                         f"({_short(a.attrs.get('data_fingerprint'))} vs {_short(b.attrs.get('data_fingerprint'))}); {hint}")
    from ..sampler.data import fingerprint, load_data, parse_indices

    ds = load_data(str(data))
    for p in parts:
        for spec, fp, source in _selections(p.attrs):
            if source != "sample" or not spec or not fp:
                raise StoreError(f"cannot merge {p.location}: it records no sampled --indices and data fingerprint "
                                 f"(source {source!r}), so it cannot be checked against --data {data}")
            sel = parse_indices(spec, len(ds))
            if fingerprint(ds, sel) != fp:
                raise StoreError(f"cannot merge {p.location}: data fingerprint differs from --data {data} "
                                 f"at its indices {spec}")
    return f"every part's data fingerprint recomputed from --data {_redact(data)}"


def _source(attrs) -> str | None:
    """'sample' when every selection in the store was sampled by smoothcert, else the first other source."""
    for _, _, source in _selections(attrs):
        if source != "sample":
            return source
    return "sample"


def check_versions(raw_attrs) -> None:
    """Refuse parts whose format versions differ (each (location, attrs) pair as read, unvalidated)."""
    first_loc, first = raw_attrs[0]
    for loc, a in raw_attrs[1:]:
        if a.get("format_version") != first.get("format_version"):
            raise StoreError(f"cannot merge {first_loc} and {loc}: format version differs "
                             f"({first.get('format_version')!r} vs {a.get('format_version')!r})")


def check_parts(parts, data=None, assume_same_data: bool = False) -> str:
    """Refuse, with one message per kind of difference, opened parts that cannot be merged; return the data check."""
    ref = parts[0]
    for p in parts[1:]:
        for key, label in IDENTITY:
            va, vb = ref.attrs.get(key), p.attrs.get(key)
            if not _same(key, va, vb):
                raise StoreError(f"cannot merge {ref.location} and {p.location}: {label} differs "
                                 f"({_short(va)!r} vs {_short(vb)!r})")
    return check_data(parts, data, assume_same_data)


def _redact(location: str) -> str:
    """``location`` without any user:password@ of a URL."""
    import re

    return re.sub(r"(://)[^/@]+@", r"\1", str(location))


def _merged_attrs(parts, fps) -> dict:
    """Top-level attributes of the merged store: the settings every part shares, plus the merge's provenance."""
    keys = set().union(*(p.attrs.keys() for p in parts))
    skip = set(PER_PART) | {"format", "format_version", "n_inputs", "n0", "n", "num_classes", "sigma", "dtype",
                            "members", "core_predict"}
    meta = {}
    for k in sorted(keys - skip):
        vals = [p.attrs.get(k) for p in parts]
        if all(v == vals[0] for v in vals):
            meta[k] = vals[0]
    dfps = [p.attrs.get("data_fingerprint") for p in parts]
    if all(d == dfps[0] for d in dfps):
        meta["data_fingerprint"] = dfps[0]
    else:
        h = hashlib.sha256(b"smoothcert-merge-v1\0")
        for d in sorted(str(x) for x in dfps):
            h.update(d.encode() + b"\0")
        meta["data_fingerprint"] = h.hexdigest()
        meta["data_fingerprint_scheme"] = "sha256 of the parts' data fingerprints (see merged_from)"
    meta["source"] = "merge"
    meta["merged_from"] = [{"location": _redact(p.location), "fingerprint": fp, "n_inputs": p.n_inputs,
                            "attrs": dict(p.attrs)} for p, fp in zip(parts, fps)]
    return meta


def _copy_input(src, slot: int, dst, i: int) -> None:
    """Read input ``slot`` of ``src`` with its checksums verified and write it as slot ``i`` of ``dst``."""
    if src.attrs.get("layout") == "compact":
        b = src.read_block(slot, slot + 1, fields=("argmax", "compact"), verify=True)
        r = int(b["n_rows"][0])
        dst.write_input(i, topk_p=b["topk_p"][0, :r], topk_c=b["topk_c"][0, :r], entropy=b["entropy"][0, :r],
                        argmax=b["argmax"][0, :r], label=int(b["label"][0]), idx=int(b["idx"][0]),
                        core_predict=int(b["core_predict"][0]) if src.has_core_predict else None)
        return
    fields = (F.ROWS, F.ARGMAX) + ((F.MEMBERS,) if src.members else ())
    b = src.read_block(slot, slot + 1, fields=fields, verify=True)
    r = int(b["n_rows"][0])
    dst.write_input(i, rows=b[F.ROWS][0, :r], argmax=b[F.ARGMAX][0, :r], label=int(b["label"][0]),
                    idx=int(b["idx"][0]), n_rows=r,
                    member_logprobs=b[F.MEMBERS][0, :r] if src.members else None,
                    core_predict=int(b["core_predict"][0]) if src.has_core_predict else None)


def _target_exists(location: str, storage_options) -> bool:
    """Whether something (a store or any file) is already at ``location``."""
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location, **(storage_options or {}))
        return fs.exists(path.rstrip("/") + "/zarr.json") or fs.exists(path)
    return local_path(location).exists()


def merge_stores(sources, out, *, data=None, assume_same_data: bool = False, storage_options: dict | None = None,
                 progress=None) -> dict:
    """Write a new store ``out`` holding every input of ``sources``, or refuse (StoreError) with nothing written.

    ``sources``: two or more stores (folders, .zip files, URLs); ``out``: a
    new folder, ``.zip`` or URL (an existing one is refused). ``data``: the
    data set (as ``smoothcert sample --data`` takes it) to check parts with
    different data fingerprints against; ``assume_same_data`` skips that
    check (for imported parts, whose fingerprints cover their own source
    files), which the merged store records. Returns ``{inputs, fingerprint, parts}``.
    """
    from .api import create_store, open_store

    sources = [str(s) for s in sources]
    out = str(out)
    if len(sources) < 2:
        raise StoreError("store merge needs at least two stores to merge, then OUT")
    if len(set(sources)) != len(sources):
        dup = next(s for s in sources if sources.count(s) > 1)
        raise StoreError(f"store {dup} is given twice")
    if _target_exists(out, storage_options):
        raise StoreError(f"merge target {out} already exists; choose a new path (merge never overwrites)")
    raw = [(s, _raw_attrs(s, storage_options)) for s in sources]
    check_versions(raw)  # before opening: open_store refuses a version it cannot read, with a less precise message
    parts = []
    try:
        for s in sources:
            parts.append(open_store(s, storage_options=storage_options))
        data_check = check_parts(parts, data, assume_same_data)
        records = [p.read_records(strict=True) for p in parts]
        owner = {}
        for p, rec in zip(parts, records):
            done = rec["complete"] == 1
            if not done.all():
                s = int(np.flatnonzero(~done)[0])
                who = f"input {int(rec['idx'][s])}" if rec["idx"][s] >= 0 else f"input slot {s}"
                raise StoreError(f"cannot merge {p.location}: {who} is incomplete ({int((~done).sum())} of "
                                 f"{p.n_inputs} inputs); finish its sampling first (re-run the same sample command)")
            for s, i in enumerate(rec["idx"].tolist()):
                if i in owner:
                    raise StoreError(f"cannot merge: dataset index {i} is in both {owner[i]} and {p.location}")
                owner[i] = p.location
        fps = [p.fingerprint(rec) for p, rec in zip(parts, records)]
        plan = sorted((int(i), k, s) for k, rec in enumerate(records) for s, i in enumerate(rec["idx"].tolist()))
        meta = _merged_attrs(parts, fps)
        meta["merge_data_check"] = data_check
        ref = parts[0]
        if is_url(out):
            target, tmpdir = out, None
        else:
            dest = local_path(out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmpdir = tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent)
            target = os.path.join(tmpdir, "store")
        try:
            kw = dict(n_inputs=len(plan), n0=ref.n0, n=ref.n, num_classes=ref.num_classes, sigma=ref.sigma,
                      dtype=ref.dtype, members=ref.members, core_predict=ref.has_core_predict, metadata=meta,
                      storage_options=None if tmpdir else storage_options)
            if ref.attrs.get("layout") == "compact":
                from .compact import create_compact_store

                dst = create_compact_store(target, topk=int(ref.attrs["topk"]), **kw)
            else:
                dst = create_store(target, **kw)
            try:
                for i, (_, k, s) in enumerate(plan):
                    _copy_input(parts[k], s, dst, i)
                    if progress is not None:
                        progress(1)
                for k, p in enumerate(parts):
                    for name, rec in p.runs().items():
                        dst.add_run(f"part{k}.{name}", dict(rec, part=k, part_location=_redact(p.location)))
                fp = dst.fingerprint()
            finally:
                dst.close()
            if tmpdir is not None:
                if _target_exists(out, None):
                    raise StoreError(f"merge target {out} appeared while merging; not overwriting it")
                if is_zip(out):
                    from .share import export_zip

                    export_zip(target, out)
                else:
                    os.replace(target, local_path(out))
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
    finally:
        for p in parts:
            p.close()
    return {"inputs": len(plan), "fingerprint": fp, "parts": len(parts)}
