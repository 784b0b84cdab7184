"""Benchmark: incremental certification of a changed model against full recertification (docs/incremental.md).

The demo CNN (``smoothcert.sampler.train:digits_cnn``; at sigma 0.25 the
shipped checkpoint ``sampler/assets/digits_cnn_sigma0.25.pt``, at any other
sigma a checkpoint trained once by ``sampler/train.py`` into bench-out/) and
three changes a user makes to it (``sampler/variants.py``): int8 dynamic
quantization, 30 % global magnitude pruning, a short fine-tune (30 Adam steps
under noise of the same sigma). Per sigma, on the first --inputs digits of
the test split, alpha 0.001 for every certificate:

  base       the original model, n0 100 + n 100,000 (cohen: what was certified before the change)
  full       each changed model sampled again at n0 100 + n 100,000, certified with cohen
  incremental  each changed model on BASE's own noisy copies (sample --replay-of BASE --n P, P in --P),
             certified with --method incremental --base BASE
  on OUT     the same replay store certified directly with cohen (n = P; the same forward passes)

For each: forward passes of the changed model per input, wall time (sampling,
read from the stores' run records, plus certification), certified accuracy at
radii 0, 0.25, 0.5, 0.75 and ACR. Goal for int8 and pruning: with P = n/10
(>= 9.9x fewer forward passes than full, counting the replayed selection
rows), certified accuracy within 1 point of full at r = 0, 0.25 and 0.5.
Stores are built once under bench-out/incremental/ and reused.

A second table says where the incremental certificate loses accuracy, from
the same stores' hard labels: with zeta replaced by the observed rate lost/P
(not a certificate: what is left is lost to the lost cA votes themselves),
with the bound of Ugare et al. on every disagreement, zeta = CP_upper(d, P)
(what ``--method incremental`` computed before section 10 was amended), and
with a bound on the net change that also credits the cA votes the change
gains, pA - CP_upper(lost, P, a/2) + CP_lower(gained, P, a/2) (sound by the
same union bound; not what section 10 computes). A third lists, per input of a goal case whose radius falls below a
goal radius that full recertification reaches, where its radius goes: the
base's pA, the lost and gained cA votes on the P paired rows, zeta, and the
radius at each step.

    python bench/incremental.py [--inputs 100] [--sigmas 0.25,0.5] [--P 1000,10000] [--n 100000]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings

import numpy as np

from common import OUT

RADII = (0.0, 0.25, 0.5, 0.75)
GOAL_RADII = (0.0, 0.25, 0.5)
GOAL_CHANGES = ("int8", "pruned")
FACTORY = "smoothcert.sampler.train:digits_cnn"
N0, SEED, ALPHA = 100, 0, 0.001


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def checkpoint(sigma: float, root):
    """The demo CNN's checkpoint for ``sigma``: the shipped one at 0.25, else trained once into ``root``."""
    from smoothcert.sampler import train

    if sigma == train.TRAIN_SIGMA:
        return train.CHECKPOINT
    path = root / f"digits_cnn_sigma{sigma:g}.pt"
    if not path.is_file():
        t = time.perf_counter()
        digest = train.save_state_dict(train.train(sigma, log=log), path)
        log(f"  trained the demo CNN at sigma {sigma:g} in {time.perf_counter() - t:.0f} s -> {path} "
            f"(sha256 {digest[:12]})")
    return path


def model_files(sigma: float, root, changes) -> dict:
    """{"base": spec, change: spec}: TorchScript files of the base network and of each change, written once.

    Files, not factories, so that the networks made from a checkpoint other
    than the shipped one are ``--model`` specs too; a file is never rewritten
    (its sha256 is the stores' model fingerprint).
    """
    import torch

    from smoothcert.sampler import train
    from smoothcert.sampler import variants as V

    ckpt = checkpoint(sigma, root)
    out = {}
    for name in ("base", *changes):
        path = root / "models" / f"{name}.pt"
        if not path.is_file():
            net = train.digits_cnn()
            net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
            net = net.eval() if name == "base" else V.CHANGES[name](net, sigma)
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # torch 2.13 marks torch.jit deprecated; it still works
                torch.jit.save(torch.jit.script(net.eval()), str(path))
        out[name] = str(path)
    return out


