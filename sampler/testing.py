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


def tiny_cifar10():
    """Tiny network on CIFAR-sized inputs: 3 x 32 x 32 in, 10 classes (fixed weights)."""
    return _seeded_init(_tiny_cls()(channels=3, m=10, side=32), 3)


def tiny_rgb_dataset():
    """A ``torch.utils.data.Dataset`` of 12 RGB inputs: (float tensor (3, 6, 6) in [0, 1], 0-d int64 tensor label)."""
    import torch

    x, y = tiny_data(channels=3)

    class _RGB(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return torch.from_numpy(x[i].astype(np.float32) / np.float32(255.0)), torch.tensor(y[i])

    return _RGB()


def tiny_pil_dataset():
    """``tiny_rgb_dataset``'s inputs as PIL images (a torchvision dataset without ``ToTensor``): refused."""
    from PIL import Image

    x, y = tiny_data(channels=3)

    class _PIL:
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return Image.fromarray(x[i].transpose(1, 2, 0)), int(y[i])

    return _PIL()


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


# ------------------------------------------------------------------ 1,000 classes (ImageNet-sized outputs)
THOUSAND_SIDE = 64        # inputs are 3 x 64 x 64 in [0, 1]
THOUSAND_CLASSES = 1000
THOUSAND_INPUTS = 500
_THOUSAND_SEED = 1000


def thousand_prototype(k: int, seed: int = _THOUSAND_SEED) -> np.ndarray:
    """Class ``k``'s prototype image: (3, 64, 64) float32 in [0.1, 0.9], a seeded 8 x 8 pattern upsampled bilinearly."""
    import torch
    import torch.nn.functional as F

    low = np.random.default_rng([seed, int(k)]).random((1, 3, 8, 8))
    up = F.interpolate(torch.from_numpy(low), size=(THOUSAND_SIDE, THOUSAND_SIDE), mode="bilinear",
                       align_corners=False)
    return (0.1 + 0.8 * up[0].numpy()).astype(np.float32)


def _thousand_cls():
    """The ``Thousand`` module class (built lazily so that importing this module does not import torch)."""
    import torch
    import torch.nn.functional as F

    class Thousand(torch.nn.Module):
        """A small CNN with 1,000 outputs on 3 x 64 x 64 inputs: a nearest-prototype classifier.

        4 x 4 average pooling (3 x 16 x 16), then three 3 x 3 convolutions with
        ReLU (16, 32, 64 channels; 2 x 2 average pooling after the first two)
        give 1,024 features; the logits are ``temperature`` times the cosine
        between the centred features and those of the 1,000 class prototypes
        (``thousand_prototype``). Convolutions are seeded Gaussian (He scale);
        the prototype features are computed once in float64 and rounded to
        multiples of 2^-16, so the weights (and the fingerprint) are the same
        on every machine. About 1.7 M multiply-adds per row (the 1,024 x 1,000
        output layer is most of it). Untrained, but its softmax rows look like
        a trained classifier's under noise: the input's class on top with
        0.3-0.9 of the mass, a runner-up where the input mixes two classes,
        and a long tail.
        """

        def __init__(self, m: int = THOUSAND_CLASSES, temperature: float = 10.0, seed: int = _THOUSAND_SEED):
            super().__init__()
            w = 16
            self.c1 = torch.nn.Conv2d(3, w, 3, padding=1)
            self.c2 = torch.nn.Conv2d(w, 2 * w, 3, padding=1)
            self.c3 = torch.nn.Conv2d(2 * w, 4 * w, 3, padding=1)
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for conv in (self.c1, self.c2, self.c3):
                    fan_in = conv.weight[0].numel()
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                    conv.bias.zero_()
            feats = 4 * w * 16
            self.fc = torch.nn.Linear(feats, m, bias=False)
            self.register_buffer("center", torch.zeros(feats))
            with torch.no_grad():
                protos = torch.from_numpy(np.stack([thousand_prototype(k, seed) for k in range(m)])).double()
                for mod in (self.c1, self.c2, self.c3):
                    mod.double()
                f = torch.cat([self._features(protos[i:i + 250]) for i in range(0, m, 250)])
                center = f.mean(dim=0)
                f = F.normalize(f - center, dim=1) * float(temperature)
                grid = 2.0 ** 16
                self.center.copy_((torch.round(center * grid) / grid).float())
                self.fc.weight.copy_((torch.round(f * grid) / grid).float())
                for mod in (self.c1, self.c2, self.c3):
                    mod.float()

        def _features(self, x):
            x = F.avg_pool2d(x, 4)
            x = F.avg_pool2d(F.relu(self.c1(x)), 2)
            x = F.avg_pool2d(F.relu(self.c2(x)), 2)
            return F.relu(self.c3(x)).flatten(1)

        def forward(self, x):
            return self.fc(F.normalize(self._features(x) - self.center, dim=1))

    return Thousand


def thousand():
    """The 1,000-class model of the ImageNet-sized benchmarks: 3 x 64 x 64 in, 1,000 logits out (fixed weights)."""
    return _thousand_cls()()


def thousand_item(i: int, seed: int = _THOUSAND_SEED):
    """Input ``i`` of ``thousand_dataset``: ((3, 64, 64) float32 in [0, 1], label in 0..999).

    The label's prototype mixed with another class's (weight 0.55-1.0 on the
    label, so some inputs are hard) plus a faint pixel texture, clipped.
    """
    rng = np.random.default_rng([seed, 7, int(i)])
    label, other = (int(v) for v in rng.choice(THOUSAND_CLASSES, 2, replace=False))
    a = rng.uniform(0.55, 1.0)
    x = a * thousand_prototype(label, seed) + (1 - a) * thousand_prototype(other, seed)
    x = x + rng.normal(0.0, 0.03, size=x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32), label


def thousand_dataset():
    """``THOUSAND_INPUTS`` (500) synthetic 3 x 64 x 64 inputs with labels in 0..999, built on demand (deterministic)."""
    import torch

    class _DS:
        def __len__(self):
            return THOUSAND_INPUTS

        def __getitem__(self, i):
            if not 0 <= i < THOUSAND_INPUTS:
                raise IndexError(i)
            x, y = thousand_item(i)
            return torch.from_numpy(x), y

    return _DS()
