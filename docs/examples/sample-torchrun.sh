#!/bin/bash
# Sample one store with torchrun: one process per GPU of this node, each writing
# its own input slots of ONE store (RANK / WORLD_SIZE pick the shard, LOCAL_RANK
# the GPU; `smoothcert sample` reads them itself).
#
#   NGPU=8 docs/examples/sample-torchrun.sh
#
# Several nodes sharing a file system: run this on every node with
#   TORCHRUN_ARGS="--nnodes 4 --node-rank \$NODE --rdzv-backend c10d --rdzv-endpoint HEAD:29500"
# The processes never talk to each other (no process group is needed); torchrun
# only hands out ranks. Re-running the same command resumes.
set -euo pipefail

SMOOTHCERT=${SMOOTHCERT:-$(command -v smoothcert)}   # a Python script path: torchrun runs it with python
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l)}
TORCHRUN_ARGS=${TORCHRUN_ARGS:---standalone}
MODEL=${MODEL:-models/resnet50.pt}
WEIGHTS=${WEIGHTS:-}
DATA=${DATA:-/shared/data/imagenet_val_500.npz}
STORE=${STORE:-/shared/stores/imagenet-sigma0.50.zarr}
SIGMA=${SIGMA:-0.50}
N0=${N0:-100}
N=${N:-100000}
BATCH=${BATCH:-1000}
DEVICE=${DEVICE:-cuda}
SEED=${SEED:-0}

args=(sample --model "$MODEL" --data "$DATA" --sigma "$SIGMA" --n0 "$N0" --n "$N"
      --batch-size "$BATCH" --seed "$SEED" --device "$DEVICE" --no-progress)
[ -n "$WEIGHTS" ] && args+=(--weights "$WEIGHTS")
# shellcheck disable=SC2086
# "--" ends torchrun's own options: without it torchrun rejects sample's --n as an abbreviation of its own.
exec ${TORCHRUN:-torchrun} $TORCHRUN_ARGS --nproc-per-node "$NGPU" -- "$SMOOTHCERT" "${args[@]}" "$STORE"
