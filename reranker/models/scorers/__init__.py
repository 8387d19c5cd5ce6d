"""Model families and their scorers: which family a checkpoint is, and the one object that turns pairs into model
inputs and model outputs into one score per pair (base.py has the contract). May import reranker.common and
reranker.data.

    scorer = scorer_for(config, tokenizer)            # the family read from the checkpoint (or its saved metadata)
    inputs = scorer.encode(queries, passages, 64, 256)
    scores = scorer.scores(model, inputs)             # [pairs]; training views it as [groups, group_size]
"""

from __future__ import annotations

from reranker.common.errors import ConfigError
from reranker.models.scorers.base import FAMILIES, SCORE_MODES, Scorer, ScorerOptions
from reranker.models.scorers.decoder import DecoderScorer
from reranker.models.scorers.encoder import EncoderScorer
from reranker.models.scorers.prompts import TEMPLATES
from reranker.models.scorers.seq2seq import Seq2SeqScorer

__all__ = ["FAMILIES", "SCORE_MODES", "TEMPLATES", "Scorer", "ScorerOptions", "detect_family", "saved_metadata",
           "scorer_for"]

SCORERS: dict[str, type[Scorer]] = {s.family: s for s in (EncoderScorer, Seq2SeqScorer, DecoderScorer)}


def _mappings():
    from transformers.models.auto import modeling_auto as auto

    return {"encoder": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
            "seq2seq": auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
            "decoder": auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            "masked": auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES}


def supports(config, family: str) -> bool:
    """Whether transformers (or the checkpoint's own code) has the family's class for this architecture."""
    if getattr(config, "auto_map", None):
        return True  # trust_remote_code: the checkpoint brings its classes, and the loader says if one is missing
    return getattr(config, "model_type", None) in _mappings()[family]


def detect_family(config) -> str:
    """The family a checkpoint's config says it is.

    A ...ForSequenceClassification checkpoint is an encoder (a cross-encoder's head, whatever the body); an
    encoder-decoder text model is seq2seq; a ...ForCausalLM (or ...LMHeadModel) is a decoder. A config naming none of
    those goes by its model type: a masked-LM type (BERT-like) is an encoder, a causal-LM type a decoder.
    """
    architectures = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", None)
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "encoder"
    if getattr(config, "is_encoder_decoder", False):
        if supports(config, "seq2seq"):
            return "seq2seq"
    elif any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures) and supports(config, "decoder"):
        return "decoder"
    else:
        maps = _mappings()
        if model_type in maps["masked"] and model_type in maps["encoder"]:
            return "encoder"
        if model_type in maps["decoder"]:
            return "decoder"
        if model_type in maps["encoder"]:
            return "encoder"
    raise ConfigError(f"{model_type!r} ({', '.join(architectures) or 'no architectures named'}) is not an "
                      "architecture this toolkit can rerank with: it takes text encoders (a "
                      "...ForSequenceClassification head), text encoder-decoders (T5-like, AutoModelForSeq2SeqLM) and "
                      "causal LMs (AutoModelForCausalLM)")


def saved_metadata(config) -> dict:
    """What reranker-train saved in config.json under "reranker" (budgets, family, prompt, tokens); {} otherwise."""
    saved = getattr(config, "reranker", None)
    return saved if isinstance(saved, dict) else {}


def scorer_for(config, tokenizer, family: str | None = None, options: ScorerOptions | None = None) -> Scorer:
    """The scorer of a checkpoint: its family forced by `family`, else the one saved with it, else detected.

    Options: those saved with a model trained here (in the same family), with `options` given over them; a model
    not trained here gets its family's defaults (monoT5's prompt for seq2seq, Qwen3-Reranker's for decoders).
    """
    saved = saved_metadata(config)
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"--model_family must be one of {', '.join(FAMILIES)}, got {family!r}")
    family = family or saved.get("family") or detect_family(config)
    if not supports(config, family):
        raise ConfigError(f"--model_family {family}: transformers has no {SCORERS[family].auto_class.__name__} "
                          f"class for {getattr(config, 'model_type', None)!r} checkpoints")
    given = options or ScorerOptions()
    # Saved options count in the family they were saved for; a template given replaces the saved prompt whole.
    keep_saved = saved.get("family", "encoder") == family and not (given.template or given.prefix or given.body
                                                                    or given.suffix)
    merged = given.over(ScorerOptions.from_dict(saved)) if keep_saved else given
    scorer = SCORERS[family](tokenizer, config, merged)
    kept = saved.get("token_ids") if keep_saved else None
    ids = scorer.metadata().get("token_ids")
    same_tokens = (saved.get("true_token"), saved.get("false_token")) == (merged.true_token, merged.false_token)
    if kept is not None and same_tokens and list(kept) != ids:
        raise ConfigError(f"the tokenizer maps the answer tokens to ids {ids}, but the model was trained with ids "
                          f"{list(kept)}: load it with the tokenizer saved beside it")
    return scorer
