"""Evaluate rerankers: pairwise metrics on {query, pos, neg} data, and BEIR reranking against its first stage."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

from reranker import cli
from reranker.errors import ConfigError
from reranker.eval_args import EvalArguments
from reranker.evaluate import STAGES, evaluate, system_name
from reranker.first_stage import write_run
from reranker.report import bar_chart, markdown_table, write_results

logger = logging.getLogger("reranker.eval")


def load_rerankers(args: EvalArguments) -> dict:
    """Every model loads before any scoring starts: a wrong path fails in seconds."""
    from reranker import Reranker

    rerankers = {}
    for path in args.models:
        name = system_name(path)
        if name in rerankers:
            raise ConfigError(f"two models are named {name!r}; give them distinct folder names")
        rerankers[name] = Reranker(path, dtype=None if args.dtype == "fp32" else args.dtype,
                                   max_length=args.rerank_max_length, max_length_option="--rerank_max_length")
    return rerankers


def main(argv: list[str] | None = None) -> list[dict]:
    cli.setup_logging()
    (args,) = cli.parse((EvalArguments,), argv)
    for stage in args.first_stage:
        if stage not in STAGES and not Path(stage).is_file():
            raise FileNotFoundError(f"first stage {stage!r} is neither bm25, dense, hybrid nor an existing run file")
    rerankers = load_rerankers(args)
    rows, runs = evaluate(args, rerankers)
    print(markdown_table(rows), flush=True)
    # Outputs are written only once everything has been computed, each file atomically.
    if args.output_dir:
        output_dir = Path(args.output_dir)
        for name, (run, tag) in runs.items():
            write_run(output_dir / "runs" / name, run, tag)
        write_results(output_dir, rows, asdict(args))
        chart = bar_chart(output_dir, rows)
        logger.info("Wrote %s/results.json, run files under %s/runs%s", output_dir, output_dir,
                    f" and {chart}" if chart else "")
    return rows


if __name__ == "__main__":
    sys.exit(cli.run(main, logger))
