"""Loading the classifier: TorchScript, a checkpoint of the field, ``package.module:factory`` + state_dict, a module.

The loaded network is wrapped in ``Normalized`` so that the per-channel
mean/std normalisation runs *inside* the model, after the noise: the sampler
adds Gaussian noise in [0, 1] pixel space, as Cohen et al. do. A checkpoint
of the locuslab/smoothing format (``sampler/checkpoints.py``) brings the
normalisation of its architecture's data set, so ``--mean/--std`` are
refused for it. A ``torch.nn.Module`` given from Python is copied, so the
caller's module is never put in eval mode or moved.
"""
from __future__ import annotations

import copy
import hashlib
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .checkpoints import FORMAT, NORMALISATION, build_network, interpret, is_torchscript, load_into, read_torch_file
from .data import import_object, is_callable_spec


def is_module(obj) -> bool:
    """True if ``obj`` is a ``torch.nn.Module`` (without importing torch: a module object means torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def model_label(model) -> str:
    """How a model is named in messages and in the store's metadata: its spec, or ``<torch.nn.Module CLASS>`` for a module."""
    if is_module(model):
        cls = type(model)
        return f"<torch.nn.Module {cls.__module__}.{cls.__qualname__}>"
    return str(model)


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
    checkpoint: dict | None = None       # a checkpoint's or --arch state_dict's record (``checkpoint_record``)
    normalisation: dict | None = None    # {mean, std} applied inside the model, or None


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
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"model {spec}: no such weights file {weights}")
    state = read_torch_file(weights, f"model {spec}: weights {weights}:")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"model {spec}: weights {weights} hold a {type(state).__name__}, not a state_dict")
    return state


def _copy_module(module):
    """A deep copy of the caller's module (eval mode, device and memory format stay ours), or itself if it cannot be copied."""
    try:
        return copy.deepcopy(module)
    except Exception:  # noqa: BLE001 - a module holding something uncopyable is used as it is
        return module


def checkpoint_record(info: dict, sha256: str) -> dict:
    """The store's record of a network built from a file by architecture name (``interpret``'s ``info``)."""
    return {"format": f"{FORMAT} checkpoint" if info["kind"] == "checkpoint" else "state_dict",
            "arch": info["arch"], "dataset": info["dataset"], "epoch": info["epoch"], "sha256": sha256}


def load_network(spec, weights: str | None = None, device="cpu", arch: str | None = None):
    """The bare network of ``spec``, its fingerprint and, for a file built by architecture, its ``checkpoint_record``.

    ``spec`` is a ``torch.nn.Module`` (copied; fingerprint: sha256 over its
    class name and its state_dict's keys, dtypes, shapes and bytes), a
    ``package.module:factory`` (with ``weights``, a state_dict whose
    ``module.`` prefixes are removed; fingerprint: the same over the spec and
    the loaded state_dict), a TorchScript file, or a file ``torch.save`` wrote
    holding a checkpoint of the locuslab/smoothing format or a bare
    state_dict of architecture ``arch`` (fingerprint of a file: the sha256 of
    its bytes). Returns ``(network, fingerprint, record or None)``.
    """
    import torch

    if is_module(spec):
        if weights is not None:
            raise ValueError(f"model {model_label(spec)}: --weights applies only to package.module:factory models; "
                             f"load the state_dict into the module before passing it")
        net = _copy_module(spec)
        return net, state_dict_fingerprint(net.state_dict(), model_label(spec)), None
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
            load_into(net, _load_state_dict(weights, spec), f"model {spec}: weights {weights} do not fit the factory's network")
        fp = state_dict_fingerprint(net.state_dict(), spec)
        return net, fp, None
    if weights is not None:
        raise ValueError(f"model {spec}: --weights applies only to the package.module:factory form, "
                         f"a model file carries its own weights")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"model {spec}: no such file (expected a TorchScript file, a checkpoint or "
                                f"package.module:factory)")
    if is_torchscript(spec):
        try:
            net = torch.jit.load(spec, map_location=torch.device(device))
        except Exception as e:
            raise ValueError(f"model {spec}: a damaged TorchScript file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:200]})") from e
        return net, file_sha256(spec), None
    obj = read_torch_file(spec, f"model {spec}: not a TorchScript file, and")
    info = interpret(obj, spec, arch)
    net = build_network(info, f"model {spec}")
    sha = file_sha256(spec)
    return net, sha, checkpoint_record(info, sha)


def load_model(spec, weights: str | None = None, mean=None, std=None, device="cpu",
               channels_last: bool = False, arch: str | None = None) -> LoadedModel:
    """``spec`` loaded, wrapped with its normalisation, in eval mode on ``device`` without gradients.

    A network built by architecture (a checkpoint, or a state_dict with
    ``arch``) gets the normalisation of the architecture's data set, and
    ``mean``/``std`` given with it are refused (ValueError): the model
    already normalises.
    """
    import torch

    net, fp, record = load_network(spec, weights, device, arch)
    mean, std = check_normalisation(mean, std)
    if record is not None:
        if mean is not None:
            raise ValueError(f"model {spec}: a {record['arch']} {record['format']} normalises inside the model "
                             f"({record['dataset']} mean {NORMALISATION[record['dataset']]['mean']}, std "
                             f"{NORMALISATION[record['dataset']]['std']}, after the noise); drop --mean/--std")
        mean, std = NORMALISATION[record["dataset"]]["mean"], NORMALISATION[record["dataset"]]["std"]
    model = _normalized_cls()(net, mean, std)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.to(torch.device(device))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return LoadedModel(spec=model_label(spec), module=model, fingerprint=fp, weights=weights, checkpoint=record,
                       normalisation=None if mean is None else {"mean": list(mean), "std": list(std)})


def members_metadata(members: list) -> dict:
    """The store attributes that describe the member models' checkpoints and normalisation (one value, or one per member).

    ``model_checkpoint``: ``checkpoint_record`` of each member built from a
    file by architecture (None: no member was); ``normalisation``: the
    ``{mean, std}`` applied inside the models (None: none), a list when the
    members differ.
    """
    def one_or_list(values):
        if len(values) == 1 or all(v == values[0] for v in values):
            return values[0]
        return values

    records = [lm.checkpoint for lm in members]
    return {"model_checkpoint": (records[0] if len(records) == 1 else records) if any(records) else None,
            "normalisation": one_or_list([lm.normalisation for lm in members])}


def pair_weights(models, weights) -> list:
    """The ``--weights`` of each ``--model``: the i-th ``--weights`` goes to the i-th factory-form model."""
    models, weights = list(models), list(weights or [])
    factories = [i for i, m in enumerate(models) if isinstance(m, str) and is_callable_spec(m)]
    if weights and not factories:
        raise ValueError(f"--weights applies only to package.module:factory models; {model_label(models[0])} is "
                         f"{'a module' if is_module(models[0]) else 'a file'} (it carries its own weights)")
    if weights and len(weights) != len(factories):
        raise ValueError(f"{len(weights)} --weights for {len(factories)} package.module:factory models; "
                         f"give one --weights per factory model, in order")
    out = [None] * len(models)
    for i, w in zip(factories, weights):
        out[i] = w
    return out
