"""Reading the field's checkpoints: the locuslab/smoothing format, bare state_dicts, and fitting their keys.

Cohen, Rosenfeld and Kolter (ICML 2019, arXiv:1902.02918) train with
``code/train.py`` of github.com/locuslab/smoothing, which saves
``torch.save({'epoch', 'arch', 'state_dict', 'optimizer'}, 'checkpoint.pth.tar')``;
SmoothAdv, MACER, Consistency and others publish their models in the same
format. The saved model is ``Sequential(NormalizeLayer(means, sds), net)``:
the per-channel normalisation of the architecture's data set runs inside the
model, after the noise, and holds no tensors (its means and stds are plain
attributes), so every key of ``state_dict`` belongs to ``net`` under the
prefix ``1.``; ``net`` is ``DataParallel(resnet50)`` for ``resnet50`` (keys
``1.module.conv1.weight``) and the CIFAR ResNet for ``cifar_resnet20`` and
``cifar_resnet110`` (keys ``1.conv1.weight``).

Here such a file is recognised by its contents (a dict with ``arch`` and
``state_dict``), read with ``torch.load(weights_only=True)`` (tensors and
plain containers only: a pickle that would run code is refused, never run),
and turned into the bare network's state_dict (``1.`` and every ``module.``
of DataParallel/DDP removed); ``sampler/architectures.py`` builds the
network and ``sampler/models.py`` puts the data set's normalisation in front
of it. A file holding a bare state_dict (a ``net.state_dict()`` or the
Sequential's) is read the same way once its architecture is named
(``--arch``). ``load_into`` fits any state_dict to any network (the
``package.module:factory`` route with ``--weights`` too): ``module.``
prefixes are removed, and a mismatch is one line naming a few missing and
unexpected keys and the prefix that would make them fit.

Light to import: torch is imported by the functions that need it.
"""
from __future__ import annotations

import zipfile

# The architectures of the format and the data set whose normalisation each one's model starts with
# (locuslab/smoothing, code/architectures.py and code/datasets.py).
ARCHITECTURES = {"resnet50": "imagenet", "cifar_resnet20": "cifar10", "cifar_resnet110": "cifar10"}
NORMALISATION = {
    "imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]},
}
FORMAT = "locuslab/smoothing"
SEQUENTIAL_PREFIX = "1."          # net's place in Sequential(NormalizeLayer, net)
_SHOWN = 3                        # keys named per kind in a mismatch message


def check_arch(arch: str | None, what: str = "--arch") -> str | None:
    """``arch`` if it is one of ``ARCHITECTURES`` (or None); ValueError naming it and the known ones otherwise."""
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"{what} {arch!r} is not an architecture smoothcert builds ({', '.join(ARCHITECTURES)}); "
                         f"build its network in a package.module:factory and give the file with --weights")
    return arch


def is_torchscript(path: str) -> bool:
    """True if ``path`` is a zip archive written by ``torch.jit.save`` (it holds ``constants.pkl`` and ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_torch_file(path: str, what: str):
    """The object ``torch.save`` wrote to ``path``, read with ``weights_only=True``; ValueError (one line) otherwise.

    Only tensors, numbers, strings and plain containers are rebuilt: a pickle
    that names any other callable (``os.system``, a model class) is refused
    before anything in it runs. The message is ``what`` followed by
    "torch.load(weights_only=True) cannot read it (REASON)".
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{what} torch.load(weights_only=True) cannot read it ({_load_error_reason(e)})") from e


def _load_error_reason(e: Exception) -> str:
    """Why torch.load failed, in a few words (its message starts with a generic note about weights_only)."""
    import re

    text = " ".join(str(e).split())
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return (f"it holds pickled Python objects, not only tensors: it would call {found.group(1)}; nothing in it "
                f"was run")
    if "Unsupported operand" in text or "WeightsUnpickler" in text:
        return "a pickle that is not tensors and plain containers; nothing in it was run"
    if "central directory" in text or isinstance(e, zipfile.BadZipFile):
        return "a damaged or truncated zip archive"
    if isinstance(e, EOFError) or "EOF" in text:
        return "the file ends too early: truncated or damaged"
    return f"{type(e).__name__}: {text[:160]}" if text else f"{type(e).__name__}: a damaged file?"


def interpret(obj, path: str, arch: str | None = None) -> dict:
    """What a file read by ``read_torch_file`` holds, as ``{arch, dataset, state, epoch, kind}``; ValueError otherwise.

    ``kind`` is ``checkpoint`` (a dict with ``arch`` and ``state_dict``,
    whose ``arch`` must equal ``arch`` when that is given) or ``state_dict``
    (a bare one, or one under ``state_dict``; then ``arch`` names it).
    ``state`` is the bare network's state_dict: the ``1.`` of
    ``Sequential(NormalizeLayer, net)`` is removed when every key has it
    (``module.`` prefixes are left to ``load_into``).
    """
    what = f"model {path}"
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: holds a {type(obj).__name__}, not a checkpoint or a state_dict")
    inner = obj.get("state_dict")
    if isinstance(inner, dict) and "arch" in obj:
        kind, epoch, own = "checkpoint", obj.get("epoch"), obj["arch"]
        if not isinstance(own, str):
            raise ValueError(f"{what}: the checkpoint's 'arch' is a {type(own).__name__}, not a name")
        check_arch(own, f"{what}: the checkpoint's arch")
        if arch is not None and arch != own:
            raise ValueError(f"{what}: the checkpoint's arch is {own!r}, --arch says {arch!r}")
        arch, state = own, inner
    else:
        kind, epoch = "state_dict", None
        state = inner if isinstance(inner, dict) else obj
        if not state or not all(isinstance(k, str) for k in state) or not any(_is_tensor(v) for v in state.values()):
            raise ValueError(f"{what}: holds a dict with keys {_few(list(obj))} that is neither a checkpoint "
                             f"({{'arch', 'state_dict', ...}} of the {FORMAT} format) nor a state_dict")
        if arch is None:
            fits = [a for a in ARCHITECTURES if _fits(a, _net_level(state))]
            hint = f" (its keys fit {' and '.join(fits)})" if fits else ""
            raise ValueError(f"{what}: holds a state_dict without an 'arch'; name its architecture with --arch "
                             f"{'|'.join(ARCHITECTURES)}{hint}, or give its network as package.module:factory with "
                             f"--weights {path}")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, type(None))):
        epoch = None
    return {"kind": kind, "arch": arch, "dataset": ARCHITECTURES[arch], "state": _net_level(state), "epoch": epoch}


