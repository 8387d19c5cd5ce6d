"""First-stage retrieval for evaluation: BM25, dense (embedder + faiss) or a user's TREC run file; cached."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from reranker.common.errors import DataError
from reranker.common.files import atomic_write, iter_lines
from reranker.common.hashing import digest_of
from reranker.data import runs
from reranker.data.beir import BeirData
from reranker.data.runs import Run

logger = logging.getLogger(__name__)
_LAST_CORPUS: dict = {}  # the last corpus dense_run encoded: its settings and text digest, and its vectors


def read_run(path: str | Path, data: BeirData | None = None, top_k: int | None = None) -> Run:
    """A TREC run file (`qid Q0 docid rank score tag`). With `data`, only its judged queries are kept (see
    read_judged_run) and an unknown document id is an error."""
    if data is not None:
        return read_judged_run(path, data, top_k)[0]
    return _read_run(path, None, top_k)[0]


def read_judged_run(path: str | Path, data: BeirData, top_k: int | None = None) -> tuple[Run, int]:
    """The run of `data`'s judged queries, and how many other queries it held.

    A run made over all of queries.jsonl holds queries that this split does not judge: they are skipped,
    counted and logged, not an error. A run with no judged query at all is refused (wrong file or split)."""
    run, skipped = _read_run(path, data, top_k)
    if skipped and not run:
        raise DataError(str(path), f"holds no query judged in {data.name} ({skipped} other queries): is it the run "
                                   "of another dataset or split?")
    return run, skipped


_BLANKS = re.compile(r"[ \t]+")  # ASCII blanks only: str.split() would also cut ids at U+0085 or U+2028


def _read_run(path: str | Path, data: BeirData | None, top_k: int | None) -> tuple[Run, int]:
    run: Run = {}
    skipped_queries: dict[str, None] = {}  # in file order, for a stable example in the log
    skipped_lines = 0
    for number, line in iter_lines(path):
        fields = _BLANKS.split(line.strip(" \t"))
        if fields == [""]:
            continue
        if len(fields) != 6:
            raise DataError(str(path), f"expected 6 fields 'qid Q0 docid rank score tag', found {len(fields)}",
                            line=number)
        qid, _, did, _, score, _ = fields
        if data is not None and qid not in data.queries:
            skipped_queries[qid] = None
            skipped_lines += 1
            continue
        if data is not None and did not in data.corpus:
            raise DataError(str(path), f"document id {did!r} is not in the corpus of {data.name}", line=number)
        try:
            run.setdefault(qid, {})[did] = float(score)
        except ValueError:
            raise DataError(str(path), f"score {score!r} is not a number", line=number) from None
    if skipped_queries and run:
        logger.warning("%s: skipped %d lines of %d queries that %s does not judge (e.g. %r)", path, skipped_lines,
                       len(skipped_queries), data.name, next(iter(skipped_queries)))
    if top_k:
        run = runs.top_k(run, top_k)
    return run, len(skipped_queries)


def write_run(path: str | Path, run: Run, tag: str) -> None:
    with atomic_write(path) as handle:
        for qid, docs in run.items():
            for rank, did in enumerate(runs.ranked(docs), start=1):
                handle.write(f"{qid} Q0 {did} {rank} {docs[did]:.6f} {tag}\n")


def _to_run(qids: list[str], doc_ids: list[str], scores: np.ndarray, rows: np.ndarray) -> Run:
    return {qid: {doc_ids[r]: float(s) for r, s in zip(row_ids.tolist(), row_scores.tolist(), strict=True) if r >= 0}
            for qid, row_ids, row_scores in zip(qids, rows, scores, strict=True)}


def bm25_run(data: BeirData, depth: int, k1: float, b: float, language: str = "english") -> Run:
    from reranker.retrieval.search import BM25

    doc_ids = list(data.corpus)
    bm25 = BM25([data.corpus[d] for d in doc_ids], k1=k1, b=b, language=language)
    qids = list(data.queries)
    scores, rows = bm25.search([data.queries[q] for q in qids], depth)
    return _to_run(qids, doc_ids, scores, rows)


def dense_run(data: BeirData, depth: int, model: str, pooling: str, query_instruction: str, query_max_len: int,
              passage_max_len: int, dtype: str, batch_size: int, backend: str = "torch") -> Run:
    from reranker.models.embed import Embedder
    from reranker.retrieval.search import build_index, dense_search

    embedder = Embedder(model, pooling=pooling, dtype=dtype, backend=backend)
    doc_ids = list(data.corpus)
    # The test split and the dev queries search one corpus: it is encoded once per process, not once per split
    # (per graph setting too: OpenVINO's one-shape copies embed a little differently).
    key = (model, embedder.pooling, dtype, backend, getattr(embedder.model, "static_copies", None), passage_max_len,
           hashlib.blake2b("\0".join(f"{d}\0{data.corpus[d]}" for d in doc_ids).encode(), digest_size=16).digest())
    if _LAST_CORPUS.get("key") == key:
        passages = _LAST_CORPUS["vectors"]
        logger.info("%s corpus: embeddings reused from this run's other split", data.name)
    else:
        passages = embedder.encode([data.corpus[d] for d in doc_ids], passage_max_len, batch_size,
                                   desc=f"Encoding {data.name} corpus")
        _LAST_CORPUS.clear()  # one corpus at a time: a large one's vectors are not kept twice
        _LAST_CORPUS.update(key=key, vectors=passages)
    qids = list(data.queries)
    queries = embedder.encode([data.queries[q] for q in qids], query_max_len, batch_size, query_instruction,
                              desc=f"Encoding {data.name} queries")
    scores, rows = dense_search(build_index(passages), queries, depth)
    return _to_run(qids, doc_ids, scores, rows)


def drop_self_matches(run: Run) -> tuple[Run, int]:
    """ArguAna-style: a document whose id equals the query's id is the query itself, not an answer."""
    dropped = sum(q in docs for q, docs in run.items())
    return {q: {d: s for d, s in docs.items() if d != q} for q, docs in run.items()}, dropped


def cache_path(cache_dir: str | Path, data: BeirData, settings: dict) -> Path:
    key = digest_of({"data": data.fingerprint, **settings})
    return Path(cache_dir).expanduser() / f"{data.name}.{settings['kind']}.{key[:16]}.trec"


def cached_run(cache_dir: str | Path | None, data: BeirData, settings: dict, compute, depth: int) -> Run:
    """Read the run from the cache when this dataset and these settings were run before; else compute and save."""
    if cache_dir is None:
        return compute()
    path = cache_path(cache_dir, data, settings)
    if path.exists():
        logger.info("First stage %s for %s from the cache %s", settings["kind"], data.name, path)
        return read_run(path, data, depth)
    run = compute()
    write_run(path, run, settings["kind"])
    return run
