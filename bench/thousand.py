"""Benchmark: ImageNet-sized stores (1,000 classes): ``sample --topk``, its bytes per row, every method on a compact store.

Prints, in one run (each part can be skipped, every size is a flag):

1. **Sampler** (``--sample-inputs`` inputs x (``--n0`` + ``--sample-n``) rows
   of the project's 1,000-class model ``smoothcert.sampler.testing:thousand``
   on ``smoothcert.sampler.testing:thousand_dataset`` (3 x 64 x 64 inputs),
   sigma 0.25, batch ``--batch-size``, on CPU). Noisy samples per second of
   * ``topk``: ``sampler.run.sample(..., topk=K)`` writing a compact-s0 store
     (the throughput the sampler itself records: its loop from the first
     batch to the last write, model loading excluded);
   * ``full``: the same call without ``topk`` (float16 rows, everything stored);
   * ``bare``: the forward passes alone of the sampler's (channels-last) model
     on the same batches (one pre-made batch reused), nothing else;
   * ``fwd+noise``: ``bare`` plus the sampler's own noise for every batch
     (``sampler.noise.NoisyBatches``, the channels-last copy): not a goal; it
     tells how much of the sampler's time is the noise of 12,288 pixels a row.
   Each repetition runs ``bare``, ``topk``, ``full`` (``full`` before
   ``topk`` in every other repetition), ``bare``, ``fwd+noise``; a sampler
   run is compared with the mean of the two ``bare`` runs around it. Rep 0
   warms up and is discarded; samples/s and ratios are medians over
   ``--reps`` repetitions. Goal: topk / bare >= 0.9.

2. **Bytes per stored row** of the ``topk`` store of part 1 (``sample --topk
   K``, real rows of the model), selection rows included: measured at the
   sampled n, and extrapolated to n = 100,000 (the per-row arrays' bytes per
   row, plus each input's whole selection rows and its record amortised over
   100,100 rows); against the ``full`` store's float16 rows. The synthetic
   store of part 3 (n = ``--n``) is printed too. Goal: <= 30 bytes a row at
   K = 5 and n = 100,000.

3. **Every method on a compact-s0 store** of ``--inputs`` inputs x (``--n0``
   + ``--n``) rows x 1,000 classes, top-``--topk``, built once into
   ``bench-out/`` (a rerun reuses it). How it is built: per input, rows like
   a trained classifier's under noise (``common.realistic_rows``: logits of
   scale 5, the label's raised by a strength drawn uniformly in [10, 40], a
   runner-up by half of it), drawn 10,000 rows at a time in float32; the
   hard labels are their argmax, the rows are rounded to float16
   (``store.float16``, numpy's rounding) and reduced to top-K + entropy by
   the store's own compaction kernel (``store.topk.compact_rows``, what
   ``store compact`` runs); the n0 selection rows are kept whole; all of it
   written through ``SampleStore.write_input`` of a store created with the
   ``compact-s0`` layout (``layouts.CompactFullS0``). ``core_predict`` (for
   ``aces``) is synthesised: the label with probability 0.9, else a uniform
   random class. Timed, each phase in a fresh subprocess (its peak memory,
   ``ru_maxrss``, is its own), best of ``--repeat`` rounds after a warm-up
   round (Numba caches, page cache). The peak is the phase process's own
   high-water mark (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` where
   there is none): on Linux a child's ``ru_maxrss`` starts from its parent's
   peak, carried across fork and exec, and this script's own process holds
   the model and the sampler's buffers from part 1.
   * ``read``: ``read_block`` of every stored field (top-k values and
     classes, entropies, hard labels, selection rows; checksums verified)
     over all inputs, on Dask threads in the engine's block size;
   * ``certify`` with each method's defaults, written as a user gets it:
     ``certifier.engine.certify_to`` a Parquet file (what ``smoothcert
     certify --out X.parquet`` runs, in process; the table is written block
     by block and never whole in memory; checksums of every stored part
     verified, as ``certify`` does by default): cohen, two-step, uncertainty
     (entropy, confidence and margin, ``--thetas`` thresholds each, from
     ``start:stop:count`` grids: entropy 0:ln(1000), confidence -1:0, margin
     -1:0; every guarantee), cdf (both measures, both bounds), soft, aces
     (``--thetas`` thresholds 0:1), adaptive (``--radius 0.25``); cdf and soft
     also under ``--compact-rule dominated`` (``--no-dominated``: not).
   Goals: each method <= 2x the read (cdf and soft <= 3x); peak memory < 1 GB.
   A method that refuses compact stores is printed as refused, with its reason.
   When ``uncertainty`` misses a goal, it is timed again with one theta a
   function and without ncl-strict (no goal), to show where its cost is.

4. **cdf and soft, compact against full**: both methods (soft with its
   bernstein and hoeffding bounds), under both compact rules, on part 1's
   ``sample --topk`` store and on its full store (the same rows): how many
   certificates equal, fall below or exceed the full store's, mean radii.

Where a goal is missed, the line after the table gives the measured reason.

    python bench/thousand.py [--reps 3] [--sample-inputs 4] [--sample-n 10000] [--inputs 500] [--n 100000]
    python bench/thousand.py --reps 1 --sample-inputs 1 --sample-n 1000 --inputs 4 --n 2000 --thetas 10 \\
        --repeat 1 --no-warmup        # a smoke run, well under a minute
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import OUT, ROOT, realistic_rows, reusable

MODEL = "smoothcert.sampler.testing:thousand"
DATA = "smoothcert.sampler.testing:thousand_dataset"
M = 1000
SIGMA = 0.25
FULL_N = 100_000          # the n the goals are stated at
METHODS = ("cohen", "two-step", "uncertainty", "cdf", "soft", "aces", "adaptive")
GOAL_RATIO = {"cdf": 3.0, "soft": 3.0, "cdf/dominated": 3.0, "soft/dominated": 3.0}     # every other method: 2.0
GOAL_PEAK_MB = 1024


def file_bytes(path) -> int:
    """Sum of the sizes of the files under ``path``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def store_bytes(path) -> dict:
    """Bytes on disk of a store, by what they are: ``rows0`` (whole selection rows), ``per_row`` (every array with a
    value per row: rows or top-k parts, entropy, hard labels), ``fixed`` (input records, metadata)."""
    out = {"rows0": 0, "per_row": 0, "fixed": 0}
    for d, _, fs in os.walk(path):
        rel = Path(d).relative_to(path).parts
        top = rel[0] if rel else ""
        for f in fs:
            size = os.path.getsize(os.path.join(d, f))
            if f == "zarr.json" or top in ("", "inputs", "runs"):
                out["fixed"] += size
            elif top == "rows0":
                out["rows0"] += size
            else:
                out["per_row"] += size
    return out


