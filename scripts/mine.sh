#!/usr/bin/env bash
# Launch hn_mine.py: with more than one GPU in CUDA_VISIBLE_DEVICES (all GPUs when it is unset), under
# torchrun with one process per GPU (the pool is encoded in shards); otherwise as one plain process.
# NPROC overrides the process count. Usage: CUDA_VISIBLE_DEVICES=0,1 scripts/mine.sh --input_file ... [options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
nproc="$(count_processes)"

echo "mine.sh: ${nproc} process(es); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}" >&2
if (( nproc > 1 )); then
    exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/hn_mine.py" "$@"
fi
exec "$PYTHON" "$here/hn_mine.py" "$@"
