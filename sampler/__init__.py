"""The sampler: evaluate a classifier once on n0 + n Gaussian-noisy copies per input, into a store.

``sampler.run.sample`` is the library entry point behind ``smoothcert sample``;
``sampler.noise`` defines the noise (a pure function of seed, dataset index
and row); ``sampler.models`` and ``sampler.data`` load the classifier and the
inputs; ``sampler.shard`` splits the inputs between processes;
``sampler.demo`` and ``sampler.train`` are the bundled digits demo.
"""
from .noise import SCHEME as NOISE_SCHEME

__all__ = ["NOISE_SCHEME", "sample"]


def sample(*args, **kwargs):
    """``sampler.run.sample`` (imported lazily so that ``import sampler`` stays light)."""
    from .run import sample as _sample

    return _sample(*args, **kwargs)
