"""The sampler: evaluate a classifier once on n0 + n Gaussian-noisy copies per input, into a store.

``sampler.run.sample`` is the library entry point behind ``smoothcert sample``:
it runs a ``sampler.config.SampleConfig`` (every setting, validated at
construction) and keeps the store, the resume and the run records;
``sampler.loops`` holds the batch loops (CPU, device, ensembles, online
adaptive); ``sampler.noise`` defines the noise (a pure function of seed,
dataset index and row); ``sampler.models`` and ``sampler.data`` load the
classifier and the inputs; ``sampler.shard`` splits the inputs between
processes; ``sampler.train`` trains the bundled digits CNN that the demo
(``smoothcert.demo``) uses.
"""
from .noise import SCHEME as NOISE_SCHEME

__all__ = ["NOISE_SCHEME", "SampleConfig", "sample"]


def __getattr__(name: str):
    if name == "SampleConfig":
        from .config import SampleConfig

        return SampleConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sample(*args, **kwargs):
    """``sampler.run.sample`` (imported lazily so that ``import sampler`` stays light)."""
    from .run import sample as _sample

    return _sample(*args, **kwargs)
