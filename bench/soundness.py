"""Soundness by simulation, at scale: the violation rate of every certificate at alpha = 0.01.

Inputs are drawn from template mixtures whose true class probabilities,
uncertainty-equipped probabilities, selection probabilities, mean rows and
score distributions are known exactly (``tests/soundness/sim.py``); each input
is one independent trial. A certificate violates when it claims more than the
truth allows (a wrong class, or a radius above the true one for its claim).
Each method runs at its overall confidence 1 - alpha (``--joint-alpha`` for
two-step and uncertainty), on every scenario, and for ensembles on four
member/consensus settings. The rows go straight to each registered method's
compute function (the engine's per-block code path without the store: the
tests in tests/soundness/ cover the store path).

Two negative controls show that the harness catches unsound certificates:
Cohen's radius from the point estimate, and Däubener et al.'s R_NCL judged as a
guarantee that the prediction stays in {cA, V} (which docs/methods.md
section 3 says it is not).

    python bench/soundness.py [--alpha 0.01] [--trials 20000] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_sim():
    """tests/soundness/sim.py by path (this file is itself named soundness)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("soundness_sim", ROOT / "tests" / "soundness" / "sim.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


sim = _load_sim()

CHUNK = 2500


def run_method(sc, data, method, kw, ens):
    """Certify every input of ``data`` in chunks; returns the certificate table."""
    import pandas as pd

    opts = sim.options(kw, ens)
    N = len(data["labels"])
    parts = [sim.certify_arrays(sc, data, method, opts, s, min(s + CHUNK, N)) for s in range(0, N, CHUNK)]
    return pd.concat(parts, ignore_index=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--trials", type=int, default=20000, help="inputs per scenario (ensemble settings: half)")
    ap.add_argument("--quick", action="store_true", help="2,000 trials per scenario (a smoke run)")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args(argv)
    alpha = args.alpha
    N = 2000 if args.quick else args.trials
    t_start = time.time()
    scenarios = [("hard", sim.hard_scenario(), N, [None]),
                 ("10-class", sim.many_class_scenario(), N // 2, [None]),
                 ("ensemble", sim.ensemble_scenario(), N // 2, sim.ENSEMBLES)]
    rows = []
    per_method = defaultdict(lambda: [0, 0, 0, 0.0])  # violations, trials, certified, worst rate
    print(f"soundness at alpha = {alpha} (each method at overall confidence 1 - alpha); "
          f"a check fails when violations exceed the 1 - 1e-6 quantile of Binomial(trials, alpha)")
    print(f"{'method':13s} {'scenario':9s} {'ensemble':13s} {'setting':26s} {'trials':>7s} {'certified':>9s} "
          f"{'violations':>10s} {'rate':>8s}  check")
    failed = []
    for sc_name, sc, n_inputs, ensembles in scenarios:
        sim.check_thresholds_clear(sc)
        data = sc.sample(n_inputs, seed=args.seed + len(rows))
        for ens in ensembles:
            ens_txt = "-" if ens is None else "+".join(map(str, ens[0])) + (f" K={ens[1]}" if ens[1] else "")
            for method, kw in sim.method_runs(alpha):
                t0 = time.time()
                table = run_method(sc, data, method, kw, ens)
                res = sim.evaluate(table, sc, data["dist"], data["core_predict"], method, ens)
                for setting, (v, tr, cert) in res.items():
                    rate = v / tr
                    lim = sim.slack_limit(tr, alpha)
                    ok = v <= lim
                    if not ok:
                        failed.append((method, sc_name, ens_txt, setting))
                    pm = per_method[method]
                    pm[0] += v
                    pm[1] += tr
                    pm[2] += cert
                    pm[3] = max(pm[3], rate)
                    rows.append((method, sc_name, ens_txt, setting, tr, cert, v, rate))
                    print(f"{method:13s} {sc_name:9s} {ens_txt:13s} {setting or '-':26s} {tr:7d} {cert:9d} {v:10d} "
                          f"{rate:8.4f}  {'ok' if ok else 'FAIL'} ({time.time() - t0:.1f}s)", flush=True)
    print()
    print("per method (all scenarios and settings pooled; worst = the highest rate of one setting):")
    print(f"{'method':13s} {'trials':>8s} {'certified':>9s} {'violations':>10s} {'rate':>8s} {'worst':>8s}  <= alpha")
    for method, (v, tr, cert, worst) in per_method.items():
        print(f"{method:13s} {tr:8d} {cert:9d} {v:10d} {v / tr:8.4f} {worst:8.4f}  {'yes' if worst <= alpha else 'NO'}")

    print()
    print("negative controls (must be caught: rates far above alpha):")
    sc = sim.hard_scenario()
    data = sc.sample(N // 4, seed=args.seed + 99)
    res = sim.evaluate(sim.control_point_estimate(sc, data), sc, data["dist"], data["core_predict"], "cohen")
    v, tr, cert = res[""]
    print(f"  cohen with the point estimate k/n instead of CP_lower:        {v}/{tr} violations, rate {v / tr:.3f}")
    sc = sim.ncl_counterexample_scenario()
    data = sc.sample(N // 4, seed=args.seed + 98)
    table = run_method(sc, data, "uncertainty", dict(alpha=alpha, joint_alpha=True, uncertainty=["entropy"],
                                                     theta=[0.8]), None)
    res = sim.evaluate(sim.ncl_as_strict(table), sc, data["dist"], data["core_predict"], "uncertainty")
    (v, tr, cert), = res.values()
    print(f"  ncl (R_NCL) judged as 'prediction stays in {{cA, V}}' (spec 3): {v}/{tr} violations, rate {v / tr:.3f}"
          f" ({cert} certified)")
    print(f"\ntotal {time.time() - t_start:.0f} s; {'all checks passed' if not failed else 'FAILED: ' + str(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