# ------------------------------------------------------------------ part 1: the sampler
def bare_loop(module, x_shape, inputs, R, bs) -> float:
    """Samples/s of forward passes alone on the sampler's batches (one batch reused, channels-last)."""
    import torch

    from smoothcert.sampler.run import row_batches

    batch = torch.rand((bs,) + tuple(x_shape)).contiguous(memory_format=torch.channels_last)
    batches = row_batches(R, bs)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(inputs):
            for a, b in batches:
                module(batch[: b - a])
    return inputs * R / (time.perf_counter() - t0)


def noise_loop(module, xs, R, bs, seed=0) -> float:
    """Samples/s of the forward passes plus the sampler's noise (``NoisyBatches``, channels-last copy) per batch."""
    import torch

    from smoothcert.sampler.noise import NoisyBatches
    from smoothcert.sampler.run import row_batches

    nb = NoisyBatches(xs[0].shape, bs)
    batches = row_batches(R, bs)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, x in enumerate(xs):
            nb.set_input(torch.from_numpy(x), SIGMA, seed, i)
            for a, b in batches:
                module(nb.rows(a, b).contiguous(memory_format=torch.channels_last))
    return len(xs) * R / (time.perf_counter() - t0)


def sampler_run(store, inputs, n0, n, bs, topk) -> float:
    """Samples/s that ``sample`` records, into a fresh ``store``."""
    from smoothcert.sampler.run import sample

    shutil.rmtree(store, ignore_errors=True)
    res = sample(str(store), models=[MODEL], data=DATA, sigma=SIGMA, n0=n0, n=n, batch_size=bs, seed=0, device="cpu",
                 indices=f"0:{inputs}", progress=False, log=lambda s: None, topk=topk)
    return res.samples_per_s


