#!/usr/bin/env bash
# Build a wheel from this tree, install it into a new virtual environment (CPU torch pinned), and check it
# works outside the checkout: every installed command's --help, then reranker-pipeline end to end on a tiny
# BEIR folder with the bundled MiniLM. Usage: scripts/check_wheel.sh [work dir]   (PYTHON picks the python)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
echo "check_wheel: building in $work" >&2

"$PYTHON" -m build --wheel --outdir "$work/dist" "$here" >"$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/*.whl)"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -c "$here/constraints-cpu.txt" "$wheel" >"$work/install.log" 2>&1 \
    || { grep -v "is ignored" "$work/install.log" | tail -20; exit 1; }

cd "$work"  # outside the checkout: nothing of it is importable from here
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$work/venv/bin/python" -c 'import reranker, sys; sys.exit(0 if "site-packages" in reranker.__file__ else 1)'
for command in train train-embedder mine eval synth pipeline iterate merge export; do
    "$work/venv/bin/reranker-$command" --help >/dev/null
done

"$work/venv/bin/python" - <<'PY'
import json
from pathlib import Path

topics = [("capital of france", "Paris is the capital of France."), ("capital of germany", "Berlin is the capital "
          "of Germany."), ("how bread is baked", "Bread is baked in a hot oven."), ("why the sky is blue", "The sky "
          "is blue because sunlight is scattered."), ("when water freezes", "Water freezes at zero degrees."),
          ("what cats eat", "Cats eat meat and fish."), ("where rome is", "Rome is in Italy."),
          ("who wrote hamlet", "Hamlet was written by Shakespeare.")]
beir = Path("beir")
(beir / "qrels").mkdir(parents=True, exist_ok=True)
docs = [{"_id": f"d{i}", "title": "", "text": text} for i, (_, text) in enumerate(topics)]
docs += [{"_id": f"x{i}", "title": "", "text": f"An unrelated note number {i} about trains and weather."}
         for i in range(30)]
(beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
(beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n"
                                            for i, (q, _) in enumerate(topics)))
for split, ids in (("train", range(6)), ("test", range(6, 8))):
    (beir / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                 "".join(f"q{i}\td{i}\t1\n" for i in ids))
Path("config.yaml").write_text(json.dumps({
    "beir": "beir", "output_dir": "out", "dev_queries": 2, "dev_depth": 5,
    "mine": {"retriever": "bm25", "range_for_sampling": "1-10", "negative_number": 3},
    "train": {"max_steps": 2, "per_device_train_batch_size": 2, "train_group_size": 4, "query_max_len": 16,
              "passage_max_len": 32, "save_strategy": "no", "use_cpu": True},
    "eval": {"first_stage": ["bm25"], "top_k": 5, "cache_dir": "none"}}))
PY
mv config.yaml config.json
"$work/venv/bin/reranker-pipeline" config.json
test -f out/report/results.json && test -f out/model/config.json
echo "check_wheel: the wheel installs and runs outside the checkout ($work)" >&2
