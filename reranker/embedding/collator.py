"""Tokenizing groups for a bi-encoder: queries and passages apart, each cut to its own budget, with the keys that
find in-batch false negatives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from reranker.data.groups import Group


def text_key(text: str) -> int:
    """A stable 63-bit key of a passage's normalised text (case and runs of whitespace ignored): equal keys are the
    same document. A tensor of them can be gathered across ranks, unlike strings."""
    normalised = " ".join(text.lower().split())
    return int.from_bytes(hashlib.blake2b(normalised.encode(), digest_size=8).digest(), "big") >> 1


@dataclass
class EmbedderCollator:
    """Groups (query, positive, hard negatives) -> `query` and `passage` model inputs, `passage_keys` and, when
    every group has them, `teacher_scores` [B, G].

    Passage rows: the B positives first (query i's is row i), then each record's hard negatives, record by record:
    the layout reranker/embedding/losses.py reads. The query instruction is put before the query and counts
    against its budget, as `Embedder.encode` does, so training and retrieval see the same inputs.
    """

    tokenizer: object
    query_max_len: int = 64
    passage_max_len: int = 256
    query_instruction: str = ""
    passage_instruction: str = ""
    pad_to_multiple_of: int | None = 8

    def encode(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(texts, truncation=True, max_length=max_length, padding=True,
                                   pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"))

    def __call__(self, groups: list[Group]) -> dict:
        sizes = {len(g.passages) for g in groups}
        if len(sizes) != 1:
            raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
        passages = [g.passages[0] for g in groups] + [p for g in groups for p in g.passages[1:]]
        features = {
            "query": self.encode([self.query_instruction + g.query for g in groups], self.query_max_len),
            "passage": self.encode([self.passage_instruction + p for p in passages], self.passage_max_len),
            "passage_keys": torch.tensor([text_key(p) for p in passages], dtype=torch.long),
        }
        if all(g.teacher_scores is not None for g in groups):
            features["teacher_scores"] = torch.tensor([g.teacher_scores for g in groups], dtype=torch.float32)
        return features
