"""Benchmark: certify with 2 worker processes over 1, whole processes and in the engine, and the size of a compact 1,000-class store.

Prints, in one run:
  0. the machine's ceiling: 2 fresh processes of a pure CPU loop over 1
     (2.00x on two dedicated cores; less on shared vCPUs or under load);
  1. **whole processes**, as a user runs them: ``smoothcert certify STORE
     --method uncertainty --uncertainty entropy,confidence,margin
     --theta=-1:ln(10):300 --out X.parquet -q`` (3 x 300 thetas, cc, ncl and
     ncl-strict: 1,350,000 rows) with ``--workers 1`` and ``--workers 2``
     (alternating, a warm-up first, best of ``--repeat``): 2 workers / 1
     worker (goal >= 1.7x), printed next to the ceiling of the same run; the
     threaded default for comparison. Then what stays serial in such a run,
     measured on its own: the process start-up (``smoothcert certify --help``), the
     start and close of a LocalCluster of 1 and 2 workers as ``--workers``
     starts it (to the first task), and writing the 1,350,000-row table
     (parquet, CSV; certify now writes it block by block while computing);
  2. for each --method (default two-step, then uncertainty with entropy,
     every stored part checksum-verified): certify on the same store
     through running LocalClusters of 1 and 2 worker processes of one thread
     each; cluster start excluded, a warm-up pass first, then --repeat rounds
     alternating 1 and 2 workers, best of each; the tables must be identical;
  3. a 1,000-class store (--compact-inputs inputs x (100 + --compact-n) rows,
     realistic peaked rows, float16) and its compact copy (top-K, with the
     whole selection rows): bytes on disk, and the ratio at n = 100,000 (the
     top-K parts per row plus the selection rows amortised over 100,100
     rows; goal >= 20x), checking that two-step and uncertainty give
     identical tables on both.
The store is the benchmark store (500 inputs x (100 + 100,000) rows x 10
classes, float16; built once by common.bench_store). The load average is
printed: on a machine shared with other work the ratios drop.

    python bench/scale.py [--method two-step,uncertainty] [--repeat 3] [--topk 5] [--skip-engine]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

from common import OUT, bench_store, realistic_rows, reusable, smoothcert_command, whole_process



def file_bytes(path) -> int:
    """Sum of the sizes of the files under ``path`` (chunks and metadata, no directory entries)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def time_workers(store, method, repeat):
    """{1: best seconds, 2: best seconds} and the table: certify through running LocalClusters of 1 and 2 processes.

    Both clusters are started (and warmed up) first and the timed runs
    alternate 1, 2, 1, 2, ... so that a change in the machine's load hits
    both alike; the best run of each is kept.
    """
    import logging

    from distributed import Client

    from smoothcert.certifier import certify
    from smoothcert.certifier.cluster import local_cluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    clusters = {w: local_cluster(w, silence_logs=logging.ERROR) for w in (1, 2)}   # as --workers starts them
    clients = {w: Client(c) for w, c in clusters.items()}

    def worker_cpu(w):
        return sum(clients[w].run(_cpu_seconds).values())

    try:
        table = None
        for c in clusters.values():  # warm-up: imports, numba caches, page cache
            t, _ = certify(store, method, scheduler=c.scheduler_address, progress=False)
            assert table is None or t.equals(table), "tables differ between 1 and 2 workers"
            table = t
        best = {1: (float("inf"), 0.0, 0.0), 2: (float("inf"), 0.0, 0.0)}
        for _ in range(repeat):
            for w, c in clusters.items():
                cpu0, own0 = worker_cpu(w), _cpu_seconds()
                t0 = time.perf_counter()
                t, _ = certify(store, method, scheduler=c.scheduler_address, progress=False)
                dt = time.perf_counter() - t0
                own = _cpu_seconds() - own0
                if dt < best[w][0]:
                    best[w] = (dt, worker_cpu(w) - cpu0, own)
                assert t.equals(table), "tables differ between runs"
    finally:
        for w in clusters:
            clients[w].close()
            clusters[w].close()
    return best, table


SWEEP = ["--method", "uncertainty", "--uncertainty", "entropy,confidence,margin", "--theta=-1:2.302585092994046:300"]


