"""Benchmark: certify cohen / two-step against one plain read of the whole store, in process and as whole processes.

Builds (once) the 500 inputs x (100 + 100,000) rows x 10 classes float16
store and a 1-input store of the same rows, then measures side by side in
rounds, every phase in its own process:

  in process     (timed inside, from the first import; the peak memory is the phase's own)
    read       - read and decompress every stored part of every input once (Dask threads, cohen's blocks;
                 the process imports the store and Dask, not the certifier)
    cohen      - smoothcert.certify(..., "cohen") (checksums verified)
    two-step
  whole process  (timed from outside: interpreter start, imports, the work, the exit; what a user waits for)
    read       - the same read as a `python -c` process
    cohen      - `smoothcert certify STORE --method cohen --out T.csv` (the table and its sidecar written)
    two-step
    cohen 1-input - the same command on the 1-input store

and prints the best time of each phase and the ratios certify / read (goals:
in process <= 1.5x; whole processes <= 1.25x; the 1-input command <= 0.6 s;
peak memory < 1 GB). The machine's load moves every absolute time: compare
the ratios of one run.

    python bench/certify.py [--inputs 500] [--n 100000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_store, du_mb

READ = r"""
import dask
from smoothcert.store import open_store
path, bs = {path!r}, {bs}
st = open_store(path)
N = st.n_inputs
def read(s):
    with open_store(path) as s2:
        b = s2.read_block(s, min(s + bs, N), fields=("argmax",), check=("rows",), verify=False)
    return int(b["argmax"].shape[0])
total = sum(dask.compute(*[dask.delayed(read)(s) for s in range(0, N, bs)], scheduler="threads"))
assert total == N
"""

IN_PROCESS = r"""
import json, sys, time
phase, path = {phase!r}, {path!r}
t = time.perf_counter()
if phase == "read":
    exec({read!r})
else:
    from smoothcert.certifier import certify, CertifyOptions
    table, meta = certify(path, phase, CertifyOptions(), progress=False)
    assert len(table) > 0
dt = time.perf_counter() - t
sys.path.insert(0, {bench!r})
from common import peak_rss_mb  # this process's own peak, not its parent's
print(json.dumps({{"seconds": dt, "peak_mb": peak_rss_mb()}}))
"""


def read_code(path) -> str:
    """The plain read of ``path`` in the blocks cohen's tasks read (the block size is found here, so that the read
    process imports the store and Dask only)."""
    from smoothcert.certifier.engine import _block_size
    from smoothcert.store import open_store

    with open_store(path) as st:
        bs = _block_size(st, ["argmax"], ["rows"])
    return READ.format(path=str(path), bs=bs)


def in_process(phase, path):
    """(seconds timed inside the process, its peak memory in MB)."""
    code = IN_PROCESS.format(phase=phase, path=str(path), read=read_code(path), bench=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["seconds"], r["peak_mb"]


def whole_process(argv, tmp):
    """Wall seconds of the process ``argv``, from outside (start-up and exit included)."""
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed:\n{out.stderr}")
    return dt


def certify_argv(path, method, out):
    exe = shutil.which("smoothcert")
    head = [exe] if exe else [sys.executable, "-m", "smoothcert"]
    return head + ["certify", str(path), "--method", method, "--out", str(out)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=500)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every phase; the best of each is kept")
    args = ap.parse_args()
    t = time.time()
    path = bench_store(n_inputs=args.inputs, n=args.n)
    one = bench_store(n_inputs=1, n=args.n)
    print(f"store: {path.name}: {args.inputs} inputs x (100 + {args.n}) rows x 10 classes, float16 "
          f"(ready in {time.time() - t:.0f} s); 1-input store: {one.name}")
    size = du_mb(path)
    raw = args.inputs * (100 + args.n) * 10 * 2 / 2**20
    print(f"store size: {size:.0f} MB on disk ({raw:.0f} MB of float16 rows uncompressed, ratio {raw / size:.2f})")
    tmp = tempfile.mkdtemp(prefix="bench-certify-")
    try:
        whole = {
            "read": [sys.executable, "-c", read_code(path)],
            "cohen": certify_argv(path, "cohen", os.path.join(tmp, "cohen.csv")),
            "two-step": certify_argv(path, "two-step", os.path.join(tmp, "two-step.csv")),
            "cohen 1-input": certify_argv(one, "cohen", os.path.join(tmp, "one.csv")),
        }
        in_process("cohen", path)  # warm the Numba cache and the OS page cache
        whole_process(whole["cohen 1-input"], tmp)
        best_in, best_whole, peak = {}, {}, {}
        for _ in range(args.repeat):
            for phase in ("read", "cohen", "two-step"):
                s, mb = in_process(phase, path)
                best_in[phase] = min(s, best_in.get(phase, s))
                peak[phase] = max(mb, peak.get(phase, mb))
            for phase, argv in whole.items():
                s = whole_process(argv, tmp)
                best_whole[phase] = min(s, best_whole.get(phase, s))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    read_in, read_whole = best_in["read"], best_whole["read"]
    print(f"best of {args.repeat} rounds (load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"{'phase':<15}{'in process':>12}{'ratio':>8}{'peak MB':>9}{'whole process':>15}{'ratio':>8}")
    for phase in ("read", "cohen", "two-step"):
        print(f"{phase:<15}{best_in[phase]:>11.2f}s{best_in[phase] / read_in:>8.2f}{peak[phase]:>9.0f}"
              f"{best_whole[phase]:>14.2f}s{best_whole[phase] / read_whole:>8.2f}")
    print(f"{'cohen 1-input':<15}{'':>29}{best_whole['cohen 1-input']:>14.2f}s")
    ok_in = all(best_in[p] / read_in <= 1.5 for p in ("cohen", "two-step"))
    ok_whole = all(best_whole[p] / read_whole <= 1.25 for p in ("cohen", "two-step"))
    ok_one = best_whole["cohen 1-input"] <= 0.6
    mem = max(peak.values())
    print(f"goal in process <= 1.5x: {'met' if ok_in else 'NOT met'}; whole processes <= 1.25x: "
          f"{'met' if ok_whole else 'NOT met'}; 1-input command <= 0.6 s: {'met' if ok_one else 'NOT met'}; "
          f"peak < 1024 MB: {'met' if mem < 1024 else 'NOT met'} ({mem:.0f} MB)")


if __name__ == "__main__":
    main()
