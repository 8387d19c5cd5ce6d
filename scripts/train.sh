#!/usr/bin/env bash
# Launch run.py under torchrun: one process per GPU listed in CUDA_VISIBLE_DEVICES (all GPUs when it is unset),
# one process on a machine without GPUs. NPROC overrides (e.g. NPROC=2 for two CPU processes over gloo).
# Usage: CUDA_VISIBLE_DEVICES=0,1 scripts/train.sh --train_data data.jsonl --output_dir out [run.py options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

if [[ -n "${NPROC:-}" ]]; then
    nproc="$NPROC"
elif [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    # "0,1,3" -> 3 processes; "" or "-1" hides every GPU -> 1 CPU process.
    IFS=',' read -ra gpus <<< "${CUDA_VISIBLE_DEVICES}"
    nproc=0
    for gpu in "${gpus[@]}"; do [[ -n "$gpu" && "$gpu" != "-1" ]] && nproc=$((nproc + 1)); done
    (( nproc > 0 )) || nproc=1
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    nproc="$(nvidia-smi -L | grep -c '^GPU')"
else
    nproc=1
fi

echo "train.sh: torchrun with ${nproc} process(es); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}" >&2
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/run.py" "$@"
