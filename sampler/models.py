"""Loading the classifier: a TorchScript file, or ``package.module:factory`` plus a state_dict.

The loaded network is wrapped in ``Normalized`` so that the per-channel
mean/std normalisation runs *inside* the model, after the noise: the sampler
adds Gaussian noise in [0, 1] pixel space, as Cohen et al. do.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from .data import import_object, is_callable_spec


def _normalized_cls():
    """The ``Normalized`` module class (built lazily so that importing this module does not import torch)."""
    import torch

    class Normalized(torch.nn.Module):
        """``model((x - mean) / std)``: normalisation as the model's first layer."""

        def __init__(self, model, mean, std):
            super().__init__()
            self.model = model
            self.has_norm = mean is not None
            if self.has_norm:
                self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
                self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x):
            if self.has_norm:
                x = (x - self.mean) / self.std
            return self.model(x)

    return Normalized


@dataclass
class LoadedModel:
    """A ready-to-run network (eval mode, on its device, normalisation inside) and its identity."""

    spec: str
    module: object
    fingerprint: str
    weights: str | None = None
    extra: dict = field(default_factory=dict)


def parse_floats(text, what: str):
    """``"0.5"`` or ``"0.49,0.48,0.45"`` (or a list) as a list of floats; None stays None."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        vals = [float(v) for v in text]
    else:
        try:
            vals = [float(v) for v in str(text).replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise ValueError(f"{what} {text!r}: expected a number or a comma-separated list of numbers") from None
    if not vals or not all(np.isfinite(vals)):
        raise ValueError(f"{what} {text!r}: expected finite numbers")
    return vals


def check_normalisation(mean, std):
    """Validated (mean, std) lists of equal length with std > 0, or (None, None)."""
    mean = parse_floats(mean, "--mean")
    std = parse_floats(std, "--std")
    if mean is None and std is None:
        return None, None
    if mean is None:
        mean = [0.0] * len(std)
    if std is None:
        std = [1.0] * len(mean)
    if len(mean) != len(std):
        if len(mean) == 1:
            mean = mean * len(std)
        elif len(std) == 1:
            std = std * len(mean)
        else:
            raise ValueError(f"--mean has {len(mean)} values and --std {len(std)}; give one per channel")
    if any(s <= 0 for s in std):
        raise ValueError(f"--std {std}: every value must be positive")
    return mean, std


def state_dict_fingerprint(state: dict, name: str) -> str:
    """sha256 over ``name`` and each tensor's key, dtype, shape and bytes, in the state_dict's order."""
    h = hashlib.sha256(b"smoothcert-state-dict-v1\0" + name.encode() + b"\0")
    for k, v in state.items():
        h.update(k.encode() + b"\0")
        _hash_entry(h, v)
    return h.hexdigest()


def _hash_entry(h, v) -> None:
    """Feed one state_dict value to ``h``: a tensor by dtype, shape and bytes; anything else by ``repr``.

    A quantized tensor is hashed by its integer values, scales and zero points,
    and a tuple or list holding tensors (the packed weight and bias of a
    dynamically quantized Linear) entry by entry: their ``repr`` abbreviates
    large tensors with "...", so it would not tell two weight sets apart.
    """
    import torch

    if isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        if t.is_quantized:
            h.update(f"quantized {t.dtype} {t.qscheme()}".encode())
            if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                h.update(repr((float(t.q_scale()), int(t.q_zero_point()))).encode())
            else:
                h.update(f"axis {t.q_per_channel_axis()}".encode())
                _hash_entry(h, t.q_per_channel_scales())
                _hash_entry(h, t.q_per_channel_zero_points())
            t = t.int_repr()
        t = t.contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(v, (tuple, list)) and any(isinstance(x, torch.Tensor) for x in v):
        h.update(f"{type(v).__name__}[{len(v)}]".encode())
        for x in v:
            _hash_entry(h, x)
    else:
        h.update(repr(v).encode())


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_state_dict(weights: str, spec: str) -> dict:
    """The state_dict in ``weights``, read with ``weights_only=True`` (a ``{'state_dict': ...}`` wrapper is unwrapped)."""
    import torch

    if not os.path.isfile(weights):
        raise FileNotFoundError(f"model {spec}: no such weights file {weights}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"model {spec}: cannot read weights {weights} as a state_dict "
                         f"(loaded with weights_only=True): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"model {spec}: weights {weights} hold a {type(state).__name__}, not a state_dict")
    return state


def load_network(spec: str, weights: str | None = None, device="cpu"):
    """The bare network of ``spec`` (TorchScript file or factory + state_dict) and its fingerprint."""
    import torch

    spec = str(spec)
    if is_callable_spec(spec):
        factory = import_object(spec, "model")
        try:
            net = factory()
        except Exception as e:
            raise ValueError(f"model {spec}: calling the factory failed: {type(e).__name__}: {e}") from e
        if not isinstance(net, torch.nn.Module):
            raise ValueError(f"model {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
        if weights is not None:
            state = _load_state_dict(weights, spec)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as e:
                first = " ".join(str(e).split())[:300]
                raise ValueError(f"model {spec}: weights {weights} do not fit the factory's network: {first}") from e
        fp = state_dict_fingerprint(net.state_dict(), spec)
        return net, fp
    if weights is not None:
        raise ValueError(f"model {spec}: --weights applies only to the package.module:factory form, "
                         f"a TorchScript file carries its own weights")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"model {spec}: no such file (expected a TorchScript file or package.module:factory)")
    try:
        net = torch.jit.load(spec, map_location=torch.device(device))
    except Exception as e:
        raise ValueError(f"model {spec}: not a TorchScript file ({type(e).__name__}); save one with "
                         f"torch.jit.save(torch.jit.script(model), path), or use package.module:factory with --weights") from e
    return net, file_sha256(spec)


def load_model(spec: str, weights: str | None = None, mean=None, std=None, device="cpu",
               channels_last: bool = False) -> LoadedModel:
    """``spec`` loaded, wrapped with its normalisation, in eval mode on ``device`` without gradients."""
    import torch

    net, fp = load_network(spec, weights, device)
    mean, std = check_normalisation(mean, std)
    model = _normalized_cls()(net, mean, std)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(torch.device(device))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return LoadedModel(spec=spec, module=model, fingerprint=fp, weights=weights)


def pair_weights(models, weights) -> list:
    """The ``--weights`` of each ``--model``: the i-th ``--weights`` goes to the i-th factory-form model."""
    models, weights = list(models), list(weights or [])
    factories = [i for i, m in enumerate(models) if is_callable_spec(str(m))]
    if weights and not factories:
        raise ValueError(f"--weights applies only to package.module:factory models; {models[0]} is a file "
                         f"(a TorchScript file carries its own weights)")
    if weights and len(weights) != len(factories):
        raise ValueError(f"{len(weights)} --weights for {len(factories)} package.module:factory models; "
                         f"give one --weights per factory model, in order")
    out = [None] * len(models)
    for i, w in zip(factories, weights):
        out[i] = w
    return out
