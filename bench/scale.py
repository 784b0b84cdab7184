"""Benchmark: certify throughput with 2 worker processes over 1, and the size of a compact 1,000-class store.

Prints, in one run:
  1. for each --method (default two-step, then uncertainty with entropy, a
     heavier kernel; every stored part checksum-verified): certify on the
     benchmark store (500 inputs x (100 + 100,000) rows x 10 classes, float16;
     built once by common.bench_store) through a dask.distributed LocalCluster
     of 1, then 2, worker processes of one thread each (as --workers starts
     them: certifier.cluster.local_cluster). Cluster start is excluded; a warm-up
     pass first, then --repeat rounds alternating 1 and 2 workers, best of
     each; the tables must be identical. Goal: >= 1.7x on 2 cores. The load
     average is printed: on a machine shared with other work the ratio drops.
  2. a 1,000-class store (--compact-inputs inputs x (100 + --compact-n) rows,
     realistic peaked rows, float16) and its compact copy (top-K, with the
     whole selection rows): bytes on disk, and the ratio at n = 100,000 (the
     top-K parts per row plus the selection rows amortised over 100,100
     rows; goal >= 20x), checking that two-step and uncertainty give
     identical tables on both.

    python bench/scale.py [--method two-step,uncertainty] [--repeat 3] [--topk 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

from common import OUT, bench_store, realistic_rows, reusable



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
    for method in args.method.split(","):
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
