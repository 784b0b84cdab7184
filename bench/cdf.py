"""Benchmark of ``--method cdf`` on the 500-input store, against the reference formulation.

Prints, from one run:
1. the wall time of ``certify(store, "cdf")`` for both measures, both bounds and
   5 thresholds with K = 10,000 (goal: under 20 s on 2 cores), after a warm-up
   that compiles the Numba kernels on two inputs;
2. the per-input time of the reference formulation evaluated the way the
   reference code of Kumar et al. does it: for one input and one measure, a
   pure-Python loop over the K thresholds calling scipy's scalar ``norm.ppf`` and
   ``norm.cdf`` per term, at R = 0 (the abstain check) and at seven fixed radii
   0, 0.25, ..., 1.5, plus the naive bound at the same radii; on a few inputs;
3. the ratio, per (input, measure), and the largest gap between the reference
   formula and ours at those radii (ours uses exact counts under ties, so it is
   never lower).

Usage: python bench/cdf.py [--inputs-ref 3] [--workers N]
"""
from __future__ import annotations

import argparse
import math
import os

import numpy as np

from common import Timer, bench_store, peak_rss_mb

THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]  # above the minimum of both measures
REF_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def reference_exp_lbd(thresholds, eps, disp, range_min, sigma):
    """The reference formulation of the CDF lower bound: one scalar scipy call pair per threshold."""
    from scipy.stats import norm

    exp_bar = range_min
    num = thresholds.size
    for i in range(num):
        prob = max(((num - i) / num) - eps, 0)
        phi_inv = norm.ppf(prob, scale=sigma)
        prob = norm.cdf(phi_inv, loc=disp, scale=sigma)
        exp_bar += (thresholds[i] - (range_min if i == 0 else thresholds[i - 1])) * prob
    return exp_bar


def reference_naive(exp0, disp, a, b, sigma):
    from scipy.stats import norm

    prob = (exp0 - a) / (b - a)
    prob = norm.cdf(norm.ppf(prob, scale=sigma), loc=disp, scale=sigma)
    return b * prob + a * (1 - prob)


def reference_input(z, alpha, K, measure, sigma):
    """Both bounds of one (input, measure) as the reference code computes them; returns the CDF values at REF_RADII."""
    from smoothcert.certifier.cdf import MEASURES

    a, b = MEASURES[measure].a, MEASURES[measure].b
    n = z.size
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    top = np.sort(z)
    thr = top[:: math.ceil(n / K)]
    reference_exp_lbd(thr, eps, 0.0, a, sigma)  # the abstain check at R = 0
    cdf_vals = [reference_exp_lbd(thr, eps, r, a, sigma) for r in REF_RADII]
    exp0 = float(np.mean(z)) - (b - a) * eps
    [reference_naive(exp0, r, a, b, sigma) for r in REF_RADII]
    return np.array(cdf_vals)


