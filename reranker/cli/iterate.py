"""reranker-iterate (and scripts/iterate.sh): rounds of mining with the previous round's reranker, then training."""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.workflows.iterate import IterateConfig, run_rounds

logger = logging.getLogger("reranker.iterate")

# What each key of the config does (the defaults come from IterateConfig itself; a test checks both list the same
# keys).
KEYS = {
    "train_file": "Training records {query, pos} (labelled, or pairs from reranker-synth); a list is concatenated.",
    "corpus": "The pool to mine from: a BEIR folder or a pool jsonl.",
    "output_dir": "Where each round's data, model and metrics go (round_<r>/), with rounds.json and rounds.md.",
    "dev_file": "Dev queries with candidates (the reranker-train --dev_file format): the stopping metric. "
                "Give this or dev_queries.",
    "dev_queries": "Without labelled dev queries: hold out this many pairs of the first train file (they need "
                   "pos_id), with the corpus's BM25 top dev_depth as candidates.",
    "dev_depth": "BM25 candidates per held-out dev query.",
    "seed": "Seed of the held-out dev pairs.",
    "max_rounds": "Rounds after round 0 (which mines with the embedder alone).",
    "min_improvement": "A round must beat the best dev nDCG@10 so far by more than this for the next to run.",
    "range_for_sampling": "Rounds after 0: the rank range of the previous reranker's ordering negatives come from.",
    "fn_margin": "Rounds after 0: drop candidates the previous reranker scores within this of the positive "
                 "(likely unlabelled positives; logits).",
    "mine": "reranker-mine options for every round (see reranker-mine --help), e.g. retriever.",
    "train": "reranker-train options for every round (see reranker-train --help), e.g. max_steps.",
    "embedder": "reranker-train-embedder options for an embedder trained each round before the reranker's mining "
                "(absent: none). Round 0's learns from BM25 negatives (mnrl), round r's from round r - 1's "
                "reranker's scores of round r - 1's embedder's candidates (its loss: kl or margin_mse, default "
                "kl); each round's reranker negatives are retrieved by that round's embedder unless mine names "
                "its own retriever or model.",
    "embedder_mine": "reranker-mine options for the embedder's records, every round (default retriever: bm25 in "
                     "round 0, the previous round's embedder after).",
}
HELP = ("Rounds of mining and training: round 0 mines with the embedder, each later round with the previous "
        "round's reranker; they stop when the dev nDCG@10 stops improving. Its config, a .yaml or .json file, "
        "holds:\n\n" + common.describe_config(IterateConfig, KEYS))


def main(argv: list[str] | None = None) -> list[dict]:
    common.setup_logging()
    return run_rounds(IterateConfig.load(common.config_argument(argv, "reranker-iterate", HELP)))


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
