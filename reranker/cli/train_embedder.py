"""reranker-train-embedder (and train_embedder.py): fine-tune an embedder (bi-encoder) with in-batch negatives, the
records' hard negatives and, optionally, a reranker's scores to distil.

Launch with torchrun for DDP: `torchrun --nproc_per_node 2 -m reranker.cli.train_embedder ...`; every rank's batch
is then an in-batch negative of every other's.
"""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.embedding.arguments import EmbedderDataArguments, EmbedderModelArguments, EmbedderTrainingArguments
from reranker.embedding.train import run_training

logger = logging.getLogger("reranker.train_embedder")


def main(argv: list[str] | None = None, callbacks: list | None = None):
    """Parse argv (or one .json / .yaml config), train, and return the trainer."""
    common.setup_logging()
    parts = common.parse((EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments), argv)
    return run_training(*parts, callbacks)


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
