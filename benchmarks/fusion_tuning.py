"""Which rule for choosing fusion weights holds up on queries it did not see? Dev queries only.

    python benchmarks/fusion_tuning.py --runs outputs/pipeline/scifact/report/runs \\
        --dev_qrels outputs/pipeline/scifact/data/dev_qrels.tsv

eval.py writes the dev runs it tunes on (`runs/dev/<dataset>.<stage>[.<model>].trec`). This script splits the
dev queries in two halves many times (seeded), chooses the weights on one half with each rule (eval.py's
--fusion_tuning: argmax, the best grid weight; bagged, the mean of the best grid weights of bootstrap resamples)
and scores the choice on the other half. Printed per fusion: the held-out nDCG@10 of each rule, averaged over
the splits, their paired difference, and the weights each rule picks on all the dev queries. Test queries are
never read.

Two approximations, both of them the same for the two rules: the hybrid first stage is rebuilt from the written
BM25 and dense lists (top_k deep; eval.py tuned it on lists one deeper), and the hybrid's candidates that its
fusion reorders are those of the hybrid weight eval.py chose on all the dev queries, for every split.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reranker.cli import common as cli  # noqa: E402
from reranker.common.errors import ConfigError  # noqa: E402
from reranker.data.beir import read_qrels  # noqa: E402
from reranker.retrieval import fusion  # noqa: E402
from reranker.retrieval.first_stage import read_run  # noqa: E402
from reranker.retrieval.metrics import per_query_metrics  # noqa: E402

logger = logging.getLogger("fusion_tuning")

METRIC = "nDCG@10"


def problems(runs: Path, dataset: str, model: str, rrf_k: int, top_k: int) -> dict:
    """The fusions eval.py tunes, for whichever dev runs are in the folder: name -> (grid, make_run)."""
    def load(stage: str):
        path = runs / f"{dataset}.{stage}.trec"
        return read_run(path) if path.is_file() else None

    bm25, dense = load("bm25"), load("dense")
    out = {}
    if bm25 is not None and dense is not None:
        out["hybrid first stage (BM25 weight)"] = (
            fusion.GRID, lambda w: fusion.rrf([bm25, dense], [w, 1.0 - w], rrf_k, top_k))
    for stage, first in (("bm25", bm25), ("dense", dense)):
        reranked = load(f"{stage}.{model}")
        if first is not None and reranked is not None:
            out[f"{stage} > {model} + fusion (reranker weight)"] = (
                fusion.GRID, lambda a, f=first, r=reranked: fusion.fuse_scores(f, r, a))
    reranked = load(f"hybrid.{model}")
    if bm25 is not None and dense is not None and reranked is not None:
        out[f"hybrid > {model} + fusion (reranker, BM25 weights)"] = (
            fusion.GRID2, lambda w, r=reranked: fusion.fuse_with_stages([bm25, dense], r, w))
    return out


def split_half(qrels: dict, grid, make_run, splits: int, seed: int) -> dict:
    """Held-out metric of each rule over `splits` random halvings of the queries, and the full-dev choices."""
    table = fusion.grid_table(qrels, make_run, grid, METRIC)
    queries = table.shape[1]
    cache: dict = {}

    def per_query(weight) -> np.ndarray:
        if weight in grid:
            return table[grid.index(weight)]
        if weight not in cache:
            cache[weight] = per_query_metrics(qrels, make_run(weight))[METRIC]
        return cache[weight]

    rng = np.random.default_rng(seed)
    held_out = {rule: [] for rule in fusion.TUNING}
    for _ in range(splits):
        order = rng.permutation(queries)
        tune_on, score_on = order[: queries // 2], order[queries // 2:]
        for rule in fusion.TUNING:
            weight = fusion.choose(table[:, tune_on], grid, rule)
            held_out[rule].append(float(per_query(weight)[score_on].mean()))
    diff = np.asarray(held_out["bagged"]) - np.asarray(held_out["argmax"])
    return {"queries": queries,
            **{f"{rule}_held_out": float(np.mean(v)) for rule, v in held_out.items()},
            "bagged_minus_argmax": float(diff.mean()), "diff_sd": float(diff.std(ddof=1)) if splits > 1 else 0.0,
            "bagged_better_share": float((diff > 1e-12).mean()), "bagged_worse_share": float((diff < -1e-12).mean()),
            **{f"{rule}_weight_all_dev": fusion.choose(table, grid, rule) for rule in fusion.TUNING}}


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="eval.py's runs folder (the dev runs are in its dev/)")
    parser.add_argument("--dev_qrels", required=True, help="the dev qrels eval.py was given")
    parser.add_argument("--dataset", help="the run files' dataset prefix (default: the only one in --runs)")
    parser.add_argument("--model", default="model", help="the reranker's name in the run files")
    parser.add_argument("--splits", type=int, default=100, help="random halvings of the dev queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rrf_k", type=int, default=60)
    parser.add_argument("--top_k", type=int, default=100)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    runs = Path(args.runs) / "dev"
    if args.splits < 1:
        raise ConfigError(f"--splits must be positive, got {args.splits}")
    dataset = args.dataset
    if dataset is None:
        prefixes = sorted({p.name[: -len(".bm25.trec")] for p in runs.glob("*.bm25.trec")})
        if len(prefixes) != 1:
            raise ConfigError(f"{runs}: expected the dev runs of one dataset (<dataset>.bm25.trec and the rest), "
                              f"found {prefixes or 'none'}; name it with --dataset")
        dataset = prefixes[0]
    qrels = read_qrels(Path(args.dev_qrels))
    judged = sum(any(rel > 0 for rel in docs.values()) for docs in qrels.values())
    if judged < 2:
        raise ConfigError(f"{args.dev_qrels}: {judged} dev queries with a relevant document; split halves need 2 "
                          "or more")
    todo = problems(runs, dataset, args.model, args.rrf_k, args.top_k)
    if not todo:
        raise ConfigError(f"{runs}: no dev runs of {dataset!r} to tune (eval.py writes them when given "
                          "--dev_qrels)")
    results = {}
    for name, (grid, make_run) in todo.items():
        logger.info("%s: %d grid weights, %d split halves", name, len(grid), args.splits)
        results[name] = split_half(qrels, grid, make_run, args.splits, args.seed)
    print(f"| fusion ({dataset} dev, {args.splits} split halves) | queries | argmax held-out | bagged held-out "
          "| bagged - argmax (sd) | bagged better / worse | weights on all dev: argmax; bagged |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['queries']} | {r['argmax_held_out']:.4f} | {r['bagged_held_out']:.4f} | "
              f"{r['bagged_minus_argmax']:+.4f} ({r['diff_sd']:.4f}) | {r['bagged_better_share']:.0%} / "
              f"{r['bagged_worse_share']:.0%} | {r['argmax_weight_all_dev']}; {r['bagged_weight_all_dev']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
