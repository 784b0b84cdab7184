"""Benchmark of online adaptive sampling (``smoothcert sample --adaptive-radius``) on the demo model.

The demo CNN (``sampler.train:digits_cnn``, shipped checkpoint, sigma 0.25) on
the first ``--inputs`` digits of the demo test split, n0 = 100, n = ``--n``:

1. a full sampling run (every input gets n0 + n rows);
2. an online adaptive run at a small target radius (default 0.25), stages
   1,000, 10,000, 125,000 clipped to n, alpha 0.001, beta 0.0001: an input stops
   as soon as CERTIFYADP decides and only the rows drawn are stored;
3. ``certify --method adaptive`` on both stores (the same rule): the decisions
   must agree, input by input.

Prints the rows of S drawn against the full n (SampleRF = full / drawn), the
wall-time ratio of the two sampling runs, and the certified accuracy of both.
Runs alternate (full, adaptive, full, adaptive, ...) for ``--repeat`` rounds
and the best time of each is reported.

Usage: python bench/adaptive.py [--inputs 100] [--n 100000] [--radius 0.25] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common import OUT, Timer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--radius", type=float, default=0.25)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()

    import torch

    from smoothcert.certifier import CertifyOptions, certify
    from smoothcert.sampler import train as T
    from smoothcert.demo import MODEL_FACTORY, SIGMA, write_test_split
    from smoothcert.sampler.run import sample
    from smoothcert.store import open_store

    work = Path(tempfile.mkdtemp(prefix="bench-adaptive-", dir=OUT))
    data = work / "digits_test.npz"
    write_test_split(data)
    common = dict(models=[MODEL_FACTORY], weights=[str(T.CHECKPOINT)], data=str(data), sigma=SIGMA, n0=100, n=args.n,
                  batch_size=args.batch_size, device="cpu", indices=f"0:{args.inputs}:1", progress=False,
                  log=lambda s: None)
    stages = (1_000, 10_000, 125_000)
    rule = dict(adaptive_radius=args.radius, adaptive_stages=stages, adaptive_alpha=0.001, adaptive_beta=0.0001)
    print(f"demo model {MODEL_FACTORY} (shipped checkpoint), sigma {SIGMA}, {args.inputs} digits, n0 = 100, "
          f"n = {args.n:,}, batch {args.batch_size}, cpu ({torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores)")
    print(f"adaptive rule: radius {args.radius}, stages {','.join(map(str, stages))} (clipped to n), "
          f"alpha 0.001, beta 0.0001")
    times = {"full": [], "adaptive": []}
    res = {}
    try:
        for rep in range(args.repeat):
            for name in ("full", "adaptive"):
                path = work / f"{name}-{rep}"
                with Timer() as t:
                    res[name] = sample(str(path), **common, **(rule if name == "adaptive" else {}))
                times[name].append(t.s)
        full_path, adp_path = work / f"full-{args.repeat - 1}", work / f"adaptive-{args.repeat - 1}"
        opts = CertifyOptions(radius=args.radius, stages=list(stages), alpha=0.001, beta=0.0001)
        tf, mf = certify(full_path, "adaptive", opts, progress=False)
        ta, ma = certify(adp_path, "adaptive", opts, progress=False)
        same = tf[["idx", "predict", "radius", "rows_used", "outcome"]].equals(ta[["idx", "predict", "radius", "rows_used", "outcome"]])
        with open_store(adp_path) as st:
            n_rows = st.read_records()["n_rows"]
        drawn_s = int((n_rows - 100).sum())
        full_s = args.inputs * args.n
        print()
        print(f"rows of S drawn: adaptive {drawn_s:,} vs full {full_s:,} -> SampleRF {full_s / drawn_s:.2f} "
              f"(certify's replay on the full store: SampleRF {mf['adaptive']['SampleRF']:.2f})")
        print(f"all rows drawn (with n0): adaptive {int(n_rows.sum()):,} vs full {args.inputs * (100 + args.n):,}")
        bf, ba = min(times["full"]), min(times["adaptive"])
        print(f"sampling wall time: full {bf:.1f} s, adaptive {ba:.1f} s -> ratio {bf / ba:.2f}x "
              f"(runs: full {', '.join(f'{v:.1f}' for v in times['full'])}; "
              f"adaptive {', '.join(f'{v:.1f}' for v in times['adaptive'])})")
        a = ma["adaptive"]
        print("decisions per stage (certified/aborted): " + ", ".join(
            f"stage {j}: {100 * a[f'certified_stage{j}']:.0f}%/{100 * a[f'aborted_stage{j}']:.0f}%" for j in range(1, a["s"] + 1)))
        acc = float(np.mean((ta["correct"] == 1) & (ta["predict"] >= 0)))
        print(f"certified accuracy at r = {args.radius}: {100 * acc:.1f}% (adaptive store) ; offline replay on the "
              f"full store gives the same decisions for every input: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
    os._exit(0)
