#!/usr/bin/env bash
# Launch eval.py: with more than one GPU in CUDA_VISIBLE_DEVICES (all GPUs when it is unset), under torchrun with
# one process per GPU (each scores its share of the pairs; rank 0 writes); otherwise as one plain process.
# NPROC overrides the process count (NPROC=2 on a CPU machine runs two gloo processes).
# Usage: scripts/eval.sh --models outputs/my-reranker --datasets ../shared/data/beir/scifact \
#            --first_stage bm25 dense --output_dir outputs/eval [eval.py options]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
launch eval.sh eval.py "$@"
