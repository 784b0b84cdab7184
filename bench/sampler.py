"""Sampler throughput against two baselines, measured side by side in one run.

For the demo CNN (digits, 1 x 8 x 8), a CIFAR-sized residual network
(3 x 32 x 32, ``sampler.testing:cifar_resnet``) and the CIFAR ResNet-110 of
Cohen et al.'s code as its published checkpoints hold it (a checkpoint of
the locuslab/smoothing format with random weights, written the way that
code's ``train.py`` saves one and given to the sampler as ``--model
checkpoint.pth.tar``), noisy samples per second of

* ``full``: ``sampler.run.sample`` writing everything to a fresh store (rows,
  hard labels, checksums; the throughput the sampler itself records: its
  loop from the first batch to the last write, model loading excluded);
* ``bare``: only the forward passes of the sampler's model (in the memory
  format the sampler runs it in: channels-last for images), on the same
  batches (same sizes, one pre-made noisy batch reused), nothing else;
* ``cohen``: a re-implementation of Cohen et al.'s reference ``_sample_noise``
  (for n0 then n: ``x.repeat``, ``randn_like * sigma``, forward, argmax,
  ``.cpu().numpy()``, count), which stores nothing, on the model as the user
  gives it (as the reference code runs it; for the checkpoint, the model
  that code's ``certify.py`` builds: ``Sequential(NormalizeLayer, net)``
  with the checkpoint's state_dict loaded, its normalisation as that code
  computes it, with ``repeat`` and ``permute``). Counting uses
  ``np.bincount``, faster than that code's Python loop over the
  predictions, so the baseline is, if anything, flattered;
* ``cohen-cl``: the same loop given the sampler's channels-last model (not a
  goal; it shows how much of full/cohen the memory format accounts for).

The digits inputs have the sampler's default n0 + n = 100 + 100,000 rows, so
that the per-input costs (one store write per 100 batches) weigh as in a real
run; the CIFAR input has 2,000 rows (its forward passes dominate whatever the
number); the ResNet-110 input has 100 + 1,900 rows (``--quick``: 100 +
300) in batches of 400, the batch size of that code's published commands.
Repetitions (1-4 s per variant, ResNet-110 longer) are interleaved: each runs
``bare``, ``full``, ``bare`` again, then ``cohen`` and ``cohen-cl`` in
alternating order; full/bare compares ``full`` with the mean of the two
``bare`` runs around it (a machine whose speed drifts over seconds, as
shared ones do, shifts both sides alike). The samples/s are medians over
``--reps`` repetitions and the ratios are medians of the ratios within each
repetition. Goals: full/bare >= 0.9, full/cohen >= 1.0.

    python bench/sampler.py [--reps 3] [--device cpu] [--quick] [--cases resnet110-ckpt,...] [--json FILE]

On a GPU machine (what the README's row asks for): ``python bench/sampler.py
--device cuda --cases resnet110-ckpt`` (the same loops, noise by torch on
the device).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from math import ceil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
import torch  # noqa: E402


def cases(quick: bool, tmp: Path):
    """(name, model spec, weights, data path, inputs, n0, n, batch size, reference model) of each benchmarked network.

    The reference model is what Cohen et al.'s loop runs (None: the model
    the sampler loads, without its channels-last format).
    """
    from smoothcert import demo
    from smoothcert.sampler import testing, train
    from smoothcert.sampler.testing_checkpoints import locuslab_model, save_checkpoint

    digits = tmp / "digits.npz"
    demo.write_test_split(digits)
    rng = np.random.default_rng(0)
    cifar = tmp / "cifar.npz"
    np.savez(cifar, x=rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8), y=rng.integers(0, 10, 8))
    del testing
    ckpt = tmp / "cifar_resnet110.pth.tar"
    save_checkpoint(locuslab_model("cifar_resnet110", seed=110), "cifar_resnet110", ckpt)
    return [
        ("digits-cnn", "smoothcert.sampler.train:digits_cnn", str(train.CHECKPOINT), str(digits),
         2, 100, 1_900 if quick else 100_000, 1000, None),
        ("cifar-resnet", "smoothcert.sampler.testing:cifar_resnet", None, str(cifar),
         1, 100, 400 if quick else 1_900, 250, None),
        ("resnet110-ckpt", str(ckpt), None, str(cifar), 1, 100, 300 if quick else 1_900, 400,
         lambda: locuslab_as_certify_builds_it(ckpt)),
    ]


def locuslab_as_certify_builds_it(path: Path) -> torch.nn.Module:
    """The model Cohen et al.'s ``certify.py`` runs: its arch's Sequential(NormalizeLayer, net), state_dict loaded, eval."""
    from smoothcert.sampler.testing_checkpoints import locuslab_model

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = locuslab_model(ckpt["arch"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def bare_loop(module, x_shape, inputs, R, bs, device) -> float:
    """Samples/s of forward passes alone on the sampler's batches (one noisy batch reused, in the sampler's format)."""
    from smoothcert.sampler.run import row_batches

    batch = torch.rand((bs,) + tuple(x_shape), device=device)
    if batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    batches = row_batches(R, bs)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(inputs):
            for a, b in batches:
                module(batch[: b - a])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return inputs * R / (time.perf_counter() - t0)


def cohen_loop(module, xs, n0, n, bs, sigma, m, device) -> float:
    """Samples/s of Cohen et al.'s ``_sample_noise`` for n0 then n rows per input (nothing stored)."""
    def _sample_noise(x, num, batch_size):
        with torch.no_grad():
            counts = np.zeros(m, dtype=int)
            for _ in range(ceil(num / batch_size)):
                this_batch_size = min(batch_size, num)
                num -= this_batch_size
                batch = x.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(batch, device=device) * sigma
                predictions = module(batch + noise).argmax(1)
                counts += np.bincount(predictions.cpu().numpy(), minlength=m)
            return counts

    t0 = time.perf_counter()
    for x in xs:
        x = torch.from_numpy(x).to(device)
        _sample_noise(x, n0, bs)
        _sample_noise(x, n, bs)
    return len(xs) * (n0 + n) / (time.perf_counter() - t0)


