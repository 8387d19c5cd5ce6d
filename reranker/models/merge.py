"""Merging a LoRA adapter into its base: a plain checkpoint of the family's class, written only after a probe batch
scored the same merged and unmerged.

The base is the one the adapter records, or a copy given by path; either is refused unless its weights carry the
fingerprint the adapter was trained on (merging into other weights gives a model that loads and scores, wrongly).
It is reloaded in the precision training loaded it in, so the merged weights are what training's forward computed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from reranker.common.errors import ConfigError
from reranker.models import interop, lora
from reranker.models.loading import load_config, load_model, load_tokenizer
from reranker.models.scorers import scorer_for

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Merged and unmerged scores may differ by rounding only: W + BA rounded once against W x + B(A x). The tolerance
# is absolute for scores up to 1 and relative above.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 1e-2}
PROBE_PAIRS = [
    ("what is the capital of france", "Paris is the capital and largest city of France."),
    ("what is the capital of france", "Berlin is the capital of Germany."),
    ("why is the sky blue", "Sunlight is scattered by the air, and blue light is scattered the most."),
    ("how is bread made", "Flour, water and yeast are mixed into a dough that rises and is baked in an oven."),
    ("when does water freeze", "The river runs into the ocean."),
    ("who wrote the iliad", "The Iliad is an ancient Greek epic poem attributed to Homer."),
]
STAGING_PREFIX = "_saving-"


def probe_scores(model, scorer, metadata: dict) -> torch.Tensor:
    """The scores of PROBE_PAIRS, cut to the adapter's training budgets, in fp32."""
    queries, passages = zip(*PROBE_PAIRS, strict=True)
    budgets = (metadata.get("query_max_len"), metadata.get("passage_max_len"))
    inputs = scorer.encode(list(queries), list(passages), *budgets, max_length=metadata.get("max_length") or 512)
    with torch.inference_mode():
        return scorer.scores(model, inputs).float()


def merge_adapter(adapter_dir: str, output_dir: str, base_model: str | None = None, overwrite: bool = False) -> Path:
    """Merge the adapter of `adapter_dir` into its base and write the plain checkpoint to `output_dir` (with its
    tokenizer and config.json "reranker" metadata), atomically: on any refusal or failure nothing is left there."""
    if not lora.is_adapter_folder(adapter_dir):
        raise ConfigError(f"{adapter_dir} is not a LoRA adapter folder (no {lora.ADAPTER_CONFIG})")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite_output_dir to replace it")
    base, metadata = lora.adapter_base(adapter_dir, base_model)
    dtype = metadata.get("dtype", "fp32")
    tokenizer = load_tokenizer(adapter_dir)
    config = load_config(base)
    config.reranker = metadata
    scorer = scorer_for(config, tokenizer)
    logger.info("Merging %s into %s (%s, %s)", adapter_dir, base, scorer.describe(), dtype)
    model = load_model(base, tokenizer, False, scorer.auto_class, dtype=TORCH_DTYPES[dtype], **scorer.model_kwargs)
    model = lora.apply_adapter(model, adapter_dir, metadata).eval()
    unmerged = probe_scores(model, scorer, metadata)
    merged_model = model.merge_and_unload()
    merged = probe_scores(merged_model, scorer, metadata)
    gap = (merged - unmerged).abs().max().item()
    allowed = TOLERANCE[dtype] * max(1.0, unmerged.abs().max().item())
    if not gap <= allowed:  # a NaN fails too
        raise ConfigError(f"the merged model scores the probe pairs up to {gap:.3g} away from the adapter on its base "
                          f"(at most {allowed:.3g} allowed in {dtype}); nothing was written to {out}")
    logger.info("Probe batch: merged and unmerged scores agree within %.2g (%d pairs)", gap, len(PROBE_PAIRS))
    # The merged model stands alone: it needs no base, and its family is recorded as for any model trained here.
    merged_model.config.reranker = {k: v for k, v in metadata.items() if k not in ("base_fingerprint", "dtype")}
    # A merged decoder is served like a trained one: with the files that make sentence-transformers' CrossEncoder
    # give our scores (reranker/models/interop.py), written into the staging folder with the rest.
    write_atomically(merged_model, tokenizer, out, lambda folder: interop.write_sentence_transformers_files(
        folder, scorer, merged_model.config.reranker.get("max_length")))
    logger.info("Wrote the merged %s model to %s", scorer.family, out)
    return out


def write_atomically(model, tokenizer, out: Path, also=None) -> None:
    """Write into a staging folder beside `out` (`also(folder)` writes any further files there), then rename it to
    `out`: a kill leaves `out` as it was."""
    staging = out.parent / f"{STAGING_PREFIX}{out.name}"
    if staging.exists():
        shutil.rmtree(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if also is not None:
            also(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():  # --overwrite_output_dir: the old folder goes only once the new one is whole
        old = out.parent / f"{STAGING_PREFIX}old-{out.name}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        os.replace(staging, out)
