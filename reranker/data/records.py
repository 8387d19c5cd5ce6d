"""Training records: validating user rows (group or InRanker format) into typed examples."""

from __future__ import annotations

import math
from dataclasses import dataclass

from reranker.common.errors import DataError

# Users of FlagEmbedding and sentence-transformers write these names; both spellings are accepted.
ALIASES = {"positive": "pos", "negative": "neg", "positive_scores": "pos_scores", "negative_scores": "neg_scores"}
INRANKER_FIELDS = ("query", "contents", "true_logit", "false_logit")


@dataclass(frozen=True)
class GroupExample:
    """One query with its positives and negatives; scores are the teacher's, aligned with the texts."""

    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    pos_scores: tuple[float, ...] | None = None
    neg_scores: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SoftExample:
    """One query-passage pair with a teacher's relevance logits (the InRanker format)."""

    query: str
    passage: str
    true_logit: float
    false_logit: float


def _text(value, path: str, line: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(path, f"expected a string, got {type(value).__name__}", line=line, field=field)
    if not value.strip():
        raise DataError(path, "is empty", line=line, field=field)
    return value


def _texts(value, path: str, line: int, field: str, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list):
        hint = " (wrap it in [...])" if isinstance(value, str) else ""
        raise DataError(path, f"expected a list of strings, got {type(value).__name__}{hint}", line=line, field=field)
    if not value and not allow_empty:
        raise DataError(path, "is empty: every query needs at least one positive", line=line, field=field)
    return tuple(_text(item, path, line, f"{field}[{i}]") for i, item in enumerate(value))


def _number(value, path: str, line: int, field: str) -> float:
    # bool is an int subclass; a true/false here is a mistake, not a score.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, f"expected a finite number, got {value!r}", line=line, field=field)
    return float(value)


def _scores(row: dict, key: str, texts: tuple[str, ...], path: str, line: int) -> tuple[float, ...] | None:
    if row.get(key) is None:
        return None
    value = row[key]
    if not isinstance(value, list):
        raise DataError(path, f"expected a list of numbers, got {type(value).__name__}", line=line, field=key)
    text_key = key.split("_")[0]
    if len(value) != len(texts):
        raise DataError(
            path, f"has {len(value)} scores for {len(texts)} '{text_key}' texts", line=line, field=key
        )
    return tuple(_number(v, path, line, f"{key}[{i}]") for i, v in enumerate(value))


def positive_ids(row: dict) -> list:
    """Ids of a record's positive documents: labelled `pos_ids`, or the `pos_id` of a reranker-synth pair."""
    return [*(row.get("pos_ids") or []), *([row["pos_id"]] if row.get("pos_id") is not None else [])]


def is_soft_row(row: dict) -> bool:
    return "contents" in row and "true_logit" in row


def parse_group(row: dict, path: str, line: int) -> GroupExample:
    """Validate one `{query, pos, neg, pos_scores?, neg_scores?}` row (aliases accepted)."""
    row = {ALIASES.get(key, key): value for key, value in row.items()}
    if "query" not in row:
        raise DataError(path, "missing", line=line, field="query")
    if "pos" not in row:
        raise DataError(path, "missing (also accepted: 'positive')", line=line, field="pos")
    query = _text(row["query"], path, line, "query")
    pos = _texts(row["pos"], path, line, "pos", allow_empty=False)
    neg = row.get("neg")
    neg = () if neg is None else _texts(neg, path, line, "neg", allow_empty=True)
    pos_scores = _scores(row, "pos_scores", pos, path, line)
    neg_scores = _scores(row, "neg_scores", neg, path, line)
    if (pos_scores is None) != (neg_scores is None) and neg:
        present = "pos_scores" if pos_scores is not None else "neg_scores"
        raise DataError(path, f"'{present}' given without the other; teacher scores need both", line=line,
                        field=present)
    return GroupExample(query, pos, neg, pos_scores, neg_scores)


def parse_soft(row: dict, path: str, line: int) -> SoftExample:
    """Validate one InRanker row `{query, contents, true_logit, false_logit}`."""
    for field in INRANKER_FIELDS:
        if field not in row:
            raise DataError(path, "missing (InRanker format)", line=line, field=field)
    return SoftExample(
        query=_text(row["query"], path, line, "query"),
        passage=_text(row["contents"], path, line, "contents"),
        true_logit=_number(row["true_logit"], path, line, "true_logit"),
        false_logit=_number(row["false_logit"], path, line, "false_logit"),
    )