def _is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def _net_level(state: dict) -> dict:
    """``state`` without the ``1.`` of ``Sequential(NormalizeLayer, net)`` when every key has it."""
    if state and all(k.startswith(SEQUENTIAL_PREFIX) for k in state):
        return {k[len(SEQUENTIAL_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def _fits(arch: str, state: dict) -> bool:
    """True if ``state`` loads into ``arch``'s network (checked on torch's meta device: no memory, no initialisation)."""
    import torch

    from .architectures import build

    with torch.device("meta"):
        own = build(arch, _num_classes(state)).state_dict()
    return not _mismatch(own, _fitted(state, own))


def _num_classes(state: dict, default: int = 10) -> int:
    """The classes of the final linear layer in ``state`` (``fc.weight``'s rows, under any prefix)."""
    for k, v in state.items():
        if (k == "fc.weight" or k.endswith(".fc.weight")) and _is_tensor(v) and v.dim() == 2:
            return int(v.shape[0])
    return default


def build_network(info: dict, what: str):
    """The bare network of ``interpret``'s ``info`` with its weights loaded (classes from ``fc.weight``)."""
    from .architectures import build

    net = build(info["arch"], _num_classes(info["state"]))
    try:
        load_into(net, info["state"], f"{what}: the state_dict does not fit the {info['arch']} network")
    except ValueError as e:
        fits = [a for a in ARCHITECTURES if a != info["arch"] and _fits(a, info["state"])]
        raise ValueError(f"{e}{f'; its keys fit {fits[0]}' if fits else ''}") from None
    return net


# ------------------------------------------------------------------ fitting a state_dict to a network
def strip_wrappers(state: dict, net_keys) -> dict:
    """``state`` with every ``module.`` component (DataParallel, DistributedDataParallel) removed, unless the network has one."""
    if any(k == "module" or k.startswith("module.") or ".module." in f".{k}" for k in net_keys):
        return dict(state)
    return {".".join(p for p in k.split(".") if p != "module"): v for k, v in state.items()}


def load_into(net, state: dict, what: str) -> None:
    """Load ``state`` into ``net`` (strict, after ``strip_wrappers``); ValueError starting with ``what`` naming the mismatch.

    A ``num_batches_tracked`` counter missing from the file (state_dicts of
    torch before 0.4.1) is taken from the network: batch norm does not read
    it in eval mode.
    """
    own = net.state_dict()
    state = _fitted(state, own)
    problem = _mismatch(own, state)
    if problem:
        raise ValueError(f"{what}: {problem}")
    net.load_state_dict(state, strict=True)


def _fitted(state: dict, own: dict) -> dict:
    """``state`` after ``strip_wrappers``, with the network's ``num_batches_tracked`` where the file has none."""
    state = strip_wrappers(state, own)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    return state


def _mismatch(own: dict, state: dict) -> str:
    """'' if ``state`` has the keys and shapes of the network's ``own``; else one line naming differences and a fitting prefix."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if not missing and not unexpected:
        wrong = [f"{k} is {tuple(getattr(v, 'shape', ()))} in the file, {tuple(own[k].shape)} in the network"
                 for k, v in state.items() if tuple(getattr(v, "shape", ())) != tuple(own[k].shape)]
        if not wrong:
            return ""
        return f"{len(wrong)} tensors differ in shape ({'; '.join(wrong[:_SHOWN])}{'; ...' if len(wrong) > _SHOWN else ''})"
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys of the network missing from the file ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} keys of the file unexpected ({_few(unexpected)})")
    hint = _prefix_hint(missing, unexpected)
    return "; ".join(parts) + (f"; {hint}" if hint else "")


def _few(keys: list) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")


def _prefix_hint(missing: list, unexpected: list) -> str:
    """Which prefix, removed from the file's keys or added to them, makes the most missing keys appear."""

    def best(sources: list, targets: set):
        """The prefix ``p`` (ending in '.') of the most ``sources`` keys ``p + t`` with ``t`` in ``targets``."""
        counts = {}
        for key in sources:
            for i, c in enumerate(key):
                if c == "." and key[i + 1:] in targets:
                    counts[key[:i + 1]] = counts.get(key[:i + 1], 0) + 1
        return max(counts.items(), key=lambda kv: kv[1]) if counts else (None, 0)

    strip, n_strip = best(unexpected, set(missing))
    add, n_add = best(missing, set(unexpected))
    if strip and n_strip >= n_add:
        return (f"the file's keys start with {strip!r} where the network's do not: removing {strip!r} fits "
                f"{n_strip} of the {len(missing)} missing keys")
    if add:
        return (f"the network's keys start with {add!r} where the file's do not: the file holds the inner network "
                f"(adding {add!r} fits {n_add} of the {len(missing)} missing keys)")
    return ""
