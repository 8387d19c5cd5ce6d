"""Scoring query-passage pairs with a trained reranker of any family: the API evaluation and mining build on."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from reranker.common.errors import ConfigError
from reranker.common.precision import autocast, cast_weights, casts_to_bf16, inference_dtype
from reranker.common.scores import DEFAULT_FUSION_WEIGHT, fuse_arrays
from reranker.models import lora
from reranker.models.backends import GraphModel, choose_backend
from reranker.models.loading import (
    check_fits,
    check_model_folder,
    load_config,
    load_model,
    load_tokenizer,
    position_limit,
)
from reranker.models.scorers import ScorerOptions, saved_metadata, scorer_for

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512


def length_order(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """The order pairs are scored in: longest first (by characters, stable), so that a batch pads little."""
    return np.argsort([-(len(q) + len(p)) for q, p in pairs], kind="stable")


def graph_mismatch(record: dict, scorer) -> str | None:
    """Why an exported graph cannot score for `scorer`, or None. A seq2seq or decoder graph returns the logits of
    the answer tokens it was traced with, so a scorer told other tokens (or of another family) cannot use it."""
    family = record.get("family", "encoder")  # exports made before the other families were: the encoder's
    if family != scorer.family:
        return f"it was exported for the {family} family; it cannot score as {scorer.describe()}"
    wanted = list(getattr(scorer, "token_ids", []))
    if wanted != list(record.get("token_ids", [])):
        return (f"it returns the logits of answer tokens {record.get('token_ids')}, but this scorer reads {wanted} "
                "(--true_token, --false_token or --score_mode differ from the export's): export it again with them "
                "(reranker-export --template / --true_token / --false_token / --score_mode), or score with backend "
                "torch")
    return None


class Reranker:
    """A reranker checkpoint for inference: a cross-encoder (one-logit AutoModelForSequenceClassification), a
    seq2seq model answering true/false (monoT5) or a causal LM answering yes/no.

    The family, prompt and answer tokens of a model trained here come from its config.json; any other checkpoint's
    family is read from its architecture, with its family's default prompt. `model_family` and the prompt options
    (`template`, `prefix`, `body`, `suffix`, `instruction`, `true_token`, `false_token`, `score_mode`, as in
    ScorerOptions) override them.

    `dtype` "bf16" casts an encoder's weights to bf16 and runs the other families under autocast, as "fp16" runs
    every family; on CPU, bf16 roughly doubles MiniLM throughput where the processor has AVX512-BF16 and is several
    times slower than fp32 (measured under autocast) where it has not.
    "auto": bf16 where the device has it natively, else fp32. `max_length` is the pair's token budget; by default a
    model trained here is read as it was trained (query and passage each cut to the budgets saved in its
    config.json), any other model to 512 tokens or its own limit.

    `backend` "onnx", "onnx-int8", "openvino" or "openvino-int8" scores with the graph `reranker-export` wrote
    beside the weights (any family, CPU; reranker/models/backends.py); "torch", the default, with the weights;
    "auto" with the fastest graph whose export measured it faster than torch on this CPU model, else torch.
    On OpenVINO, a batch shape that recurs gets a copy of the graph compiled for it (faster; not bit-equal to the
    first batches of that shape); `shape_copies=False` keeps every batch on one compile (docs/backends.md).

    A LoRA adapter folder (reranker-train --use_lora) is applied to the base model it records, refused if that base
    is missing or its weights are not the ones trained on; `base_model` names a moved copy (checked the same way).
    """

    def __init__(self, model_name_or_path: str, device: str | None = None, dtype: str | None = None,
                 max_length: int | None = None, trust_remote_code: bool = False,
                 max_length_option: str = "max_length", model_family: str | None = None,
                 base_model: str | None = None, backend: str = "torch", shape_copies: bool = True,
                 **scorer_options):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        check_model_folder(model_name_or_path)  # before the tokenizer: a half-written folder may hold one
        self.tokenizer = load_tokenizer(model_name_or_path, trust_remote_code)
        adapter = lora.is_adapter_folder(model_name_or_path)
        if adapter:  # a LoRA adapter: the base it was trained on (checked), with the adapter's metadata
            weights, metadata = lora.adapter_base(model_name_or_path, base_model)
            config = load_config(weights, trust_remote_code)
            config.reranker = metadata
        elif base_model is not None:
            raise ConfigError(f"base_model applies to a LoRA adapter folder; {model_name_or_path} is a full model")
        else:
            weights, config = model_name_or_path, load_config(model_name_or_path, trust_remote_code)
        self.scorer = scorer_for(config, self.tokenizer, model_family, ScorerOptions(**scorer_options))
        self.scorer.check_precision(dtype, "reranker dtype")  # "auto" never picks fp16
        self.dtype = inference_dtype(dtype, self.device.type, "reranker dtype")
        self.backend = backend = choose_backend(model_name_or_path, backend, self.device.type, kind="reranker",
                                                accept=lambda record: graph_mismatch(record, self.scorer) is None)
        if backend != "torch":  # an exported graph (reranker-export) in place of the weights
            if adapter:
                raise ConfigError(f"backend {backend} runs an exported graph; {model_name_or_path} is a LoRA adapter: "
                                  "merge it into its base (reranker-merge), export the merged model and score that")
            model = GraphModel(model_name_or_path, backend, config, dtype, self.dtype, kind="reranker",
                               shape_copies=shape_copies)
            mismatch = graph_mismatch(model.record, self.scorer)
            if mismatch:
                raise ConfigError(f"the {backend} graph of {model_name_or_path} does not fit: {mismatch}")
            self.dtype = None  # the graph's precision is its own: no torch autocast around it
        else:
            model = load_model(weights, self.tokenizer, trust_remote_code, self.scorer.auto_class,
                               **self.scorer.model_kwargs)
        if adapter:
            model = lora.apply_adapter(model, model_name_or_path, metadata)
        self.model = model.to(self.device).eval()
        if casts_to_bf16(self.dtype, self.scorer.family, trust_remote_code):
            # bf16 weights, as sentence-transformers loads them, rather than autocast over fp32 weights, which casts
            # every weight again each batch: from 0.74x to 0.97x CrossEncoder's bf16 pairs/s on a CPU with AMX
            # (MiniLM, 256-token pairs; results/backends.md), at the same dev nDCG@10.
            cast_weights(self.model, torch.bfloat16)
            self.dtype = None
        # (query, passage) token budgets of a model we trained (config.json "reranker"): used unless a length is given.
        self.budgets: tuple[int, int] | None = None
        trained = saved_metadata(self.model.config)
        if max_length is None and trained.get("max_length"):
            max_length = trained["max_length"]
            self.budgets = (trained["query_max_len"], trained["passage_max_len"])
        elif max_length is None:
            # The default: 512 tokens, or fewer where the model holds fewer.
            max_length = min(DEFAULT_MAX_LENGTH, position_limit(self.model.config) or DEFAULT_MAX_LENGTH)
        else:
            check_fits(self.model.config, max_length, f"{max_length_option} for {model_name_or_path}")
        self.max_length = max_length
        self._warned_pure = False  # rerank() without first-stage scores warns once per instance

    @property
    def family(self) -> str:
        return self.scorer.family

    def _autocast(self):
        return autocast(self.device.type, self.dtype)

    @torch.inference_mode()
    def compute_score(self, pairs: Sequence[tuple[str, str]] | tuple[str, str], batch_size: int = 32,
                      max_length: int | None = None, normalize: bool = False,
                      show_progress: bool = False) -> list[float] | float:
        """Relevance scores (or sigmoid probabilities with normalize=True: monoT5's P(true) for the seq2seq family)
        in the order of `pairs`.

        A single (query, passage) tuple returns a single float.
        """
        single = isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str)
        scores = self._batched([pairs] if single else list(pairs), self.scorer.scores, (), batch_size, max_length,
                               show_progress)
        if normalize:
            scores = 1.0 / (1.0 + np.exp(-scores))
        result = scores.tolist()
        return result[0] if single else result

    @torch.inference_mode()
    def compute_logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, max_length: int | None = None,
                       show_progress: bool = False) -> np.ndarray:
        """The (false, true) answer logits [pairs, 2] of a two-logit model (seq2seq, or decoder in the pair mode),
        as InRanker's teacher records hold them; `compute_score` is their difference, true minus false."""
        if not self.scorer.has_pair_logits:
            raise ConfigError(f"{self.scorer.describe()} gives one score per pair, not (false, true) logits: a model "
                              "of the seq2seq or decoder family, scored by logit(true) - logit(false), has them")
        return self._batched(list(pairs), self.scorer.pair_logits, (2,), batch_size, max_length, show_progress)

    def _batched(self, items: list[tuple[str, str]], read, shape: tuple[int, ...], batch_size: int,
                 max_length: int | None, show_progress: bool) -> np.ndarray:
        """`read(model, inputs)` of every pair, in the order of `items`: float32 [pairs, *shape]."""
        out = np.empty((len(items), *shape), dtype=np.float32)
        batches = self.encoded_batches(items, batch_size, max_length)
        for idx, batch in tqdm(batches, total=-(-len(items) // batch_size), desc="Scoring", disable=not show_progress,
                               unit="batch"):
            with self._autocast():
                out[idx] = read(self.model, batch).float().cpu().numpy()
        return out

    def encoded_batches(self, items: list[tuple[str, str]], batch_size: int, max_length: int | None = None):
        """(rows of `items`, model inputs on the device) of each batch, as compute_score scores them: longest first,
        in batches of similar length so padding is small, one tokenizer call per batch, made as it is asked for."""
        if max_length and max_length != self.max_length:
            check_fits(self.model.config, max_length, "max_length")
        by_budgets = self.budgets is not None and max_length in (None, self.max_length)
        budgets = self.budgets if by_budgets else (None, None)
        max_length = max_length or self.max_length
        order = length_order(items)
        for start in range(0, len(items), batch_size):
            idx = order[start:start + batch_size]
            batch = self.scorer.encode([items[i][0] for i in idx], [items[i][1] for i in idx], *budgets,
                                       max_length=max_length)
            yield idx, {k: v.to(self.device) for k, v in batch.items()}

    def rerank(self, query: str, passages: Sequence[str], top_k: int | None = None, batch_size: int = 32,
               first_stage_scores: Sequence[float] | None = None, weight: float | None = None) -> list[dict]:
        """Passages sorted by score, best first: [{"index", "text", "score"}], cut to top_k when given.

        With `first_stage_scores` (the retriever's score of each passage, higher is better) the ranking is the
        fusion `weight` x reranker + (1 - weight) x first stage, each min-max normalised over these passages, as
        reranker-eval's fused rows; each result then also holds "reranker_score" and "first_stage_score".
        `weight` defaults to the one chosen on cross-domain dev queries (reranker.common.scores.DEFAULT_FUSION_WEIGHT).
        On a corpus without dev queries that show the pure reranker above its first stage, the fused ranking is
        the safe one: a reranker can rank below its first stage on a corpus it was not trained on
        (docs/cross-domain.md)."""
        passages = list(passages)
        if weight is not None and first_stage_scores is None:
            raise ConfigError("rerank: weight is the reranker's share in the fusion with first_stage_scores; give "
                              "those scores too")
        scores = self.compute_score([(query, p) for p in passages], batch_size=batch_size) if passages else []
        if first_stage_scores is None:
            if not self._warned_pure:
                self._warned_pure = True
                logger.warning("rerank: the pure reranker ranking, unchecked against the first stage here; on a "
                               "corpus it was not trained on, a reranker can rank below its first stage. Unless dev "
                               "queries of this corpus showed it above, pass first_stage_scores for the fused "
                               "ranking, the safe one (docs/cross-domain.md).")
            ranked = sorted(range(len(passages)), key=lambda i: -scores[i])
            return [{"index": i, "text": passages[i], "score": scores[i]} for i in ranked[:top_k]]
        first = np.asarray(first_stage_scores, dtype=np.float64)
        if first.shape != (len(passages),) or not np.isfinite(first).all():
            raise ConfigError(f"rerank: first_stage_scores must be {len(passages)} finite numbers, one per passage "
                              f"(got {first.shape[0] if first.ndim == 1 else first.shape})")
        weight = DEFAULT_FUSION_WEIGHT if weight is None else float(weight)
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"rerank: weight must be in [0, 1], got {weight}")
        raw = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(raw).all():
            raise ValueError(f"rerank: the reranker gave {int((~np.isfinite(raw)).sum())} non-finite scores; the "
                             "fusion's normalisation would spread them to every passage")
        fused = fuse_arrays(raw, first, weight)  # as reranker-eval fuses runs
        ranked = sorted(range(len(passages)), key=lambda i: -fused[i])
        return [{"index": i, "text": passages[i], "score": float(fused[i]), "reranker_score": scores[i],
                 "first_stage_score": float(first[i])} for i in ranked[:top_k]]
