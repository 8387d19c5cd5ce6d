#!/usr/bin/env bash
# The demo: score the toy test split with the bundled MiniLM (fresh head), fine-tune it on the toy train split
# with run.py (bf16 where the CPU has it, else fp32; a few minutes on 2 CPU cores), and score it again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/nproc.sh"
PYTHON="$(find_python "$here")"
OUT="${OUT:-$here/outputs/demo}"
MODEL="${MODEL:-$("$PYTHON" -c 'from reranker.models.loading import bundled_minilm_path; print(bundled_minilm_path())')}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1

echo "== Scoring the toy test split with all-MiniLM-L6-v2 before training (its ranking head is untrained)"
"$PYTHON" "$here/scripts/demo_score.py" --model "$MODEL" --data "$here/data/toy/test.jsonl" --label "before training"

echo "== Fine-tuning on data/toy/train.jsonl -> $OUT"
start=$(date +%s)
PYTHON="$PYTHON" bash "$here/scripts/train.sh" \
    --model_name_or_path "$MODEL" \
    --train_data "$here/data/toy/train.jsonl" \
    --output_dir "$OUT" --overwrite_output_dir \
    --train_group_size 6 --query_max_len 32 --passage_max_len 96 \
    --per_device_train_batch_size 8 --learning_rate 1e-4 --warmup_steps 0.1 \
    --num_train_epochs 3 --auto_bf16 --logging_steps 5 --save_strategy no --seed 42
echo "== Training took $(( $(date +%s) - start )) s"

"$PYTHON" "$here/scripts/demo_score.py" --model "$OUT" --data "$here/data/toy/test.jsonl" --label "after training"
