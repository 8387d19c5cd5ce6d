"""Dense embeddings with a bge-style encoder: pooling, instruction, L2 normalisation, length-sorted batches; and the
sentence-transformers module files that say a saved embedder's pooling, normalisation and query prompt.

FlagEmbedding's embedder has the same semantics (and a test checks that we match it), but it is not used here:
on CPU it forces fp32 (no bf16 autocast, about half the speed on CPUs with AVX512-BF16), it treats every
RuntimeError as out-of-memory and retries with smaller batches (a real error becomes a silent loop), and it
spreads work over a multiprocessing pool where we shard across torchrun ranks.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer

from reranker.common.precision import autocast, cast_weights, casts_to_bf16, inference_dtype
from reranker.models.backends import GraphModel, choose_backend, one_torch_thread
from reranker.models.tokens import TokenizedTexts, fast_backend

POOLINGS = ("cls", "mean", "last")
# sentence-transformers' names of our poolings in 1_Pooling/config.json (the keys every version reads).
ST_POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
                   "last": "pooling_mode_lasttoken"}


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """[batch, tokens, dim] -> [batch, dim]: the first token (cls), the mean over real tokens (mean), or the last
    real token (last: what a decoder embedder has read everything by), with left or right padding."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if mode == "last":
        # The last real token: the largest position whose mask is 1, which is the last column with left padding
        # and the column before the first pad with right padding.
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (positions * mask.to(positions.dtype)).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")


class Embedder:
    """Encodes texts into L2-normalised vectors (float32 numpy), in input order.

    `backend` other than "torch" runs the graph `reranker-export` wrote beside the weights (onnx, onnx-int8,
    openvino, openvino-int8; CPU), pooled here as the torch model's output is; `shape_copies` as for Reranker."""

    def __init__(self, model_name_or_path: str, pooling: str | None = None, dtype: str = "fp32",
                 device: str | None = None, normalize: bool = True, trust_remote_code: bool = False,
                 backend: str = "torch", shape_copies: bool = True):
        pooling = pooling or default_pooling(model_name_or_path)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = inference_dtype(dtype, self.device.type, "embedder dtype")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            backend = choose_backend(model_name_or_path, backend, self.device.type, kind="embedder")
            if backend == "torch":
                self.model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            else:  # the graph reranker-export wrote beside the weights
                config = AutoConfig.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
                self.model = GraphModel(model_name_or_path, backend, config, dtype, self.dtype, kind="embedder",
                                        shape_copies=shape_copies)
                self.dtype = None  # the graph's precision is its own: no torch autocast around it
        except OSError as error:
            raise FileNotFoundError(f"embedder {model_name_or_path!r} could not be loaded: {error}") from None
        self.backend = backend
        self.model.to(self.device).eval()
        self.bf16_weights = casts_to_bf16(self.dtype, "embedder", trust_remote_code)  # rather than autocast
        if self.bf16_weights:
            cast_weights(self.model, torch.bfloat16)
            self.dtype = None
        self.pooling = pooling
        self.normalize = normalize
        self.dim = self.model.config.hidden_size
        self._token_backends = {}  # fast_backend copies by (max_length, truncation side, special-token splitting)

    @classmethod
    def from_model(cls, model, tokenizer, pooling: str, normalize: bool = True, autocast_dtype=None) -> Embedder:
        """An Embedder over a model already in memory (a trainer's, mid-training): the same encoding as a saved
        one's. The caller puts the model in eval mode."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self = cls.__new__(cls)
        self.model, self.tokenizer, self.pooling, self.normalize = model, tokenizer, pooling, normalize
        self.device = next(model.parameters()).device
        self.dtype, self.bf16_weights = autocast_dtype, False
        self.dim = model.config.hidden_size
        self._token_backends = {}
        return self

    def _autocast(self):
        return autocast(self.device.type, self.dtype)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden, mask, self.pooling)

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int = 256, batch_size: int = 64, instruction: str = "",
               desc: str = "Encoding", show_progress: bool = True) -> np.ndarray:
        """Embed `texts` (each prefixed by `instruction`), longest first so batches pad little. Each text is
        tokenized once (TokenizedTexts), for the sort and for its batch."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # The tokenizer backend's configured copy, kept: copying a large tokenizer costs a noticeable part of a second
        key = (max_length, self.tokenizer.truncation_side, getattr(self.tokenizer, "split_special_tokens", False))
        if key not in self._token_backends:
            self._token_backends[key] = fast_backend(self.tokenizer, max_length)
        tokens = TokenizedTexts(self.tokenizer, texts, max_length, prefix=instruction,
                                backend=self._token_backends[key])
        order = np.argsort(-tokens.lengths, kind="stable")
        rows = [order[start:start + batch_size] for start in range(0, len(texts), batch_size)]
        batches = ({name: tensor.to(self.device) for name, tensor in tokens.batch(idx).items()} for idx in rows)
        progress = tqdm(zip(rows, self._hidden_states(batches), strict=True), total=len(rows), desc=desc,
                        unit="batch", disable=not show_progress)
        streaming = isinstance(self.model, GraphModel) and self.model.streams
        with one_torch_thread() if streaming else contextlib.nullcontext():
            for idx, (batch, hidden) in progress:
                vectors = self._pool(hidden.float(), batch["attention_mask"])
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[idx] = vectors.cpu().numpy()
        return out

    def _hidden_states(self, batches):
        """(inputs, last hidden state) of each batch, in order. A graph keeps several batches in flight
        (GraphModel.map); the torch model runs them one by one."""
        if isinstance(self.model, GraphModel):
            sent = deque()

            def feeds():
                for batch in batches:
                    sent.append(batch)
                    yield batch

            for hidden in self.model.map(feeds()):
                yield sent.popleft(), hidden
            return
        for batch in batches:
            with self._autocast():
                hidden = self.model(**batch).last_hidden_state
            yield batch, hidden


