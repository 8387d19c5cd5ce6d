"""Rankings and judgements as plain dicts, one definition for every module: a run maps a query id to its
documents' scores, qrels map a query id to its documents' graded relevance.

Ties: wherever a ranking is cut or ordered, documents with equal scores are ordered by id (ascending), so a
top-k never depends on the order a dict happened to be filled in (BM25 gives many equal scores).
"""

from __future__ import annotations

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def ranked(docs: dict[str, float]) -> list[str]:
    """Document ids best first: score descending, then id ascending."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))]


def top_k(run: Run, k: int | None) -> Run:
    """Each query's k best documents (all of them for k None), best first, ties by id."""
    return {q: {d: docs[d] for d in ranked(docs)[:k]} for q, docs in run.items()}