def sampled(path, **settings):
    """Sample (or resume, or find complete) the store at ``path``; a replay store of another BASE is rebuilt."""
    from smoothcert.sampler.run import sample
    from smoothcert.store import StoreError

    kw = dict(batch_size=settings.pop("batch_size", 1000), device="cpu", progress=False, log=lambda s: None)
    try:
        sample(str(path), **settings, **kw)
    except StoreError as e:
        if "replay of a base store" not in str(e):
            raise
        log(f"  {path.name}: its BASE changed since it was sampled; sampling it again")
        shutil.rmtree(path)
        sample(str(path), **settings, **kw)
    return path


def sampling_seconds(path) -> float:
    """Seconds the sampler spent on ``path``, summed over its run records (resumed runs included)."""
    from smoothcert.store import open_store

    with open_store(str(path)) as st:
        return float(sum(r.get("seconds", 0.0) for r in st.runs().values()))


def certified(path, method, **options):
    """(summary row, table, seconds) of ``certify(path, method)`` at alpha 0.001."""
    from smoothcert.certifier import CertifyOptions, certify
    from smoothcert.certifier.report import summarize

    t = time.perf_counter()
    table, _ = certify(str(path), method, CertifyOptions(alpha=ALPHA, **options), progress=False)
    return summarize(table, RADII).iloc[0], table, time.perf_counter() - t


def one_sigma(sigma: float, a) -> list[dict]:
    """Build the stores of one sigma and certify them; one dict per table line."""
    from smoothcert.demo import write_test_split

    root = OUT / "incremental" / f"sigma{sigma:g}-inputs{a.inputs}-n{a.n}"
    root.mkdir(parents=True, exist_ok=True)
    data = OUT / "incremental" / "digits_test.npz"
    if not data.is_file():
        write_test_split(data)
    specs = model_files(sigma, OUT / "incremental" / f"sigma{sigma:g}", a.changes)
    t = time.perf_counter()
    base = sampled(root / "base", models=[specs["base"]], data=str(data), sigma=sigma, n0=N0, n=a.n, seed=SEED,
                   indices=f"0:{a.inputs}:1", batch_size=a.batch_size)
    log(f"sigma {sigma:g}: base store ready ({time.perf_counter() - t:.0f} s)")
    lines = []
    s, _, sec = certified(base, "cohen")
    lines.append(dict(change="(none)", cert=f"cohen n={a.n:,} (base)", passes=N0 + a.n, fewer=None,
                      wall=sampling_seconds(base) + sec, s=s))
    for ch in a.changes:
        t = time.perf_counter()
        full = sampled(root / f"full-{ch}", models=[specs[ch]], data=str(data), sigma=sigma, n0=N0, n=a.n, seed=SEED,
                       indices=f"0:{a.inputs}:1", batch_size=a.batch_size)
        s_full, full_table, sec = certified(full, "cohen")
        ref = dict(change=ch, cert=f"full: cohen n={a.n:,}", passes=N0 + a.n, fewer=1.0,
                   wall=sampling_seconds(full) + sec, s=s_full)
        lines.append(ref)
        for P in a.P:
            out = sampled(root / f"replay-{ch}-P{P}", models=[specs[ch]], replay_of=str(base), n=P,
                          batch_size=a.batch_size)
            s_inc, tab, sec = certified(out, "incremental", base=str(base))
            rate = float(np.mean(tab["disagreements"] / tab["rows_used"]))
            lost = float(np.mean(tab["lost"] / tab["rows_used"]))
            lines.append(dict(change=ch, cert=f"incremental P={P:,}", passes=N0 + P, fewer=(N0 + a.n) / (N0 + P),
                              P=P, n=a.n, wall=sampling_seconds(out) + sec, s=s_inc, ref=s_full, rate=rate,
                              lost=lost, zeta=float(tab["zeta"].mean()),
                              diag=diagnose(base, out, P, full_table, tab)))
            s_dir, _, sec = certified(out, "cohen")
            lines.append(dict(change=ch, cert=f"on OUT: cohen n={P:,}", passes=N0 + P, fewer=(N0 + a.n) / (N0 + P),
                              wall=sampling_seconds(out) + sec, s=s_dir, ref=s_full))
        log(f"sigma {sigma:g}: {ch} done ({time.perf_counter() - t:.0f} s)")
    return lines


