#!/usr/bin/env bash
# Rounds of mining and training: round 0 mines with the embedder, each later round with the previous round's
# reranker; stops when the dev nDCG@10 stops improving (see reranker/iterate.py). Finished rounds are skipped
# on a re-run. Usage: scripts/iterate.sh my_rounds.yaml
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m reranker.cli.iterate "$@"