def _st_file(path: str, name: str) -> dict | None:
    file = Path(path) / name
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def default_pooling(path: str) -> str:
    """sentence-transformers folders say their pooling in 1_Pooling/config.json (mean for MiniLM, last token for
    decoder embedders; older and newer spellings); bge-style models without one use CLS."""
    config = _st_file(path, "1_Pooling/config.json") or {}
    mode = config.get("pooling_mode")  # sentence-transformers 6 writes one name
    if mode in ("cls", "mean", "lasttoken"):
        return {"lasttoken": "last"}.get(mode, mode)
    for name, key in ST_POOLING_KEYS.items():
        if config.get(key):
            return name
    return "cls"


def saved_query_instruction(path: str) -> str:
    """The query prompt a sentence-transformers folder names (config_sentence_transformers.json's prompts.query;
    reranker-train-embedder writes its --query_instruction there); "" when none."""
    config = _st_file(path, "config_sentence_transformers.json") or {}
    prompts = config.get("prompts") or {}
    return prompts.get("query", "") if isinstance(prompts, dict) else ""


def write_sentence_transformers_files(folder: str | Path, pooling: str, normalize: bool, dim: int,
                                      max_seq_length: int, query_instruction: str = "") -> None:
    """The module files that make `SentenceTransformer(folder)` embed as `Embedder(folder)` does: the transformer,
    its pooling, L2 normalisation when trained with it, the passage budget and the query prompt. In the classic
    spelling (sentence_transformers.models.*, pooling_mode_* keys) that every version since 2.x reads."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    pooling_config = {"word_embedding_dimension": dim, "pooling_mode_cls_token": False,
                      "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                      "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                      "pooling_mode_lasttoken": False, "include_prompt": True}
    pooling_config[ST_POOLING_KEYS[pooling]] = True
    files = {"modules.json": modules, "1_Pooling/config.json": pooling_config,
             "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
             "config_sentence_transformers.json": {
                 "prompts": {"query": query_instruction, "document": ""}, "default_prompt_name": None,
                 "similarity_fn_name": "cosine" if normalize else "dot"}}
    if normalize:
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
