"""Small deterministic networks and data sets for the sampler's tests and benchmarks.

Every factory here builds the same weights on every call (a fixed torch
seed), so ``sampler.testing:tiny`` can be given as ``--model`` from any
process. ``cifar_resnet`` is the CIFAR-sized network of ``bench/sampler.py``.
"""
from __future__ import annotations

import numpy as np


def _seeded_init(net, seed: int, scale: float = 0.5):
    """Overwrite ``net``'s parameters with fixed Gaussian values (seeded, fan-in scaled)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale / max(1.0, p[0].numel() ** 0.5 if p.dim() > 1 else 1.0))
    return net


def _tiny_cls():
    """The ``Tiny`` module class (built lazily so that importing this module does not import torch)."""
    import torch

    class Tiny(torch.nn.Module):
        """conv 3x3 (4 channels), ReLU, linear: C x 6 x 6 in, ``m`` logits out."""

        def __init__(self, channels: int = 1, m: int = 5, side: int = 6):
            super().__init__()
            self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * side * side, m)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1)) * 4.0

    return Tiny


def tiny():
    """Tiny network A: 1 x 6 x 6 in, 5 classes (fixed weights)."""
    return _seeded_init(_tiny_cls()(), 0)


def tiny_b():
    """Tiny network B: same shape as A, other weights (an ensemble member or a 'different model')."""
    return _seeded_init(_tiny_cls()(), 1)


def tiny_rgb():
    """Tiny network on 3 x 6 x 6 inputs, 5 classes."""
    return _seeded_init(_tiny_cls()(channels=3), 2)


def tiny_nan():
    """Tiny network A whose logits are NaN for every noisy copy with a top-left pixel above 1.5 (a broken model)."""
    import torch

    class _Nan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny()

        def forward(self, x):
            out = self.net(x)
            return torch.where(x[:, :1, 0, 0] > 1.5, torch.full_like(out, float("nan")), out)

    return _Nan()


def tiny_view():
    """Tiny network A written with ``x.view(batch, -1)`` over C x H x W, which a channels-last tensor cannot take."""
    import torch

    class _View(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny()

        def forward(self, x):
            h = torch.relu(self.net.conv(x))
            return self.net.fc(h.view(h.shape[0], -1)) * 4.0

    return _View()


def tiny_data(n: int = 12, channels: int = 1, m: int = 5, side: int = 6, seed: int = 0):
    """(x uint8 (n, C, side, side), y int64 (n,)), labels sorted ascending (so a class-folder copy keeps the order)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    y = np.sort(rng.integers(0, m, size=n)).astype(np.int64)
    return x, y


def tiny_dataset():
    """``tiny_data()`` as a map-style dataset of (float tensor (1, 6, 6) in [0, 1], int label)."""
    import torch

    x, y = tiny_data()

    class _DS:
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return torch.from_numpy(x[i].astype(np.float32) / np.float32(255.0)), int(y[i])

    return _DS()


def cifar_resnet(blocks: int = 3, width: int = 32, num_classes: int = 10):
    """A CIFAR-sized residual network: 3 x 32 x 32 in, ``blocks`` basic residual blocks per stage, 2 stages."""
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))

    with torch.random.fork_rng(devices=[]):    # fixed weights, without touching the caller's RNG
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, width // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU()]
        cin = width // 2
        for stage, cout in enumerate((width // 2, width)):
            for b in range(blocks if stage == 0 else max(1, blocks - 1)):
                layers.append(Block(cin, cout, 2 if (stage > 0 and b == 0) else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        return nn.Sequential(*layers)
