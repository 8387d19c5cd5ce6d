#!/usr/bin/env bash
# mine -> train -> evaluate on a BEIR folder, from one config (see configs/). Stages already done with the same
# options are skipped, and an interrupted training continues from its last checkpoint: re-run after a crash.
# GPUs: as the other launchers (CUDA_VISIBLE_DEVICES, NPROC). Usage: scripts/pipeline.sh configs/scifact.yaml
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The checkout's own package, whether or not it is pip-installed; config paths stay relative to where you are.
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m reranker.cli.pipeline "$@"
