#!/usr/bin/env bash
# Launch hn_mine.py: with more than one GPU in CUDA_VISIBLE_DEVICES (all GPUs when it is unset), under
# torchrun with one process per GPU (the pool is encoded in shards); otherwise as one plain process.
# NPROC overrides the process count. Usage: CUDA_VISIBLE_DEVICES=0,1 scripts/mine.sh --input_file ... [options]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
launch mine.sh hn_mine.py "$@"
