"""reranker-eval (and eval.py): pairwise metrics on {query, pos, neg} data, BEIR reranking against a first stage."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

from reranker.cli import common as cli
from reranker.common import dist
from reranker.evaluation.arguments import EvalArguments
from reranker.evaluation.evaluate import STAGES, evaluate, load_rerankers
from reranker.evaluation.first_stages import system_name
from reranker.evaluation.report import bar_chart, chart_title, markdown_table, write_results
from reranker.retrieval.first_stage import write_run
from reranker.training import model_card

logger = logging.getLogger("reranker.eval")


def main(argv: list[str] | None = None) -> list[dict]:
    cli.setup_logging()
    (args,) = cli.parse((EvalArguments,), argv, "reranker-eval")
    for stage in args.first_stage:
        if stage not in STAGES and not Path(stage).is_file():
            raise FileNotFoundError(f"first stage {stage!r} is neither bm25, dense, hybrid nor an existing run file")
    # Under torchrun (scripts/eval.sh with several GPUs, or NPROC) every rank scores its share of the pairs and
    # gets all the scores back; rank 0 alone prints and writes.
    device = dist.init_from_env()
    rerankers = load_rerankers(args, device)
    rows, runs = evaluate(args, rerankers)
    if not dist.is_main_process():
        return rows
    print(markdown_table(rows), flush=True)
    # Outputs are written only once everything has been computed, each file atomically.
    if args.output_dir:
        output_dir = Path(args.output_dir)
        for name, (run, tag) in runs.items():
            write_run(output_dir / "runs" / name, run, tag)
        # How each model scored (family, template, answer tokens): a number means little without it.
        scoring = {name: reranker.scorer.summary() for name, reranker in rerankers.items()}
        write_results(output_dir, rows, {**asdict(args), "scoring": scoring})
        title = chart_title(args.split, args.top_k, any("first_stage" in r for r in rows),
                            any("pairs" in r for r in rows))
        chart = bar_chart(output_dir, rows, title)
        for model in args.models:  # only local folders whose card reranker-train wrote
            model_card.record_evaluation(model, rows, args.split, args.top_k,
                                         rerankers[system_name(model)].scorer.describe())
        logger.info("Wrote %s/results.json, run files under %s/runs%s", output_dir, output_dir,
                    f" and {chart}" if chart else "")
    return rows


def entry() -> int:
    return cli.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