def sampler_part(a) -> dict:
    import torch

    from smoothcert.sampler import noise
    from smoothcert.sampler.data import load_data
    from smoothcert.sampler.models import load_model

    noise.warm_up()
    ds = load_data(DATA)
    xs = [ds.get(i)[0] for i in range(a.sample_inputs)]
    module = load_model(MODEL, None, device=torch.device("cpu"), channels_last=True).module
    R = a.n0 + a.sample_n
    where = OUT / "thousand-sample"
    where.mkdir(parents=True, exist_ok=True)
    stores = {"topk": where / f"top{a.topk}.zarr", "full": where / "full.zarr"}
    res = {k: [] for k in ("bare", "topk", "full", "fwd+noise", "topk/bare", "full/bare", "topk/full",
                           "topk/fwd+noise")}
    print(f"[1] sampler: {a.sample_inputs} inputs x ({a.n0} + {a.sample_n:,}) rows of {MODEL} (1,000 classes, "
          f"3 x 64 x 64), batch {a.batch_size}, cpu, {torch.get_num_threads()} torch threads; "
          f"medians of {a.reps} reps (+1 warm-up)", flush=True)
    for rep in range(a.reps + 1):
        got, bares = {}, []
        order = ("topk", "full") if rep % 2 == 0 else ("full", "topk")
        for v in ("bare",) + order + ("bare", "fwd+noise"):
            if v == "bare":
                bares.append(bare_loop(module, xs[0].shape, a.sample_inputs, R, a.batch_size))
            elif v == "fwd+noise":
                got[v] = noise_loop(module, xs, R, a.batch_size)
            else:
                got[v] = sampler_run(stores[v], a.sample_inputs, a.n0, a.sample_n, a.batch_size,
                                     a.topk if v == "topk" else None)
        if rep == 0:
            continue
        bare = statistics.mean(bares)
        got["bare"] = bare
        got["topk/bare"], got["full/bare"] = got["topk"] / bare, got["full"] / bare
        got["topk/full"], got["topk/fwd+noise"] = got["topk"] / got["full"], got["topk"] / got["fwd+noise"]
        for k, v in got.items():
            res[k].append(v)
        print(f"    rep {rep}: bare {bare:,.0f}/s  topk {got['topk']:,.0f}/s  full {got['full']:,.0f}/s  "
              f"fwd+noise {got['fwd+noise']:,.0f}/s  topk/bare {got['topk/bare']:.3f}", flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    ok = med["topk/bare"] >= 0.9
    print(f"    samples/s: bare {med['bare']:,.0f}  topk {med['topk']:,.0f}  full {med['full']:,.0f}  "
          f"fwd+noise {med['fwd+noise']:,.0f}")
    print(f"    topk / bare = {med['topk/bare']:.3f} (goal >= 0.9) {'OK' if ok else 'BELOW GOAL'}; "
          f"topk / full = {med['topk/full']:.3f}; full / bare = {med['full/bare']:.3f}; "
          f"topk / fwd+noise = {med['topk/fwd+noise']:.3f}")
    ms = {k: 1000.0 / med[k] * 1000.0 for k in ("bare", "fwd+noise", "topk", "full")}   # ms per 1,000 rows
    line = (f"    per 1,000 rows: forward {ms['bare']:.1f} ms, noise and its channels-last copy "
            f"{ms['fwd+noise'] - ms['bare']:.1f} ms, the rest of sample --topk (softmax, top-k and entropy "
            f"kernel, store writes not hidden by the writer thread) {ms['topk'] - ms['fwd+noise']:.1f} ms; "
            f"of sample with full rows {ms['full'] - ms['fwd+noise']:.1f} ms")
    print(line)
    if not ok:
        noise_share = (ms["fwd+noise"] - ms["bare"]) / ms["topk"]
        print(f"    reason: on CPU the noise of a 3 x 64 x 64 input (12,288 Gaussian values a row, the sampler's "
              f"deterministic Box-Muller kernel) takes {noise_share:.0%} of sample --topk's time, "
              f"{(ms['fwd+noise'] - ms['bare']) / ms['bare']:.1f}x the forward pass of this small model; against a "
              f"loop that draws the same noise, sample --topk reaches {med['topk/fwd+noise']:.2f}")
    med["stores"] = {k: str(v) for k, v in stores.items()}
    return med


# ------------------------------------------------------------------ part 2: bytes per row
def bytes_part(a, sampled: dict | None, synth: Path | None) -> dict:
    out = {}
    print(f"[2] bytes per stored row, top-{a.topk}, selection rows included", flush=True)
    full_per_row = None
    if sampled:
        n_rows = a.sample_inputs * (a.n0 + a.sample_n)
        c, f = store_bytes(sampled["stores"]["topk"]), store_bytes(sampled["stores"]["full"])
        ctot, ftot = sum(c.values()), sum(f.values())
        full_per_row = ftot / n_rows
        sel_input = (c["rows0"] + c["fixed"]) / a.sample_inputs
        at_full = c["per_row"] / n_rows + sel_input / (a.n0 + FULL_N)
        out.update(sampled_bytes=c, full_bytes=f, sampled_per_row=ctot / n_rows, full_per_row=full_per_row,
                   at_100k=at_full)
        print(f"    sample --topk {a.topk} ({a.sample_inputs} inputs x {a.n0 + a.sample_n:,} rows): "
              f"{ctot / 2**20:.2f} MiB, {ctot / n_rows:.1f} B/row (top-k parts, entropy, argmax "
              f"{c['per_row'] / n_rows:.1f}; whole selection rows {c['rows0'] / a.sample_inputs / 1e3:.0f} kB and "
              f"record/metadata {c['fixed'] / a.sample_inputs / 1e3:.1f} kB per input)")
        print(f"    full float16 rows (sample, same inputs): {ftot / 2**20:.1f} MiB, {full_per_row:.0f} B/row")
        ok = at_full <= 30
        print(f"    extrapolated to n = {FULL_N:,} (selection rows and record over {a.n0 + FULL_N:,} rows): "
              f"{at_full:.1f} B/row (goal <= 30 at K = 5) {'OK' if ok else 'BELOW GOAL'}; "
              f"{full_per_row / at_full:.0f}x smaller than full float16 rows ({full_per_row:.0f} B/row)")
        if not ok:
            print(f"    reason: the per-row arrays alone take {c['per_row'] / n_rows:.1f} B/row "
                  f"(K = {a.topk} values of 2 bytes, K classes of 2 bytes, an 8-byte entropy, a 2-byte argmax "
                  f"before compression)")
    if synth is not None:
        from smoothcert.store import open_store

        with open_store(synth) as st:
            N, R = st.n_inputs, st.shape.total_rows
        s = store_bytes(synth)
        tot = sum(s.values())
        out["synthetic_per_row"] = tot / (N * R)
        extra = ""
        if full_per_row:
            extra = f"; {full_per_row / (tot / (N * R)):.0f}x smaller than the sampled full float16 rows"
        print(f"    synthetic store of part 3 ({N} inputs x {R:,} rows): {tot / 2**30:.2f} GiB, "
              f"{tot / (N * R):.1f} B/row (per-row arrays {s['per_row'] / (N * R):.1f}, selection rows "
              f"{s['rows0'] / (N * R):.1f}){extra}")
        if N != 500 or R != a.n0 + FULL_N:
            per = tot / (N * R)
            print(f"    at 500 inputs x (100 + 100,000) rows that is about {per * 500 * 100_100 / 2**30:.1f} GiB "
                  f"per noise level (extrapolated from {N} x {R:,})")
        else:
            print(f"    per noise level (500 inputs x (100 + 100,000) rows): {tot / 2**30:.2f} GiB")
    return out


# ------------------------------------------------------------------ part 4: cdf and soft, compact against full
def compare_part(a, sampled: dict) -> dict:
    """cdf and soft (defaults, and --compact-rule dominated) on part 1's ``sample --topk`` store against its full store.

    Both stores hold the same model's rows with the same seed, so the full
    store's certificates are the reference: per method and rule, how many
    certificates are equal, below or above the full store's, and the mean
    radius of both.
    """
    from smoothcert.certifier import CertifyOptions, certify

    full, comp = sampled["stores"]["full"], sampled["stores"]["topk"]
    print(f"[4] cdf and soft on the sample --topk {a.topk} store of part 1 against its full store (the same rows; "
          f"{a.sample_inputs} inputs x ({a.n0} + {a.sample_n:,})):", flush=True)
    out = {}
    for method, extra in (("cdf", {}), ("soft", {}), ("soft", {"bound": ["hoeffding"]})):
        ref, _ = certify(full, method, CertifyOptions(**extra), progress=False)
        for rule in ("spec", "dominated"):
            got, meta = certify(comp, method, CertifyOptions(compact_rule=rule, **extra), progress=False)
            r0, r1 = ref["radius"].to_numpy(), got["radius"].to_numpy()
            eq, below, above = int((r1 == r0).sum()), int((r1 < r0).sum()), int((r1 > r0).sum())
            label = f"{method}{' ' + extra['bound'][0] if extra else ''}, --compact-rule {rule}"
            out[label] = dict(equal=eq, below=below, above=above, mean_full=float(r0.mean()),
                              mean_compact=float(r1.mean()), certificate=meta["compact"]["certificate"])
            print(f"    {label:<40} {len(r0):>3} certificates: {eq} equal, {below} below, {above} above the full "
                  f"store's; mean radius {r1.mean():.4f} against {r0.mean():.4f} ({meta['compact']['certificate']}; "
                  f"rows_bounded on average {got['rows_bounded'].mean():,.0f} of {a.sample_n:,})", flush=True)
    return out


# ------------------------------------------------------------------ part 3: every method on a compact store
def compact_store_path(n_inputs, n0, n, topk) -> Path:
    return OUT / f"thousand-{n_inputs}-{n0}-{n}-{M}-top{topk}-s0-v1.zarr"


def build_compact_store(n_inputs: int, n0: int, n: int, topk: int, seed: int = 0, chunk: int = 10_000) -> Path:
    """Build (once) the synthetic compact-s0 store of part 3 (see the module docstring for how)."""
    from smoothcert.store import create_store
    from smoothcert.store.float16 import to_float16
    from smoothcert.store.layouts import CompactFullS0
    from smoothcert.store.topk import compact_rows

    path = compact_store_path(n_inputs, n0, n, topk)
    if reusable(path):
        return path
    rng = np.random.default_rng(seed)
    st = create_store(path, n_inputs=n_inputs, n0=n0, n=n, num_classes=M, sigma=SIGMA, dtype="float16",
                      core_predict=True, layout=CompactFullS0(topk),
                      metadata={"source": "bench/thousand.py (synthetic realistic rows)", "seed": seed})
    R = n0 + n
    t = time.time()
    for i in range(n_inputs):
        label = (37 * i) % M
        strength = float(rng.uniform(10.0, 40.0))
        top_p = np.empty((R, topk), np.float16)
        top_c = np.empty((R, topk), np.uint16)
        ent = np.empty(R, np.float64)
        arg = np.empty(R, np.int64)
        rows0 = None
        for s in range(0, R, chunk):
            e = min(s + chunk, R)
            p = realistic_rows(rng, e - s, M, label, strength)
            arg[s:e] = p.argmax(axis=1)
            h = to_float16(p)
            top_p[s:e], top_c[s:e], ent[s:e] = compact_rows(h, topk)
            if s == 0:
                rows0 = h[:n0].copy()          # n0 <= chunk: the selection rows, whole
        core = label if rng.random() < 0.9 else int(rng.integers(0, M))
        st.write_input(i, topk_p=top_p, topk_c=top_c, entropy=ent, rows0=rows0, argmax=arg, label=label, idx=i,
                       core_predict=core)
        if (i + 1) % 25 == 0 or i + 1 == n_inputs:
            el = time.time() - t
            print(f"    built {i + 1}/{n_inputs} inputs ({el:.0f} s, about {el / (i + 1) * (n_inputs - i - 1):.0f} s "
                  f"left)", file=sys.stderr, flush=True)
    st.close()
    return path


PHASE = r"""
import json, math, os, resource, shutil, sys, tempfile, time
phase, path, T, radius = {phase!r}, {path!r}, {thetas!r}, {radius!r}
import dask
import numpy as np
from smoothcert.certifier import CertifyOptions
from smoothcert.certifier.engine import certify_to
from smoothcert.certifier.engine import _block_size, balanced_blocks
from smoothcert.parsing import parse_float_list
from smoothcert.store import open_store
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
res = {{"phase": phase}}
t, c = time.perf_counter(), cpu()
if phase == "read":
    st = open_store(path)
    fields = tuple(st.layout.stored_fields(st.shape))
    bs, N = _block_size(st, fields), st.n_inputs
    st.close()
    def read(a, b):
        with open_store(path) as s2:
            d = s2.read_block(a, b, fields=fields, verify=True)
        return sum(int(v.nbytes) for v in d.values() if hasattr(v, "nbytes"))
    blocks = balanced_blocks(N, bs, dask.config.get("num_workers", None) or 2)
    res["decoded_mb"] = sum(dask.compute(*[dask.delayed(read)(a, b) for a, b in blocks], scheduler="threads")) / 2**20
    res["fields"] = list(fields)
else:
    ln_m = math.log({m})
    method = phase.split("/")[0]
    if method == "uncertainty":
        Tu = 1 if phase == "uncertainty/1-theta" else T   # diagnostics: one theta a function; cc and ncl only
        grids = {{"entropy": parse_float_list(f"0:{{ln_m!r}}:{{Tu}}", "theta"),
                  "confidence": parse_float_list(f"-1:0:{{Tu}}", "theta"),
                  "margin": parse_float_list(f"-1:0:{{Tu}}", "theta")}}
        opts = CertifyOptions(uncertainty=list(grids), theta=[], theta_by_uncertainty=grids)
        if phase == "uncertainty/cc,ncl":
            opts = opts.replace(guarantee=["cc", "ncl"])
    elif phase in ("cdf/dominated", "soft/dominated"):
        opts = CertifyOptions(compact_rule="dominated")
    elif phase == "aces":
        opts = CertifyOptions(theta=parse_float_list(f"0:1:{{T}}", "theta"))
    elif phase == "adaptive":
        opts = CertifyOptions(radius=radius)
    else:
        opts = CertifyOptions()
    stats = {{"rows": 0, "mb": 0.0, "certified": 0, "bounded": [], "out": 0}}
    def take(df):  # what the bench reports of each block's table, which certify_to writes and drops
        stats["rows"] += len(df)
        stats["mb"] += float(df.memory_usage(deep=True).sum()) / 2**20
        stats["certified"] += int((df["radius"] > 0).sum())
        if "rows_bounded" in df.columns:
            stats["bounded"].append(df["rows_bounded"].to_numpy())
    out = os.path.join(tempfile.mkdtemp(prefix="thousand-"), "table.parquet")
    try:
        meta = certify_to(out, path, method, opts, on_part=take, progress=False)
    except ValueError as e:
        if "compact" not in str(e):
            raise
        res["refused"] = str(e)
    else:
        res["rows"] = stats["rows"]
        res["table_mb"] = stats["mb"]
        res["out_mb"] = os.path.getsize(out) / 2**20
        res["compact"] = meta.get("compact", {{}}).get("certificate")
        res["certified"] = stats["certified"]
        if stats["bounded"]:
            rb = np.concatenate(stats["bounded"])
            res["bounded_note"] = (f" ({{int((rb > 0).sum()):,}} of {{len(rb):,}} certificates rest on bounded rows, "
                                   f"{{float(rb.mean()):,.0f}} rows of S on average)")
    finally:
        shutil.rmtree(os.path.dirname(out))
res["seconds"], res["cpu"] = time.perf_counter() - t, cpu() - c
res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:   # this process's own peak: Linux carries the parent's peak into ru_maxrss across fork and exec
    res["peak_mb"] = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
except (OSError, IndexError):
    res["peak_mb"] = res["maxrss_mb"]
print(json.dumps(res))
"""


def run_phase(phase, path, thetas, radius) -> dict:
    code = PHASE.format(phase=phase, path=str(path), thetas=thetas, radius=radius, m=M)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"phase {phase} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def uncertainty_diagnostics(a, path, best) -> None:
    """Why ``uncertainty`` missed a goal: the same run with one theta a function, and without ncl-strict (no goal).

    The method reads each row's entropy and top-2 values once (its bins
    among each function's thresholds), ranks the selection counts per
    setting, and counts on S only the classes those ranks picked and V
    (``uncertainty.ranked_counts_of``): what grows with the thresholds is
    the table (and its bounds), not the counting.
    """
    print(f"    uncertainty diagnostics (no goal; {a.repeat} round(s), best):", flush=True)
    for ph in ("uncertainty/1-theta", "uncertainty/cc,ncl"):
        r = min((run_phase(ph, path, a.thetas, a.radius) for _ in range(a.repeat)), key=lambda r: r["seconds"])
        print(f"      {ph:<22}{r['seconds']:>7.2f} s{r['cpu']:>7.1f} CPU s  peak {r['peak_mb']:>5.0f} MB  "
              f"{r['rows']:>10,} rows ({r['table_mb']:.0f} MB in blocks, {r['out_mb']:.0f} MB written)", flush=True)
        best[ph] = r
    u, one, ccncl, read = best["uncertainty"], best["uncertainty/1-theta"], best["uncertainty/cc,ncl"], best["read"]
    print(f"    reason: reading is {read['cpu']:.1f} CPU s; one theta a function (the same reading and counting, "
          f"{one['rows']:,} rows) {one['cpu']:.1f} CPU s; {a.thetas} thetas without ncl-strict "
          f"{ccncl['cpu']:.1f} CPU s, with it {u['cpu']:.1f} CPU s: the rest is the certificates' bounds and the "
          f"{u['rows']:,}-row table, built and written block by block (peak {u['peak_mb']:.0f} MB)")


def certify_part(a, path) -> dict:
    phases = ("read",) + tuple(a.methods)
    if not a.no_dominated:      # cdf and soft under --compact-rule dominated too, right after the default
        phases = tuple(q for ph in phases for q in ((ph, f"{ph}/dominated") if ph in ("cdf", "soft") else (ph,)))
    with_warmup = not a.no_warmup
    print(f"[3] every method on {path.name} ({a.inputs} inputs x ({a.n0} + {a.n:,}) rows x {M} classes, top-{a.topk} "
          f"+ whole selection rows; synthetic, see the docstring); each phase in a fresh process, best of "
          f"{a.repeat} round(s){' after a warm-up round' if with_warmup else ''}; {os.cpu_count()} CPUs, Dask threads",
          flush=True)
    if with_warmup:
        for ph in phases:
            run_phase(ph, path, a.thetas, a.radius)
    best = {}
    for _ in range(a.repeat):
        for ph in phases:
            r = run_phase(ph, path, a.thetas, a.radius)
            if ph not in best or r["seconds"] < best[ph]["seconds"]:
                best[ph] = r
    read = best["read"]["seconds"]
    what = {"read": f"every stored field ({best['read']['decoded_mb']:,.0f} MB decoded)",
            "cohen": "defaults", "two-step": "defaults",
            "uncertainty": f"3 functions x {a.thetas} thetas x cc, ncl, ncl-strict",
            "cdf": "score, margin x cdf, hoeffding", "soft": "defaults (bernstein)",
            "cdf/dominated": "the same, --compact-rule dominated", "soft/dominated": "the same, --compact-rule dominated",
            "aces": f"{a.thetas} thetas", "adaptive": f"radius {a.radius}, stages 1,000/10,000/125,000"}
    print(f"    {'phase':<16}{'settings':<44}{'seconds':>9}{'x read':>8}{'goal':>6}{'cpu s':>8}{'peak MB':>9}"
          f"{'table rows':>12}  on a compact store")
    misses = []
    for ph in phases:
        r = best[ph]
        if "refused" in r:
            print(f"    {ph:<16}{what.get(ph, ''):<44}  refused (not yet supported): {r['refused'].split(';')[0]}")
            continue
        goal = GOAL_RATIO.get(ph, 2.0) if ph != "read" else None
        ratio = r["seconds"] / read
        goal_s = f"{goal:.0f}x" if goal else ""
        rows_s = f"{r['rows']:,}" if "rows" in r else ""
        print(f"    {ph:<16}{what.get(ph, ''):<44}{r['seconds']:>9.2f}{ratio:>8.2f}{goal_s:>6}{r['cpu']:>8.1f}"
              f"{r['peak_mb']:>9.0f}{rows_s:>12}  {r.get('compact') or ''}{r.get('bounded_note', '')}")
        if goal and ratio > goal:
            misses.append((ph, f"{ratio:.2f}x the read, goal {goal:.0f}x"))
        if r["peak_mb"] >= GOAL_PEAK_MB:
            misses.append((ph, f"peak {r['peak_mb']:.0f} MB, goal < {GOAL_PEAK_MB} MB"))
    timed = [p for p in phases if p != "read" and "refused" not in best[p]]
    peak = max(best[p]["peak_mb"] for p in phases)
    slow = [ph for ph, why in misses if "read" in why]
    met = [ph for ph in timed if ph not in slow]
    refused = [p for p in phases if "refused" in best[p]]
    print(f"    goal each method <= 2x the read (cdf, soft <= 3x): met for {', '.join(met) or 'none'}"
          + (f"; NOT met for {', '.join(slow)}" if slow else "")
          + (f"; refused: {', '.join(refused)}" if refused else "")
          + f". Goal peak < {GOAL_PEAK_MB} MB: {'met' if peak < GOAL_PEAK_MB else 'NOT met'} (largest {peak:.0f} MB)")
    for ph, why in misses:
        r = best[ph]
        print(f"    missed: {ph}: {why}; it writes a {r.get('rows', 0):,}-row table ({r.get('table_mb', 0):.0f} MB "
              f"in blocks), {r['cpu']:.1f} CPU s in {r['seconds']:.1f} s ({r['cpu'] / r['seconds']:.2f} cores busy)")
    if any(ph == "uncertainty" for ph, _ in misses):
        uncertainty_diagnostics(a, path, best)
    if a.inputs != 500 and a.n == FULL_N:
        scale = 500 / a.inputs
        print(f"    extrapolated to 500 inputs (linear in inputs, x{scale:.1f}; ratios to the read unchanged): "
              + ", ".join(f"{p} {best[p]['seconds'] * scale:.0f} s" for p in ("read",) + tuple(timed)))
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topk", type=int, default=5, help="K of the compact stores (default 5)")
    p.add_argument("--n0", type=int, default=100, help="selection rows per input (default 100)")
    p.add_argument("--reps", type=int, default=3, help="sampler repetitions after a warm-up one (default 3)")
    p.add_argument("--sample-inputs", type=int, default=4, help="inputs sampled in part 1 (default 4)")
    p.add_argument("--sample-n", type=int, default=10_000, help="estimation rows per input in part 1 (default 10,000)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--inputs", type=int, default=500, help="inputs of the compact store of part 3 (default 500)")
    p.add_argument("--n", type=int, default=FULL_N, help="estimation rows per input in part 3 (default 100,000)")
    p.add_argument("--thetas", type=int, default=1000, help="thresholds per function (uncertainty) and of aces")
    p.add_argument("--radius", type=float, default=0.25, help="adaptive's target radius (default 0.25)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of methods to time in part 3")
    p.add_argument("--repeat", type=int, default=2, help="rounds of part 3's phases; the best of each is kept")
    p.add_argument("--no-warmup", action="store_true", help="skip part 3's warm-up round (a smoke run)")
    p.add_argument("--no-dominated", action="store_true",
                   help="time cdf and soft under the default --compact-rule only (not dominated too)")
    p.add_argument("--skip-sampler", action="store_true", help="skip parts 1 and 2's sampled stores")
    p.add_argument("--skip-certify", action="store_true", help="skip part 3 (and its store)")
    a = p.parse_args(argv)
    a.methods = [s for s in a.methods.split(",") if s]
    unknown = set(a.methods) - set(METHODS)
    if unknown:
        p.error(f"--methods: unknown {sorted(unknown)}; known: {', '.join(METHODS)}")
    t0 = time.time()
    print(f"bench/thousand.py: 1,000 classes, top-{a.topk}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    sampled = None if a.skip_sampler else sampler_part(a)
    synth = None
    if not a.skip_certify:
        tb = time.time()
        synth = build_compact_store(a.inputs, a.n0, a.n, a.topk)
        print(f"    (compact store for part 3 ready in {time.time() - tb:.0f} s: {synth.relative_to(ROOT)})", flush=True)
    bytes_part(a, sampled, synth)
    if synth is not None:
        certify_part(a, synth)
    if sampled is not None:
        compare_part(a, sampled)
    print(f"total {time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    os._exit(0)
