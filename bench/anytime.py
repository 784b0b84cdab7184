"""Benchmark: the price and the payoff of anytime-valid certificates (docs/anytime.md).

Two stores, each built once under bench-out/:
  digits - the demo network (the shipped checkpoint of sampler/train.py) on the
           first --digits test digits, sigma 0.25, n0 100, n 100,000
  bench  - the 500-input x (100 + 100,000) x 10-class synthetic store of bench/common.py
For each store, methods cohen and two-step, alpha 0.001:
  price   - certified accuracy and ACR at n = 100,000 with --interval cp and with
            --interval cs (goal: cs ACR within 3 % of cp's)
  payoff  - mean samples needed per input for radius 0.25 and 0.5 from a 20-prefix
            table (100 ... 100,000, geometric): cs, and cp at alpha/20 for comparison
  cost    - time of the 20-prefix cs table against one cp table at n = 100,000
            (goal <= 2x); warm (Numba caches, page cache), best of --repeat

    python bench/anytime.py [--inputs 500] [--digits 100] [--repeat 2] [--build-only]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from common import OUT, bench_store, reusable

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
NEEDED = (0.25, 0.5)
PREFIXES = [int(v) for v in np.unique(np.round(np.geomspace(100, 100_000, 20)))]


def digits_store(n_inputs: int = 100, n: int = 100_000):
    """The demo's model and data at n = 100,000 (the quick demo stops at 2,000): built once, reused."""
    from smoothcert.sampler import train
    from smoothcert.demo import SIGMA, write_test_split
    from smoothcert.sampler.run import sample

    path = OUT / f"digits{n_inputs}-100-{n}.zarr"
    if reusable(path):
        return path
    data = OUT / "digits_test.npz"
    write_test_split(data)
    t = time.time()
    sample(str(path), models=["smoothcert.sampler.train:digits_cnn"], weights=[str(train.CHECKPOINT)], data=str(data),
           sigma=SIGMA, n0=100, n=n, batch_size=10_000, seed=0, device="cpu", indices=f"0:{n_inputs}:1",
           progress=False, log=lambda s: print(s, file=sys.stderr))
    print(f"  sampled {path.name} in {time.time() - t:.0f} s", file=sys.stderr)
    return path


def run(path, method, **kw):
    from smoothcert.certifier import CertifyOptions, certify

    t = time.perf_counter()
    table, meta = certify(path, method, CertifyOptions(**kw), progress=False)
    return table, meta, time.perf_counter() - t


def price(path, method):
    from smoothcert.certifier.report import summarize

    rows = {}
    for interval in ("cp", "cs"):
        table, _, _ = run(path, method, interval=interval)
        rows[interval] = summarize(table, RADII).iloc[0]
    print(f"  {method}: certified accuracy (%) at n = 100,000, alpha 0.001")
    print(f"    {'interval':<9}" + "".join(f"{'r=' + format(r, 'g'):>9}" for r in RADII) + f"{'ACR':>9}")
    for interval, s in rows.items():
        print(f"    {interval:<9}" + "".join(f"{100 * s[f'acc@{r:g}']:>9.1f}" for r in RADII) + f"{s['ACR']:>9.4f}")
    ratio = rows["cs"]["ACR"] / rows["cp"]["ACR"]
    print(f"    cs ACR / cp ACR = {ratio:.4f} ({100 * (1 - ratio):.2f} % lower; goal within 3 %: "
          f"{'met' if ratio >= 0.97 else 'NOT met'})")
    return ratio


def payoff(path, method):
    from smoothcert.certifier.report_prefixes import samples_needed, summarize_samples

    print(f"  {method}: samples needed per input ({len(PREFIXES)} prefixes {PREFIXES[0]}..{PREFIXES[-1]}, geometric)")
    print(f"    {'table':<16}{'radius':>7}{'certified %':>13}{'mean n':>10}{'median n':>10}{'never %':>9}")
    out = {}
    for interval in ("cs", "cp"):
        table, _, _ = run(path, method, interval=interval, n_use=PREFIXES)
        s = summarize_samples(samples_needed(table, NEEDED))
        label = "cs" if interval == "cs" else f"cp alpha/{len(PREFIXES)}"
        for _, r in s.iterrows():
            print(f"    {label:<16}{r['target_radius']:>7g}{100 * r['certified']:>13.1f}{r['mean_n']:>10.0f}"
                  f"{r['median_n']:>10.0f}{100 * r['never']:>9.1f}")
            out[(interval, r["target_radius"])] = r["mean_n"]
    return out


def cost(path, method, repeat):
    best = {"cp": np.inf, "cs20": np.inf}
    for _ in range(repeat):
        best["cp"] = min(best["cp"], run(path, method)[2])
        best["cs20"] = min(best["cs20"], run(path, method, interval="cs", n_use=PREFIXES)[2])
    ratio = best["cs20"] / best["cp"]
    print(f"  {method}: one cp table {best['cp']:.2f} s, 20-prefix cs table {best['cs20']:.2f} s: "
          f"ratio {ratio:.2f} (goal <= 2: {'met' if ratio <= 2 else 'NOT met'})")
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=500, help="inputs of the synthetic store")
    ap.add_argument("--digits", type=int, default=100, help="inputs of the digits store")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    t = time.time()
    stores = {"digits": digits_store(args.digits), "bench": bench_store(n_inputs=args.inputs)}
    print(f"stores ready in {time.time() - t:.0f} s: " + ", ".join(f"{k} = {v.name}" for k, v in stores.items()))
    if args.build_only:
        return
    for name, path in stores.items():
        from smoothcert.store import open_store

        with open_store(path) as st:
            print(f"\n== {name}: {st.n_inputs} inputs x ({st.n0} + {st.n:,}) rows x {st.num_classes} classes, "
                  f"sigma {st.sigma}")
        run(path, "cohen", interval="cs", n_use=PREFIXES)  # warm Numba and the page cache
        for method in ("cohen", "two-step"):
            price(path, method)
            payoff(path, method)
            cost(path, method, args.repeat)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
