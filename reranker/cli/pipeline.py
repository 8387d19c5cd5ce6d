"""reranker-pipeline (and scripts/pipeline.sh): mine -> train -> evaluate on a BEIR folder from one config."""

from __future__ import annotations

import logging
import sys

from reranker.cli import common
from reranker.workflows.pipeline import PipelineConfig, run_pipeline

logger = logging.getLogger("reranker.pipeline")

# What each key of the config does (the defaults come from PipelineConfig itself; a test checks both list the same
# keys).
KEYS = {
    "beir": "BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) to train and evaluate on.",
    "output_dir": "Where the data, the model, the logs and report/ go; a re-run skips the stages that are done.",
    "train_split": "qrels split whose queries are trained on (and the dev queries carved from).",
    "test_split": "qrels split the evaluation reports; never trained or tuned on.",
    "dev_queries": "Train queries held out as dev queries: ranked during training (the best checkpoint is kept) "
                   "and used to tune the fusion weights in evaluation.",
    "dev_depth": "BM25 candidates per dev query ranked during training.",
    "seed": "Seed of the dev split (the stages take their own seeds in their sections).",
    "expand_documents": "Before each document the reranker reads this many training queries that judged it, "
                        "in training, dev and evaluation alike (0: off).",
    "mine": "reranker-mine options (see reranker-mine --help), e.g. retriever, range_for_sampling.",
    "train": "reranker-train options (see reranker-train --help), e.g. max_steps, learning_rate.",
    "eval": "reranker-eval options (see reranker-eval --help), e.g. first_stage, top_k.",
    "embedder": "reranker-train-embedder options (see reranker-train-embedder --help); absent: no embedder stage. "
                "Present (even {}): an embedder is fine-tuned on the training records before mining, mines the "
                "reranker's negatives (dense, unless mine names its retriever or model) and is eval's dense first "
                "stage; report/embedder_comparison.md sets it beside the embedder it started from.",
    "embedder_mine": "reranker-mine options for the embedder's own negatives (default: BM25, the miner's defaults "
                     "otherwise); unused, and an error, with embedder.train_group_size 1.",
}
HELP = ("Runs the data, mine, train and eval stages on a BEIR folder, each as its own command (with an embedder "
        "section, the embedder's mining and training first); its config, a .yaml or .json file, holds:\n\n"
        + common.describe_config(PipelineConfig, KEYS)
        + "\n\nThe pipeline sets the stages' inputs and outputs itself (mine and embedder_mine: input_file, "
          "output_file, corpus; train: train_data, output_dir, dev_file; embedder: train_data, output_dir, "
          "dev_file, dev_corpus; eval: models, datasets, split, output_dir, dev_qrels, and with an embedder "
          "section dense_model, dense_pooling, query_instruction).")


def main(argv: list[str] | None = None) -> dict:
    common.setup_logging()
    path = common.config_argument(argv, "reranker-pipeline", HELP)
    return run_pipeline(PipelineConfig.load(path), path)


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
