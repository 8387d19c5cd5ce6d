"""Document expansion from training queries: the reranker reads, before a document, the training queries that
judged it, those most like the query being scored first.

Why: on a corpus where many training queries share judged documents (nfcorpus judges dozens of documents per query
in a corpus of a few thousand), the labels of similar queries say more than the document's words. Fused into a
teacher as votes they lift it well above the first stages, but a student that only reads (query, document) cannot
take that in from a few hundred steps (results/nfcorpus.md). Written into the document's text, the same knowledge
becomes a text match the cross-encoder is good at: is this query like the questions this document answered?

Leakage: a training query never sees itself among its documents' questions (`Expansion.own`); the expansion's
source is the training file only, so dev and test queries are in none of the texts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl

logger = logging.getLogger(__name__)

PREFIX = "Questions: "


def read_training_queries(path: str) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """(query ids, query texts, document id -> indices of the queries that judged it) of a training file with
    query_id, query and pos_ids on each line."""
    ids, texts, docs, seen = [], [], {}, set()
    for line, row in iter_jsonl(path):
        for key in ("query_id", "query", "pos_ids"):
            if key not in row:
                raise DataError(path, "missing: expansion needs each training query's id, text and judged document "
                                      "ids", line=line, field=key)
        if not isinstance(row["query"], str):
            raise DataError(path, "expected a string", line=line, field="query")
        if not isinstance(row["pos_ids"], list):
            raise DataError(path, "expected a list of document ids", line=line, field="pos_ids")
        qid = str(row["query_id"])
        if qid in seen:
            raise DataError(path, f"query id {qid!r} appears twice", line=line, field="query_id")
        seen.add(qid)
        for did in row["pos_ids"]:
            docs.setdefault(str(did), []).append(len(ids))
        ids.append(qid)
        texts.append(row["query"])
    if not ids:
        raise DataError(path, "no training query: nothing to expand documents with")
    return ids, texts, {d: np.asarray(v, dtype=np.int64) for d, v in docs.items()}


def check_no_overlap(query_ids, source_ids, where: str) -> None:
    """Scored queries must not be among the expansion's sources: they would read their own labels."""
    shared = set(query_ids) & set(source_ids)
    if shared:
        raise DataError(where, f"{len(shared)} of its queries (e.g. {sorted(shared)[0]!r}) are among the expansion's "
                               "training queries: their own labels would be in the texts they are ranked on")


def expanded_corpus(corpus: dict[str, str], path: str) -> dict[str, str]:
    """Each document followed by every training query that judged it: what a first stage indexes (BM25 over
    documents and their questions), where no query picks among them."""
    _, texts, by_doc = read_training_queries(path)
    return {d: " ".join([text, *(texts[i] for i in by_doc.get(d, ()))]) for d, text in corpus.items()}


@dataclass
class Expansion:
    """Training queries by the documents they judged, with their embeddings (L2-normalised)."""

    query_ids: list[str]
    query_texts: list[str]
    vectors: np.ndarray  # (queries, dim)
    by_doc: dict[str, np.ndarray]  # doc id -> indices into query_ids
    per_pair: int = 3
    max_words: int = 16  # each question cut to this many words: the passage budget is the document's

    def __post_init__(self):
        self._by_key: dict[tuple[str, str], list[int]] = {}  # ("id", id) / ("text", spaces normalised) -> entries
        for i, (qid, qtext) in enumerate(zip(self.query_ids, self.query_texts, strict=True)):
            self._by_key.setdefault(("id", qid), []).append(i)
            self._by_key.setdefault(("text", " ".join(qtext.split())), []).append(i)

    @classmethod
    def from_train_file(cls, path: str, embedder, per_pair: int = 3, max_words: int = 16,
                        batch_size: int = 64) -> Expansion:
        """From a training file with query_id, query and pos_ids per line (beir_train's train.jsonl)."""
        if per_pair < 1:
            raise ValueError(f"per_pair must be 1 or more, got {per_pair}")
        ids, texts, by_doc = read_training_queries(path)
        vectors = embedder.encode(texts, max_length=64, batch_size=batch_size, desc="Encoding expansion queries")
        logger.info("Expansion from %s: %d training queries, %d documents judged (%.1f queries a document)",
                    path, len(ids), len(by_doc), sum(len(v) for v in by_doc.values()) / max(len(by_doc), 1))
        return cls(ids, texts, vectors, by_doc, per_pair, max_words)

    def own(self, query_id, query: str | None = None) -> frozenset[int]:
        """The expansion's entries for a training query itself, so that it never reads its own labels: by its id,
        or, for a record without one, by its text. A twin filed under another id (nfcorpus files some query
        texts twice) is another training query with labels of its own: a test query reads it too."""
        key = ("id", str(query_id)) if query_id is not None else ("text", " ".join((query or "").split()))
        return frozenset(self._by_key.get(key, ()))

    def questions(self, query_vector: np.ndarray, doc_ids: str | tuple[str, ...],
                  exclude: frozenset[int] = frozenset()) -> list[str]:
        """The documents' training queries most like the query (cosine), best first, `exclude` left out. Several
        ids: one text filed under each (their questions are pooled)."""
        ids = (doc_ids,) if isinstance(doc_ids, str) else doc_ids
        found = [self.by_doc[str(d)] for d in ids if str(d) in self.by_doc]
        if not found:
            return []
        idx = np.unique(np.concatenate(found)) if len(found) > 1 else found[0]
        if exclude:
            idx = idx[[i not in exclude for i in idx]]
            if not len(idx):
                return []
        sims = self.vectors[idx] @ query_vector
        # stable on ties: the training file's order decides, so a rerun writes the same texts
        best = idx[np.argsort(-sims, kind="stable")[:self.per_pair]]
        return [" ".join(self.query_texts[i].split()[:self.max_words]) for i in best]

    def text(self, query_vector: np.ndarray, doc_ids: str | tuple[str, ...], doc_text: str,
             exclude: frozenset[int] = frozenset()) -> str:
        """The document as the reranker reads it: its questions first, so truncation cuts the body, not them."""
        asked = self.questions(query_vector, doc_ids, exclude)
        return f"{PREFIX}{' | '.join(asked)}. {doc_text}" if asked else doc_text


