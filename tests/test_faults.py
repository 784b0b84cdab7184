"""Faults a long job meets: SIGKILL, a full disk, a read-only target, two writers on one input.

Each must end in a clear one-line error or a clean resume, and never in a
store that ``store verify`` passes but that holds the wrong data.

How the faults are made (docs/faults.md says the same):
- full disk: a 1-2 MiB tmpfs mounted for the test (we run as root). Where
  mounting is not permitted, the CLI runs with RLIMIT_FSIZE instead, so a
  write past the limit fails with EFBIG (SIGXFSZ ignored).
- read-only target: a tmpfs remounted read-only (root ignores permission bits,
  so chmod 0o555 would not stop a root process). Where mounting is not
  permitted: chmod 0o555 and, as root, the CLI runs as user nobody.
- SIGKILL: the CLI in a subprocess, killed once the files it writes show it
  is mid-way (a bounded poll on real progress, no sleeps).
"""
from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from faultkit import CLI, ROOT, assert_one_line_error, invoke, is_root, make_arrays

# ------------------------------------------------------------------ file systems


def _mount(*args) -> bool:
    if not is_root() or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return r.returncode == 0


def _umount(path: Path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def small_fs(base: Path, size_kib: int):
    """A folder on a file system of ``size_kib`` KiB: (folder, preexec for the CLI or None, mode)."""
    d = base / f"fs-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    if _mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0777", "tmpfs", str(d)):
        try:
            yield d, None, "tmpfs"
        finally:
            _umount(d)
        return

    def limit():  # fallback: no single file may grow past the size
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_kib * 1024 // 8, resource.RLIM_INFINITY))

    yield d, limit, "rlimit"


def remount(d: Path, opts: str) -> bool:
    return _mount("-o", f"remount,{opts}", str(d))


@contextlib.contextmanager
def readonly_fs(base: Path, fill=None):
    """A read-only folder holding what ``fill(folder)`` wrote: (folder, preexec or None, mode)."""
    d = base / f"ro-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    if _mount("-t", "tmpfs", "-o", "size=64m,mode=0777", "tmpfs", str(d)):
        try:
            if fill:
                fill(d)
            assert remount(d, "ro")
            yield d, None, "ro-tmpfs"
        finally:
            _umount(d)
        return
    if fill:
        fill(d)
    for p in [d, *d.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)

    def as_nobody():
        if is_root():
            os.setgid(65534)
            os.setuid(65534)

    try:
        yield d, as_nobody, "chmod"
    finally:
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def cli(args, preexec=None, timeout=300):
    """The CLI: in this process when the fault is a mounted file system (it binds this process too),
    in a subprocess with ``preexec`` (rlimit, user nobody) otherwise. Returns (code, stdout, stderr)."""
    if preexec is None:
        code, out, err, exc = invoke(args)
        assert exc is None, f"{args[:2]}: exception escaped: {exc!r}"
        return code, out, err
    r = subprocess.run(CLI + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=preexec)
    return r.returncode, r.stdout, r.stderr


def sample_ref(store: Path, data: Path, **kw) -> Path:
    """An uninterrupted sampler run, in this process (the same bytes as the CLI's)."""
    from smoothcert.sampler.run import sample

    sample(str(store), models=["smoothcert.sampler.testing:tiny"], data=str(data), device="cpu", progress=False,
           log=lambda s: None, **kw)
    return store


def fingerprint(path) -> str:
    from smoothcert.store import open_store

    with open_store(str(path)) as st:
        return st.fingerprint()


def verified(path) -> bool:
    from smoothcert.store import open_store

    with open_store(str(path)) as st:
        return st.verify() == [] and bool(st.complete_mask().all())


def write_src(path: Path, **kw) -> Path:
    np.savez(path, **make_arrays(**kw))
    return path


def import_ref(tmp: Path, src: Path, name="ref", n0=10) -> Path:
    """The store an uninterrupted import of ``src`` makes (in this process)."""
    from smoothcert.store.importer import import_npz

    dest = tmp / name
    import_npz(src, dest, sigma=0.5, n0=n0)
    return dest


