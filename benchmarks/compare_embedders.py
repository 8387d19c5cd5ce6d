"""Our embedder trainer against sentence-transformers' SentenceTransformerTrainer with MultipleNegativesRankingLoss,
on the same records, steps, batch, token budgets and precision, in one run; then both (and the embedder they
start from) retrieve the test queries of a BEIR folder from its whole corpus with the same code.

Both see the same groups: for every pass over the records, each record's positive and hard negative are drawn by
our seeded sampler (reranker/data/groups.py) and handed to sentence-transformers as (anchor, positive, negative)
rows, with its recommended no-duplicates batch sampler. Ours trains with its default recipe (masked in-batch false
negatives, the dense dev check with the best checkpoint kept when --dev_file is given); theirs with theirs.

    python benchmarks/compare_embedders.py --beir ../shared/data/beir/scifact --train_file mined.jsonl \\
        --dev_file dev.jsonl --steps 120 --out outputs/compare_embedders

Prints one table (test nDCG@10, Recall@100, training pairs/s, wall time, peak memory) and the paired randomization
test of ours against theirs, and writes it to <out>/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import run_measured  # noqa: E402
from paired_test import paired_randomization  # noqa: E402

from reranker.cli import common as cli  # noqa: E402
from reranker.common.precision import resolve_dtype  # noqa: E402
from reranker.data.beir import load_beir  # noqa: E402
from reranker.models.loading import bundled_minilm_path  # noqa: E402
from reranker.retrieval.first_stage import dense_run  # noqa: E402
from reranker.retrieval.metrics import per_query_metrics  # noqa: E402

logger = logging.getLogger("compare_embedders")

# sentence-transformers trains in a child process, so its wall time and memory are measured like ours.
ST_TRAIN = r'''
import json, sys, time
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments
from sentence_transformers.losses import MultipleNegativesRankingLoss
from sentence_transformers.training_args import BatchSamplers
from reranker.data.groups import sample_group
from reranker.data.sources import load_source

cfg = json.loads(sys.argv[1])
examples = load_source(cfg["train_file"], 2).examples
columns = {"anchor": [], "positive": [], "negative": []}
needed = cfg["steps"] * cfg["batch_size"]
epoch = 0
while len(columns["anchor"]) < needed:  # every pass draws each record's group as our sampler does
    for i, example in enumerate(examples):
        group = sample_group(example, 2, cfg["seed"], epoch, 0, i)
        columns["anchor"].append(group.query)
        columns["positive"].append(group.passages[0])
        columns["negative"].append(group.passages[1])
    epoch += 1
model = SentenceTransformer(cfg["model"], device="cpu" if cfg["use_cpu"] else None)
model.max_seq_length = cfg["passage_max_len"]  # one budget for both sides in sentence-transformers
args = SentenceTransformerTrainingArguments(
    output_dir=cfg["output_dir"] + "_trainer", per_device_train_batch_size=cfg["batch_size"],
    learning_rate=cfg["learning_rate"], max_steps=cfg["steps"], bf16=cfg["bf16"], use_cpu=cfg["use_cpu"],
    save_strategy="no", logging_steps=10, report_to="none", seed=cfg["seed"],
    batch_sampler=BatchSamplers.NO_DUPLICATES,
)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                     loss=MultipleNegativesRankingLoss(model))
start = time.perf_counter()
trainer.train()
print("TRAIN_SECONDS", time.perf_counter() - start, file=sys.stderr)
model.save_pretrained(cfg["output_dir"])
'''


def train_seconds(log: str) -> float | None:
    """The training loop's own time (without loading and saving), from either trainer's log."""
    for line in reversed(log.splitlines()):
        if line.startswith("TRAIN_SECONDS"):
            return float(line.split()[1])
        if "'train_runtime'" in line:
            return float(line.split("'train_runtime': ")[1].split(",")[0].strip("'"))
    return None


def evaluate(data, model: str, args) -> dict:
    run = dense_run(data, 100, model, None, "", args.query_max_len, args.passage_max_len, "auto", 64)
    values = per_query_metrics(data.qrels, run)
    return {"nDCG@10": float(values["nDCG@10"].mean()), "Recall@100": float(values["Recall@100"].mean()),
            "per_query": values["nDCG@10"].tolist()}


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", required=True, help="BEIR folder whose test queries are retrieved")
    parser.add_argument("--split", default="test")
    parser.add_argument("--train_file", required=True, help="{query, pos, neg} records (e.g. BM25-mined)")
    parser.add_argument("--dev_file", help="our trainer's dev file (dense dev check, best checkpoint kept)")
    parser.add_argument("--model", default=None, help="the embedder both start from (default: bundled MiniLM)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--query_max_len", type=int, default=64)
    parser.add_argument("--passage_max_len", type=int, default=256)
    parser.add_argument("--eval_steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--systems", nargs="+", default=["ours", "sentence-transformers"])
    parser.add_argument("--out", default="outputs/compare_embedders")
    parser.add_argument("--speed_only", action="store_true",
                        help="train and measure (pairs/s, memory) without retrieving the test queries: a short "
                             "race on quiet cores")
    a = parser.parse_args(argv)
    model = a.model or bundled_minilm_path()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = not _has_cuda()
    bf16 = resolve_dtype("auto", "precision", "cpu" if cpu else "cuda") == "bf16"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    data = load_beir(a.beir, a.split)
    def quality(path: str) -> dict:
        empty = {"nDCG@10": float("nan"), "Recall@100": float("nan"), "per_query": []}
        return empty if a.speed_only else evaluate(data, path, a)

    rows = [] if a.speed_only else [{"system": "base embedder", **evaluate(data, model, a)}]
    for system in a.systems:
        target = out / system
        if system == "ours":
            command = [sys.executable, "-m", "reranker.cli.train_embedder", "--model_name_or_path", model,
                       "--train_data", a.train_file, "--output_dir", str(target), "--overwrite_output_dir", "true",
                       "--max_steps", str(a.steps), "--per_device_train_batch_size", str(a.batch_size),
                       "--learning_rate", str(a.learning_rate), "--train_group_size", "2",
                       "--query_max_len", str(a.query_max_len), "--passage_max_len", str(a.passage_max_len),
                       "--seed", str(a.seed), "--auto_bf16", "false", "--bf16", str(bf16).lower(),
                       "--disable_tqdm", "true", "--save_total_limit", "2"]
            if a.dev_file:
                command += ["--dev_file", a.dev_file, "--eval_steps", str(a.eval_steps), "--save_steps",
                            str(a.eval_steps)]
            else:
                command += ["--save_strategy", "no"]
        else:
            cfg = {"model": model, "train_file": a.train_file, "output_dir": str(target), "steps": a.steps,
                   "batch_size": a.batch_size, "learning_rate": a.learning_rate, "seed": a.seed, "bf16": bf16,
                   "use_cpu": cpu, "passage_max_len": a.passage_max_len}
            command = [sys.executable, "-c", ST_TRAIN, json.dumps(cfg)]
        logger.info("Training %s for %d steps of %d records", system, a.steps, a.batch_size)
        result, wall, peak = run_measured(command, env)
        seconds = train_seconds(result.stdout + "\n" + result.stderr)
        pairs = a.steps * a.batch_size * 2  # a query with its positive and one hard negative
        rows.append({"system": system, **quality(str(target)), "wall_s": round(wall, 1),
                     "train_s": round(seconds, 1) if seconds else None,
                     "pairs_per_s": round(pairs / seconds, 2) if seconds else None, "peak_rss_mb": round(peak)})
    table = ["| system | nDCG@10 | Recall@100 | train pairs/s | train s | wall s | peak RSS MB |", "|---" * 7 + "|"]
    for r in rows:
        table.append(f"| {r['system']} | {r['nDCG@10']:.4f} | {r['Recall@100']:.4f} | {r.get('pairs_per_s', '')} | "
                     f"{r.get('train_s', '')} | {r.get('wall_s', '')} | {r.get('peak_rss_mb', '')} |")
    print("\n".join(table))
    by_name = {r["system"]: r for r in rows}
    tests = {}
    if {"ours", "sentence-transformers"} <= set(by_name) and not a.speed_only:
        tests["ours_vs_sentence_transformers"] = paired_randomization(
            by_name["sentence-transformers"]["per_query"], by_name["ours"]["per_query"])
    tests.update({f"{name}_vs_base": paired_randomization(by_name["base embedder"]["per_query"], r["per_query"])
                  for name, r in by_name.items() if name != "base embedder" and not a.speed_only})
    print(json.dumps(tests, indent=2))
    summary = {"settings": vars(a), "bf16": bf16, "rows": [{k: v for k, v in r.items() if k != "per_query"}
                                                          for r in rows], "paired_tests": tests}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
