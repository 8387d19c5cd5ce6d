"""Evaluate rerankers: pairwise metrics on {query, pos, neg} data, and BEIR reranking against its first stage."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

from transformers import HfArgumentParser

from reranker.errors import ConfigError, DataError
from reranker.eval_args import EvalArguments
from reranker.evaluate import evaluate, system_name
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
                                   max_length=args.rerank_max_length)
    return rerankers


def main(argv: list[str] | None = None) -> list[dict]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = HfArgumentParser(EvalArguments)
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        (args,) = parser.parse_json_file(argv[0])
    elif len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        (args,) = parser.parse_yaml_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(argv)
    for stage in args.first_stage:
        if stage not in ("bm25", "dense") and not Path(stage).is_file():
            raise FileNotFoundError(f"first stage {stage!r} is neither bm25, dense nor an existing run file")
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


def cli() -> int:
    try:
        main()
    except (DataError, ConfigError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
