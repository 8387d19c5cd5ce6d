#!/usr/bin/env bash
# Launch run.py under torchrun: one process per GPU listed in CUDA_VISIBLE_DEVICES (all GPUs when it is unset),
# one process on a machine without GPUs. NPROC overrides (e.g. NPROC=2 for two CPU processes over gloo).
# Usage: CUDA_VISIBLE_DEVICES=0,1 scripts/train.sh --train_data data.jsonl --output_dir out [run.py options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
nproc="$(count_processes)"

echo "train.sh: torchrun with ${nproc} process(es); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}" >&2
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/run.py" "$@"
