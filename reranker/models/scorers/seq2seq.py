"""The seq2seq family (monoT5 and kin): AutoModelForSeq2SeqLM reads the prompt and answers at its first decoder step.

The score is logit(true) - logit(false) at that step, so sigmoid(score) is monoT5's P(true) (its softmax over the
two answers); `score_mode` "single" reads one token's logit alone, as RankT5 does.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForSeq2SeqLM

from reranker.common.errors import ConfigError
from reranker.models.scorers.base import ScorerOptions
from reranker.models.scorers.prompts import PromptScorer


class Seq2SeqScorer(PromptScorer):
    family = "seq2seq"
    auto_class = AutoModelForSeq2SeqLM
    default_template = "monot5"
    keep_trailing = True  # T5's tokenizer ends the input with </s>, as monoT5 was trained
    fp16_ok = False  # T5's feed-forward activations overflow fp16 (NaN scores)

    def __init__(self, tokenizer, config=None, options: ScorerOptions | None = None):
        super().__init__(tokenizer, config, options)
        start = getattr(config, "decoder_start_token_id", None) if config is not None else None
        if start is None:
            start = tokenizer.pad_token_id  # T5 starts its decoder from the pad token
        if start is None:
            raise ConfigError("the checkpoint names no decoder_start_token_id, and its tokenizer has no pad token")
        self.decoder_start_token_id = int(start)

    def encode(self, queries: list[str], passages: list[str], query_max_len: int | None = None,
               passage_max_len: int | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
        inputs = super().encode(queries, passages, query_max_len, passage_max_len, max_length, pad_to_multiple_of)
        # One decoder step, from the decoder's start token: the answer is the first token it writes.
        inputs["decoder_input_ids"] = torch.full((len(queries), 1), self.decoder_start_token_id, dtype=torch.long)
        return inputs

    def token_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "decoder_input_ids" not in inputs:  # an export traces from the tokens alone: the start token built here
            ids = inputs["input_ids"]
            inputs = {**inputs, "decoder_input_ids": torch.full_like(ids[:, :1], self.decoder_start_token_id)}
        # [pairs, 1, vocab] at the one decoder step only; the answer columns are kept.
        return model(**inputs, use_cache=False).logits[:, 0, self.token_ids]
