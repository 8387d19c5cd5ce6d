"""Rank a dev file's first-stage candidates with rerankers of any family, as training's dev ranking does: nDCG@10
and MRR@10 of each model beside the first stage's, and what scoring cost per pair. For studies that compare
models on the same dev queries (e.g. a zero-shot LLM against fine-tuned rerankers) without touching test data.

    python benchmarks/dev_rank.py --dev_file outputs/study/data/dev.jsonl --models outputs/minilm outputs/smollm2 \\
        [--model_family decoder] [--dtype auto] [--max_queries 40]

A model folder not trained here is scored with its family's defaults (`--model_family` forces one; a decoder
gets Qwen3-Reranker's yes/no prompt). Prints a markdown table; `--output` writes it as JSON too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.common.files import write_json  # noqa: E402


def rank(model: str, dev, args) -> dict:
    from reranker import Reranker
    from reranker.training.dev_eval import dev_metrics

    options = {"model_family": args.model_family} if args.model_family else {}
    if args.template:
        options["template"] = args.template
    reranker = Reranker(model, dtype=args.dtype, max_length=args.max_length, **options)
    pairs = [(q.query, text) for q in dev for text in q.texts]
    start = time.perf_counter()
    scores = iter(reranker.compute_score(pairs, batch_size=args.batch_size, show_progress=True))
    seconds = time.perf_counter() - start
    run = {q.qid: {d: float(next(scores)) for d in q.doc_ids} for q in dev}
    metrics = dev_metrics(dev, run)
    return {"model": model, "family": reranker.family, "queries": len(dev), "pairs": len(pairs),
            "seconds": round(seconds, 1), "ms_per_pair": round(1000 * seconds / len(pairs), 1), **metrics}


def main(argv: list[str] | None = None) -> list[dict]:
    from reranker.training.dev_eval import load_dev

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev_file", required=True, help="dev queries with first-stage candidates (reranker-train's "
                                                          "--dev_file format)")
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--model_family", default=None, choices=["encoder", "seq2seq", "decoder"])
    parser.add_argument("--template", default=None)
    parser.add_argument("--dtype", default="auto", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--max_length", type=int, default=None, help="pair budget (default: the model's own)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_queries", type=int, default=None, help="the first N dev queries only")
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    cli.setup_logging()
    dev = load_dev(args.dev_file)[: args.max_queries]
    rows = [rank(model, dev, args) for model in args.models]
    print(f"{len(dev)} dev queries of {args.dev_file}, {os.cpu_count()} CPU threads\n")
    print("| model | family | nDCG@10 | MRR@10 | first stage nDCG@10 | ms a pair |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['family']} | {r['nDCG@10']:.4f} | {r['MRR@10']:.4f} | "
              f"{r['first_stage_nDCG@10']:.4f} | {r['ms_per_pair']} |")
    if args.output:
        write_json(args.output, rows)
    return rows


if __name__ == "__main__":
    main()
