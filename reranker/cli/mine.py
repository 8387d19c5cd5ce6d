"""reranker-mine (and hn_mine.py): hard negatives for {query, pos} records from an embedder + faiss, or BM25."""

from __future__ import annotations

import json
import logging
import sys

from reranker.cli import common as cli
from reranker.common import dist
from reranker.mining.arguments import EmbedArguments, MineArguments
from reranker.mining.mine import mine, summary_path

logger = logging.getLogger("reranker.mine")


def main(argv: list[str] | None = None) -> dict | None:
    cli.setup_logging()
    embed_args, mine_args = cli.parse((EmbedArguments, MineArguments), argv, "reranker-mine")
    try:
        summary = mine(embed_args, mine_args)
    finally:
        dist.destroy()
    if summary is not None:
        logger.info("Wrote %s; summary in %s:\n%s", mine_args.output_file, summary_path(mine_args.output_file),
                    json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2))
    return summary


def entry() -> int:
    return cli.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
