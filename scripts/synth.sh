#!/usr/bin/env bash
# Launch synth.py: with more than one GPU in CUDA_VISIBLE_DEVICES (all GPUs when it is unset), under torchrun with
# one process per GPU (each generates whole batches in turn; rank 0 writes, filters and resumes); otherwise as one
# plain process. NPROC overrides the process count.
# Usage: scripts/synth.sh --method inpars --generator smollm2 --corpus ../shared/data/beir/scifact ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
launch synth.sh synth.py "$@"