def hard_labels(path):
    """(argmax (N, rows) int64, labels (N,), n0, n, sigma) of a store, every input verified."""
    from smoothcert.store import open_store

    with open_store(str(path)) as st:
        b = st.read_block(0, st.n_inputs, fields=("argmax",))
        return b["argmax"], b["label"], st.n0, st.n, st.sigma


def diagnose(base, out, P, full_table, inc_table) -> dict:
    """Certified accuracy at RADII of the incremental certificate and of two diagnostic variants (module docstring),
    and per input, the steps from full recertification's radius to the incremental one.

    From the hard labels only, with ``stats.bounds`` and scipy: ``certified``
    (pA - CP_upper(lost, P), checked equal to ``--method incremental``'s
    table), ``rate known`` (pA - lost/P, not a certificate) and ``all
    disagreements`` (pA - CP_upper(d, P), Ugare et al.'s bound).
    """
    from scipy.stats import norm

    from smoothcert.stats.bounds import cp_lower, cp_upper

    bl, y, n0, n, sigma = hard_labels(base)
    ol = hard_labels(out)[0]
    c0 = np.stack([np.bincount(r[:n0], minlength=int(bl.max()) + 1) for r in bl])
    cA = c0.argmax(1)                                       # ties towards the lowest index, as top_k
    pA = cp_lower((bl[:, n0:n0 + n] == cA[:, None]).sum(1), n, ALPHA)
    b, o = bl[:, n0:n0 + P], ol[:, n0:n0 + P]
    d = (b != o).sum(1)
    lost = ((b == cA[:, None]) & (o != cA[:, None])).sum(1)
    gained = ((b != cA[:, None]) & (o == cA[:, None])).sum(1)
    assert (inc_table["lost"].to_numpy() == lost).all() and (inc_table["disagreements"].to_numpy() == d).all()

    def radius(p):
        return np.where(p >= 0.5, sigma * norm.ppf(np.clip(p, 0.5, 1.0)), 0.0)

    out_ = {}
    net = pA - cp_upper(lost, P, ALPHA / 2) + cp_lower(gained, P, ALPHA / 2)
    for name, p in (("certified", pA - cp_upper(lost, P, ALPHA)), ("rate known", pA - lost / P),
                    ("all disagreements", pA - cp_upper(d, P, ALPHA)), ("net change", net)):
        ok = (p >= 0.5) & (cA == y)
        rad = np.where(ok, radius(p), 0.0)
        out_[name] = [float(np.mean(ok & (rad >= r))) for r in RADII]
    def counted(table):
        """(B, radii) bool: the input counts in certified accuracy at each goal radius (correct, radius >= r)."""
        rad, ok = table["radius"].to_numpy(), table["correct"].to_numpy() == 1
        return np.stack([ok & (rad >= r) for r in GOAL_RADII], axis=1), np.where(ok, rad, np.nan)

    full_ok, full_r = counted(full_table)
    inc_ok, inc_r = counted(inc_table)
    steps = []
    for i in np.flatnonzero((full_ok & ~inc_ok).any(axis=1)):
        steps.append(dict(idx=int(i), lost_at=[r for r, k in zip(GOAL_RADII, full_ok[i] & ~inc_ok[i]) if k],
                          full=float(full_r[i]), base=float(radius(pA[i])), pA=float(pA[i]),
                          lost=int(lost[i]), gained=int(gained[i]), d=int(d[i]),
                          known=float(radius(pA[i] - lost[i] / P)), zeta=float(cp_upper(lost[i], P, ALPHA)),
                          inc=float(inc_r[i]), same_class=bool(full_table["predict"].iloc[i] == cA[i])))
    out_["inputs"] = steps
    return out_