def full_sampler(spec, weights, data, inputs, n0, n, bs, sigma, device, store) -> tuple[float, float]:
    """(samples/s the sampler records, end-to-end wall seconds of the call) into a fresh store."""
    from smoothcert.sampler.run import sample

    t0 = time.perf_counter()
    res = sample(str(store), models=[spec], weights=[weights] if weights else (), data=data, sigma=sigma,
                 n0=n0, n=n, batch_size=bs, seed=0, device=str(device), indices=f"0:{inputs}",
                 progress=False, log=lambda s: None)
    return res.samples_per_s, time.perf_counter() - t0


def main(argv=None) -> dict:
    """Run the benchmark, print one line per network and return the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--quick", action="store_true", help="fewer inputs and rows (a smoke run)")
    p.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)

    from smoothcert.sampler import noise
    from smoothcert.sampler.data import load_data
    from smoothcert.sampler.models import load_model
    from smoothcert.sampler.run import resolve_device

    device = resolve_device(a.device)
    noise.warm_up()
    out = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "cases": {}}
    print(f"sampler bench on {device} ({torch.get_num_threads()} torch threads), medians of {a.reps} interleaved reps")
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for name, spec, weights, data, inputs, n0, n, bs, reference in cases(a.quick, tmp):
            if a.cases and name not in a.cases.split(","):
                continue
            lm = load_model(spec, weights, device=device)            # as the user gives it (Cohen's loop)
            cohen_model = lm.module if reference is None else reference().to(device)
            ds = load_data(data)
            xs = [ds.get(i)[0] for i in range(inputs)]
            lm_cl = load_model(spec, weights, device=device, channels_last=xs[0].ndim == 3)  # as the sampler runs it
            with torch.inference_mode():
                m = int(lm.module(torch.from_numpy(xs[0])[None].to(device)).shape[1])
            R = n0 + n
            res = {"full": [], "bare": [], "cohen": [], "cohen-cl": [], "full_wall_s": []}
            for rep in range(a.reps + 1):          # rep 0 warms up every path and is discarded
                got, bares = {}, []
                tail = ("cohen", "cohen-cl") if rep % 2 else ("cohen-cl", "cohen")
                for v in ("bare", "full", "bare") + tail:
                    if v == "full":
                        got["full"], got["full_wall_s"] = full_sampler(spec, weights, data, inputs, n0, n, bs, a.sigma,
                                                                       device, tmp / f"{name}-{rep}")
                    elif v == "bare":
                        bares.append(bare_loop(lm_cl.module, xs[0].shape, inputs, R, bs, device))
                        got["bare"] = statistics.mean(bares)
                    elif v == "cohen":
                        got["cohen"] = cohen_loop(cohen_model, xs, n0, n, bs, a.sigma, m, device)
                    else:
                        got["cohen-cl"] = cohen_loop(lm_cl.module, xs, n0, n, bs, a.sigma, m, device)
                if rep:
                    for key, val in got.items():
                        res[key].append(val)
            med = {k: statistics.median(v) for k, v in res.items()}
            # ratios within a rep (measured back to back) are robust to slow drifts of the machine's load
            r_bare = statistics.median(f / b for f, b in zip(res["full"], res["bare"]))
            r_cohen = statistics.median(f / c for f, c in zip(res["full"], res["cohen"]))
            r_cohen_cl = statistics.median(f / c for f, c in zip(res["full"], res["cohen-cl"]))
            rec = {"inputs": inputs, "n0": n0, "n": n, "batch_size": bs, "samples_per_input": R,
                   "full_samples_per_s": med["full"], "bare_samples_per_s": med["bare"],
                   "cohen_samples_per_s": med["cohen"], "full_over_bare": r_bare,
                   "full_over_cohen": r_cohen, "cohen_cl_samples_per_s": med["cohen-cl"],
                   "full_over_cohen_cl": r_cohen_cl, "full_end_to_end_s": med["full_wall_s"],
                   "reps": {k: v for k, v in res.items()}}
            out["cases"][name] = rec
            print(f"{name:<14} {inputs} inputs x {R:,} rows, batch {bs}: full {med['full']:>9,.0f}/s  "
                  f"bare {med['bare']:>9,.0f}/s  cohen {med['cohen']:>9,.0f}/s  "
                  f"full/bare {rec['full_over_bare']:.3f} (goal >= 0.9)  full/cohen {rec['full_over_cohen']:.3f} (goal >= 1.0)  "
                  f"[cohen on the channels-last model {med['cohen-cl']:,.0f}/s: full/cohen-cl {r_cohen_cl:.3f}]")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
