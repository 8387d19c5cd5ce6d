"""reranker-train (and run.py): fine-tune a reranker on groups of one positive and N negatives.

Launch with torchrun for DDP: `torchrun --nproc_per_node 2 -m reranker.cli.train ...` or `torchrun ... run.py ...`.
"""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.training.arguments import DataArguments, ModelArguments, RerankerTrainingArguments
from reranker.training.train import run_training

logger = logging.getLogger("reranker.train")


def main(argv: list[str] | None = None, callbacks: list | None = None):
    """Parse argv (or one .json / .yaml config), train, and return the trainer."""
    common.setup_logging()
    model_args, data_args, training_args = common.parse(
        (ModelArguments, DataArguments, RerankerTrainingArguments), argv)
    return run_training(model_args, data_args, training_args, callbacks)


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
