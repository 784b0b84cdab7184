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
merge is refused ("data fingerprint differs"). Recomputing is the sampler's
business (it defines the fingerprint and reads data sets): the caller passes
it as ``data_fingerprint``, a function of an ``--indices`` spec
(``sampler.merge.merge_stores`` does, for ``smoothcert store merge --data``);
this module imports nothing above the store.

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

import numpy as np

from . import format as F
from .api import create_store, open_store
from .backend import open_zarr_store
from .errors import StoreError
from .layouts import DEFAULT_LAYOUT
from .locations import redact
from .publish import publish_store, target_exists

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
    ("data_preprocessing", "data preprocessing"),
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
        return (a or DEFAULT_LAYOUT) == (b or DEFAULT_LAYOUT)
    return a == b


def _selections(attrs: dict):
    """(indices spec, data fingerprint) of every sampled selection a store holds (its parts for a merged store)."""
    if attrs.get("merged_from"):
        for p in attrs["merged_from"]:
            yield from _selections(p.get("attrs") or {})
    else:
        yield attrs.get("indices"), attrs.get("data_fingerprint"), attrs.get("source")


def check_data(parts, data=None, assume_same_data: bool = False, data_fingerprint=None) -> str:
    """Refuse parts whose data fingerprints do not show one data set; return how the data check passed.

    ``data``: the data set's name as the user gave it (``--data``);
    ``data_fingerprint(spec)``: the data fingerprint of DATA at the
    ``--indices`` spec ``spec``, recomputed (required with ``data``).
    """
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
    if data_fingerprint is None:
        raise TypeError("check_data: data= needs data_fingerprint=, the data fingerprint of DATA at an --indices spec")
    for p in parts:
        for spec, fp, source in _selections(p.attrs):
            if source != "sample" or not spec or not fp:
                raise StoreError(f"cannot merge {p.location}: it records no sampled --indices and data fingerprint "
                                 f"(source {source!r}), so it cannot be checked against --data {data}")
            if data_fingerprint(spec) != fp:
                raise StoreError(f"cannot merge {p.location}: data fingerprint differs from --data {data} "
                                 f"at its indices {spec}")
    return f"every part's data fingerprint recomputed from --data {redact(data)}"


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


def check_parts(parts, data=None, assume_same_data: bool = False, data_fingerprint=None) -> str:
    """Refuse, with one message per kind of difference, opened parts that cannot be merged; return the data check."""
    ref = parts[0]
    for p in parts[1:]:
        for key, label in IDENTITY:
            va, vb = ref.attrs.get(key), p.attrs.get(key)
            if not _same(key, va, vb):
                raise StoreError(f"cannot merge {ref.location} and {p.location}: {label} differs "
                                 f"({_short(va)!r} vs {_short(vb)!r})")
    return check_data(parts, data, assume_same_data, data_fingerprint)


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
    meta["merged_from"] = [{"location": redact(p.location), "fingerprint": fp, "n_inputs": p.n_inputs,
                            "attrs": dict(p.attrs)} for p, fp in zip(parts, fps)]
    return meta


def merge_stores(sources, out, *, data=None, data_fingerprint=None, assume_same_data: bool = False,
                 storage_options: dict | None = None, progress=None) -> dict:
    """Write a new store ``out`` holding every input of ``sources``, or refuse (StoreError) with nothing written.

    ``sources``: two or more stores (folders, .zip files, URLs), of any one
    layout; ``out``: a new folder, ``.zip`` or URL (an existing one is
    refused). ``data``: the data set (as ``smoothcert sample --data`` takes
    it) to check parts with different data fingerprints against, with
    ``data_fingerprint(spec)`` recomputing DATA's fingerprint at an
    ``--indices`` spec (the sampler's; ``sampler.merge.merge_stores`` passes
    it); ``assume_same_data`` skips that check (for imported parts, whose
    fingerprints cover their own source files), which the merged store
    records. Returns ``{inputs, fingerprint, parts}``.
    """
    sources = [str(s) for s in sources]
    out = str(out)
    if data is not None and data_fingerprint is None:
        raise TypeError("merge_stores: data= needs data_fingerprint=, the data fingerprint of DATA at an --indices spec")
    if len(sources) < 2:
        raise StoreError("store merge needs at least two stores to merge, then OUT")
    if len(set(sources)) != len(sources):
        dup = next(s for s in sources if sources.count(s) > 1)
        raise StoreError(f"store {dup} is given twice")
    exists = f"merge target {out} already exists; choose a new path (merge never overwrites)"
    if target_exists(out, storage_options):  # before reading any part
        raise StoreError(exists)
    raw = [(s, _raw_attrs(s, storage_options)) for s in sources]
    check_versions(raw)  # before opening: open_store refuses a version it cannot read, with a less precise message
    parts = []
    try:
        for s in sources:
            parts.append(open_store(s, storage_options=storage_options))
        data_check = check_parts(parts, data, assume_same_data, data_fingerprint)
        records = [p.read_records(strict=True) for p in parts]
        owner = {}
        for p, rec in zip(parts, records):
            done = rec["complete"] == 1
            if not done.all():
                s = int(np.flatnonzero(~done)[0])
                who = f"input {int(rec['idx'][s])}" if rec["idx"][s] >= 0 else f"input slot {s}"
                raise StoreError(f"cannot merge {p.location}: {who} is incomplete ({int((~done).sum())} of "
                                 f"{p.n_inputs} inputs); finish its sampling first (re-run the same sample command)")
            for i in rec["idx"].tolist():
                if i in owner:
                    raise StoreError(f"cannot merge: dataset index {i} is in both {owner[i]} and {p.location}")
                owner[i] = p.location
        fps = [p.fingerprint(rec) for p, rec in zip(parts, records)]
        plan = sorted((int(i), k, s) for k, rec in enumerate(records) for s, i in enumerate(rec["idx"].tolist()))
        meta = _merged_attrs(parts, fps)
        meta["merge_data_check"] = data_check
        ref = parts[0]

        def build(target, so):
            # the parts agree on layout (check_parts), so the first part's layout is every part's
            dst = create_store(target, n_inputs=len(plan), n0=ref.n0, n=ref.n, num_classes=ref.num_classes,
                               sigma=ref.sigma, dtype=ref.dtype, members=ref.members,
                               core_predict=ref.has_core_predict, metadata=meta, storage_options=so, layout=ref.layout)
            try:
                for i, (_, k, s) in enumerate(plan):
                    dst.write_input(i, **parts[k].read_input(s))  # checksums verified, then written again
                    if progress is not None:
                        progress(1)
                for k, p in enumerate(parts):
                    for name, rec in p.runs().items():
                        dst.add_run(f"part{k}.{name}", dict(rec, part=k, part_location=redact(p.location)))
                return dst.fingerprint()
            finally:
                dst.close()

        fp = publish_store(out, build, storage_options=storage_options, exists=exists,
                           appeared=f"merge target {out} appeared while merging; not overwriting it")
    finally:
        for p in parts:
            p.close()
    return {"inputs": len(plan), "fingerprint": fp, "parts": len(parts)}
