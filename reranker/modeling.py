"""Loading a plain AutoModelForSequenceClassification(num_labels=1) and its tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .errors import ConfigError

logger = logging.getLogger(__name__)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{path}: a fast tokenizer (tokenizer.json) is needed to cut texts to their token budgets")
    if tokenizer.pad_token is None:
        # Decoder-style checkpoints ship without one; padding with EOS/UNK is the usual, harmless choice because
        # the attention mask hides the padding.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError(f"{path}: tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
        logger.info("Tokenizer has no pad token; padding with %r", fallback)
    return tokenizer


def load_model(path: str, tokenizer, trust_remote_code: bool = False):
    """The checkpoint as a cross-encoder with one logit; a new head is initialised when it has none."""
    if not Path(path).exists() and "/" not in path:
        raise FileNotFoundError(f"model path {path!r} does not exist")
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, trust_remote_code=trust_remote_code)
    # Batched pairs are padded; without pad_token_id some architectures cannot find the last real token.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
