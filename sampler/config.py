"""Every setting of one sampling run, as one validated, immutable object.

``SampleConfig`` is what ``sample`` runs and what ``smoothcert sample``
builds from its options. Constructing one checks every setting that can be
checked without the data, the models or the machine (the same one-line
errors the command line prints, naming the option); the data set, the index
selection, the models and the device are checked when the run opens them.

The batch schedule of an input (``row_batches``, ``SampleConfig.batches``)
is a pure function of the configuration, so it lives here: a subset, a shard
or a resumed run computes each input in exactly the same batches.

Light to import: numpy and the standard library (plus ``stats.adaptive``
and scipy for an adaptive configuration, the store layer for a replay),
never torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..parsing import parse_int_list
from ..store import format as _F

AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
DEFAULT_ADAPTIVE_STAGES = (1_000, 10_000, 125_000)
DEFAULT_N0, DEFAULT_N, DEFAULT_SEED = 100, 100_000, 0   # what n0, n, seed left as None become (without replay_of)


def row_batches(total_rows: int, batch_size: int):
    """The (start, stop) row ranges of one input's batches: a function of its row count and the batch size only."""
    return [(a, min(a + batch_size, total_rows)) for a in range(0, total_rows, batch_size)]


def _str_or_none(v):
    return None if v is None else str(v)


