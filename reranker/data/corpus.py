"""Corpus files (`{"_id", "title"?, "text"}` per line): the one reader behind BEIR folders, mining pools and the
synthesizer's documents, so they agree on what a passage's text is and on which records they refuse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl


def joined_text(title: str, text: str) -> str:
    """A passage as the models see it: the title before the text (the BEIR convention)."""
    return f"{title} {text}".strip()


@dataclass(frozen=True)
class Passage:
    line: int
    id: str | None  # None when the file's records have no `_id` (allowed only where ids are optional)
    title: str  # "" when the record has none
    text: str

    @property
    def full(self) -> str:
        return joined_text(self.title, self.text)


def _record_id(row: dict, path: Path, line: int) -> str:
    value = row["_id"]
    # bool is an int subclass; true/false is a mistake, not an id. Ints are common in corpora and read as text.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(str(path), f"expected a string or an integer, got {type(value).__name__}", line=line,
                        field="_id")
    return str(value)


def _first_line_of(path: Path, doc_id: str) -> int:
    # Read again only to word the error: keeping every id's line number would cost memory on every large corpus.
    return next(line for line, row in iter_jsonl(path) if "_id" in row and str(row["_id"]) == doc_id)


def iter_corpus(path: str | Path, require_ids: bool = True) -> Iterator[Passage]:
    """Yield each record as a Passage, in file order, validated.

    `_id` is required when `require_ids`, else all records have one or none do; two records with one id are
    refused, naming both lines (which to keep is the user's call, not ours). `title` is optional (a string or
    null), `text` a string.
    """
    path = Path(path)
    seen: set[str] = set()
    with_ids = None
    for line, row in iter_jsonl(path):
        text, title = row.get("text"), row.get("title")
        if not isinstance(text, str):
            raise DataError(str(path), "missing or not a string", line=line, field="text")
        if title is not None and not isinstance(title, str):
            raise DataError(str(path), f"expected a string, got {type(title).__name__}", line=line, field="title")
        has_id = "_id" in row
        if with_ids is None:
            with_ids = has_id
        if not has_id and (require_ids or with_ids):
            raise DataError(str(path), "missing" + ("" if require_ids else ", though earlier records have one"),
                            line=line, field="_id")
        if has_id and not with_ids:
            raise DataError(str(path), "given here but missing from earlier records: give every record an id or "
                                       "none", line=line, field="_id")
        doc_id = _record_id(row, path, line) if has_id else None
        if doc_id is not None:
            if doc_id in seen:
                raise DataError(str(path), f"duplicate id {doc_id!r}, first on line {_first_line_of(path, doc_id)}",
                                line=line, field="_id")
            seen.add(doc_id)
        yield Passage(line, doc_id, title or "", text)