def verdict(line) -> str:
    """For an incremental line of int8 or pruning: does it meet the goal, and if not, why."""
    if line["change"] not in GOAL_CHANGES or not line["cert"].startswith("incremental"):
        return ""
    why = []
    if line["P"] > line["n"] / 10:
        why.append(f"P > n/10 ({line['fewer']:.1f}x)")
    worst = max(GOAL_RADII, key=lambda r: line["ref"][f"acc@{r:g}"] - line["s"][f"acc@{r:g}"])
    drop = 100 * (line["ref"][f"acc@{worst:g}"] - line["s"][f"acc@{worst:g}"])
    if drop > 1 + 1e-9:
        why.append(f"acc@{worst:g} {drop:.0f} pts below")
    return "meets" if not why else "misses: " + ", ".join(why)


def print_table(sigma: float, lines, a) -> None:
    head = (f"{'change':<10} {'certificate':<22} {'passes/input':>12} {'fewer':>6} {'wall s':>7}"
            + "".join(f"{'r=' + format(r, 'g'):>7}" for r in RADII) + f"{'ACR':>7} {'d/P':>7} {'lost/P':>7} {'zeta':>7}  goal")
    print(f"\nsigma {sigma:g}, {a.inputs} test digits, n0 {N0}, alpha {ALPHA:g} (cohen: confidence 1 - alpha; "
          f"incremental: 1 - 2 alpha); certified accuracy (%) at radius r")
    print(head)
    print("-" * len(head))
    for ln in lines:
        s = ln["s"]
        print(f"{ln['change']:<10} {ln['cert']:<22} {ln['passes']:>12,} "
              + (f"{ln['fewer']:>5.1f}x" if ln["fewer"] else f"{'':>6}") + f" {ln['wall']:>7.1f}"
              + "".join(f"{100 * s[f'acc@{r:g}']:>7.0f}" for r in RADII) + f"{s['ACR']:>7.3f}"
              + (f" {ln['rate']:>7.4f} {ln['lost']:>7.4f} {ln['zeta']:>7.4f}" if "rate" in ln
               else f" {'':>7} {'':>7} {'':>7}")
              + f"  {verdict(ln)}")


def print_why(sigma: float, lines) -> None:
    """Where the incremental certificate loses: certified accuracy at RADII, full against three incremental variants."""
    acc = "/".join(format(r, "g") for r in RADII)
    print(f"\nsigma {sigma:g}: where incremental loses, certified accuracy (%) at r = {acc}")
    print(f"{'change':<10} {'P':>7}  {'full':<14} {'incremental':<14} {'zeta := lost/P (*)':<19} "
          f"{'zeta from d (**)':<17} {'net change (***)':<16}")
    for ln in lines:
        if "diag" not in ln:
            continue
        g = ln["diag"]
        f = "/".join(f"{100 * ln['ref'][f'acc@{r:g}']:.0f}" for r in RADII)
        cols = ["/".join(f"{100 * v:.0f}" for v in g[k])
                for k in ("certified", "rate known", "all disagreements", "net change")]
        print(f"{ln['change']:<10} {ln['passes'] - N0:>7,}  {f:<14} {cols[0]:<14} {cols[1]:<19} {cols[2]:<17} "
              f"{cols[3]:<16}")


