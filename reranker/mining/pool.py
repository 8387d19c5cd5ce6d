"""Candidate pools for mining: the input's own texts, a jsonl of passages, or a BEIR corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reranker.common.errors import DataError
from reranker.common.hashing import texts_digest
from reranker.common.text import normalize_text
from reranker.data.corpus import iter_corpus


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
    """`{"text"}` or `{"_id", "title", "text"}` per line, read as a corpus (data.corpus): a title is prepended to
    its text, ids are optional but all or none, and duplicate ids are refused."""
    passages = list(iter_corpus(path, require_ids=False))
    if not passages:
        raise DataError(str(path), "holds no passages")
    ids = [p.id for p in passages] if passages[0].id is not None else None
    return Pool([p.full for p in passages], ids)


def pool_from_beir(folder: str | Path) -> Pool:
    corpus = Path(folder) / "corpus.jsonl"
    if not corpus.is_file():
        raise DataError(str(folder), "is not a BEIR folder: corpus.jsonl is missing")
    return pool_from_jsonl(corpus)