def _read_all(path) -> None:
    """Read every input as certify does (fields argmax + rows, checksums verified), in Dask threads."""
    import dask

    from smoothcert.certifier.engine import _block_size
    from smoothcert.store import open_store

    with open_store(path) as st:
        N = st.n_inputs
        bs = _block_size(st, ["argmax", "rows"])

    def read(s):
        with open_store(path) as s2:
            return int(s2.read_block(s, min(s + bs, N), fields=("argmax", "rows"), verify=True)["rows"].shape[0])

    assert sum(dask.compute(*[dask.delayed(read)(s) for s in range(0, N, bs)], scheduler="threads")) == N


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs-ref", type=int, default=3, help="inputs timed with the reference formulation")
    ap.add_argument("--workers", type=int, default=None, help="LocalCluster processes instead of threads")
    ap.add_argument("--K", type=int, default=10_000)
    args = ap.parse_args()

    from smoothcert.certifier import CertifyOptions, certify
    from smoothcert.certifier.block import Block
    from smoothcert.certifier.cdf import MEASURES, certified_radii, input_terms, lower_bound, measure_values, predicted_class
    from smoothcert.store import open_store

    path = bench_store()
    with open_store(path) as st:
        N, n0, n, m, sigma = st.n_inputs, st.n0, st.n, st.num_classes, st.sigma
        warm = st.read_block(0, 2, fields=("argmax", "rows"))
    print(f"store {path.name}: {N} inputs, n0 = {n0}, n = {n}, m = {m}, sigma = {sigma}; "
          f"{os.cpu_count()} CPU cores; K = {args.K}, thresholds {THRESHOLDS}")

    # warm-up: compile (or load from the Numba cache) every kernel on two inputs, outside the timing
    from smoothcert.certifier.methods_confidence import certify_cdf

    wb = Block(idx=warm["idx"], label=warm["label"], n_rows=warm["n_rows"], core_predict=warm["core_predict"],
               n0=n0, n0_use=n0, n_use=n, sigma=sigma, m=m, argmax=warm["argmax"], rows=warm["rows"])
    opts = CertifyOptions(measure=["score", "margin"], bound=["cdf", "hoeffding"], threshold=THRESHOLDS, K=args.K)
    with Timer() as tw:
        certify_cdf(wb, opts)
    print(f"warm-up (2 inputs, includes JIT compile or cache load): {tw.s:.2f} s")

    # 1. smoothcert, whole store, both measures x both bounds x 5 thresholds
    load0 = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    with Timer() as t:
        tab, meta = certify(path, "cdf", opts, progress=False, workers=args.workers)
    cpu = _cpu_seconds() - cpu0
    rows = len(tab)
    per_im = t.s / (N * 2)
    print(f"smoothcert cdf: {t.s:.2f} s for {N} inputs x 2 measures x 2 bounds x {len(THRESHOLDS)} thresholds "
          f"= {rows} certificates (goal < 20 s): {1e3 * per_im:.2f} ms per (input, measure), "
          f"all 5 thresholds and both bounds, exact radii to 1e-4, reading and checksums included; "
          f"peak RSS {peak_rss_mb():.0f} MB")
    print(f"  CPU time of that run {cpu:.2f} s (user + system, this process; {cpu / t.s:.2f} cores busy on average); "
          f"load average before it {load0:.2f} on {os.cpu_count()} cores (other processes share them)")
    # the same reads alone (same blocks, fields and checksums, Dask threads): how much of the above is I/O
    with Timer() as tread:
        _read_all(path)
    print(f"  the same reads alone (decompress, checksum, float32 copy; no certificate): {tread.s:.2f} s; "
          f"so about {max(t.s - tread.s, 0):.2f} s of the run is the certificate computation")
    from smoothcert.certifier.report_confidence import format_confidence_report

    print(format_confidence_report(tab, [0.0, 0.1, 0.25, 0.5]))

    # 2. the reference formulation on a few inputs (its own sort of the scores included)
    k = max(1, min(args.inputs_ref, N))
    with open_store(path) as st:
        d = st.read_block(0, k, fields=("rows",))
    cls = predicted_class(d["rows"][:, :n0])
    ref_times, max_gap = [], 0.0
    for measure in ("score", "margin"):
        z = measure_values(d["rows"], cls, measure, start=n0)
        for i in range(k):
            with Timer() as tr:
                ref_vals = reference_input(z[i], meta["options"]["alpha"], args.K, measure, sigma)
            ref_times.append(tr.s)
            ms = MEASURES[measure]
            zs = np.sort(z[i])
            w, u = input_terms(zs, "cdf", ms, args.K, meta["options"]["alpha"])
            ours = lower_bound(np.array(REF_RADII), ms.a, w, u, sigma)
            max_gap = max(max_gap, float(np.max(np.abs(ours - ref_vals))))
            assert (ours >= ref_vals - 1e-9).all(), "exact counts must never be looser than the reference"
    ref_per = float(np.mean(ref_times))
    print(f"reference formulation: {ref_per:.2f} s per (input, measure) for 8 evaluations of the CDF bound "
          f"(R = 0 check + 7 fixed radii) + the naive bound, over {len(ref_times)} (input, measure) pairs "
          f"[{min(ref_times):.2f} .. {max(ref_times):.2f} s]")
    print(f"ratio: reference / smoothcert per (input, measure) = {ref_per / per_im:,.0f}x "
          f"(smoothcert also computes exact radii for 5 thresholds instead of 7 fixed radii)")
    print(f"largest |ours - reference| of the CDF bound at the 7 radii: {max_gap:.3g} (ours >= reference: exact counts "
          f"of tied float16 scores)")
    # the whole store with the reference formulation, extrapolated
    print(f"extrapolated reference time for the whole store: {ref_per * N * 2 / 3600:.2f} h of CPU "
          f"(one measure per run, as the reference code does it)")
    _ = certified_radii  # (imported for readers: the kernel that computes the radii)


if __name__ == "__main__":
    main()
    os._exit(0)
