"""Training script of the demo model: a small CNN on scikit-learn's digits, with Gaussian noise augmentation.

``python -m sampler.train --out sampler/assets/digits_cnn_sigma0.25.pt`` remakes
the shipped checkpoint. Training is reproducible: fixed seed, fixed split,
single-threaded CPU, deterministic algorithms, so the same command writes the
same weights on the same torch version.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT = ASSETS / "digits_cnn_sigma0.25.pt"
TRAIN_SIGMA = 0.25
SPLIT_SEED = 0
TEST_FRACTION = 0.25


def digits_split():
    """scikit-learn's digits as float32 (N, 1, 8, 8) in [0, 1] (pixels / 16), split into (train, test) the same way every time."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0))[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    return (xtr, ytr), (xte, yte)


def digits_cnn():
    """The demo network (untrained): two 3x3 conv layers, max-pool, two linear layers; 8x8x1 in, 10 logits out."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(sigma: float = TRAIN_SIGMA, epochs: int = 60, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
          log=None) -> dict:
    """Train ``digits_cnn`` with Gaussian noise augmentation of std ``sigma``; the same arguments give the same state_dict."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        (xtr, ytr), (xte, yte) = digits_split()
        xtr, ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
        net = digits_cnn()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        lossf = torch.nn.CrossEntropyLoss()
        for ep in range(epochs):
            net.train()
            perm = torch.randperm(len(xtr), generator=g)
            tot = 0.0
            for s in range(0, len(xtr), batch_size):
                b = perm[s:s + batch_size]
                xb = xtr[b] + sigma * torch.randn(xtr[b].shape, generator=g)
                loss = lossf(net(xb), ytr[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item() * len(b)
            sched.step()
            if log and (ep + 1) % 10 == 0:
                log(f"epoch {ep + 1}/{epochs}: train loss {tot / len(xtr):.4f}")
        net.eval()
        with torch.no_grad():
            xt = torch.from_numpy(xte)
            clean = (net(xt).argmax(1).numpy() == yte).mean()
            noisy = (net(xt + sigma * torch.randn(xt.shape, generator=g)).argmax(1).numpy() == yte).mean()
        if log:
            log(f"test accuracy: clean {clean:.3f}, under noise sigma={sigma}: {noisy:.3f}")
        return {k: v.detach().clone() for k, v in net.state_dict().items()}
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def save_state_dict(state: dict, path) -> str:
    """Write ``state`` with torch.save and return the sha256 of the written bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main(argv=None) -> None:
    """Command line: train and write the checkpoint, printing its sha256."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(CHECKPOINT))
    p.add_argument("--sigma", type=float, default=TRAIN_SIGMA)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    state = train(a.sigma, a.epochs, a.seed, log=lambda s: print(s, file=sys.stderr))
    digest = save_state_dict(state, a.out)
    print(f"wrote {a.out} (sha256 {digest})")


if __name__ == "__main__":
    main()
