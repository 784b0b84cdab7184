"""Shared pieces of the benchmarks: the 500-input benchmark store and a timer."""
from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): ``VmHWM`` of /proc/self/status, else ``ru_maxrss``.

    On Linux a child's ``ru_maxrss`` starts from its parent's peak (it is carried across fork and exec), so a
    benchmark's child process reports its own peak only through ``VmHWM``.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def realistic_rows(rng, n_rows: int, m: int, label: int, strength: float) -> np.ndarray:
    """Peaked softmax rows like a trained classifier's under noise (float32).

    Logits have scale ~5 (confident network): the input's class gets
    ``strength`` plus noise, a random runner-up half of it; most rows put
    0.9-0.9999 on one class and the rest decays to tiny values, as the rows
    of trained CNNs under Gaussian noise do (measured on CIFAR-10 and ImageNet-like rows). Between 0 and
    ~50 % of rows flip class, depending on ``strength``.
    """
    logits = rng.standard_normal((n_rows, m), dtype=np.float32) * 5.0
    logits[:, label] += strength + rng.standard_normal(n_rows, dtype=np.float32) * 5.0
    runner = (label + 1 + rng.integers(0, m - 1)) % m
    logits[:, runner] += strength * 0.5
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p


def reusable(path: Path) -> bool:
    """True when ``path`` holds a complete store built earlier; otherwise clears it for a fresh build."""
    import shutil

    from smoothcert.store import open_store

    if path.exists():
        try:
            with open_store(path) as st:
                if st.complete_mask().all():
                    return True
        except Exception:
            pass
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return False


def bench_store(n_inputs: int = 500, n0: int = 100, n: int = 100_000, m: int = 10, path: Path | None = None,
                dtype: str = "float16", seed: int = 0) -> Path:
    """Build (once) the benchmark store: n_inputs x (n0 + n) realistic rows x m classes."""
    from smoothcert.store import create_store

    path = path or OUT / f"bench{n_inputs}-{n0}-{n}-{m}-{dtype}-v4.zarr"
    if reusable(path):
        return path
    rng = np.random.default_rng(seed)
    st = create_store(path, n_inputs=n_inputs, n0=n0, n=n, num_classes=m, sigma=0.25, dtype=dtype,
                      metadata={"source": "bench", "seed": seed})
    t = time.time()
    for i in range(n_inputs):
        label = i % m
        strength = float(rng.uniform(4.0, 25.0))
        p = realistic_rows(rng, n0 + n, m, label, strength)
        st.write_input(i, rows=p, argmax=p.argmax(axis=1), label=label, idx=i)
        if (i + 1) % 50 == 0:
            print(f"  built {i + 1}/{n_inputs} inputs ({time.time() - t:.0f} s)", file=sys.stderr)
    st.close()
    return path


def whole_process(cmd, cwd=None) -> dict:
    """Run ``cmd`` (a list) as a user runs a command; its wall seconds, CPU seconds (user + sys) and peak memory (MB).

    The figures are the child's own (``os.wait4``), except that on Linux a
    child's peak starts from this process's memory at fork: keep the caller
    small (this module imports numpy only). Exits with the command's stderr
    when it fails.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:  # no pipe to fill while waiting
        t = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{errors}")
    return {"seconds": seconds, "cpu": ru.ru_utime + ru.ru_stime, "peak_mb": ru.ru_maxrss / 1024, "stdout": text}


def smoothcert_command() -> list:
    """The ``smoothcert`` console command of this Python environment (``python -m smoothcert`` when absent)."""
    import shutil

    exe = Path(sys.executable).with_name("smoothcert")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("smoothcert")
    return [found] if found else [sys.executable, "-m", "smoothcert"]


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


if __name__ == "__main__":
    print(bench_store())
    os._exit(0)
