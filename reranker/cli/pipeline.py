"""reranker-pipeline (and scripts/pipeline.sh): mine -> train -> evaluate on a BEIR folder from one config."""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.workflows.pipeline import PipelineConfig, run_pipeline

logger = logging.getLogger("reranker.pipeline")


def main(argv: list[str] | None = None) -> dict:
    common.setup_logging()
    path = common.config_argument(argv, "reranker-pipeline")
    return run_pipeline(PipelineConfig.load(path), path)


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
