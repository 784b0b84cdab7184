"""Checkpoints in the exact locuslab/smoothing format, with seeded random weights, for the tests and benchmarks.

The real checkpoints of Cohen et al. (ICML 2019, arXiv:1902.02918) are not
reachable from here, so the tests and ``bench/sampler.py`` write files the
way that code's ``train.py`` does: the model is ``Sequential(NormalizeLayer,
net)`` (``net`` wrapped in ``DataParallel`` for ``resnet50``), trained for
one SGD step with momentum (so the optimizer's state holds momentum
buffers, as after an epoch), and saved with
``torch.save({'epoch', 'arch', 'state_dict', 'optimizer'}, path)``, in the
zip format of torch >= 1.6 or the older pickle format that checkpoints from
2019 have (``legacy=True``).

Random weights are drawn so that the networks stay well scaled (He
initialisation, batch norm statistics and affine parameters drawn around
their identity, each residual branch damped), so that the softmax rows are
spread out and a test that compares them can tell two networks apart.
"""
from __future__ import annotations

import torch

from .architectures import BasicBlock, Bottleneck, build
from .checkpoints import ARCHITECTURES, NORMALISATION


class NormalizeLayer(torch.nn.Module):
    """Per-channel (x - mean) / std with the mean and std as plain attributes (not in the state_dict), as that code's layer."""

    def __init__(self, means, sds):
        super().__init__()
        self.means = torch.tensor(means, dtype=torch.float32)
        self.sds = torch.tensor(sds, dtype=torch.float32)

    def forward(self, x):
        b, c, h, w = x.shape
        means = self.means.repeat((b, h, w, 1)).permute(0, 3, 1, 2)
        sds = self.sds.repeat((b, h, w, 1)).permute(0, 3, 1, 2)
        return (x - means) / sds


def randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter and batch-norm statistic of ``net`` with seeded, well-scaled random values."""
    g = torch.Generator().manual_seed(seed)

    def rnd(shape):
        return torch.randn(shape, generator=g)

    closing = {id(m.bn2) for m in net.modules() if isinstance(m, BasicBlock)}
    closing |= {id(m.bn3) for m in net.modules() if isinstance(m, Bottleneck)}
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(rnd(m.weight.shape) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(rnd(m.bias.shape) * 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                scale = 0.1 if id(m) in closing else 1.0
                m.weight.copy_(scale * (1.0 + 0.2 * rnd(m.weight.shape)))
                m.bias.copy_(0.1 * rnd(m.bias.shape))
                m.running_mean.copy_(0.1 * rnd(m.running_mean.shape))
                m.running_var.copy_(1.0 + 0.5 * torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(100)
    return net


def locuslab_model(arch: str, seed: int = 0, num_classes: int | None = None) -> torch.nn.Sequential:
    """``Sequential(NormalizeLayer(data set's mean, std), net)`` as that code's ``get_architecture`` builds it, random weights."""
    num_classes = num_classes or (1000 if ARCHITECTURES[arch] == "imagenet" else 10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = randomize(build(arch, num_classes), seed)
    if arch == "resnet50":
        net = torch.nn.DataParallel(net)
    norm = NORMALISATION[ARCHITECTURES[arch]]
    return torch.nn.Sequential(NormalizeLayer(norm["mean"], norm["std"]), net)


def save_checkpoint(model: torch.nn.Sequential, arch: str, path, *, epoch: int = 90, train_step: bool = True,
                    side: int = 32, seed: int = 0, legacy: bool = False) -> None:
    """Write ``model`` to ``path`` as that code's ``train.py`` does (after one SGD step with momentum if ``train_step``).

    The step runs in eval mode (batch-norm statistics stay as drawn) on a
    seeded batch of two noisy ``side`` x ``side`` images; ``model``'s
    weights change by it, and the file holds the changed ones.
    """
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    if train_step:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((2, 3, side, side), generator=g)
        y = torch.randint(0, 10, (2,), generator=g)
        model.eval()
        loss = torch.nn.functional.cross_entropy(model(x + 0.25 * torch.randn(x.shape, generator=g)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)
    torch.save({"epoch": epoch, "arch": arch, "state_dict": model.state_dict(), "optimizer": opt.state_dict()},
               str(path), _use_new_zipfile_serialization=not legacy)
