"""Build, then publish (store/publish.py): a new store appears whole or not at all, and never over another."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from smoothcert.store import StoreError, create_store, open_store
from smoothcert.store.publish import publish_store


def _build(n_inputs=2, fail_at=None, before_return=None):
    def build(target, so):
        st = create_store(target, n_inputs=n_inputs, n0=2, n=6, num_classes=3, sigma=0.5, dtype="float32",
                          storage_options=so)
        try:
            for i in range(n_inputs):
                if i == fail_at:
                    raise RuntimeError("build failed")
                st.write_input(i, rows=np.full((8, 3), 1 / 3, np.float32), label=0, idx=i)
            fp = st.fingerprint()
        finally:
            st.close()
        if before_return is not None:
            before_return()
        return fp
    return build


MSG = dict(exists="target exists", appeared="target appeared")


@pytest.mark.parametrize("name", ["s.zarr", "s.zip"])
def test_a_published_store_is_whole_and_has_the_built_fingerprint(tmp_path, name):
    fp = publish_store(tmp_path / name, _build(), **MSG)
    with open_store(tmp_path / name) as st:
        assert st.fingerprint() == fp and st.verify() == []
    assert [p.name for p in tmp_path.iterdir()] == [name]          # no temporary sibling left


@pytest.mark.parametrize("name", ["s.zarr", "s.zip"])
def test_an_existing_target_is_refused_before_the_build_and_kept(tmp_path, name):
    (tmp_path / name).write_bytes(b"mine")
    calls = []
    with pytest.raises(StoreError, match="^target exists$"):
        publish_store(tmp_path / name, lambda t, so: calls.append(t), **MSG)
    assert calls == [] and (tmp_path / name).read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["s.zarr", "s.zip"])
def test_a_target_that_appears_during_the_build_is_never_overwritten(tmp_path, name):
    dest = tmp_path / name

    kept = dest / "file" if name.endswith(".zarr") else dest

    def squat():  # another process puts something at the target while this one builds
        kept.parent.mkdir(exist_ok=True)
        kept.write_bytes(b"other")

    with pytest.raises(StoreError, match="^target appeared$"):
        publish_store(dest, _build(before_return=squat), **MSG)
    assert kept.read_bytes() == b"other"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="build failed"):
        publish_store(tmp_path / "s.zarr", _build(fail_at=1), **MSG)
    assert list(tmp_path.iterdir()) == []


def test_partials_of_dead_processes_are_removed_and_those_of_live_ones_kept(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead, live = p.pid, os.getppid()
    (tmp_path / f".s.zarr.partial-{dead}-abc").mkdir()
    (tmp_path / f".s.zarr.partial-{dead}.zip").write_bytes(b"x")
    (tmp_path / f".s.zarr.partial-{live}-abc").mkdir()
    publish_store(tmp_path / "s.zarr", _build(), **MSG)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".s.zarr.partial-{live}-abc", "s.zarr"]
