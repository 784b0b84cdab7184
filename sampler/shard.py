"""Which share of the inputs this process samples: ``--shard K/N``, torchrun, or a SLURM array.

Shard K of N takes input slots K, K + N, K + 2N, ... of the full selection,
so that N processes write disjoint slots of one preallocated store.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """Shard ``k`` of ``n`` and where that came from (``--shard``, ``torchrun``, ``slurm`` or ``none``)."""

    k: int = 0
    n: int = 1
    source: str = "none"

    def slots(self, n_inputs: int) -> range:
        """The input slots this shard owns: every n-th slot from k."""
        return range(self.k, n_inputs, self.n)

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def _parse(k, n, where: str) -> tuple[int, int]:
    """``(k, n)`` as integers with 0 <= k < n, else ValueError naming ``where``."""
    try:
        k, n = int(k), int(n)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected integers K/N, got {k}/{n}") from None
    if n < 1 or not (0 <= k < n):
        raise ValueError(f"{where}: need 0 <= K < N, got K={k}, N={n}")
    return k, n


def resolve_shard(spec: str | None = None, env=None) -> Shard:
    """The shard from ``spec`` ('K/N'), else RANK/WORLD_SIZE, else SLURM_ARRAY_TASK_ID/COUNT, else 0/1."""
    env = os.environ if env is None else env
    if spec is not None and str(spec).strip():
        parts = str(spec).split("/")
        if len(parts) != 2:
            raise ValueError(f"--shard {spec}: expected K/N, e.g. 0/4")
        return Shard(*_parse(parts[0], parts[1], f"--shard {spec}"), source="--shard")
    if "WORLD_SIZE" in env and "RANK" in env:
        return Shard(*_parse(env["RANK"], env["WORLD_SIZE"], "RANK/WORLD_SIZE"), source="torchrun")
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        tid = int(env["SLURM_ARRAY_TASK_ID"])
        lo = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", 1) or 1)
        if (tid - lo) % step:
            raise ValueError(f"SLURM_ARRAY_TASK_ID {tid} is not on the array's grid (min {lo}, step {step})")
        return Shard(*_parse((tid - lo) // step, env["SLURM_ARRAY_TASK_COUNT"], "SLURM_ARRAY_TASK_ID/COUNT"), source="slurm")
    return Shard()


def local_device_index(env=None) -> int | None:
    """torchrun's LOCAL_RANK (the GPU this process should use on its node), if set."""
    env = os.environ if env is None else env
    v = env.get("LOCAL_RANK")
    return int(v) if v is not None and v.strip().isdigit() else None
