"""The scorer contract: a model family's inputs for a batch of (query, passage) pairs, and one score per pair.

What differs between families is only this: which Hugging Face class holds the weights, how a pair becomes model
inputs, and how one score per pair is read from the model's outputs. The trainer, the losses, the dev ranking and
`Reranker` call `encode` and `scores` and never look at the family. A scorer holds the tokenizer and its options,
never the model: the trainer passes the (possibly DDP- or PEFT-wrapped) model to each call.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from reranker.common.errors import ConfigError

FAMILIES = ("encoder", "seq2seq", "decoder")
SCORE_MODES = ("pair", "single")
# The command line's name of each ScorerOptions field where it differs.
OPTION_NAMES = {"prefix": "template_prefix", "body": "template_body", "suffix": "template_suffix"}


@dataclass(frozen=True)
class ScorerOptions:
    """What a prompt-reading family (seq2seq, decoder) may be told; None everywhere means the family's defaults.

    The same names are the training options (`--template`, `--template_body`, ...), the keys saved in config.json
    and the overrides `Reranker` takes.
    """

    template: str | None = None  # a named template (prompts.TEMPLATES)
    prefix: str | None = None  # text before the body
    body: str | None = None  # holds {query} and {passage}, and may hold {instruction}
    suffix: str | None = None  # text after the body; may hold {instruction}
    instruction: str | None = None
    true_token: str | None = None  # the answer whose logit is the score ("true", "yes")
    false_token: str | None = None  # the answer subtracted in the pair mode ("false", "no")
    score_mode: str | None = None  # "pair": logit(true) - logit(false); "single": logit(true)

    @classmethod
    def from_dict(cls, values: dict) -> ScorerOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def given(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def over(self, base: ScorerOptions) -> ScorerOptions:
        """These options where given, `base`'s elsewhere."""
        return dataclasses.replace(base, **self.given())


class Scorer:
    """One family's way from (query, passage) pairs to one score per pair.

    Subclasses set the class attributes and implement `encode`, `scores`, `pair_length` and `metadata`.
    """

    family: ClassVar[str]
    auto_class: ClassVar[type]  # the plain Hugging Face class the weights load into
    model_kwargs: ClassVar[dict] = {}  # what from_pretrained needs besides the path (num_labels=1 for the encoder)
    fp16_ok: ClassVar[bool] = True  # False where fp16 overflows (T5)
    score_head: ClassVar[bool] = False  # whether the score is a classification head's (new checkpoints: a fresh one)

    def __init__(self, tokenizer, config=None, options: ScorerOptions | None = None):
        self.tokenizer = tokenizer
        self.config = config  # the checkpoint's config (what a scorer reads of it: the decoder start token)

    def encode(self, queries: list[str], passages: list[str], query_max_len: int | None = None,
               passage_max_len: int | None = None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
        """The model inputs of the pairs, padded to the longest. Each side is cut to its budget; without budgets,
        the pair fits `max_length` tokens."""
        raise NotImplementedError

    def scores(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One score per pair, a 1-D tensor (higher: more relevant), from `model` (plain or wrapped)."""
        raise NotImplementedError

    @property
    def has_pair_logits(self) -> bool:
        """Whether the score is logit(true) - logit(false) of two answer logits that `pair_logits` returns (seq2seq
        and decoder in the pair mode); a one-logit head (encoder) or one token's logit (single mode) has none."""
        return False

    def pair_logits(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The (false, true) answer logits [pairs, 2] in float32, where `has_pair_logits`: what InRanker's loss
        regresses on the teacher's. Their difference, true minus false, is `scores`."""
        raise ConfigError(f"the {self.family} family gives one score per pair, not (false, true) logits")

    def pair_length(self, query_max_len: int, passage_max_len: int) -> int:
        """The most tokens a pair takes with these budgets: special tokens and the template included."""
        raise NotImplementedError

    def metadata(self, base_model: str | None = None) -> dict:
        """What this scorer needs to be built again, saved in config.json under "reranker" beside the budgets;
        `base_model`: the checkpoint training started from."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for logs and model cards."""
        return self.family

    def summary(self) -> dict:
        """The family and how it scores, for reports (reranker-eval's results.json)."""
        return {"family": self.family}

    def check_precision(self, precision: str | None, option: str) -> None:
        if precision == "fp16" and not self.fp16_ok:
            raise ConfigError(f"{option}: fp16 overflows in the {self.family} family (T5's activations exceed fp16's "
                              "range and the scores become NaN); use bf16 or fp32")


def answer_token_id(tokenizer, token: str, option: str) -> int:
    """The id of an answer token: the first piece of tokenizer(token, add_special_tokens=False), which must be the
    only one (a word split in pieces has no single logit to read)."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ConfigError(f"{option} {token!r} is {len(ids)} tokens for this tokenizer ({pieces}), not one: the score "
                          "reads one token's logit; choose a token the tokenizer keeps whole")
    return ids[0]


def unwrap(model):
    """The Hugging Face model inside a DDP wrapper (`.module`); a PEFT model is kept (it forwards to its base)."""
    from torch.nn.parallel import DistributedDataParallel

    while isinstance(model, DistributedDataParallel):
        model = model.module
    return model
