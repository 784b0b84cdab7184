"""Handing a store over: pack any store into one ``.zip``, and say who made it.

``export_zip`` copies every key of a store, whatever its backend (a folder,
another ``.zip``, or an fsspec URL such as ``s3://``), byte for byte into a
new zip file that smoothcert (and zarr's ``ZipStore``) reads directly. The
copy is checked before it is put in place: it must have the source's
fingerprint. Nothing in this module writes credentials anywhere: they reach
fsspec through ``storage_options`` or the environment only.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from .backend import is_url, is_zip, local_path, open_zarr_store
from .errors import StoreError

# Fixed timestamp for every member: exporting the same store twice gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def safe_member_name(key: str) -> str:
    """``key`` itself if it is a relative POSIX path that stays inside its folder, else StoreError."""
    k = str(key)
    parts = k.split("/")
    if (not k or not _SAFE_KEY.match(k) or k.startswith("/") or "//" in k
            or any(p in ("", ".", "..") for p in parts)):
        raise StoreError(f"store key {k!r} is not a safe relative path; refusing to pack it")
    return k


def store_keys(zstore) -> list[str]:
    """Every key of an open zarr Store, sorted."""
    from zarr.core.sync import sync

    async def _collect():
        await zstore._ensure_open()  # zarr opens stores lazily; list() of an unopened ZipStore fails
        return [k async for k in zstore.list()]

    return sorted(sync(_collect()))


def read_key(zstore, key: str) -> bytes:
    """The bytes stored under ``key`` of an open zarr Store (StoreError when it vanished)."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    buf = sync(zstore.get(key, prototype=default_buffer_prototype()))
    if buf is None:
        raise StoreError(f"store key {key!r} disappeared while it was being copied")
    return buf.to_bytes()


def export_zip(location, out_zip, *, storage_options: dict | None = None, progress=None) -> dict:
    """Write a new ``out_zip`` holding every key of the store at ``location``; it has the source's fingerprint.

    ``location`` is a folder, a ``.zip`` or an fsspec URL; ``out_zip`` a new
    local path ending in ``.zip`` (refused when it exists). Members are stored
    uncompressed (chunks are zstd already), in sorted order, with a fixed
    timestamp. The zip is built under a temporary name and renamed into place
    only once reopened and checked, so a failure leaves nothing at ``out_zip``.
    Returns ``{inputs, complete, fingerprint, bytes}``.
    """
    from .api import open_store

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
    with open_store(loc, storage_options=storage_options) as st:
        records = st.read_records()
        fp = st.fingerprint(records)
        n_inputs = st.n_inputs
        complete = int((records["complete"] == 1).sum())
    zsrc = open_zarr_store(loc, mode="r", storage_options=storage_options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}.zip")
    try:
        try:
            keys = [safe_member_name(k) for k in store_keys(zsrc)]
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for k in keys:
                    info = zipfile.ZipInfo(k, date_time=_ZIP_DATE)
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, read_key(zsrc, k))
                    if progress is not None:
                        progress(1)
        finally:
            try:
                zsrc.close()
            except Exception:
                pass
        with open_store(str(tmp)) as copy:
            fp_copy = copy.fingerprint()
        if fp_copy != fp:
            raise StoreError(f"export of {location} to {out_zip}: the copy's fingerprint differs from the source's "
                             f"(was the store written to while exporting?)")
        appeared = StoreError(f"export target {out_zip} appeared while exporting; not overwriting it")
        try:
            os.link(tmp, out)  # no-clobber: between an exists() check and a rename another process could win
        except FileExistsError:
            raise appeared from None
        except OSError:  # a file system without hard links
            if out.exists():
                raise appeared from None
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"inputs": n_inputs, "complete": complete, "fingerprint": fp, "bytes": out.stat().st_size}


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
