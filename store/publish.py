"""Build, then publish: a new store or ``.zip`` appears at its target whole, or not at all.

Every command that makes a new store from others (``store import``,
``store compact``, ``store merge``) and ``store export`` go through here:

- :func:`publish_store` refuses an existing target, builds the store in a
  temporary sibling folder (``.NAME.partial-PID-XXXX/store``), and moves it
  into place only when the build returned: a folder by one rename, a ``.zip``
  through :func:`copy_to_zip`. A URL target (object stores have no atomic
  rename) is built in place after the same refusal;
- :func:`copy_to_zip` packs any store (folder, zip, URL) byte for byte into a
  temporary ``.NAME.partial-PID.zip`` beside the target, reopens it and
  checks that it has the source's fingerprint, then links it into place
  (``os.link`` never replaces a file; a file system without hard links gets
  a rename after a last check);
- a target that appears while the build runs is never overwritten: the
  build fails with the caller's "appeared" message and the temporary copy is
  removed;
- temporary siblings left by killed processes (their pid no longer runs on
  this host) are removed before the next build into the same target;
- :func:`built_aside` is that temporary sibling alone, for a caller that
  moves the store into place itself (the sampler's new store, which shard
  processes may race to create).

Nothing is fsynced: a crash may lose the new store, never leave a store that
looks complete but is not (the temporary names are not stores' names).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

from .backend import is_url, is_zip, local_path, open_zarr_store
from .errors import StoreError

# Fixed timestamp for every member: exporting the same store twice gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")


# ------------------------------------------------------------------ targets
def target_exists(location, storage_options: dict | None = None) -> bool:
    """Whether something (a store, any file, or a non-empty URL prefix) is already at ``location``."""
    loc = str(location)
    if is_url(loc):
        import fsspec

        fs, path = fsspec.core.url_to_fs(loc, **(storage_options or {}))
        return fs.exists(path.rstrip("/") + "/zarr.json") or fs.exists(path)
    return local_path(loc).exists()


def _partial_prefix(dest: Path) -> str:
    return f".{dest.name}.partial-"


def remove_stale_partials(dest: Path) -> None:
    """Remove the temporary siblings (folders, packed zips) that killed builds of ``dest`` left behind.

    Their names carry the building process's pid (``.NAME.partial-PID-...``);
    those of processes still running on this host are kept.
    """
    prefix = _partial_prefix(dest)
    for stale in dest.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):].split("-")[0].split(".")[0]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            try:
                stale.unlink()
            except OSError:
                pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------- stores
def publish_store(out, build, *, exists: str, appeared: str, storage_options: dict | None = None):
    """Make the new store ``out`` (folder, ``.zip`` or URL) with ``build(target, storage_options)``; its result.

    ``build`` creates, fills and closes the store at ``target`` (a temporary
    sibling folder for a local ``out``, ``out`` itself for a URL, with
    ``storage_options`` passed only there). ``exists``: the StoreError message
    when ``out`` is there before the build; ``appeared``: when it appears
    during it. A failed build leaves nothing at ``out``.
    """
    out = str(out)
    if target_exists(out, storage_options):
        raise StoreError(exists)
    if is_url(out):
        return build(out, storage_options)
    dest = local_path(out)
    with built_aside(dest) as target:
        result = build(target, None)
        if dest.exists():
            raise StoreError(appeared)
        if is_zip(out):
            copy_to_zip(target, dest, appeared=appeared)
        else:
            try:
                os.replace(target, dest)
            except OSError as e:
                if dest.exists():  # another process put something there since the check
                    raise StoreError(appeared) from e
                raise
    return result


@contextmanager
def built_aside(dest: Path):
    """A path to build ``dest``'s store at: ``store`` in a new temporary sibling folder of ``dest``
    (``.NAME.partial-PID-XXXX``), removed with whatever is left in it on exit. The siblings that killed builds
    of ``dest`` left are removed first; ``dest``'s parent folder is made if needed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)
    tmpdir = tempfile.mkdtemp(prefix=f"{_partial_prefix(dest)}{os.getpid()}-", dir=dest.parent)
    try:
        yield os.path.join(tmpdir, "store")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --------------------------------------------------------------------- zips
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


def publish_file(out: Path, write, *, appeared: str) -> None:
    """Write a new file ``out`` through ``write(tmp)`` under a temporary sibling name, then link it into place.

    ``write`` writes (and checks) the temporary file; ``out`` is never
    replaced: if it appeared meanwhile, StoreError(``appeared``). The
    temporary file is removed whatever happens.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = out.with_name(f"{_partial_prefix(out)}{os.getpid()}{out.suffix}")
    try:
        write(tmp)
        try:
            os.link(tmp, out)  # no-clobber: between an exists() check and a rename another process could win
        except FileExistsError:
            raise StoreError(appeared) from None
        except OSError:  # a file system without hard links
            if out.exists():
                raise StoreError(appeared) from None
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def copy_to_zip(location, out_zip, *, appeared: str, storage_options: dict | None = None, progress=None) -> dict:
    """Pack every key of the store at ``location`` into the new zip ``out_zip``, checked; never over a file.

    Members are stored uncompressed (chunks are zstd already), in sorted
    order, with a fixed timestamp. The zip is reopened before it is put in
    place and must have the source's fingerprint. Returns ``{inputs,
    complete, fingerprint}`` of the source.
    """
    from .api import open_store

    loc = str(location)
    with open_store(loc, storage_options=storage_options) as st:
        records = st.read_records()
        fp = st.fingerprint(records)
        n_inputs = st.n_inputs
        complete = int((records["complete"] == 1).sum())

    def write(tmp: Path) -> None:
        zsrc = open_zarr_store(loc, mode="r", storage_options=storage_options)
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

    publish_file(Path(str(out_zip)), write, appeared=appeared)
    return {"inputs": n_inputs, "complete": complete, "fingerprint": fp}
