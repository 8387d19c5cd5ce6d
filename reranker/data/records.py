"""Training records: validating user rows (our group format, sentence-transformers and Tevatron rows, the InRanker
format) into typed examples."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from reranker.common.errors import DataError

# Long spellings of our score fields; both are accepted in any group-like row.
ALIASES = {"positive_scores": "pos_scores", "negative_scores": "neg_scores"}
INRANKER_FIELDS = ("query", "contents", "true_logit", "false_logit")

# The keys that say which format a row is in. A row is read by its own keys, so one file may hold rows of several
# formats; a row whose keys belong to two formats is refused (it is ambiguous which fields hold its passages).
NEGATIVE_COLUMN = re.compile(r"negative_(\d+)$")  # sentence-transformers' hard-negative columns: negative_1, ...
FORMAT_KEYS = {
    "our group": ("pos", "neg"),
    "sentence-transformers": ("anchor", "positive", "negative"),
    "Tevatron": ("query_text", "positive_passages", "negative_passages"),
}


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


def row_format(row: dict, path: str, line: int) -> str:
    """Which format a row is in, by its keys: 'our group', 'sentence-transformers' or 'Tevatron'. Keys of two formats
    in one row are a DataError naming both."""
    found: dict[str, str] = {}  # format -> its first key in the row
    for key in row:
        for name, keys in FORMAT_KEYS.items():
            if key in keys or (name == "sentence-transformers" and NEGATIVE_COLUMN.match(key)):
                found.setdefault(name, key)
    if len(found) > 1:
        (first, first_key), (second, second_key) = list(found.items())[:2]
        raise DataError(path, f"mixes formats: '{first_key}' is a field of {first} rows, '{second_key}' of "
                              f"{second} rows; give one format's fields per row", line=line, field=second_key)
    return next(iter(found), "our group")


def _one_of(row: dict, names: tuple[str, str], path: str, line: int, where: str) -> str:
    """The text under one of two names that mean the same (e.g. anchor / query); both given is an error."""
    given = [name for name in names if name in row]
    if len(given) > 1:
        raise DataError(path, f"'{names[0]}' and '{names[1]}' both given; {where} rows take one of them", line=line,
                        field=names[1])
    if not given:
        raise DataError(path, f"missing ({where} rows: '{names[0]}' or '{names[1]}')", line=line, field=names[0])
    return _text(row[given[0]], path, line, given[0])


def _string_or_list(value, path: str, line: int, field: str, allow_empty: bool) -> list:
    # sentence-transformers columns hold one text per row; a list of texts is accepted too.
    if isinstance(value, str):
        return [_text(value, path, line, field)]
    if not isinstance(value, list):
        raise DataError(path, f"expected a string or a list of strings, got {type(value).__name__}", line=line,
                        field=field)
    return list(_texts(value, path, line, field, allow_empty))


def _sentence_transformers(row: dict, path: str, line: int) -> dict:
    """{anchor | query, positive, negative | negative_1..negative_n} -> our group fields."""
    query = _one_of(row, ("anchor", "query"), path, line, "sentence-transformers")
    if "positive" not in row:
        raise DataError(path, "missing (sentence-transformers rows: 'anchor', 'positive' and optional negatives)",
                        line=line, field="positive")
    columns = sorted((int(m.group(1)), key) for key in row if (m := NEGATIVE_COLUMN.match(key)))
    if columns and "negative" in row:
        raise DataError(path, f"'negative' and '{columns[0][1]}' both given; give one or the other", line=line,
                        field=columns[0][1])
    if columns:
        neg = [_text(row[key], path, line, key) for _, key in columns]
    else:
        neg = [] if row.get("negative") is None else _string_or_list(row["negative"], path, line, "negative", True)
    pos = _string_or_list(row["positive"], path, line, "positive", False)
    mapped = {"anchor", "query", "positive", "negative", *(key for _, key in columns)}
    return {"query": query, "pos": pos, "neg": neg, **{k: v for k, v in row.items() if k not in mapped}}


def _passages(value, path: str, line: int, field: str, positives: bool) -> tuple[list[str], list[str] | None]:
    """Tevatron passages [{docid, title, text}] -> (texts "title text", the positives' ids: None when none has
    a docid, and always None for negatives)."""
    if not isinstance(value, list):
        raise DataError(path, f"expected a list of {{docid, title, text}} objects, got {type(value).__name__}",
                        line=line, field=field)
    if not value and positives:
        raise DataError(path, "is empty: every query needs at least one positive", line=line, field=field)
    texts, ids = [], []
    for i, passage in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(passage, dict):
            raise DataError(path, f"expected a {{docid, title, text}} object, got {type(passage).__name__}",
                            line=line, field=where)
        if "text" not in passage:
            raise DataError(path, "missing", line=line, field=f"{where}.text")
        title = passage.get("title") or ""
        if not isinstance(title, str):
            raise DataError(path, f"expected a string, got {type(title).__name__}", line=line, field=f"{where}.title")
        if not isinstance(passage["text"], str):
            raise DataError(path, f"expected a string, got {type(passage['text']).__name__}", line=line,
                            field=f"{where}.text")
        texts.append(_text(f"{title} {passage['text']}".strip(), path, line, f"{where}.text"))
        docid = passage.get("docid")
        if docid is not None and (isinstance(docid, bool) or not isinstance(docid, (str, int))):
            raise DataError(path, f"expected a string id, got {docid!r}", line=line, field=f"{where}.docid")
        ids.append(None if docid is None else str(docid))
    if not positives or all(d is None for d in ids):
        return texts, None
    if any(d is None for d in ids):
        missing = ids.index(None)
        raise DataError(path, "missing, while other passages of the row have one", line=line,
                        field=f"{field}[{missing}].docid")
    return texts, ids


def _tevatron(row: dict, path: str, line: int) -> dict:
    """{query | query_text, positive_passages, negative_passages} -> our group fields; the positives' docids
    become pos_ids (negatives get new ones when mined, so theirs are not kept)."""
    query = _one_of(row, ("query", "query_text"), path, line, "Tevatron")
    if "positive_passages" not in row:
        raise DataError(path, "missing (Tevatron rows: 'query', 'positive_passages', optional "
                              "'negative_passages')", line=line, field="positive_passages")
    if "pos_ids" in row:
        raise DataError(path, "given with Tevatron passages, whose docids are the positives' ids", line=line,
                        field="pos_ids")
    pos, pos_ids = _passages(row["positive_passages"], path, line, "positive_passages", positives=True)
    neg, _ = _passages(row.get("negative_passages") or [], path, line, "negative_passages", positives=False)
    mapped = {"query", "query_text", "positive_passages", "negative_passages"}
    ids = {} if pos_ids is None else {"pos_ids": pos_ids}
    return {"query": query, "pos": pos, **ids, "neg": neg, **{k: v for k, v in row.items() if k not in mapped}}


def to_group_row(row: dict, path: str, line: int) -> dict:
    """A row of our group format, sentence-transformers' columns or Tevatron's, as a row of our format:
    {query, pos, neg, pos_ids?, pos_scores?, neg_scores?, other fields kept}. Our own rows come back equal."""
    for long, short in ALIASES.items():
        if long in row and short in row:
            raise DataError(path, f"'{short}' and '{long}' both given; they are the same field", line=line,
                            field=long)
    row = {ALIASES.get(key, key): value for key, value in row.items()}
    kind = row_format(row, path, line)
    if kind == "sentence-transformers":
        return _sentence_transformers(row, path, line)
    if kind == "Tevatron":
        return _tevatron(row, path, line)
    return row


def parse_group(row: dict, path: str, line: int) -> GroupExample:
    """Validate one row of a group-like format (see `to_group_row`).

    A peer's row is rewritten in place into our format, so a caller that writes the row back (the miner, with its
    new negatives) writes a row of our format that reranker-train reads, with the user's other fields kept."""
    group = to_group_row(row, path, line)
    if group != row:
        row.clear()
        row.update(group)
    if "query" not in row:
        raise DataError(path, "missing", line=line, field="query")
    if "pos" not in row:
        raise DataError(path, "missing (or sentence-transformers' 'positive', or Tevatron's 'positive_passages')",
                        line=line, field="pos")
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
    group_keys = [key for keys in FORMAT_KEYS.values() for key in keys if key in row]
    if group_keys:
        raise DataError(path, f"mixes formats: an InRanker row (contents, true_logit) with '{group_keys[0]}' of a "
                              "group format", line=line, field=group_keys[0])
    return SoftExample(
        query=_text(row["query"], path, line, "query"),
        passage=_text(row["contents"], path, line, "contents"),
        true_logit=_number(row["true_logit"], path, line, "true_logit"),
        false_logit=_number(row["false_logit"], path, line, "false_logit"),
    )
