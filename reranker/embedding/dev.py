"""The embedder's dev check: dense retrieval of held-out training queries, against the first stage the dev file
was ranked by (BM25 in the pipeline's dev files) and against the embedder training started from.

The pool searched is the corpus given (--dev_corpus), or else the union of every dev query's candidates: a few
thousand passages, embedded again at each check because the model changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from reranker.data.beir import is_beir_folder
from reranker.data.corpus import iter_corpus
from reranker.models.embed import Embedder
from reranker.training.dev_eval import DevQuery

logger = logging.getLogger(__name__)

DEPTH = 100  # retrieved per query: enough for nDCG@10 and MRR@10, and for a reranker after it


def dev_pool(dev: list[DevQuery], corpus: str | None = None) -> tuple[list[str], list[str]]:
    """(ids, texts) of the passages the dev queries are retrieved from."""
    if corpus is None:
        pool: dict[str, str] = {}
        for query in dev:
            for doc_id, text in zip(query.doc_ids, query.texts, strict=True):
                pool.setdefault(doc_id, text)
        return list(pool), list(pool.values())
    path = Path(corpus)
    if is_beir_folder(path):
        path = path / "corpus.jsonl"
    passages = list(iter_corpus(path))
    return [p.id for p in passages], [p.full for p in passages]


def dense_run(embedder: Embedder, dev: list[DevQuery], pool: tuple[list[str], list[str]], query_max_len: int,
              passage_max_len: int, query_instruction: str, passage_instruction: str, batch_size: int,
              depth: int = DEPTH) -> dict[str, dict[str, float]]:
    """Each dev query's top `depth` passages of the pool by similarity."""
    ids, texts = pool
    passages = embedder.encode(texts, passage_max_len, batch_size, passage_instruction, show_progress=False)
    queries = embedder.encode([q.query for q in dev], query_max_len, batch_size, query_instruction,
                              show_progress=False)
    scores = queries @ passages.T
    depth = min(depth, len(ids))
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    return {q.qid: {ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(dev)}
