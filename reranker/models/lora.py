"""LoRA adapters (peft, an optional extra): which layers get one, adapter folders and the metadata saved in them,
and loading an adapter onto the base model it was trained on, checked by a fingerprint of the base's weights.

An adapter folder holds adapter_config.json and adapter_model.safetensors (peft's), the tokenizer, and
reranker_config.json: what config.json holds under "reranker" for a full model (budgets, family, prompt, answer
tokens), plus `base_model` (the base's absolute path, or its hub id), `base_fingerprint` (`base_fingerprint()`)
and `dtype`, the precision the base's weights were loaded in for training. A file of our own because the folder
has no config.json, and peft's adapter_config.json is read back into LoraConfig, where unknown keys do not belong.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from reranker.common.errors import ConfigError
from reranker.common.files import write_json
from reranker.common.hashing import sampled_file_digest

logger = logging.getLogger(__name__)

METADATA_FILE = "reranker_config.json"
ADAPTER_CONFIG = "adapter_config.json"
INSTALL_HINT = "pip install 'rerank-toolkit[lora]'"
# The base's weight files (adapter and optimizer files never sit in a base model's folder under these names).
BASE_WEIGHTS = ("model*.safetensors", "pytorch_model*.bin", "*.gguf")
DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def require_peft():
    """The peft package, or a ConfigError saying how to install it."""
    try:
        import peft
    except ImportError:
        raise ConfigError(f"LoRA needs the peft package: {INSTALL_HINT}") from None
    return peft


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


# --- which layers get an adapter ---------------------------------------------------------------------------------


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    return torch.nn.Linear, Conv1D


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def trained_whole(model, family: str) -> tuple[list[str], list[str]]:
    """(modules no adapter goes into, modules trained whole and saved with the adapter).

    decoder and seq2seq: the output embedding gets no adapter (its answer rows are the score, and T5 ties it to
    the input embedding); nothing is trained whole. encoder: the classification head (every child of the model
    beside its body: `classifier`, Llama's `score`, DistilBERT's `pre_classifier` too) is trained whole, since a
    fresh head is random and low-rank updates of a random layer teach it little; so is any other layer the
    checkpoint lacked (a fresh pooler), else each load would draw it anew.
    """
    output = model.get_output_embeddings() if family != "encoder" else None
    outside = [name for name, module in model.named_modules() if output is not None and module is output]
    if family != "encoder":
        return outside, []
    head = [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]
    fresh = [name.rsplit(".", 1)[0] for name in getattr(model, "fresh_parameter_names", [])]
    whole = list(dict.fromkeys(head + [name for name in fresh if not _under(name, head)]))
    return whole, whole


def default_target_names(model, outside: list[str]) -> list[str]:
    """The names of every linear layer of the body (attention and feed-forward): q_proj ... down_proj for Llama and
    Qwen, q, k, v, o, wi (wi_0, wi_1 gated), wo for T5, query, key, value, dense for BERT."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                              if isinstance(module, _linear_types()) and not _under(name, outside)))


def resolve_targets(model, names: list[str], outside: list[str]) -> list[str]:
    """peft's target_modules for `names`: a short name where every layer of that name gets an adapter, else the
    full names of those outside `outside` (BERT's pooler and attention both have a `dense`)."""
    modules = [name for name, _ in model.named_modules()]
    targets = []
    for short in names:
        matches = [name for name in modules if name == short or name.endswith("." + short)]
        kept = [name for name in matches if not _under(name, outside)]
        if not kept:
            where = "only in the layers trained whole or left out" if matches else "no layer of that name"
            raise ConfigError(f"--lora_target_modules {short}: the model has {where}; its linear layers are "
                              f"{', '.join(default_target_names(model, outside))}")
        targets += [short] if len(kept) == len(matches) else kept
    return targets


def add_adapter(model, family: str, rank: int, alpha: float, dropout: float, target_names: list[str] | None = None):
    """The model wrapped by peft with LoRA adapters; only they (and the layers trained whole) are trainable."""
    peft = require_peft()
    outside, whole = trained_whole(model, family)
    names = target_names or default_target_names(model, outside)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=resolve_targets(model, names, outside), modules_to_save=whole or None)
    fresh = set(getattr(model, "fresh_parameter_names", []))
    wrapped = peft.get_peft_model(model, config)
    # The trainer gives the fresh head its own learning rate by parameter name: the names inside the wrapper.
    wrapped.fresh_parameter_names = sorted(
        name for name, param in wrapped.named_parameters()
        if param.requires_grad and _unwrapped_name(name) in fresh)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info("LoRA rank %d, alpha %g, dropout %g on %s%s; %d of %d parameters trainable (%.2f%%)", rank, alpha,
                dropout, ", ".join(names), f"; trained whole: {', '.join(whole)}" if whole else "", trainable,
                total, 100 * trainable / total)
    return wrapped