def partials(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.partial-*"))


def poll(cond, proc, deadline_s=120.0) -> bool:
    """Wait for ``cond()`` in a bounded loop, between looks waiting on ``proc``'s exit for 20 ms (an event,
    not a sleep; polling flat out would starve the writer on 2 cores). False when ``proc`` ended first."""
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        if cond():
            return True
        try:
            proc.wait(timeout=0.02)
            return False
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError("condition not reached before the deadline")


# ------------------------------------------------------------------ SIGKILL


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_import_killed_mid_write_leaves_no_store_and_a_rerun_cleans_up(tmp_path, suffix):
    src = write_src(tmp_path / "src.npz", N=300, R=120, m=10, seed=1)
    ref = import_ref(tmp_path, src)
    dest = tmp_path / f"dest{suffix}"
    kills = 0
    for attempt in range(2):
        p = subprocess.Popen(CLI + ["store", "import", str(src), str(dest), "--sigma", "0.5", "--n0", "10"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def mid_way(attempt=attempt):  # some inputs written into the partial folder
            return any(len(list((d / "store" / "inputs" / "c").glob("*"))) >= 20 * (attempt + 1)
                       for d in partials(tmp_path, dest.name) if d.is_dir())

        if poll(mid_way, p):
            p.send_signal(signal.SIGKILL)
            kills += p.wait() == -signal.SIGKILL
        else:
            p.wait()
        p.stderr.close()
        if dest.exists():
            break
        # a killed import leaves no store: every reader says so in one line
        for args in (["store", "verify", dest], ["store", "info", dest],
                     ["certify", dest, "--method", "cohen", "--out", tmp_path / "o.csv", "-q"]):
            code, out, err, exc = invoke(args)
            assert "does not exist" in assert_one_line_error(code, err, exc, what=args[:2])
    assert kills >= 1, "every import finished before it could be killed"
    assert partials(tmp_path, dest.name), "a SIGKILL cannot clean up; the next run must"
    code, out, err, exc = invoke(["store", "import", src, dest, "--sigma", "0.5", "--n0", "10"])
    assert code == 0, err
    assert not partials(tmp_path, dest.name), partials(tmp_path, dest.name)
    assert verified(dest) and fingerprint(dest) == fingerprint(ref)


def test_sampler_killed_then_verify_refuses_and_a_rerun_resumes(tmp_path):
    """verify and certify refuse the half-written store by input; the same command resumes it."""
    from smoothcert.sampler import testing as T

    x, y = T.tiny_data(n=12)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    kw = dict(sigma=0.25, n0=5, n=2000, batch_size=500)
    args = ["sample", "--model", "smoothcert.sampler.testing:tiny", "--data", tmp_path / "d.npz", "--sigma", "0.25", "--n0", "5",
            "--n", "2000", "--batch-size", "500", "--device", "cpu", "--no-progress"]
    store = tmp_path / "s"
    p = subprocess.Popen(CLI + [str(a) for a in args + [store]], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)

    def some_done():
        recs = list((store / "inputs" / "c").glob("*")) if (store / "zarr.json").exists() else []
        return len(recs) >= 4

    assert poll(some_done, p), p.stderr.read()
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    p.stderr.close()
    code, out, err, exc = invoke(["store", "verify", store])
    assert code == 1 and "incomplete" in out and "damaged or incomplete" in err, (out, err)
    code, out, err, exc = invoke(["certify", store, "--method", "cohen", "--out", tmp_path / "o.csv", "-q"])
    message = assert_one_line_error(code, err, exc)   # word for word as docs/faults.md quotes it
    assert re.fullmatch(rf"smoothcert: error: store {re.escape(str(store))}: input (slot )?\d+ is incomplete or missing "
                        r"\(no complete marker\); resume the sampler or run 'smoothcert store verify'", message), message
    code, out, err, exc = invoke(args + [store])
    assert code == 0, err
    ref = sample_ref(tmp_path / "ref", tmp_path / "d.npz", **kw)
    assert verified(store) and fingerprint(store) == fingerprint(ref)


# ------------------------------------------------------------------ full disk


def test_import_on_a_full_disk_fails_in_one_line_and_leaves_nothing(tmp_path):
    src = write_src(tmp_path / "src.npz", N=60, R=200, m=20, seed=2)  # ~1 MiB of float32 rows, zstd ~1:1
    with small_fs(tmp_path, 512) as (d, pre, mode):
        for dest in (d / "store", d / "store.zip"):
            code, out, err = cli(["store", "import", src, dest, "--sigma", "0.5", "--n0", "10"], preexec=pre)
            line = assert_one_line_error(code, err, what=f"import on a full disk ({mode})")
            assert "No space left" in line or "too large" in line.lower() or "Errno" in line, line
            assert not dest.exists()
            assert not partials(d, dest.name), "a failed import removes its partial folder"
        assert not [p for p in d.rglob("*") if p.is_file()], "the full disk is given back"


def test_certify_table_on_a_full_disk_fails_in_one_line_and_leaves_no_partial_table(tmp_path):
    from smoothcert.store.importer import import_npz

    src = write_src(tmp_path / "src.npz", N=200, R=40, m=4, seed=3)
    import_npz(src, tmp_path / "s", sigma=0.5, n0=10)
    with small_fs(tmp_path, 16) as (d, pre, mode):
        (d / "filler").write_bytes(b"\0" * 12 * 1024) if pre is None else None
        code, out, err = cli(["certify", tmp_path / "s", "--method", "uncertainty", "--theta", "0:2:50",
                              "--out", d / "t.csv", "-q"], preexec=pre)
        assert_one_line_error(code, err, what=f"certify --out on a full disk ({mode})")
        assert not list(d.glob("*t.csv*")), list(d.iterdir())


def test_sampler_on_a_full_disk_fails_in_one_line_then_resumes_when_space_returns(tmp_path):
    from smoothcert.sampler import testing as T

    x, y = T.tiny_data(n=10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["sample", "--model", "smoothcert.sampler.testing:tiny", "--data", tmp_path / "d.npz", "--sigma", "0.25", "--n0", "5",
            "--n", "8000", "--batch-size", "2000", "--device", "cpu", "--dtype", "float32", "--no-progress"]
    ref = sample_ref(tmp_path / "ref", tmp_path / "d.npz", sigma=0.25, n0=5, n=8000, batch_size=2000, dtype="float32")
    with small_fs(tmp_path, 400) as (d, pre, mode):
        store = d / "s"
        code, out, err = cli(args + [store], preexec=pre)
        line = assert_one_line_error(code, err, what=f"sample on a full disk ({mode})")
        assert "No space left" in line or "Errno" in line, line
        if mode == "tmpfs":
            assert remount(d, "size=16m")
        code, out, err = cli(args + [store])  # space is back (or the limit is lifted): the same command resumes
        assert code == 0, err
        assert verified(store) and fingerprint(store) == fingerprint(ref)


# ------------------------------------------------------------------ read-only target


def test_read_only_targets_fail_in_one_line_and_read_only_stores_are_readable(tmp_path):
    from smoothcert.sampler import testing as T
    from smoothcert.store.importer import import_npz

    src = write_src(tmp_path / "src.npz", N=8, R=40, m=4, seed=4)
    x, y = T.tiny_data(n=4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    sample = ["sample", "--model", "smoothcert.sampler.testing:tiny", "--data", tmp_path / "d.npz", "--sigma", "0.25", "--n0",
              "5", "--n", "50", "--device", "cpu", "--no-progress"]

    def fill(d):
        import_npz(src, d / "store", sigma=0.5, n0=10)
        # a store made for these 4 inputs with 2 sampled: a resume would have to write
        sample_ref(d / "sampled", tmp_path / "d.npz", sigma=0.25, n0=5, n=50, shard="0/2")

    with readonly_fs(tmp_path, fill) as (d, pre, mode):
        before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
        for what, args in {
            "import": ["store", "import", src, d / "new", "--sigma", "0.5", "--n0", "10"],
            "import zip": ["store", "import", src, d / "new.zip", "--sigma", "0.5", "--n0", "10"],
            "sample new": sample + [d / "new-sampled"],
            "sample resume": sample + [d / "sampled"],
            "certify --out": ["certify", d / "store", "--method", "cohen", "--out", d / "t.csv", "-q"],
            "export": ["store", "export", d / "store", d / "s.zip"],
        }.items():
            code, out, err = cli(args, preexec=pre)
            assert_one_line_error(code, err, what=f"{what} into a read-only folder ({mode})")
        after = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
        assert after == before, "nothing on the read-only file system changed"
        # reading needs no write access
        code, out, err = cli(["store", "verify", d / "store"], preexec=pre)
        assert code == 0, err
        code, out, err = cli(["certify", d / "store", "--method", "two-step", "--out", tmp_path / "t.csv", "-q"],
                             preexec=pre if pre is None else None)
        assert code == 0, err
        code, out, err = cli(["store", "info", d / "store"], preexec=pre)
        assert code == 0, err


# ------------------------------------------------------------------ two writers


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_two_imports_into_one_path_give_one_whole_store(tmp_path, suffix):
    """Two processes import different sources to the same path at once: one wins whole, the other
    fails in one line (or finds the store there); never a mix, never two successes over each other."""
    srcs = [write_src(tmp_path / f"src{k}.npz", N=120, R=60, m=5, seed=10 + k) for k in range(2)]
    refs = [fingerprint(import_ref(tmp_path, s, name=f"ref{k}")) for k, s in enumerate(srcs)]
    for trial in range(2):
        dest = tmp_path / f"dest{trial}{suffix}"
        ps = [subprocess.Popen(CLI + ["store", "import", str(s), str(dest), "--sigma", "0.5", "--n0", "10"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in srcs]
        outs = [p.communicate(timeout=300) for p in ps]
        codes = [p.returncode for p in ps]
        assert sorted(codes) in ([0, 2], [0, 0]), (codes, [e for _, e in outs])
        for p, (_out, err) in zip(ps, outs):
            if p.returncode:
                line = assert_one_line_error(p.returncode, err, what="the second import")
                assert "already exists" in line or "another process" in line or "appeared" in line, line
        assert verified(dest)
        fp = fingerprint(dest)
        assert fp in refs, "the store is neither source"
        if codes == [0, 0]:  # both reported success: only allowed if both wrote the same bytes (never here)
            pytest.fail(f"both imports reported success; the store holds source {refs.index(fp)}")
        assert not partials(tmp_path, dest.name)


WRITER = r"""
import sys
import numpy as np
from smoothcert.store import open_store
k, loops = int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(k)
rows = rng.dirichlet(np.ones(4), size=30).astype(np.float32)
st = open_store(sys.argv[2], mode="a")
for _ in range(loops):
    st.write_input(0, rows=rows, label=k, idx=0, core_predict=k)
st.close()
"""


def test_two_writers_on_one_input_never_leave_a_mix_that_verifies(tmp_path):
    """Two processes rewrite input slot 0 with different data, many times, at once. Afterwards the
    slot either verifies and holds one writer's data whole, or verify names it damaged."""
    from smoothcert.store import create_store, open_store

    seen = set()
    for trial in range(4):
        loc = tmp_path / f"s{trial}"
        create_store(str(loc), n_inputs=2, n0=5, n=25, num_classes=4, sigma=0.5, dtype="float32",
                     core_predict=True).close()
        ps = [subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(loc), str(k), "40"], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True) for k in (1, 2)]
        for p in ps:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        with open_store(str(loc)) as st:
            try:
                b = st.read_block(0, 1, fields=("rows", "argmax"))
            except Exception as e:  # a mix is detected and named
                assert "input 0" in str(e) or "slot 0" in str(e), e
                seen.add("damaged")
                continue
        k = int(b["label"][0])
        rng = np.random.default_rng(k)
        expect = rng.dirichlet(np.ones(4), size=30).astype(np.float32)
        np.testing.assert_array_equal(b["rows"][0], expect)
        assert int(b["core_predict"][0]) == k
        seen.add(f"writer {k}")
    assert seen


def test_two_samplers_on_the_same_inputs_give_the_reference_store(tmp_path):
    """Two processes run the same sample command at once (the same inputs): both finish or one says
    why in one line; the store verifies and equals one uninterrupted run."""
    from smoothcert.sampler import testing as T

    x, y = T.tiny_data(n=8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = ["sample", "--model", "smoothcert.sampler.testing:tiny", "--data", tmp_path / "d.npz", "--sigma", "0.25", "--n0", "5",
            "--n", "1500", "--batch-size", "500", "--device", "cpu", "--no-progress"]
    store, ref = tmp_path / "s", tmp_path / "ref"
    ps = [subprocess.Popen(CLI + [str(a) for a in args + [store]], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
    sample_ref(ref, tmp_path / "d.npz", sigma=0.25, n0=5, n=1500, batch_size=500)
    failed = 0
    for p in ps:
        _, err = p.communicate(timeout=300)
        if p.returncode:
            failed += 1
            assert_one_line_error(p.returncode, err, what="a concurrent sampler")
    if failed:
        code, out, err, exc = invoke(args + [store])  # a resume completes whatever a refusal left
        assert code == 0, err
    assert verified(store) and fingerprint(store) == fingerprint(ref)
