"""The encoder family: a cross-encoder, AutoModelForSequenceClassification with one logit, reading the pair."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from reranker.common.errors import ConfigError
from reranker.data.collator import encode_pairs, pair_budget
from reranker.models.scorers.base import OPTION_NAMES, Scorer, ScorerOptions


class EncoderScorer(Scorer):
    """Query and passage as a real pair ([CLS] q [SEP] p [SEP], segment ids and all); the score is the head's logit.

    Any sequence-classification checkpoint works (BERT, XLM-R, ModernBERT, and decoders with a score head, which
    Hugging Face reads at the last real token); a checkpoint without a head gets a fresh one.
    """

    family = "encoder"
    auto_class = AutoModelForSequenceClassification
    model_kwargs = {"num_labels": 1}
    score_head = True

    def __init__(self, tokenizer, config=None, options: ScorerOptions | None = None):
        super().__init__(tokenizer, config, options)
        if options is not None and options.given():
            names = ", ".join(f"--{OPTION_NAMES.get(k, k)}" for k in options.given())
            raise ConfigError(f"{names}: prompt options apply to the seq2seq and decoder families; the encoder reads "
                              "the pair itself")

    def encode(self, queries: list[str], passages: list[str], query_max_len: int | None = None,
               passage_max_len: int | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
        if max_length is None:
            multiple = pad_to_multiple_of or 1
            # The tokenizer insists that max_length be a multiple of pad_to_multiple_of.
            max_length = -(-self.pair_length(query_max_len, passage_max_len) // multiple) * multiple
        return dict(encode_pairs(self.tokenizer, queries, passages, query_max_len, passage_max_len, max_length,
                                 pad_to_multiple_of))

    def scores(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**inputs).logits.view(-1)

    def pair_length(self, query_max_len: int, passage_max_len: int) -> int:
        return pair_budget(self.tokenizer, query_max_len, passage_max_len)

    def metadata(self, base_model: str | None = None) -> dict:
        # Nothing beyond the budgets: the family is plain from the architecture (...ForSequenceClassification),
        # and config.json stays as reranker-train has always written it.
        return {}

    def describe(self) -> str:
        return "encoder (cross-encoder: the classification head's one logit)"