def _unwrapped_name(name: str) -> str:
    """A parameter's name in the model peft wrapped."""
    return name.removeprefix("base_model.model.").replace(".modules_to_save.default.", ".")


# --- the base model and the metadata -----------------------------------------------------------------------------


def local_folder(base: str) -> Path | None:
    """The folder of a base model: a local path, or a hub id's snapshot already in the local cache."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base, local_files_only=True))
    except (OSError, ValueError):  # not in the cache, or not a hub id at all
        return None


def base_fingerprint(folder: str | Path) -> str | None:
    """sha256 over the base's weight files: each one's name, size and 16 evenly spaced 64 KiB samples of its bytes
    (common.hashing.sampled_file_digest). Cheap at any model size, unchanged by a copy or a move, different for
    other weights (another fine-tune or version of the same architecture, the same weights in another dtype).
    Configs and tokenizers are left out: training writes its own keys into config.json. None: no weight files."""
    files = sorted({p for pattern in BASE_WEIGHTS for p in Path(folder).glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sampled_file_digest(path)}\0".encode())
    return digest.hexdigest()


def dtype_name(model) -> str:
    """The precision of the model's weights as loaded: what training updated and what a merge reloads."""
    return DTYPES.get(next(model.parameters()).dtype, "fp32")


def adapter_metadata(scoring: dict, family: str, base_model: str, dtype: str) -> dict:
    """What reranker_config.json holds: the scoring metadata of a full model, and the base it needs."""
    folder = local_folder(base_model)
    base = str(folder.resolve()) if Path(base_model).is_dir() else base_model
    return {**scoring, "family": family, "base_model": base,
            "base_fingerprint": base_fingerprint(folder) if folder else None, "dtype": dtype}


def write_metadata(folder: str | Path, metadata: dict) -> None:
    write_json(Path(folder) / METADATA_FILE, metadata)


def read_metadata(folder: str | Path) -> dict:
    """reranker_config.json; for an adapter trained elsewhere, the base peft recorded (nothing to check it by)."""
    path = Path(folder) / METADATA_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    base = json.loads((Path(folder) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{folder}: a LoRA adapter that names no base model ({ADAPTER_CONFIG} has no "
                          f"base_model_name_or_path and there is no {METADATA_FILE})")
    logger.warning("%s has no %s (not trained here): its base %s is not checked against the one it was trained on",
                   folder, METADATA_FILE, base)
    return {"base_model": base}


def adapter_base(folder: str | Path, base_model: str | None = None) -> tuple[str, dict]:
    """(the base model's path, the adapter's metadata): the recorded base, or `base_model` (a moved copy), refused
    when it is missing or its weights are not the ones the adapter was trained on."""
    metadata = read_metadata(folder)
    recorded = metadata["base_model"]
    base = base_model or recorded
    where = local_folder(base)
    if where is None:
        raise ConfigError(f"the LoRA adapter {folder} was trained on {recorded}, which is not on this machine"
                          + (f" (nor is {base})" if base != recorded else "") + ": put the base model back there, "
                          "or give the path of a copy (Reranker(..., base_model=COPY), reranker-merge --base_model "
                          "COPY)")
    expected = metadata.get("base_fingerprint")
    if expected is not None:
        found = base_fingerprint(where)
        if found != expected:
            raise ConfigError(f"{base} is not the base model the LoRA adapter {folder} was trained on (its weights' "
                              f"fingerprint is {str(found)[:12]}, the adapter's base had {expected[:12]}); an adapter "
                              f"applied to other weights scores wrongly. Give the base it was trained on ({recorded})")
    return str(where), metadata


def apply_adapter(model, folder: str | Path, metadata: dict):
    """`model` (the base, loaded as its family's class) with the adapter of `folder` applied, not merged; its
    config carries the adapter's metadata, so budgets and prompt are read as for a full model."""
    peft = require_peft()
    wrapped = peft.PeftModel.from_pretrained(model, str(folder))
    scoring = {k: v for k, v in metadata.items() if k not in ("base_fingerprint", "dtype")}
    wrapped.get_base_model().config.reranker = scoring
    return wrapped
