"""Candidate pools for mining: the input's own texts, a jsonl of passages, or a BEIR corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl
from reranker.common.hashing import texts_digest
from reranker.common.text import normalize_text


@dataclass
class Pool:
    """Passages to mine from, in a stable order. `ids` is None when the source has none."""

    texts: list[str]
    ids: list[str] | None = None
    keys: list[str] = field(init=False)
    by_key: dict[str, int] = field(init=False)
    by_id: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.keys = [normalize_text(t) for t in self.texts]
        self.by_key = {}
        for row, key in enumerate(self.keys):
            self.by_key.setdefault(key, row)
        self.by_id = {pid: row for row, pid in enumerate(self.ids)} if self.ids is not None else {}

    def __len__(self) -> int:
        return len(self.texts)

    def content_hash(self) -> str:
        return texts_digest(self.texts)


def pool_from_texts(texts) -> Pool:
    """Every distinct text once (first spelling kept), in first-seen order: the FlagEmbedding default pool."""
    unique: dict[str, str] = {}
    for text in texts:
        unique.setdefault(normalize_text(text), text)
    return Pool(list(unique.values()))


def pool_from_jsonl(path: str | Path) -> Pool:
    """`{"text"}` or `{"_id", "title", "text"}` per line; a title is prepended to its text (BEIR convention)."""
    texts, ids = [], []
    for line, row in iter_jsonl(path):
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(str(path), "missing or not a string", line=line, field="text")
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise DataError(str(path), "not a string", line=line, field="title")
        texts.append(f"{title} {text}".strip() if title else text)
        if "_id" in row:
            ids.append(str(row["_id"]))
    if not texts:
        raise DataError(str(path), "holds no passages")
    if ids and len(ids) != len(texts):
        raise DataError(str(path), "some records have '_id' and some do not", field="_id")
    if ids and len(set(ids)) != len(ids):
        raise DataError(str(path), "has duplicate '_id' values", field="_id")
    return Pool(texts, ids or None)


def pool_from_beir(folder: str | Path) -> Pool:
    corpus = Path(folder) / "corpus.jsonl"
    if not corpus.is_file():
        raise DataError(str(folder), "is not a BEIR folder: corpus.jsonl is missing")
    return pool_from_jsonl(corpus)
