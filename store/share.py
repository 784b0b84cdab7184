"""Handing a store over: pack any store into one ``.zip``, and say who made it.

``export_zip`` copies every key of a store, whatever its backend (a folder,
another ``.zip``, or an fsspec URL such as ``s3://``), byte for byte into a
new zip file that smoothcert (and zarr's ``ZipStore``) reads directly. The
copy is checked before it is put in place: it must have the source's
fingerprint (the packing and publishing are ``publish.copy_to_zip``'s).
Nothing in this module writes credentials anywhere: they reach fsspec
through ``storage_options`` or the environment only.
"""
from __future__ import annotations

from pathlib import Path

from .backend import is_url, is_zip, local_path
from .errors import StoreError
from .publish import copy_to_zip, read_key, safe_member_name, store_keys  # noqa: F401  (what may be packed, and how)


def export_zip(location, out_zip, *, storage_options: dict | None = None, progress=None) -> dict:
    """Write a new ``out_zip`` holding every key of the store at ``location``; it has the source's fingerprint.

    ``location`` is a folder, a ``.zip`` or an fsspec URL; ``out_zip`` a new
    local path ending in ``.zip`` (refused when it exists). Members are stored
    uncompressed (chunks are zstd already), in sorted order, with a fixed
    timestamp. The zip is built under a temporary name and linked into place
    only once reopened and checked (``publish.copy_to_zip``), so a failure
    leaves nothing at ``out_zip``. Returns ``{inputs, complete, fingerprint, bytes}``.
    """
    out = Path(str(out_zip))
    if is_url(str(out_zip)) or not is_zip(str(out_zip)):
        raise StoreError(f"export target {out_zip} must be a local path ending in .zip")
    if out.exists():
        raise StoreError(f"export target {out_zip} already exists; choose a new path (export never overwrites)")
    loc = str(location)
    if not is_url(loc) and not is_zip(loc):
        src_dir = local_path(loc).resolve()
        if src_dir == out.resolve().parent or src_dir in out.resolve().parents:
            raise StoreError(f"export target {out_zip} lies inside store {location}; write it elsewhere")
    r = copy_to_zip(loc, out, appeared=f"export target {out_zip} appeared while exporting; not overwriting it",
                    storage_options=storage_options, progress=progress)
    return dict(r, bytes=out.stat().st_size)


def provenance_lines(info: dict) -> list[str]:
    """Human lines for ``store info``: who made the store, when, with what, and its checksum summary."""
    v = info.get("versions") or {}
    sw = ", ".join(f"{k} {v[k]}" for k in ("smoothcert", "zarr", "numpy", "torch") if k in v)
    who = "@".join(x for x in (info.get("user"), info.get("host")) if x) or "unknown"
    lines = [f"made by: {who}, {info.get('created', '?')} (UTC), source {info.get('source', '?')}"
             + (f", with {sw}" if sw else "")]
    if info.get("merged_from"):
        lines.append(f"merged from {len(info['merged_from'])} stores: "
                     + "; ".join(f"{p.get('location')} ({p.get('n_inputs')} inputs, fingerprint {str(p.get('fingerprint'))[:12]})"
                                 for p in info["merged_from"]))
    lines.append(f"checksums: {info.get('complete_inputs')} of {info.get('n_inputs')} inputs complete; "
                 f"metadata checksum {info.get('metadata_checksum', '?')}; fingerprint {info.get('fingerprint')}")
    return lines