@dataclass(frozen=True)
class SampleConfig:
    """The settings of one sampling run (everything ``sample`` takes but the STORE location).

    Fields mirror the ``smoothcert sample`` options: ``models`` (one model, or
    several for an ensemble: TorchScript files, checkpoints of the
    locuslab/smoothing format, files holding a state_dict of ``arch``,
    ``package.module:factory`` specs, or ``torch.nn.Module`` objects, which
    are copied), ``arch`` (the architecture of a file holding a bare
    state_dict, ``sampler.checkpoints.ARCHITECTURES``),
    ``weights`` (the i-th goes to the i-th factory model), ``mean``/``std``
    (normalisation inside the model, after the noise), ``data`` (the text
    of ``--data``, or from Python a dataset object, ``sampler.data``), ``sigma``,
    ``n0``, ``n``, ``batch_size``, ``seed``, ``device`` (``auto``, ``cpu``,
    ``cuda``, ``cuda:N``), ``indices`` (``START:STOP:STEP``), ``resize``,
    ``crop`` and ``classes`` (an image folder's preprocessing and class-list
    file, ``sampler.images``), ``dtype`` of the
    stored rows, ``shard`` (``K/N``; None: from torchrun/SLURM, else all),
    ``core_model``/``core_weights`` (ACES's core model), ``amp`` (``bf16`` or
    ``fp16``), ``channels_last`` (None: on for images, falling back when the
    model cannot take it), ``progress``, ``queue_size`` (finished inputs
    waiting for the writer), ``storage_options`` (fsspec, for URL stores),
    ``log`` (a callable taking one line; None: stderr), ``topk`` (K: write a
    compact store, per row the top K probabilities with their classes, the
    argmax and the entropy, and the selection rows whole, as ``store
    compact --topk K`` would; None: full rows), and the online adaptive rule
    ``adaptive_radius`` (None: off), ``adaptive_stages``, ``adaptive_alpha``,
    ``adaptive_beta``; ``replay_of`` (None: off), a base store whose own noisy
    copies the models are evaluated on (``sampler.replay``).

    ``data``, ``sigma``, ``n0``, ``n`` and ``seed`` may be left None: without
    ``replay_of`` data and sigma are then required, and n0, n, seed become
    ``DEFAULT_N0``, ``DEFAULT_N``, ``DEFAULT_SEED``. With ``replay_of`` the
    config opens BASE: sigma, seed, n0, indices and data left None are
    BASE's (data read with BASE's resize, crop and classes unless those are
    given), given ones must equal BASE's, and ``n`` (P, required) is at most
    BASE's n; ``replay_base`` holds BASE's settings (``replay.base_settings``).
    The data fingerprint, the selection, the input shape and the number of
    classes are checked against BASE when the run has loaded them, before
    anything is written.

    Guarantee: a constructed config is valid in every setting checkable
    without data, models or machine, and normalised (``models`` a tuple of
    str and modules, ``weights`` a tuple of str, ``mean``/``std`` tuples of
    floats of equal length or both None, integers as int, ``adaptive_stages`` a tuple of ints); otherwise
    the constructor raises ValueError with the same one-line message as
    ``smoothcert sample``. ``dataclasses.replace`` re-validates.
    ``adaptive_plan`` is the validated stopping rule (stages clipped to n)
    or None.
    """

    models: tuple
    data: str | None = None
    sigma: float | None = None
    weights: tuple = ()
    mean: Any = None
    std: Any = None
    n0: int | None = None
    n: int | None = None
    batch_size: int = 1000
    seed: int | None = None
    device: str | None = "auto"
    indices: str | None = None
    resize: int | None = None
    crop: int | None = None
    classes: str | None = None
    dtype: str = _F.DEFAULT_SAMPLER_DTYPE
    shard: str | None = None
    core_model: Any = None
    core_weights: str | None = None
    amp: str | None = None
    channels_last: bool | None = None
    progress: bool = True
    queue_size: int = 2
    storage_options: dict | None = field(default=None, hash=False)
    log: Callable[[str], Any] | None = field(default=None, compare=False, hash=False, repr=False)
    topk: int | None = None
    adaptive_radius: float | None = None
    adaptive_stages: Any = DEFAULT_ADAPTIVE_STAGES
    adaptive_alpha: float = 0.001
    adaptive_beta: float = 0.0001
    adaptive_plan: dict | None = field(init=False, default=None, compare=False, hash=False, repr=False)
    replay_of: str | None = None
    arch: str | None = None
    replay_base: dict | None = field(init=False, default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        from . import noise as _noise
        from .checkpoints import check_arch
        from .data import is_spec, preprocessing_options
        from .images import check_sizes
        from .models import check_normalisation, is_module, pair_weights
        from .shard import resolve_shard

        def put(name, value):
            object.__setattr__(self, name, value)

        # a Sequential is iterable: one module is one model, as one spec is
        models = [self.models] if isinstance(self.models, str) or is_module(self.models) else list(self.models)
        if not models:
            raise ValueError("give at least one --model")
        put("models", tuple(m if is_module(m) else str(m) for m in models))
        put("arch", check_arch(_str_or_none(self.arch)))
        weights = [self.weights] if isinstance(self.weights, str) else list(self.weights or ())
        put("weights", tuple(str(w) for w in weights))
        # ---- replay of a base store's noisy copies (sampler/replay.py): settings from BASE, or checked against it
        put("replay_of", _str_or_none(self.replay_of))
        if self.replay_of is not None:
            from .replay import INHERITED, base_settings, resolve

            if self.adaptive_radius is not None:
                raise ValueError("--adaptive-radius cannot be combined with --replay-of (a replay store holds "
                                 "n0 + P rows of every input)")
            base = base_settings(self.replay_of, self.storage_options)
            data_given = self.data is not None
            for name, v in resolve(base, {k: getattr(self, k) for k in INHERITED}, self.n).items():
                put(name, v)
            if not data_given and (self.resize, self.crop, self.classes) == (None, None, None):
                for name, v in preprocessing_options(base["data_preprocessing"]).items():    # BASE's data, read as BASE read it
                    put(name, v)
            put("replay_base", base)
        else:
            if self.data is None:
                raise ValueError("give --data (or --replay-of BASE, which takes BASE's)")
            if self.sigma is None:
                raise ValueError("give --sigma (or --replay-of BASE, which takes BASE's)")
            for name, default in (("n0", DEFAULT_N0), ("n", DEFAULT_N), ("seed", DEFAULT_SEED)):
                if getattr(self, name) is None:
                    put(name, default)
        # ---- end of replay
        sigma = float(self.sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"--sigma must be a positive number, got {sigma}")
        put("sigma", sigma)
        for name, v, lo in (("--n0", self.n0, 1), ("--n", self.n, 1), ("--batch-size", self.batch_size, 1)):
            if int(v) != v or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v}")
        for name in ("n0", "n", "batch_size", "seed"):
            put(name, int(getattr(self, name)))
        if self.topk is not None:
            from ..store.topk import MAX_TOPK

            k = self.topk
            if (isinstance(k, bool) or not isinstance(k, (int, float, np.integer)) or not float(k).is_integer()
                    or not (2 <= k <= MAX_TOPK)):
                raise ValueError(f"--topk must be an integer in 2..{MAX_TOPK}, got {self.topk}")
            put("topk", int(self.topk))
        if self.dtype not in _F.ROW_DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(_F.ROW_DTYPES)}, got {self.dtype}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise ValueError(f"--amp must be bf16 or fp16, got {self.amp}")
        _noise.input_key(self.seed, 0)                       # validates the seed's range
        if self.shard is not None:
            resolve_shard(self.shard, env={})                # the K/N text; the environment is read at run time
        put("data", str(self.data) if is_spec(self.data) else self.data)   # a dataset object from Python stays one
        resize, crop = check_sizes(self.resize, self.crop)
        put("resize", resize)
        put("crop", crop)
        put("classes", _str_or_none(self.classes))
        for name in ("core_model", "core_weights"):
            v = getattr(self, name)
            put(name, v if is_module(v) else _str_or_none(v))
        if self.core_weights and self.core_model is None:
            raise ValueError("--core-weights needs --core-model")
        pair_weights(self.models, self.weights)
        mean, std = check_normalisation(self.mean, self.std)
        put("mean", None if mean is None else tuple(mean))
        put("std", None if std is None else tuple(std))
        if self.channels_last is not None:
            put("channels_last", bool(self.channels_last))
        stages = self.adaptive_stages
        put("adaptive_stages", tuple(parse_int_list(stages, "adaptive-stages")) if stages is not None else None)
        plan = None
        if self.adaptive_radius is not None:
            from ..stats.adaptive import online_plan

            plan = online_plan(self.adaptive_radius, list(self.adaptive_stages or ()), self.adaptive_alpha,
                               self.adaptive_beta, self.n)
        put("adaptive_plan", plan)

    # ------------------------------------------------------------ derived, pure functions of the settings
    @property
    def rows_per_input(self) -> int:
        """n0 + n: the rows of a complete input (an adaptive run may store fewer)."""
        return self.n0 + self.n

    def batches(self) -> list[tuple[int, int]]:
        """One input's (start, stop) row ranges, in order: ``row_batches(n0 + n, batch_size)``, cut at the stage ends when adaptive.

        For a replay (``replay_of``), BASE's ``row_batches(n0 + BASE's n,
        batch_size)`` cut at n0 + n: with BASE's batch size every batch but
        the last is one of BASE's.

        Guarantee: a function of (n0, n, batch_size, adaptive stages) only, so
        an input is computed in the same batches whatever else is sampled.
        With the adaptive rule no batch crosses a stage end, so no row past
        the deciding stage is drawn.
        """
        R = self.rows_per_input
        if self.replay_base is not None:
            # a replay: BASE's batches (same batch size) cut at n0 + P, so every full batch is one of BASE's
            return [(a, min(b, R)) for a, b in row_batches(self.n0 + self.replay_base["n"], self.batch_size) if a < R]
        if self.adaptive_plan is None:
            return row_batches(R, self.batch_size)
        cuts = sorted(set([0, R] + list(self.stage_ends())))
        return [(a0 + a, a0 + b) for a0, b0 in zip(cuts, cuts[1:]) for a, b in row_batches(b0 - a0, self.batch_size)]

    def stage_ends(self) -> dict[int, int]:
        """``{n0 + n_j: j}``: the row after which the adaptive rule decides stage j (empty without the rule)."""
        if self.adaptive_plan is None:
            return {}
        return {self.n0 + s: j for j, s in enumerate(self.adaptive_plan["stages"])}

    def replace(self, **changes) -> "SampleConfig":
        """A copy with ``changes`` applied, validated again (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
