"""Many texts tokenized once and held compactly, then batched and padded on demand exactly as the tokenizer pads.

An embedder sorts its texts by length before batching, so it needs every text's length before the first batch.
Tokenizing twice (once to count, once per batch) cost a quarter of the encoding time of short passages on 2 CPU
cores; holding the ids of a whole pool as Python lists would cost more memory than its embeddings. Here the ids
are tokenized in chunks by a fast tokenizer's backend (without the Python wrapper's per-text work, about a third of
its time on short texts) and kept in one numpy array per chunk: 2 bytes a token where the chunk's ids fit, 4
elsewhere, plus 1 for segment ids only where a chunk has non-zero ones.
"""

from __future__ import annotations

import copy

import numpy as np
import torch


def fast_backend(tokenizer, max_length: int):
    """A copy of a fast tokenizer's backend set to cut at `max_length` and not pad, as `tokenizer(texts,
    truncation=True, max_length=max_length)` sets its own; None where the backend alone would tokenize
    differently (a slow tokenizer, or a class that does its own work before the backend)."""
    from transformers import PreTrainedTokenizerFast

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(tokenizer, PreTrainedTokenizerFast):
        return None
    base = PreTrainedTokenizerFast
    if any(getattr(type(tokenizer), name, None) is not getattr(base, name, None)
           for name in ("_encode_plus", "_batch_encode_plus", "__call__", "_call_one")):
        return None
    backend = copy.deepcopy(backend)  # the tokenizer's own keeps its settings
    backend.no_padding()
    backend.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    return backend


def _compact(rows: list[list[int]], dtype_small, dtype_large) -> np.ndarray:
    flat = np.fromiter((i for r in rows for i in r), dtype=np.int64)
    small = flat.size == 0 or int(flat.max()) <= np.iinfo(dtype_small).max
    return flat.astype(dtype_small if small else dtype_large)


class TokenizedTexts:
    """`prefix + text` for each text, tokenized with the model's special tokens and cut to `max_length` (as
    `tokenizer(texts, truncation=True, max_length=max_length)` cuts), with `lengths` known up front and
    `batch(rows)` giving the tensors `tokenizer(..., padding=True, return_tensors="pt")` gives for those rows.

    `backend`: a `fast_backend(tokenizer, max_length)` to reuse (it is built here otherwise)."""

    def __init__(self, tokenizer, texts: list[str], max_length: int, prefix: str = "", chunk: int = 8192,
                 backend=None):
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token, so batches of texts of different lengths cannot be "
                             "padded; set tokenizer.pad_token")
        self.tokenizer = tokenizer
        self.names = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids",
                                                                       "attention_mask")]
        if backend is None:
            backend = fast_backend(tokenizer, max_length)
        self.lengths = np.empty(len(texts), dtype=np.int64)
        self.chunk = chunk
        self.ids: list[np.ndarray] = []  # one flat array per chunk of texts
        self.types: list[np.ndarray | None] = []  # None: the chunk's segment ids are all 0
        self.starts = np.empty(len(texts), dtype=np.int64)  # where each text starts in its chunk's array
        for start in range(0, len(texts), chunk):
            part = [prefix + t for t in texts[start:start + chunk]]
            if backend is not None:
                encoded = backend.encode_batch(part)
                rows, row_types = [e.ids for e in encoded], [e.type_ids for e in encoded]
            else:
                out = tokenizer(part, truncation=True, max_length=max_length, return_token_type_ids=True,
                                return_attention_mask=False)
                rows, row_types = out["input_ids"], out["token_type_ids"]
            lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
            self.lengths[start:start + len(rows)] = lengths
            self.starts[start:start + len(rows)] = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            self.ids.append(_compact(rows, np.uint16, np.int32))
            types = _compact(row_types, np.uint8, np.int32) if "token_type_ids" in self.names else None
            self.types.append(types if types is not None and types.any() else None)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows) -> dict[str, torch.Tensor]:
        """The rows' tensors, padded to the longest on the tokenizer's padding side with its pad id."""
        rows = np.asarray(rows, dtype=np.int64)
        width = int(self.lengths[rows].max()) if len(rows) else 0
        ids = np.full((len(rows), width), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.full((len(rows), width), self.tokenizer.pad_token_type_id, dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for out_row, row in enumerate(rows):
            chunk, start, n = row // self.chunk, self.starts[row], self.lengths[row]
            columns = slice(width - n, width) if left else slice(0, n)
            ids[out_row, columns] = self.ids[chunk][start:start + n]
            mask[out_row, columns] = 1
            chunk_types = self.types[chunk]
            types[out_row, columns] = 0 if chunk_types is None else chunk_types[start:start + n]
        tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: torch.from_numpy(tensors[name]) for name in self.names}
