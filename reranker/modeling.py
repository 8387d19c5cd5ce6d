"""Loading a plain AutoModelForSequenceClassification(num_labels=1) and its tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .errors import ConfigError

logger = logging.getLogger(__name__)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as error:
        # Nonexistent local paths end up as hub lookups; say plainly what was not found.
        kind = "is a folder without a tokenizer" if Path(path).is_dir() else "does not exist locally"
        raise FileNotFoundError(f"model path {path!r} {kind}, and could not be loaded as a hub id: {error}") from None
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
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    # The parameters the checkpoint did not have (a fresh classification head): the trainer may give them their
    # own learning rate. Kept on the Python object only; nothing of it is saved.
    model.fresh_parameter_names = sorted(info.get("missing_keys") or [])
    # Batched pairs are padded; without pad_token_id some architectures cannot find the last real token.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
