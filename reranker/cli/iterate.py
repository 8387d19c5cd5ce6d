"""reranker-iterate (and scripts/iterate.sh): rounds of mining with the previous round's reranker, then training."""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.workflows.iterate import IterateConfig, run_rounds

logger = logging.getLogger("reranker.iterate")


def main(argv: list[str] | None = None) -> list[dict]:
    common.setup_logging()
    return run_rounds(IterateConfig.load(common.config_argument(argv, "reranker-iterate")))


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
