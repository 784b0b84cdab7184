"""smoothcert: sample a classifier once under Gaussian noise, certify offline as often as you like.

The three library entry points a notebook needs:

- ``smoothcert.sample(store, SampleConfig(models=..., data=..., sigma=...))``
  (or ``sample(store, models=..., data=..., sigma=...)``): evaluate a PyTorch
  classifier on n0 + n Gaussian-noisy copies of each input and write every
  copy's softmax row into a Zarr sample store (``smoothcert.sampler``).
- ``smoothcert.open_store(path_or_url)``: open a store read-only, check its
  format, and read blocks of rows from it (``smoothcert.store``).
- ``smoothcert.certify(store, method, options)``: compute a randomized-
  smoothing certificate from the stored rows, one table row per (input,
  setting), without touching the network (``smoothcert.certifier``).

The layers point one way: ``store`` (the bytes) at the bottom, ``stats`` (the
bounds and tests both upper layers share) beside it, ``sampler`` and
``certifier`` above them and never importing each other, the command line
(``smoothcert.cli``) on top. See docs/architecture.md.

Each attribute is imported on first use, so ``import smoothcert`` is cheap
(torch, numba and pandas load only with the layer that needs them).
"""
from __future__ import annotations

import importlib

__all__ = ["sample", "open_store", "certify", "CertifyOptions", "SampleConfig", "StoreError", "__version__"]

_LAZY = {
    "sample": ("smoothcert.sampler.run", "sample"),
    "SampleConfig": ("smoothcert.sampler.config", "SampleConfig"),
    "open_store": ("smoothcert.store", "open_store"),
    "StoreError": ("smoothcert.store.errors", "StoreError"),
    "certify": ("smoothcert.certifier", "certify"),
    "CertifyOptions": ("smoothcert.certifier", "CertifyOptions"),
}


def __getattr__(name: str):
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("smoothcert")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0+unknown"
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'smoothcert' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
