#!/usr/bin/env bash
# Launch synth.py: with more than one GPU in CUDA_VISIBLE_DEVICES (all GPUs when it is unset), under torchrun with
# one process per GPU (each generates whole batches in turn; rank 0 writes, filters and resumes); otherwise as one
# plain process. NPROC overrides the process count.
# Usage: scripts/synth.sh --method inpars --generator smollm2 --corpus ../shared/data/beir/scifact ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
nproc="$(count_processes)"

echo "synth.sh: ${nproc} process(es); CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}" >&2
if (( nproc > 1 )); then
    exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$nproc" "$here/synth.py" "$@"
fi
exec "$PYTHON" "$here/synth.py" "$@"
