"""Dense embeddings with a bge-style encoder: pooling, instruction, L2 normalisation, length-sorted batches.

FlagEmbedding's embedder has the same semantics (and a test checks that we match it), but it is not used here:
on CPU it forces fp32 (no bf16 autocast, about half the speed on CPUs with AVX512-BF16), it treats every
RuntimeError as out-of-memory and retries with smaller batches (a real error becomes a silent loop), and it
spreads work over a multiprocessing pool where we shard across torchrun ranks.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from reranker.common.precision import autocast, inference_dtype

POOLINGS = ("cls", "mean")


class Embedder:
    """Encodes texts into L2-normalised vectors (float32 numpy), in input order."""

    def __init__(self, model_name_or_path: str, pooling: str = "cls", dtype: str = "fp32", device: str | None = None,
                 normalize: bool = True, trust_remote_code: bool = False):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = inference_dtype(dtype, self.device.type, "embedder dtype")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
            self.model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code)
        except OSError as error:
            raise FileNotFoundError(f"embedder {model_name_or_path!r} could not be loaded: {error}") from None
        self.model.to(self.device).eval()
        self.pooling = pooling
        self.normalize = normalize
        self.dim = self.model.config.hidden_size

    def _autocast(self):
        return autocast(self.device.type, self.dtype)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def _lengths(self, texts: list[str], max_length: int, instruction: str, chunk: int = 8192) -> np.ndarray:
        """Token counts for sorting, in chunks keeping only the counts: the token lists of a whole large pool,
        held at once as Python ints, would cost more memory than its embeddings."""
        lengths = np.empty(len(texts), dtype=np.int32)
        for start in range(0, len(texts), chunk):
            encoded = self.tokenizer([instruction + t for t in texts[start:start + chunk]], truncation=True,
                                     max_length=max_length, return_attention_mask=False,
                                     return_token_type_ids=False, return_length=True)
            lengths[start:start + chunk] = encoded["length"]
        return lengths

    @torch.inference_mode()
    def encode(self, texts: list[str], max_length: int = 256, batch_size: int = 64, instruction: str = "",
               desc: str = "Encoding", show_progress: bool = True) -> np.ndarray:
        """Embed `texts` (each prefixed by `instruction`), longest first so batches pad little."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort(-self._lengths(texts, max_length, instruction), kind="stable")
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not show_progress):
            idx = order[start:start + batch_size]
            batch = self.tokenizer([instruction + texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt").to(self.device)
            with self._autocast():
                hidden = self.model(**batch).last_hidden_state
            vectors = self._pool(hidden.float(), batch["attention_mask"])
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[idx] = vectors.cpu().numpy()
        return out


def default_pooling(path: str) -> str:
    """sentence-transformers folders say their pooling in 1_Pooling/config.json; bge-style models use CLS."""
    import json
    from pathlib import Path

    config = Path(path) / "1_Pooling" / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls"