def print_inputs(sigma: float, lines) -> None:
    """Per input of a goal case (int8, pruned at P = n/10) that full recertification counts at a goal radius and
    the incremental certificate does not."""
    rows = [(ln, s) for ln in lines if "diag" in ln and ln["change"] in GOAL_CHANGES and ln["P"] == ln["n"] // 10
            for s in ln["diag"]["inputs"]]
    print(f"\nsigma {sigma:g}, P = n/10: inputs full recertification counts at a goal radius "
          f"({', '.join(format(r, 'g') for r in GOAL_RADII)}) and incremental does not")
    if not rows:
        print("  none")
        return
    print(f"{'change':<8} {'idx':>4} {'lost at r':>9} {'full r':>7} {'base r':>7} {'pA':>8} {'lost':>5} {'gained':>6} "
          f"{'d':>5} {'r(lost/P)':>9} {'zeta':>7} {'incr r':>7}")
    for ln, s in rows:
        at = ",".join(format(r, "g") for r in s["lost_at"])
        inc = "abstain" if np.isnan(s["inc"]) else f"{s['inc']:.3f}"
        full = f"{s['full']:.3f}" + ("" if s["same_class"] else "*")
        print(f"{ln['change']:<8} {s['idx']:>4} {at:>9} {full:>7} {s['base']:>7.3f} {s['pA']:>8.5f} {s['lost']:>5} "
              f"{s['gained']:>6} {s['d']:>5} {s['known']:>9.3f} {s['zeta']:>7.4f} {inc:>7}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=100, help="test digits (the first ones of the split)")
    p.add_argument("--sigmas", default="0.25,0.5", help="noise levels, comma-separated")
    p.add_argument("--P", default="1000,10000", help="replayed estimation rows, comma-separated")
    p.add_argument("--n", type=int, default=100_000, help="estimation rows of the base and of full recertification")
    p.add_argument("--changes", default="int8,pruned,finetuned", help="changes of sampler/variants.py")
    p.add_argument("--batch-size", type=int, default=1000)
    a = p.parse_args(argv)
    a.sigmas = [float(v) for v in a.sigmas.split(",")]
    a.P = [int(v) for v in a.P.split(",")]
    a.changes = [c for c in a.changes.split(",") if c]
    t = time.perf_counter()
    results = [(sigma, one_sigma(sigma, a)) for sigma in a.sigmas]
    for sigma, lines in results:
        print_table(sigma, lines, a)
    print("\nfewer: forward passes of full recertification / of this certificate (the changed model's only; "
          "BASE's were paid before the change). wall s: sampling (from the stores' run records) + certification "
          "on this machine. d/P: mean observed disagreement rate; lost/P: mean rate of lost cA votes, zeta: mean "
          "upper bound on it. Goal (int8, pruned): P = n/10 and certified accuracy within 1 point of full at "
          "r = 0, 0.25, 0.5.")
    for sigma, lines in results:
        print_why(sigma, lines)
    print("(*) not a certificate: the observed rate of lost cA votes in place of its upper bound zeta; what it "
          "loses against full is lost to the lost votes themselves (the bound ignores the votes f' gains).\n"
          "(**) zeta = CP_upper(d, P) over every disagreement, Ugare et al.'s bound (before docs/methods.md "
          "section 10 was amended): sound and never tighter.\n"
          "(***) pA - CP_upper(lost, P, alpha/2) + CP_lower(gained, P, alpha/2): credits the cA votes f' gains; sound "
          "by the same union bound (alpha + alpha/2 + alpha/2), not what --method incremental computes.")
    for sigma, lines in results:
        print_inputs(sigma, lines)
    print("full r: cohen on the changed model at n (* where its class, chosen on f''s selection rows, is not the "
          "base's cA); base r: sigma Phi^-1(pA), the base's own radius; lost/gained: paired rows (of P) where the "
          "change took a cA vote away / added one; r(lost/P): sigma Phi^-1(pA - lost/P), not a certificate; incr r: "
          "sigma Phi^-1(pA - zeta).")
    print(f"(bench ran {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
