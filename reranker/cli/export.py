"""reranker-export: write a reranker's (any family) or an embedder's graph for ONNX Runtime or OpenVINO beside its
weights, optionally int8, checked against torch fp32 on probe pairs first (refused, nothing written, when it drifts).

    reranker-export outputs/my-reranker --backend openvino-int8 --probe_data data/train.jsonl
    reranker-eval --models outputs/my-reranker --backend openvino-int8 ...
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from reranker.cli import common
from reranker.models.backends import BACKENDS

logger = logging.getLogger("reranker.export")


@dataclass
class ExportArguments:
    model_dir: str = field(metadata={"help": "The model folder (a reranker of any family, or an embedder); "
                                             "may also be given as the first argument. The graph goes into its onnx/ "
                                             "or openvino/ subfolder, with export.json saying how it was made."})
    backend: str = field(default="openvino-int8", metadata={
        "help": "onnx (ONNX Runtime fp32), onnx-int8 (dynamic int8 weights), openvino (fp32 graph; bf16 at run time "
                "where the CPU has it) or openvino-int8 (int8 calibrated on --probe_data).",
        "choices": [b for b in BACKENDS if b != "torch"]})
    probe_data: str | None = field(default=None, metadata={
        "help": "Pairs to check (and, for int8, calibrate) the graph on: a {query, pos, neg} jsonl such as a training "
                "file, a dev file with candidates, or a BEIR folder. Required for int8; without it an fp32 export "
                "is checked on a few built-in pairs."})
    probe_pairs: int = field(default=256, metadata={"help": "How many pairs to draw from --probe_data."})
    min_correlation: float = field(default=0.98, metadata={
        "help": "The least Pearson correlation of an int8 graph's scores (an embedder's query-passage similarities) "
                "with torch fp32's on the probe pairs; below it the export is refused. fp32 graphs must reach "
                "0.9999."})
    max_length: int | None = field(default=None, metadata={
        "help": "Token budget of the probe inputs. Default: a reranker's trained budgets, 256 for an embedder. The "
                "graph itself takes any length the model holds."})
    seed: int = field(default=0, metadata={"help": "Seed of the probe sample."})
    int8_keep: str = field(default="auto", metadata={
        "help": "openvino-int8: a regular expression over the graph's layer names; matching layers stay out of int8. "
                "auto: for a reranker, each block's output projections under its family's layer names (BERT's "
                "output.dense, T5's o and wo, Llama-style o_proj and down_proj), where int8 cost an encoder's "
                "ranking quality; for an embedder, none. 'none' quantises every layer it can."})
    calibration_batch_size: int | None = field(default=None, metadata={
        "help": "openvino-int8: NNCF collects its activation ranges on the probe inputs in batches of this many. "
                "1: each input alone, so no padding enters the ranges (the default for an encoder reranker and an "
                "embedder); default for the seq2seq and decoder families: the probe batches of 16."})

    # What the graph of a seq2seq or decoder reranker answers with: it returns these tokens' logits, and scores only
    # for a Reranker given the same (the prompt itself is tokenized outside the graph, at scoring time).
    template: str | None = field(default=None, metadata={
        "help": "seq2seq and decoder: the named template whose answer tokens and score mode the graph reads. "
                "Default: those saved with the model, else the family's (monot5, qwen3)."})
    true_token: str | None = field(default=None, metadata={"help": "seq2seq and decoder: the answer whose logit "
                                                                   "is the score. Default: as saved."})
    false_token: str | None = field(default=None, metadata={"help": "seq2seq and decoder: the answer subtracted "
                                                                    "in the pair mode. Default: as saved."})
    score_mode: str | None = field(default=None, metadata={"help": "seq2seq and decoder: pair or single. Default: "
                                                                   "as saved.", "choices": ["pair", "single"]})


def main(argv: list[str] | None = None):
    """Parse argv (MODEL_DIR first, or --model_dir), export, and return the graph's path."""
    from reranker.models.export import ExportOptions, export

    common.setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-") and not argv[0].endswith((".json", ".yaml", ".yml")):
        argv = ["--model_dir", *argv]
    (args,) = common.parse((ExportArguments,), argv, "reranker-export")
    return export(args.model_dir, ExportOptions(backend=args.backend, probe_data=args.probe_data,
                                                probe_pairs=args.probe_pairs, min_correlation=args.min_correlation,
                                                max_length=args.max_length, seed=args.seed,
                                                int8_keep=args.int8_keep,
                                                calibration_batch_size=args.calibration_batch_size,
                                                scorer_options={k: v for k in ("template", "true_token", "false_token",
                                                                               "score_mode")
                                                                if (v := getattr(args, k)) is not None}))


def entry() -> int:
    return common.run(main, logger)


if __name__ == "__main__":
    sys.exit(entry())
