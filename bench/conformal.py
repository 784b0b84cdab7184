"""Benchmark: robust conformal prediction sets (``--method conformal``, docs/conformal.md).

Prints, in one run:

1. **Cost at ImageNet size**: on the synthetic compact-s0 store of
   ``bench/thousand.py`` part 3 (``--inputs`` x (100 + ``--n``) rows x 1,000
   classes, top 5; built by that script's own builder when missing), one
   ``certify --method conformal`` with both variants (rscp+, cas) x 3
   miscoverage levels (0.05, 0.1, 0.2) x 4 epsilons (0, 0.125, 0.25, 0.5),
   calibration split 0.5, against one plain read of the store (thousand.py's
   ``read`` phase: every stored field, checksums verified, Dask threads, the
   engine's block size). Each phase in a fresh process, best of
   ``--repeat`` rounds after a warm-up round; peak memory is the phase
   process's own high-water mark. Goals: <= 2x the read, peak < 1 GB.

2. **What a robust set costs**: on two sampled stores, built once under
   ``bench-out/conformal/`` (``smoothcert sample`` on CPU, sigma 0.25, n0
   100, n = 100,000, seed 0):
   * ``digits``: the demo CNN (shipped checkpoint) on the first
     ``--digits-inputs`` digits of the test split (full float16 rows); the
     base store of ``bench/incremental.py`` is the same store and is reused
     when it is complete;
   * ``thousand``: the project's 1,000-class model
     (``smoothcert.sampler.testing:thousand``) on its first
     ``--thousand-inputs`` inputs, ``--topk 5`` (compact-s0).
   Per store and mean bound (bernstein, hoeffding), one run with
   ``--calibration-split 0.5 --miscoverage 0.1 --epsilon 0,0.125,0.25
   --robust rscp+,cas --n-use 100,1000,10000,100000``: the mean set size and the
   empirical coverage of the test half, per variant, epsilon and n_use.

    python bench/conformal.py [--inputs 500] [--n 100000] [--repeat 2] [--digits-inputs 100] [--thousand-inputs 40]
    python bench/conformal.py --inputs 4 --n 2000 --repeat 1 --no-warmup --digits-inputs 20 \\
        --thousand-inputs 8 --sample-n 2000      # a smoke run (a few minutes, its own small stores)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import OUT, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import thousand  # noqa: E402  (its compact store and its read phase are this benchmark's baseline)

GOAL_RATIO, GOAL_PEAK_MB = 2.0, 1024
COST = {"calibration_split": 0.5, "robust": ["rscp+", "cas"], "miscoverage": [0.05, 0.1, 0.2],
        "epsilon": [0.0, 0.125, 0.25, 0.5]}
SIGMA, N0, SEED = 0.25, 100, 0
PREFIXES = (100, 1_000, 10_000, 100_000)
EPSILONS = (0.0, 0.125, 0.25)

PHASE = r"""
import json, resource, time
from smoothcert.certifier import CertifyOptions, certify
opts = CertifyOptions(**json.loads({options!r}))
t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
table, meta = certify({path!r}, "conformal", opts, progress=False)
r1 = resource.getrusage(resource.RUSAGE_SELF)
res = {{"seconds": time.perf_counter() - t0, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
        "rows": len(table), "table_mb": float(table.memory_usage(deep=True).sum()) / 2**20,
        "mean_size": float(table["set_size"].mean()), "coverage": float(table["correct"].mean())}}
try:
    res["peak_mb"] = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
except (OSError, IndexError):
    res["peak_mb"] = r1.ru_maxrss / 1024
print(json.dumps(res))
"""


def conformal_phase(path, options: dict) -> dict:
    """``certify --method conformal`` with ``options`` in a fresh process: seconds, CPU seconds, peak MB, table size."""
    code = PHASE.format(options=json.dumps(options), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"conformal phase failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cost_store(a):
    """The synthetic compact store of thousand.py part 3: reused when complete, built when missing; another
    process's build in progress (an incomplete store) is left alone."""
    from smoothcert.store import open_store

    path = thousand.compact_store_path(a.inputs, N0, a.n, 5)
    if path.exists():
        with open_store(path) as st:
            done = int(st.complete_mask().sum())
        if done < a.inputs:
            sys.exit(f"{path}: {done} of {a.inputs} inputs complete (being built by another run?); rerun when it is "
                     f"complete, or remove it to rebuild")
        return path
    print(f"    building {path.name} (thousand.py's builder; about 20 minutes at full size)", flush=True)
    return thousand.build_compact_store(a.inputs, N0, a.n, 5)