def _write_rows(path: str, rows: list[dict]) -> None:
    from reranker.common.files import atomic_write

    with atomic_write(path) as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _encode_queries(rows: list[dict], embedder) -> np.ndarray:
    return embedder.encode([str(r["query"]) for r in rows], max_length=64, desc="Encoding queries")


def expand_groups(path: str, out_path: str, expansion: Expansion, embedder, corpus: dict[str, str]) -> dict:
    """A mined training file (query, pos, neg texts) with every passage expanded. Passages are matched to their
    document by text; each query's own id is left out of its documents' questions."""
    by_text: dict[str, tuple[str, ...]] = {}
    for did, text in corpus.items():
        by_text[text] = (*by_text.get(text, ()), did)
    rows = []
    for line, row in iter_jsonl(path):
        if not isinstance(row.get("query"), str):
            raise DataError(path, "missing or not a string", line=line, field="query")
        rows.append(row)
    vectors = _encode_queries(rows, embedder)
    counts = {"records": len(rows), "passages": 0, "expanded": 0, "not_in_corpus": 0,
              "corpus_texts_filed_under_several_ids": sum(len(v) > 1 for v in by_text.values())}
    for row, vector in zip(rows, vectors, strict=True):
        own = expansion.own(row.get("query_id"), row["query"])
        for key in ("pos", "neg"):
            out = []
            for text in row.get(key, []):
                counts["passages"] += 1
                did = by_text.get(text)
                if did is None:
                    counts["not_in_corpus"] += 1
                    out.append(text)
                    continue
                new = expansion.text(vector, did, text, exclude=own)
                counts["expanded"] += new != text
                out.append(new)
            row[key] = out
    _write_rows(out_path, rows)
    return counts


def expand_dev(path: str, out_path: str, expansion: Expansion, embedder) -> dict:
    """reranker-train's dev file (query, candidates with ids) with every candidate expanded."""
    rows = []
    for line, row in iter_jsonl(path):
        if not isinstance(row.get("query"), str):
            raise DataError(path, "missing or not a string", line=line, field="query")
        if not isinstance(row.get("candidates"), list) or not all(
                isinstance(c, dict) and "id" in c and isinstance(c.get("text"), str) for c in row["candidates"]):
            raise DataError(path, "expected a list of {id, text} objects", line=line, field="candidates")
        rows.append(row)
    vectors = _encode_queries(rows, embedder)
    counts = {"queries": len(rows), "candidates": 0, "expanded": 0}
    for row, vector in zip(rows, vectors, strict=True):
        # A carved dev query is in no training file, so this finds nothing; checked all the same.
        own = expansion.own(row.get("query_id"), row["query"])
        for cand in row["candidates"]:
            new = expansion.text(vector, str(cand["id"]), cand["text"], exclude=own)
            counts["candidates"] += 1
            counts["expanded"] += new != cand["text"]
            cand["text"] = new
    _write_rows(out_path, rows)
    return counts


class PairTexts:
    """(query id, document id) -> the document's text as the reranker reads it, for one BEIR split's queries."""

    def __init__(self, expansion: Expansion, embedder, data, where: str | None = None):
        check_no_overlap(data.queries, expansion.query_ids, where or data.name)
        self.expansion, self.corpus = expansion, data.corpus
        qids = list(data.queries)
        vectors = embedder.encode([data.queries[q] for q in qids], max_length=64, desc="Encoding queries")
        self.vectors = dict(zip(qids, vectors, strict=True))

    def __call__(self, qid: str, did: str) -> str:
        return self.expansion.text(self.vectors[qid], did, self.corpus[did])
