"""Mine hard negatives for {query, pos} records with a bge-style embedder and faiss (or BM25)."""

from __future__ import annotations

import json
import logging
import sys

from transformers import HfArgumentParser

from reranker import dist
from reranker.arguments import EmbedArguments, MineArguments
from reranker.errors import ConfigError, DataError
from reranker.mine import mine, summary_path

logger = logging.getLogger("reranker.hn_mine")


def main(argv: list[str] | None = None) -> dict | None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if dist.is_main_process() else logging.WARNING)
    parser = HfArgumentParser((EmbedArguments, MineArguments))
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        embed_args, mine_args = parser.parse_json_file(argv[0])
    elif len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        embed_args, mine_args = parser.parse_yaml_file(argv[0])
    else:
        embed_args, mine_args = parser.parse_args_into_dataclasses(argv)
    try:
        summary = mine(embed_args, mine_args)
    finally:
        dist.destroy()
    if summary is not None:
        logger.info("Wrote %s; summary in %s:\n%s", mine_args.output_file, summary_path(mine_args.output_file),
                    json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2))
    return summary


def cli() -> int:
    try:
        main()
    except (DataError, ConfigError, FileExistsError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