def cost_part(a) -> dict:
    path = cost_store(a)
    print(f"[1] cost at ImageNet size: {path.name} ({a.inputs} inputs x ({N0} + {a.n:,}) rows x 1,000 classes, "
          f"top 5); conformal: calibration split 0.5, {len(COST['robust'])} variants x {len(COST['miscoverage'])} "
          f"miscoverage levels x {len(COST['epsilon'])} epsilons in one run; each phase in a fresh process, best of "
          f"{a.repeat} round(s){'' if a.no_warmup else ' after a warm-up round'}", flush=True)
    phases = {"read": lambda: thousand.run_phase("read", path, 1, 0.25),
              "conformal": lambda: conformal_phase(path, COST)}
    if not a.no_warmup:
        for f in phases.values():
            f()
    best = {}
    for _ in range(a.repeat):
        for name, f in phases.items():
            r = f()
            if name not in best or r["seconds"] < best[name]["seconds"]:
                best[name] = r
    read, conf = best["read"], best["conformal"]
    ratio = conf["seconds"] / read["seconds"]
    print(f"    read       {read['seconds']:7.2f} s  {read['cpu']:6.1f} CPU s  peak {read['peak_mb']:5.0f} MB  "
          f"({read['decoded_mb']:,.0f} MB decoded)")
    print(f"    conformal  {conf['seconds']:7.2f} s  {conf['cpu']:6.1f} CPU s  peak {conf['peak_mb']:5.0f} MB  "
          f"{conf['rows']:,} rows ({conf['table_mb']:.0f} MB); mean set size {conf['mean_size']:.1f}, coverage "
          f"{100 * conf['coverage']:.1f} %")
    print(f"    conformal / read = {ratio:.2f} (goal <= {GOAL_RATIO:g}) {'OK' if ratio <= GOAL_RATIO else 'MISSED'}; "
          f"peak {conf['peak_mb']:.0f} MB (goal < {GOAL_PEAK_MB}) {'OK' if conf['peak_mb'] < GOAL_PEAK_MB else 'MISSED'}")
    return {"read": read, "conformal": conf, "ratio": ratio}


# ------------------------------------------------------------------ part 2: what a robust set costs
def sampled(path, **settings):
    """Sample (or resume, or find complete) the store at ``path`` on CPU."""
    from smoothcert.sampler.run import sample

    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    sample(str(path), sigma=SIGMA, n0=N0, seed=SEED, batch_size=1000, device="cpu", progress=False,
           log=lambda s: None, **settings)
    print(f"    {path.relative_to(ROOT)} ready ({time.perf_counter() - t:.0f} s)", flush=True)
    return path


def incremental_base(a):
    """bench/incremental.py's base store (the demo CNN, sigma 0.25, n0 100, seed 0) when it is complete and of this
    size: the same digits store, sampled once for both benchmarks; else None."""
    from smoothcert.store import open_store

    path = OUT / "incremental" / f"sigma{SIGMA:g}-inputs{a.digits_inputs}-n{a.sample_n}" / "base"
    if not path.exists():
        return None
    with open_store(path) as st:
        return path if st.complete_mask().all() and (st.sigma, st.n0, st.n) == (SIGMA, N0, a.sample_n) else None


