"""Choosing hard negatives from one query's ranked candidates: a pure, seeded function."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SelectionRules:
    range_start: int  # first rank sampled from (0-based, as FlagEmbedding's --range_for_sampling)
    range_end: int  # ranks before this one (exclusive)
    negative_number: int
    relative_threshold: float | None = None  # drop if score > this x the positive's score
    absolute_threshold: float | None = None  # drop if score > this
    seed: int = 42
    margin: float | None = None  # drop if score > the positive's score - margin (any score scale, e.g. logits)


@dataclass
class Selection:
    rows: list[int] = field(default_factory=list)  # pool rows of the negatives, best-ranked first
    excluded: int = 0  # positives, the query itself and duplicates met in the ranking
    false_negatives: int = 0  # dropped by the score filters
    dropped: list[int] = field(default_factory=list)  # their pool rows (another retriever must not bring them back)
    topped_up: int = 0  # negatives taken from below range_end because the range ran short


def select_negatives(ranked_rows: np.ndarray, ranked_scores: np.ndarray, pool_keys: list[str],
                     positive_rows: set[int], positive_keys: set[str], query_key: str,
                     positive_score: float | None, rules: SelectionRules, query_index: int) -> Selection:
    """Sample `negative_number` candidates from ranks [range_start, range_end), never a positive.

    Positives are excluded by pool row (ids) and by normalised text; so are the query text and any passage
    whose text already appeared higher in the ranking. Candidates scoring too close to the positive (or above
    an absolute threshold) are likely unlabelled positives and are dropped. If the range runs short, the
    list is topped up in rank order from below the range. The result is in rank order, a pure function of
    its inputs and (seed, query_index).
    """
    result = Selection()
    seen = set(positive_keys)
    seen.add(query_key)
    limit = None
    if rules.relative_threshold is not None and positive_score is not None and positive_score > 0:
        limit = rules.relative_threshold * positive_score
    if rules.absolute_threshold is not None:
        limit = rules.absolute_threshold if limit is None else min(limit, rules.absolute_threshold)
    if rules.margin is not None and positive_score is not None:
        limit = positive_score - rules.margin if limit is None else min(limit, positive_score - rules.margin)
    in_range: list[int] = []
    below: list[int] = []
    for rank, (row, score) in enumerate(zip(ranked_rows.tolist(), ranked_scores.tolist(), strict=True)):
        if row < 0:  # faiss pads with -1 when fewer results exist
            continue
        key = pool_keys[row]
        if row in positive_rows or key in seen:
            result.excluded += 1
            continue
        seen.add(key)
        if rank < rules.range_start:
            continue  # above the range: never sampled, so not counted as filtered either
        if limit is not None and score > limit:
            result.false_negatives += 1
            result.dropped.append(row)
            continue
        (in_range if rank < rules.range_end else below).append(row)
    n = rules.negative_number
    if len(in_range) > n:
        picks = np.random.default_rng([rules.seed, query_index]).choice(len(in_range), size=n, replace=False)
        result.rows = [in_range[i] for i in sorted(picks.tolist())]
    else:
        result.rows = in_range
        extra = below[: n - len(in_range)]
        result.topped_up = len(extra)
        result.rows = in_range + extra
    return result