def whole_processes(store, repeat: int, where) -> dict:
    """Best wall seconds of the 3 x 300-theta sweep as whole ``smoothcert certify`` processes: {1: .., 2: .., "threads": ..}."""
    import hashlib

    def one(w):
        out = where / f"w{w}.parquet"
        r = whole_process(smoothcert_command() + ["certify", str(store)] + SWEEP +
                          ([] if w == "threads" else ["--workers", str(w)]) + ["--out", str(out), "-q"])
        r["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        return r

    one(2)  # warm-up: Numba caches, page cache
    best = {}
    for _ in range(repeat):
        for w in (1, 2, "threads"):
            r = one(w)
            if w not in best or r["seconds"] < best[w]["seconds"]:
                best[w] = r
    assert len({r["sha256"] for r in best.values()}) == 1, "tables differ between 1 and 2 workers or threads"
    return best


def serial_parts(where) -> dict:
    """Seconds of what a ``--workers`` run does outside the workers' computing, each measured on its own."""
    import logging

    import pandas as pd
    from distributed import Client

    from smoothcert.certifier.cluster import check_cluster, local_cluster
    from smoothcert.certifier.table import write_table

    out = {"start-up": min(whole_process(smoothcert_command() + ["certify", "--help"])["seconds"] for _ in range(3))}
    logging.getLogger("distributed").setLevel(logging.ERROR)
    for w in (1, 2):
        starts, closes = [], []
        for _ in range(2):
            t = time.perf_counter()
            cluster = local_cluster(w, silence_logs=logging.ERROR)
            client = Client(cluster)
            check_cluster(client, "bench")
            client.submit(abs, 1).result()
            starts.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.close()
            cluster.close()
            closes.append(time.perf_counter() - t)
        out[f"cluster {w} start"], out[f"cluster {w} close"] = min(starts), min(closes)
    table = pd.read_parquet(where / "w2.parquet")
    for fmt in ("parquet", "csv"):
        t = time.perf_counter()
        write_table(table, where / f"again.{fmt}")
        out[f"write {fmt}"] = time.perf_counter() - t
    out["rows"] = len(table)
    return out


def _spin(n: int) -> float:
    """A pure CPU loop (no memory traffic, no I/O): the work that scales best with processes."""
    x = 0.0
    for i in range(n):
        x += i * 1e-9
    return x


def cpu_ceiling(repeat: int, n: int = 12_000_000) -> float:
    """Throughput of 2 processes running ``_spin`` at once over 1 process running it alone (best of each).

    On 2 dedicated cores this is 2.0; on a VM whose 2 vCPUs share a physical
    core, or on a machine with other load, it is lower, and no certify run can
    scale better than it. Rounds alternate 1 and 2 processes, like the certify runs.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(repeat):
        for w in (1, 2):
            procs = [ctx.Process(target=_spin, args=(n,)) for _ in range(w)]  # fresh processes: one loop each
            t = time.perf_counter()
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            best[w] = min(best[w], time.perf_counter() - t)
    return 2 * best[1] / best[2]


def _cpu_seconds() -> float:
    """User + system CPU seconds of the calling process (run on each worker)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def compact_ratio(n_inputs, n, topk, m=1000, n0=100):
    """Build (once) a 1,000-class float16 store and compact it.

    Returns (full bytes, compact bytes, seconds to compact, rows, bytes of the compact store's whole selection rows).
    """
    from smoothcert.certifier import CertifyOptions, certify
    from smoothcert.store import create_store
    from smoothcert.store.compact import compact_store

    full = OUT / f"scale-{n_inputs}-{n0}-{n}-{m}-float16.zarr"
    comp = OUT / f"scale-{n_inputs}-{n0}-{n}-{m}-float16-top{topk}.zarr"
    if not reusable(full):
        rng = np.random.default_rng(0)
        st = create_store(full, n_inputs=n_inputs, n0=n0, n=n, num_classes=m, sigma=0.5, dtype="float16",
                          metadata={"source": "bench", "seed": 0})
        for i in range(n_inputs):
            p = realistic_rows(rng, n0 + n, m, (37 * i) % m, float(rng.uniform(2.0, 10.0)))
            st.write_input(i, rows=p, argmax=p.argmax(axis=1), label=(37 * i) % m, idx=i)
        st.close()
    shutil.rmtree(comp, ignore_errors=True)
    t = time.perf_counter()
    compact_store(full, comp, topk=topk)
    dt = time.perf_counter() - t
    for method, opts in (("two-step", CertifyOptions()),
                         ("uncertainty", CertifyOptions(uncertainty=["entropy", "confidence", "margin"],
                                                        theta=list(np.linspace(-1, 7, 33)) + [float("inf")]))):
        a, _ = certify(full, method, opts, progress=False)
        b, meta = certify(comp, method, opts, progress=False)
        assert a.equals(b) and meta["compact"]["certificate"] == "exact", method
    return file_bytes(full), file_bytes(comp), dt, n_inputs * (n0 + n), file_bytes(comp / "rows0")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="two-step,uncertainty", help="comma list of methods to time")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inputs", type=int, default=500, help="inputs of the benchmark store")
    ap.add_argument("--topk", type=int, default=5)
    ap.add_argument("--compact-inputs", type=int, default=20)
    ap.add_argument("--compact-n", type=int, default=5000)
    ap.add_argument("--skip-engine", action="store_true", help="skip part 2 (running clusters, in the engine)")
    ap.add_argument("--skip-compact", action="store_true", help="skip part 3 (the compact 1,000-class store)")
    args = ap.parse_args()

    store = bench_store(n_inputs=args.inputs)
    from smoothcert.store import open_store

    with open_store(store) as st:
        N, R, m = st.n_inputs, st.shape.total_rows, st.num_classes
    print(f"store {store.name}: {N} inputs x {R} rows x {m} classes, {file_bytes(store) / 2**20:.0f} MiB; "
          f"{os.cpu_count()} CPUs", flush=True)
    ceiling = cpu_ceiling(args.repeat)
    print(f"this machine's ceiling: 2 processes of a pure CPU loop / 1 process = {ceiling:.2f}x "
          f"(2.00x on two dedicated cores)", flush=True)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()[0]
        best = whole_processes(store, args.repeat, Path(tmp))
        w1, w2, th = best[1]["seconds"], best[2]["seconds"], best["threads"]["seconds"]
        speedup = w1 / w2
        print(f"  whole process, uncertainty 3 x 300 thetas (1,350,000 rows) -> parquet: --workers 1 {w1:.2f} s, "
              f"--workers 2 {w2:.2f} s, threads (default) {th:.2f} s; identical tables", flush=True)
        print(f"whole process: 2 workers / 1 worker = {speedup:.2f}x (goal >= 1.7x) "
              f"{'OK' if speedup >= 1.7 else 'BELOW GOAL'}; the same run's pure-CPU ceiling {ceiling:.2f}x "
              f"({speedup / ceiling:.0%} of it); load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after",
              flush=True)
        parts = serial_parts(Path(tmp))
        print(f"  serial parts, each on its own: process start-up (smoothcert certify --help) {parts['start-up']:.2f} s; "
              f"LocalCluster to its first task: 1 worker {parts['cluster 1 start']:.2f} s, 2 workers "
              f"{parts['cluster 2 start']:.2f} s (started while the store is opened); closing it "
              f"{parts['cluster 1 close']:.2f} s, {parts['cluster 2 close']:.2f} s; writing the "
              f"{parts['rows']:,}-row table whole: parquet {parts['write parquet']:.2f} s, csv "
              f"{parts['write csv']:.2f} s (certify writes it block by block while computing)", flush=True)
    for method in ([] if args.skip_engine else args.method.split(",")):
        load0 = os.getloadavg()[0]
        best, _ = time_workers(store, method, args.repeat)
        (t1, c1, o1), (t2, c2, o2) = best[1], best[2]
        print(f"  {method}, 1 worker process : {t1:6.2f} s  {N / t1:7.1f} inputs/s  workers' CPU {c1:5.1f} s "
              f"({c1 / t1:.2f} cores busy), client and scheduler {o1:4.1f} s", flush=True)
        print(f"  {method}, 2 worker processes: {t2:6.2f} s  {N / t2:7.1f} inputs/s  workers' CPU {c2:5.1f} s "
              f"({c2 / t2:.2f} cores busy), client and scheduler {o2:4.1f} s", flush=True)
        speedup = t1 / t2
        print(f"certify --method {method}: 2 workers / 1 worker throughput = {speedup:.2f}x "
              f"(goal >= 1.7x) {'OK' if speedup >= 1.7 else 'BELOW GOAL'}, {speedup / ceiling:.0%} of the machine's "
              f"{ceiling:.2f}x ceiling; identical tables; "
              f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after (other processes share the cores)",
              flush=True)

    if args.skip_compact:
        sys.stdout.flush()
        os._exit(0)
    fb, cb, dt, rows, sel = compact_ratio(args.compact_inputs, args.compact_n, args.topk)
    # the whole selection rows (n0 = 100 per input) are a fixed cost per input: amortised over n0 + n rows, they
    # weigh 20x less at the benchmark's n = 100,000 than at --compact-n 5,000
    per_row, sel_input = (cb - sel) / rows, sel / args.compact_inputs
    at_100k = per_row + sel_input / 100_100
    ratio = (fb / rows) / at_100k
    print(f"compact store, 1,000 classes, {rows} rows, top-{args.topk}: float16 full rows {fb / 2**20:.1f} MiB "
          f"({fb / rows:.0f} B/row), compact {cb / 2**20:.2f} MiB ({cb / rows:.1f} B/row: top-k parts "
          f"{per_row:.1f}, whole selection rows {sel_input / 1e3:.0f} kB per input); at n = 100,000 "
          f"{at_100k:.1f} B/row, {ratio:.1f}x smaller (goal >= 20x) {'OK' if ratio >= 20 else 'BELOW GOAL'}; "
          f"compacting took {dt:.1f} s; two-step and uncertainty tables identical", flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
