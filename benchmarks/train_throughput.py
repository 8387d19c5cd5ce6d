"""Training throughput and peak memory of run.py beside FlagEmbedding's and sentence-transformers' reranker
fine-tuning, in one run.

All train the same model on the same file with the same group size, token budgets, batch, steps, learning rate,
precision and threads: ours and FlagEmbedding launched by torchrun with one process, sentence-transformers'
CrossEncoderTrainer in-process in a child (with the group softmax the other two use). Prints pairs/s (from each
Trainer's own train_runtime, so model loading is excluded) and peak resident memory, then the ratios ours / theirs.
`--one_pass` adds a run of ours with --forward_tokens 0 (each batch in one forward pass), to show what the
length-sorted slices bring.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

from common import ST_TRAIN, run_measured

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = re.compile(r"'train_runtime': '?([0-9.]+)")



def common_args(a) -> list[str]:
    args = ["--model_name_or_path", a.model, "--train_data", a.data, "--train_group_size", str(a.group_size),
            "--query_max_len", str(a.query_max_len), "--passage_max_len", str(a.passage_max_len),
            "--per_device_train_batch_size", str(a.batch_size), "--max_steps", str(a.steps),
            "--learning_rate", "1e-4", "--save_strategy", "no", "--logging_steps", "5", "--report_to", "none",
            "--seed", "42", "--use_cpu"]
    return args + (["--bf16"] if a.bf16 else [])


def measure(name: str, command: list[str], env: dict, log: Path) -> dict:
    result, wall, peak = run_measured(command, env)
    log.write_text(result.stdout + result.stderr)
    runtimes = RUNTIME.findall(result.stdout + result.stderr)
    if not runtimes:
        raise SystemExit(f"{name}: no train_runtime in its output; see {log}")
    return {"train_runtime_s": float(runtimes[-1]), "wall_s": wall, "peak_rss_mb": peak}


def beir_training_file(folder: Path, out: Path, negatives: int, seed: int = 0) -> str:
    """{query, pos, neg} from a BEIR folder's train qrels; negatives drawn at random from the corpus (seeded).

    Random negatives are enough to time training: only the text lengths matter here, not their hardness.
    """
    import random

    from reranker.common.files import iter_jsonl

    docs = {row["_id"]: (row.get("title", "") + " " + row["text"]).strip()
            for _, row in iter_jsonl(folder / "corpus.jsonl")}
    queries = {row["_id"]: row["text"] for _, row in iter_jsonl(folder / "queries.jsonl")}
    positives: dict[str, list[str]] = {}
    for line in (folder / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0 and did in docs:
            positives.setdefault(qid, []).append(did)
    rng = random.Random(seed)
    ids = sorted(docs)
    with out.open("w", encoding="utf-8") as handle:
        for qid, pos in positives.items():
            neg = [d for d in rng.sample(ids, negatives + len(pos)) if d not in pos][:negatives]
            handle.write(json.dumps({"query": queries[qid], "pos": [docs[d] for d in pos],
                                     "neg": [docs[d] for d in neg]}) + "\n")
    return str(out)


def main(argv: list[str] | None = None) -> None:
    from reranker.common.precision import cpu_has_bf16
    from reranker.models.loading import bundled_minilm_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=str(ROOT / "data/toy/train.jsonl"), help="{query,pos,neg} jsonl")
    parser.add_argument("--beir", default=None, help="build the training file from this BEIR folder's train split "
                        "(e.g. ../shared/data/beir/scifact) instead of --data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=4, help="groups per step")
    parser.add_argument("--group_size", type=int, default=8)
    parser.add_argument("--query_max_len", type=int, default=64)
    parser.add_argument("--passage_max_len", type=int, default=256)
    parser.add_argument("--no_bf16", dest="bf16", action="store_false",
                        help="train in fp32 (the default where the CPU has no bf16 instructions: emulated bf16 is "
                             "several times slower)")
    parser.add_argument("--bf16", dest="bf16", action="store_true", help="train both in bf16 autocast")
    parser.set_defaults(bf16=cpu_has_bf16() is True)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP_NUM_THREADS for both")
    parser.add_argument("--one_pass", action="store_true", help="also run ours with --forward_tokens 0")
    parser.add_argument("--skip_st", action="store_true", help="leave sentence-transformers out")
    parser.add_argument("--workdir", default=str(ROOT / "outputs/bench_train"))
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    a = parser.parse_args(argv)
    a.model = a.model or bundled_minilm_path()

    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)  # our own scratch folder: FlagEmbedding refuses a non-empty one
    work.mkdir(parents=True)
    if a.beir:
        a.data = beir_training_file(Path(a.beir), work / "beir_train.jsonl", negatives=a.group_size - 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    ours = [*torchrun, str(ROOT / "run.py"), *common_args(a)]
    systems = {"reranker (run.py)": [*ours, "--output_dir", str(work / "ours")]}
    if a.one_pass:
        systems["reranker, one pass"] = [*ours, "--forward_tokens", "0", "--output_dir", str(work / "ours_one_pass")]
    systems["FlagEmbedding"] = [*torchrun, "-m", "FlagEmbedding.finetune.reranker.encoder_only.base",
                                *common_args(a), "--output_dir", str(work / "flag")]
    if not a.skip_st:
        systems["sentence-transformers"] = [sys.executable, "-c", ST_TRAIN, json.dumps({
            "model": a.model, "train_file": a.data, "output_dir": str(work / "st"), "group_size": a.group_size,
            "batch_size": a.batch_size, "steps": a.steps, "learning_rate": 1e-4, "warmup_steps": 0,
            "bf16": a.bf16, "use_cpu": True, "seed": 42, "query_max_len": a.query_max_len,
            "passage_max_len": a.passage_max_len})]
    pairs = a.steps * a.batch_size * a.group_size
    results = {}
    for name, command in systems.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name, command, env, work / f"{name.split()[0].strip(',')}{len(results)}.log")
        results[name]["pairs_per_s"] = pairs / results[name]["train_runtime_s"]

    print(f"\n{a.steps} steps x {a.batch_size} groups x {a.group_size} passages = {pairs} pairs; "
          f"query {a.query_max_len} / passage {a.passage_max_len} tokens; {'bf16' if a.bf16 else 'fp32'}; "
          f"{a.threads} threads; data {a.data}\n")
    print("| system | pairs/s | train s | wall s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['pairs_per_s']:.1f} | {r['train_runtime_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} |")
    ours = results["reranker (run.py)"]
    for name, r in results.items():
        if name != "reranker (run.py)":
            print(f"\nours / {name}: speed {ours['pairs_per_s'] / r['pairs_per_s']:.2f}x, "
                  f"peak memory {ours['peak_rss_mb'] / r['peak_rss_mb']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"settings": vars(a), "results": results}, indent=2))


if __name__ == "__main__":
    main()