def set_stores(a) -> dict:
    from smoothcert.demo import write_test_split
    from smoothcert.sampler import train

    root = OUT / "conformal"
    data = root / "digits_test.npz"
    if not data.is_file():
        write_test_split(data)
    digits = incremental_base(a)
    if digits is not None:
        print(f"    {digits.relative_to(ROOT)}: bench/incremental.py's base store, reused", flush=True)
    else:
        digits = sampled(root / f"digits-{a.digits_inputs}-n{a.sample_n}",
                         models=["smoothcert.sampler.train:digits_cnn"], weights=[str(train.CHECKPOINT)],
                         data=str(data), n=a.sample_n, indices=f"0:{a.digits_inputs}:1")
    big = sampled(root / f"thousand-{a.thousand_inputs}-n{a.sample_n}-top5", models=[thousand.MODEL],
                  data=thousand.DATA, n=a.sample_n, indices=f"0:{a.thousand_inputs}:1", topk=5)
    return {"digits": digits, "thousand": big}


def sets_part(a) -> list[dict]:
    from smoothcert.certifier import CertifyOptions, certify

    prefixes = [p for p in PREFIXES if p <= a.sample_n] or [a.sample_n]
    print(f"[2] what a robust set costs: miscoverage 0.1, calibration split 0.5 (seed 0), epsilon "
          f"{', '.join(f'{e:g}' for e in EPSILONS)}, --n-use {','.join(map(str, prefixes))}, alpha 0.001",
          flush=True)
    stores = set_stores(a)
    lines = []
    for name, path in stores.items():
        for bound in ("bernstein", "hoeffding"):
            opts = CertifyOptions(calibration_split=0.5, miscoverage=[0.1], epsilon=list(EPSILONS),
                                  robust=["rscp+", "cas"], n_use=list(prefixes), mean_bound=bound)
            t = time.perf_counter()
            table, meta = certify(str(path), "conformal", opts, progress=False)
            sec = time.perf_counter() - t
            split = meta["conformal"]["split"]
            for (v, eps), g in table.groupby(["robust", "epsilon"], sort=False):
                cells = {int(t): (float(h["set_size"].mean()), float(h["correct"].mean()))
                         for t, h in g.groupby("n_use")}
                lines.append(dict(store=name, classes=meta["num_classes"], bound=bound, robust=v, eps=float(eps),
                                  cells=cells, n_cal=split["n_cal"], n_test=split["n_test"], seconds=sec))
    print(f"    mean set size (coverage %) of the test inputs, per n_use; {lines[0]['n_test']} digits and "
          f"{lines[-1]['n_test']} thousand-model inputs tested, {lines[0]['n_cal']} and {lines[-1]['n_cal']} calibrate")
    def cell(size, cov):
        return f"{size:.2f} ({100 * cov:.0f})"

    head = f"    {'store':<10}{'bound':<11}{'robust':<7}{'eps':>6}" + "".join(f"{f'n_use={p:,}':>20}" for p in prefixes)
    print(head)
    for ln in lines:
        cells = "".join(f"{cell(*ln['cells'][p]):>20}" for p in prefixes)
        print(f"    {ln['store']:<10}{ln['bound']:<11}{ln['robust']:<7}{ln['eps']:>6g}{cells}")
    for name in stores:
        sec = [ln["seconds"] for ln in lines if ln["store"] == name]
        print(f"    {name}: {len(sec) // (2 * len(EPSILONS))} certify runs, {min(sec):.1f}-{max(sec):.1f} s each")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=500, help="inputs of part 1's compact store (default 500)")
    p.add_argument("--n", type=int, default=100_000, help="estimation rows per input in part 1 (default 100,000)")
    p.add_argument("--repeat", type=int, default=2, help="rounds of part 1's phases; the best is kept")
    p.add_argument("--no-warmup", action="store_true", help="skip part 1's warm-up round")
    p.add_argument("--digits-inputs", type=int, default=100, help="digits sampled in part 2 (default 100)")
    p.add_argument("--thousand-inputs", type=int, default=40, help="1,000-class inputs sampled in part 2 (default 40)")
    p.add_argument("--sample-n", type=int, default=100_000, help="estimation rows per input in part 2")
    p.add_argument("--skip-cost", action="store_true", help="skip part 1")
    p.add_argument("--skip-sets", action="store_true", help="skip part 2")
    a = p.parse_args(argv)
    t0 = time.time()
    print(f"bench/conformal.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    if not a.skip_cost:
        cost_part(a)
    if not a.skip_sets:
        sets_part(a)
    print(f"total {time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
    os._exit(0)
