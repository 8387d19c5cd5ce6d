#!/usr/bin/env bash
# Evaluate rerankers (one process; set CUDA_VISIBLE_DEVICES to pick the GPU).
# Usage: scripts/eval.sh --models outputs/my-reranker --datasets ../shared/data/beir/scifact \
#            --first_stage bm25 dense --output_dir outputs/eval [eval.py options]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
exec "$PYTHON" "$here/eval.py" "$@"
