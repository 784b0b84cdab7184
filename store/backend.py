"""Where a store lives: a local folder, a ``.zip`` file, or any fsspec URL.

This is the only module that turns a user's STORE argument into a zarr
``Store``; everything above it sees one zarr group whatever the backend.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from .errors import StoreError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


def is_url(location: str) -> bool:
    return bool(_URL.match(str(location))) and not str(location).startswith("file://")


def is_zip(location: str) -> bool:
    return str(location).lower().endswith(".zip")


def local_path(location: str) -> Path:
    s = str(location)
    if s.startswith("file://"):
        s = s[len("file://"):]
    return Path(s)


def open_zarr_store(location, *, mode: str, storage_options: dict | None = None):
    """A zarr Store for ``location``; ``mode`` is 'r' (read), 'w' (create) or 'a' (update).

    Credentials for URLs come from ``storage_options`` or the environment
    (e.g. AWS_* variables); they are never written into the store.
    """
    import zarr.storage as zs

    read_only = mode == "r"
    loc = str(location)
    if is_url(loc):
        try:
            return zs.FsspecStore.from_url(loc, storage_options=storage_options or {}, read_only=read_only)
        except Exception as e:  # fsspec raises many kinds for a bad URL or missing backend
            raise StoreError(f"cannot open store URL {loc}: {type(e).__name__}: {e}") from e
    path = local_path(loc)
    if is_zip(loc):
        if mode == "r":
            if not path.is_file():
                raise StoreError(f"store {loc} does not exist")
            if not zipfile.is_zipfile(path):
                raise StoreError(f"store {loc} is not a zip file")
            return zs.ZipStore(path, mode="r")
        return zs.ZipStore(path, mode="w" if mode == "w" else "a")
    if mode == "r":
        if not path.exists():
            raise StoreError(f"store {loc} does not exist")
        if not path.is_dir():
            raise StoreError(f"store {loc} is not a directory, .zip file or URL")
    else:
        os.makedirs(path, exist_ok=True)
    return zs.LocalStore(path, read_only=read_only)
