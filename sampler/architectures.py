"""The networks of the field's published checkpoints, written in the project (no torchvision needed).

Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized
Smoothing" (ICML 2019, arXiv:1902.02918) released their base classifiers,
and SmoothAdv, MACER, Consistency and others released theirs in the same
checkpoint format (``sampler/checkpoints.py``), for three architectures:

* ``resnet50``: He et al.'s ResNet-50 ("Deep Residual Learning for Image
  Recognition", CVPR 2016, arXiv:1512.03385, Table 1) as torchvision builds
  it: bottleneck blocks [3, 4, 6, 3] whose 3 x 3 convolution carries the
  stride (the variant often called ResNet v1.5), projection shortcuts
  (1 x 1 convolution + batch norm) where the shape changes, global average
  pooling, one linear layer. Parameter names are torchvision's
  (``conv1.weight``, ``layer2.0.downsample.1.running_mean``, ``fc.bias``),
  so its state_dicts load unchanged.
* ``cifar_resnet20``, ``cifar_resnet110``: the CIFAR ResNets of He et al.'s
  section 4.2 (depth 6n + 2: a 3 x 3 stem of 16 channels, three stages of n
  basic blocks with 16, 32, 64 channels, the second and third starting with
  stride 2), in the implementation Cohen et al. trained: the shortcut is a
  1 x 1 convolution + batch norm wherever the shape changes (not the paper's
  zero padding), then an 8 x 8 average pool (so 32 x 32 inputs) and one
  linear layer. Parameter names as in that code's state_dicts
  (``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ``fc.weight``).

The networks take normalised inputs; ``build`` returns the bare network with
the random initialisation of torch's layers (the weights come from a
checkpoint). Imports torch.
"""
from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    """A k x k convolution without bias, padded to keep the size at stride 1."""
    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2, bias=False)


def _shortcut(cin: int, cout: int, stride: int):
    """The projection shortcut (1 x 1 convolution + batch norm) where the shape changes, else None (identity)."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with batch norm, the first with the stride; relu(residual + shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return torch.relu_(out)


class Bottleneck(nn.Module):
    """1 x 1 down to ``width``, 3 x 3 with the stride, 1 x 1 up to 4 x ``width``; relu(residual + shortcut)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, cout, 1)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = torch.relu_(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return torch.relu_(out)


def _stage(block, cin: int, width: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    """``blocks`` blocks, the first with ``stride``; returns the stage and its output channels."""
    expansion = getattr(block, "expansion", 1)
    layers = [block(cin, width, stride)] + [block(width * expansion, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers), width * expansion


class CifarResNet(nn.Module):
    """The CIFAR ResNet of depth 6n + 2 (BasicBlock stages of 16, 32, 64 channels, 8 x 8 average pool)."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = _conv(3, 16, 3)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1, c = _stage(BasicBlock, 16, 16, n, 1)
        self.layer2, c = _stage(BasicBlock, c, 32, n, 2)
        self.layer3, c = _stage(BasicBlock, c, 64, n, 2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = torch.relu_(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet50(nn.Module):
    """ResNet-50 with torchvision's layout and parameter names (7 x 7 stem, max pool, bottleneck stages [3, 4, 6, 3])."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = _conv(3, 64, 7, 2)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c = 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stage, c = _stage(Bottleneck, c, width, blocks, 1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu_(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_BUILDERS = {
    "resnet50": lambda num_classes: ResNet50(num_classes),
    "cifar_resnet20": lambda num_classes: CifarResNet(20, num_classes),
    "cifar_resnet110": lambda num_classes: CifarResNet(110, num_classes),
}


def build(arch: str, num_classes: int) -> nn.Module:
    """The bare network ``arch`` (a name of ``checkpoints.ARCHITECTURES``) with ``num_classes`` outputs, randomly initialised."""
    try:
        builder = _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; smoothcert builds {', '.join(_BUILDERS)}") from None
    return builder(num_classes)
