"""Changed versions of the demo CNN, the kind a user certifies incrementally (docs/incremental.md).

Each factory returns the demo network (``train.digits_cnn`` with the shipped
checkpoint ``assets/digits_cnn_sigma0.25.pt``) changed the way models are
changed after certification, ready to run, so that it is a ``--model`` spec
without ``--weights``::

    smoothcert sample --model smoothcert.sampler.variants:digits_cnn_int8 --device cpu ...

- ``digits_cnn_int8``: int8 dynamic quantization of the Linear layers
  (``torch.ao.quantization.quantize_dynamic``; CPU only, as torch's
  dynamically quantized kernels are);
- ``digits_cnn_pruned``: 30 % global L1 magnitude pruning of every conv and
  linear weight (``torch.nn.utils.prune.global_unstructured``, made permanent);
- ``digits_cnn_finetuned``: ``FINETUNE_STEPS`` Adam steps on the digits
  training split under Gaussian noise (sigma 0.25), deterministic.

Every factory gives the same weights on every call (fixed seeds, single
thread, deterministic algorithms), so a store's model fingerprint identifies
the variant. The changes themselves (``quantize_int8``, ``prune_magnitude``,
``finetune``; by name in ``CHANGES``) take any network, e.g. the demo CNN
trained at another sigma (``bench/incremental.py``).
"""
from __future__ import annotations

import warnings

from . import train as _train

PRUNE_AMOUNT = 0.3
FINETUNE_STEPS = 30
FINETUNE_LR = 1e-3
FINETUNE_BATCH = 64
FINETUNE_SEED = 1


def digits_cnn_base():
    """The demo CNN with the shipped checkpoint, in eval mode (the base model the variants change)."""
    import torch

    net = _train.digits_cnn()
    net.load_state_dict(torch.load(_train.CHECKPOINT, map_location="cpu", weights_only=True))
    return net.eval()


def quantize_int8(net):
    """``net`` with its Linear layers dynamically quantized to int8 (weights int8, activations per batch), in eval mode."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 marks torch.ao.quantization deprecated; it still works
        return torch.ao.quantization.quantize_dynamic(net.eval(), {torch.nn.Linear}, dtype=torch.qint8).eval()


def prune_magnitude(net, amount: float = PRUNE_AMOUNT):
    """``net`` with the ``amount`` share of its conv and linear weights of smallest |w| set to zero (global), in eval mode."""
    import torch
    from torch.nn.utils import prune

    params = [(m, "weight") for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in params:
        prune.remove(m, name)  # the mask folded into the weight: a plain state_dict
    return net.eval()


def finetune(net, steps: int = FINETUNE_STEPS, lr: float = FINETUNE_LR, sigma: float | None = None):
    """``net`` after ``steps`` Adam steps (batch 64) on the digits training split under noise ``sigma`` (None: the training sigma 0.25)."""
    import torch

    sigma = _train.TRAIN_SIGMA if sigma is None else float(sigma)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        g = torch.Generator().manual_seed(FINETUNE_SEED)
        (xtr, ytr), _ = _train.digits_split()
        xtr, ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        lossf = torch.nn.CrossEntropyLoss()
        net.train()
        for _ in range(steps):
            b = torch.randint(len(xtr), (FINETUNE_BATCH,), generator=g)
            xb = xtr[b] + sigma * torch.randn(xtr[b].shape, generator=g)
            loss = lossf(net(xb), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    return net.eval()


def digits_cnn_int8():
    """The demo CNN with its Linear layers dynamically quantized to int8 (weights int8, activations per batch)."""
    return quantize_int8(digits_cnn_base())


def digits_cnn_pruned(amount: float = PRUNE_AMOUNT):
    """The demo CNN with the ``amount`` share of its conv and linear weights of smallest |w| set to zero (global)."""
    return prune_magnitude(digits_cnn_base(), amount)


def digits_cnn_finetuned(steps: int = FINETUNE_STEPS, lr: float = FINETUNE_LR):
    """The demo CNN after ``steps`` Adam steps (batch 64) on the digits training split under noise sigma 0.25."""
    return finetune(digits_cnn_base(), steps, lr)


# the changes by name, each (network, sigma the network was trained at) -> the changed network
CHANGES = {"int8": lambda net, sigma: quantize_int8(net),
           "pruned": lambda net, sigma: prune_magnitude(net),
           "finetuned": lambda net, sigma: finetune(net, sigma=sigma)}

VARIANTS = {"int8": "smoothcert.sampler.variants:digits_cnn_int8",
            "pruned": "smoothcert.sampler.variants:digits_cnn_pruned",
            "finetuned": "smoothcert.sampler.variants:digits_cnn_finetuned"}


def clean_accuracy(net) -> float:
    """Share of the digits test split (``train.digits_split``) that ``net`` classifies correctly without noise."""
    import torch

    _, (xte, yte) = _train.digits_split()
    with torch.no_grad():
        pred = net(torch.from_numpy(xte)).argmax(1).numpy()
    return float((pred == yte).mean())
