"""``smoothcert demo``: the whole pipeline on data and a model that ship with smoothcert.

1. the digits test split (scikit-learn's bundled 8x8 digits, pixels / 16) -> ``DIR/digits_test.npz``;
2. the demo CNN: the shipped checkpoint ``sampler/assets/digits_cnn_sigma0.25.pt``
   (made by ``python -m smoothcert.sampler.train``), or retrained with ``--train``; also
   written as a TorchScript file ``DIR/model.pt`` for sampling it by hand;
3. ``sampler.run.sample`` of a ``SampleConfig`` on a test subset -> ``DIR/store`` (the same network
   also serves as ACES's core model, evaluated on the clean input);
4. a changed model: the demo CNN with 30 % of its weights pruned, sampled on the store's own noisy copies
   (its n0 selection copies and the first n / 10 estimation copies; ``SampleConfig(replay_of=...)``, i.e.
   ``smoothcert sample --replay-of``) -> ``DIR/store-pruned``, a replay store (store/FORMAT.md);
5. ``certify_all``: every method the certifier registers -> ``DIR/certificates/<method>.csv``
   (``incremental`` certifies the pruned model from the store's samples);
6. the summary tables on stdout and ``DIR/certified_accuracy.png``.

Top layer (beside ``cli.py``): it drives both the sampler and the certifier,
which never import each other.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .sampler import train as _train

MODEL_FACTORY = "smoothcert.sampler.train:digits_cnn"
REPLAY_MODEL = "smoothcert.sampler.variants:digits_cnn_pruned"  # the changed model certified incrementally
REPLAY_SHARE = 10  # the replay store pairs the first n / REPLAY_SHARE estimation rows
SIGMA = 0.25
FULL = {"inputs": 100, "n0": 100, "n": 10_000, "batch_size": 1000}
QUICK = {"inputs": 30, "n0": 100, "n": 2_000, "batch_size": 1000}
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def method_options(method: str, n: int, base: str | None = None):
    """The demo's ``CertifyOptions`` for ``method``: the defaults plus a few settings worth showing."""
    from .certifier.options import CertifyOptions

    if method == "uncertainty":
        return CertifyOptions(uncertainty=["entropy"], theta=[0.1, 0.5, math.inf])
    if method in ("aces", "aces-predict"):
        return CertifyOptions(theta=[0.1, 0.3, 0.5])
    if method == "adaptive":
        return CertifyOptions(radius=0.5, stages=sorted({min(1_000, n // 2), n}))
    if method == "incremental":
        return CertifyOptions(base=base)
    if method == "conformal":  # half the inputs calibrate, the other half get sets
        return CertifyOptions(calibration_split=0.5, epsilon=[0.0, 0.125, 0.25])
    return CertifyOptions()


def certify_all(store: str, out_dir, methods=None, echo=print, replay: str | None = None):
    """Certify ``store`` with every registered method (or ``methods``); write each table; return them concatenated.

    Calls ``certifier.certify(store, method, options, progress=False)`` and
    ``certifier.table.write_table(table, DIR/<method>.csv, meta)`` per method.
    ``incremental`` certifies the replay store ``replay`` (a changed model on
    ``store``'s noisy copies) with ``--base store``; without one it is skipped.
    """
    import pandas as pd

    from . import certifier
    from .certifier.table import write_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from .store import open_store

    with open_store(store) as st:
        n = st.n
    tables = []
    for method in (methods or certifier.available_methods()):
        target = store
        if method == "incremental":
            if replay is None:
                continue
            target = replay
        t0 = time.perf_counter()
        table, meta = certifier.certify(target, method, method_options(method, n, base=store), progress=False)
        meta["command"] = f"smoothcert demo (certify_all: method {method})"
        path = out_dir / f"{method}.csv"
        write_table(table, path, meta)
        echo(f"certified {method:<13} {len(table):>5} rows in {time.perf_counter() - t0:5.1f} s -> {path} "
             f"(confidence {meta.get('confidence_statement', meta.get('confidence'))})"
             + (" [the pruned model, from the store's samples]" if target != store else ""))
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def export_torchscript(checkpoint, path) -> Path:
    """Write the demo network with ``checkpoint``'s weights as a TorchScript file at ``path``."""
    import warnings

    import torch

    net = _train.digits_cnn()
    net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # torch 2.13 marks torch.jit as deprecated
        torch.jit.save(torch.jit.script(net), str(path))
    return Path(path)


def write_test_split(path) -> tuple[int, int]:
    """Write the digits test split to ``path`` (.npz, x float32 (N, 1, 8, 8) in [0, 1], y); return (N, classes)."""
    _, (xte, yte) = _train.digits_split()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=xte, y=yte)
    return len(yte), int(yte.max()) + 1


def run_demo(out_dir="demo-out", quick: bool = False, train: bool = False, device: str = "cpu", echo=print) -> dict:
    """Run the demo end to end into ``out_dir``; return the paths it wrote and the summary table."""
    from .certifier.report import extra_sections, format_table, plot_certified_accuracy, summarize
    from .sampler.config import SampleConfig
    from .sampler.run import sample

    t_start = time.perf_counter()
    cfg = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "digits_test.npz"
    n_test, _ = write_test_split(data)
    echo(f"[1/5] data: {n_test} test digits (8x8, 10 classes) -> {data}")

    ckpt = _train.CHECKPOINT
    if train or not ckpt.is_file():
        t0 = time.perf_counter()
        ckpt = out / "digits_cnn_sigma0.25.pt"
        digest = _train.save_state_dict(_train.train(SIGMA, log=echo), ckpt)
        echo(f"[2/5] model: trained with noise sigma={SIGMA} in {time.perf_counter() - t0:.1f} s -> {ckpt} (sha256 {digest[:12]})")
    else:
        echo(f"[2/5] model: shipped checkpoint {ckpt} (made by python -m smoothcert.sampler.train)")

    scripted = export_torchscript(ckpt, out / "model.pt")
    echo(f"      the same network as a TorchScript file (for smoothcert sample --model): {scripted}")

    store = out / ("store-quick" if quick else "store")
    inputs = min(cfg["inputs"], n_test)
    echo(f"[3/5] sampling {inputs} inputs x ({cfg['n0']} + {cfg['n']:,}) noisy copies, sigma={SIGMA} -> {store}")
    settings = SampleConfig(models=[MODEL_FACTORY], weights=[str(ckpt)], data=str(data), sigma=SIGMA,
                            n0=cfg["n0"], n=cfg["n"], batch_size=cfg["batch_size"], seed=0, device=device,
                            indices=f"0:{inputs}:1", core_model=MODEL_FACTORY, core_weights=str(ckpt),
                            progress=True, log=echo)
    res = sample(str(store), settings)

    replay = out / ("store-pruned-quick" if quick else "store-pruned")
    P = max(1, cfg["n"] // REPLAY_SHARE)
    echo(f"[4/5] a changed model ({REPLAY_MODEL}, 30 % of the weights pruned) on the same noisy copies: "
         f"{inputs} inputs x ({cfg['n0']} + {P:,}) -> {replay}")
    sample(str(replay), SampleConfig(models=[REPLAY_MODEL], replay_of=str(store), n=P, batch_size=cfg["batch_size"],
                                     device=device, progress=True, log=echo))

    echo("[5/5] certifying with every method the certifier has")
    cert_dir = out / ("certificates-quick" if quick else "certificates")
    df = certify_all(str(store), cert_dir, echo=echo, replay=str(replay))
    summary = summarize(df, RADII)
    echo("")
    echo(f"Certified accuracy (%) at L2 radius, sigma={SIGMA}, {inputs} test digits:")
    echo(format_table(summary))
    for text in extra_sections(df, RADII):
        echo("")
        echo(text)
    plot = out / ("certified_accuracy-quick.png" if quick else "certified_accuracy.png")
    plot_certified_accuracy(_one_setting_per_method(df), plot, title=f"digits CNN, sigma={SIGMA}")
    echo(f"\nplot -> {plot}")
    echo(f"demo finished in {time.perf_counter() - t_start:.1f} s (sampling {res.samples_per_s:,.0f} samples/s)")
    return {"store": str(store), "data": str(data), "checkpoint": str(ckpt), "certificates": str(cert_dir),
            "plot": str(plot), "summary": summary}


def _one_setting_per_method(df):
    """The rows of each method's first setting, so the plot has one readable curve per method."""
    from .certifier.report import setting_columns

    if not len(df):
        return df
    keys = setting_columns(df)
    parts = []
    for _, g in df.groupby("method", sort=False):
        k = [c for c in keys if c in g.columns and g[c].notna().any()]
        first = g.iloc[0][k]
        mask = np.ones(len(g), bool)
        for c in k:
            mask &= (g[c] == first[c]).to_numpy() | (g[c].isna() & (first[c] != first[c])).to_numpy()
        parts.append(g[mask])
    import pandas as pd

    return pd.concat(parts, ignore_index=True)
