"""Tokenizing groups: query and passage as a real pair, each cut to its own budget, padded per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reranker.data.groups import Group


def cut_to_budget(tokenizer, texts: list[str], budget: int) -> tuple[list[str], list[bool]]:
    """Cut each text after its first `budget` tokens, at a token boundary. Returns (texts, was_cut).

    Cutting the text (not the ids) lets the pair be encoded by one fast-tokenizer call with the model's own
    special tokens and segment ids, for any architecture.
    """
    encoded = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=budget,
                        return_offsets_mapping=True)
    out, cut = [], []
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        end = offsets[-1][1] if offsets else 0
        was_cut = len(offsets) == budget and text[end:].strip() != ""
        out.append(text[:end] if was_cut else text)
        cut.append(was_cut)
    return out, cut


def pair_budget(tokenizer, query_max_len: int, passage_max_len: int) -> int:
    return query_max_len + passage_max_len + tokenizer.num_special_tokens_to_add(pair=True)


def encode_pairs(tokenizer, queries: list[str], passages: list[str], query_max_len: int | None,
                 passage_max_len: int | None, max_length: int, pad_to_multiple_of: int | None = None):
    """(query, passage) as a real pair for a cross-encoder, padded to the longest: each side first cut to its own
    budget (when given), then the pair cut longest-first to `max_length` (a safety net when budgets are given).

    Queries are cut separately so a long query costs only its budget: never a crash, never the passage.
    """
    if query_max_len is not None:
        unique = list(dict.fromkeys(queries))
        cut = dict(zip(unique, cut_to_budget(tokenizer, unique, query_max_len)[0], strict=True))
        queries = [cut[q] for q in queries]
    if passage_max_len is not None:
        passages = cut_to_budget(tokenizer, passages, passage_max_len)[0]
    return tokenizer(
        queries, passages,
        # longest_first never fails, whatever the query's length (only_second would raise).
        truncation="longest_first", max_length=max_length,
        padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt",
    )


@dataclass
class GroupCollator:
    """Turns a list of `Group`s into model inputs plus the targets the loss needs.

    Output: the model inputs of the pairs in group order (scores reshape to [n_groups, group_size], positive first),
    `teacher_scores` [n_groups, group_size] when every group has them, `soft_labels` [n_groups, 1] for
    InRanker records.
    """

    tokenizer: object
    query_max_len: int = 64
    passage_max_len: int = 256
    pad_to_multiple_of: int | None = 8
    # The model family's scorer (reranker.models.scorers) builds the inputs: anything with
    # encode(queries, passages, query_max_len, passage_max_len, pad_to_multiple_of=...). None: the encoder's
    # (query, passage) pairs, encoded here.
    scorer: object | None = None

    def _max_length(self) -> int:
        budget = pair_budget(self.tokenizer, self.query_max_len, self.passage_max_len)
        multiple = self.pad_to_multiple_of or 1
        return -(-budget // multiple) * multiple  # the tokenizer insists the two agree

    def __call__(self, groups: list[Group]) -> dict:
        queries = [g.query for g in groups for _ in g.passages]
        passages = [p for g in groups for p in g.passages]
        if self.scorer is None:
            batch = encode_pairs(self.tokenizer, queries, passages, self.query_max_len, self.passage_max_len,
                                 self._max_length(), self.pad_to_multiple_of)
        else:
            batch = self.scorer.encode(queries, passages, self.query_max_len, self.passage_max_len,
                                       pad_to_multiple_of=self.pad_to_multiple_of)
        features = dict(batch)
        if all(g.teacher_scores is not None for g in groups):
            features["teacher_scores"] = torch.tensor([g.teacher_scores for g in groups], dtype=torch.float32)
        if all(g.soft_label is not None for g in groups):
            features["soft_labels"] = torch.tensor([[g.soft_label] for g in groups], dtype=torch.float32)
        return features


def truncation_report(tokenizer, groups: list[Group], query_max_len: int, passage_max_len: int) -> dict:
    """Fractions of distinct queries and passages longer than their budgets, in the groups given."""
    queries = list(dict.fromkeys(g.query for g in groups))
    passages = list(dict.fromkeys(p for g in groups for p in g.passages))
    q_cut = sum(cut_to_budget(tokenizer, queries, query_max_len)[1])
    p_cut = sum(cut_to_budget(tokenizer, passages, passage_max_len)[1])
    return {
        "queries": len(queries), "queries_truncated": q_cut / max(1, len(queries)),
        "passages": len(passages), "passages_truncated": p_cut / max(1, len(passages)),
    }
