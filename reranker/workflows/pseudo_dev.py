"""Building a pseudo-dev set for a corpus without labels: synthetic queries (reranker-synth) over the target
corpus, each with the document it was made from as its one relevant document.

Where a corpus has no judged dev queries, these stand in for them: reranker-eval tunes its fusion weights on them
(--pseudo_dev) and reranker-train ranks them during training (--dev_file DIR/dev.jsonl). How far their choices
agree with real dev queries' is measured in results/cross-domain.md.

The folder holds queries.jsonl ({_id, text}), dev_qrels.tsv (BEIR qrels: each query and its source, grade 1),
dev.jsonl (each query's BM25 candidates, reranker-train's --dev_file) and pseudo_dev.json (how it was made, with the
digest of the corpus it belongs to: eval refuses it on another corpus).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from reranker.common.errors import DataError
from reranker.common.files import atomic_write, iter_jsonl, write_json
from reranker.common.hashing import file_digest
from reranker.data.pseudo_dev import SUMMARY, check_target
from reranker.workflows.beir_train import query_and_source, write_dev_candidates, write_qrels

logger = logging.getLogger(__name__)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def corpus_file(corpus: str | Path) -> Path:
    path = Path(corpus)
    return path / "corpus.jsonl" if path.is_dir() else path


def read_pairs(path: str, docs: dict[str, str], corpus: str) -> tuple[list[tuple[str, str]], dict]:
    """(query, source id) of each usable record of a reranker-synth file, and what was dropped (counted).

    A query whose text another record already has is dropped: with one source each, a repeated text would count
    the other's source as a miss although the two queries are the same."""
    pairs, seen, repeated = [], set(), 0
    for line, row in iter_jsonl(path):
        query, source = query_and_source(path, line, row, docs, corpus)
        key = " ".join(query.lower().split())
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        pairs.append((query, source))
    if not pairs:
        raise DataError(path, "holds no synthetic queries")
    return pairs, {"records_with_repeated_query": repeated}


def build_pseudo_dev(synth_file: str, corpus: str, out_dir: str, queries: int = 0, seed: int = 42,
                     depth: int = 30, bm25_k1: float = 1.2, bm25_b: float = 0.75, overwrite: bool = False) -> dict:
    """Write the pseudo-dev folder `out_dir` from a reranker-synth file over `corpus` (a BEIR folder or a pool
    jsonl, as reranker-synth read it); `queries` > 0 keeps a seeded sample of that many. Written to a temporary
    folder and renamed into place; an existing folder is replaced only with `overwrite`."""
    from reranker.data.beir import BeirData
    from reranker.synth.synthesize import load_documents

    out = Path(out_dir)
    check_target(out, overwrite)
    docs = {d.id: d.full for d in load_documents(corpus)}
    pairs, dropped = read_pairs(synth_file, docs, corpus)
    available = len(pairs)
    if queries and queries < len(pairs):
        picked = np.sort(np.random.default_rng(seed).choice(len(pairs), size=queries, replace=False))
        pairs = [pairs[i] for i in picked]
    qids = [f"pseudo-{i}" for i in range(len(pairs))]
    data = BeirData("pseudo-dev", docs, dict(zip(qids, (q for q, _ in pairs), strict=True)),
                    {qid: {source: 1} for qid, (_, source) in zip(qids, pairs, strict=True)}, 0, "")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; the folder is an output like any other
    try:
        with atomic_write(work / "queries.jsonl") as handle:
            for qid, (query, _) in zip(qids, pairs, strict=True):
                handle.write(json.dumps({"_id": qid, "text": query}, ensure_ascii=False) + "\n")
        write_qrels(work / "dev_qrels.tsv", data, qids)
        summary = {"synth_file": str(synth_file), "synth_file_sha256": file_digest(synth_file),
                   "corpus": str(corpus), "corpus_sha256": file_digest(corpus_file(corpus)),
                   "queries": len(qids), "usable_records": available, **dropped, "seed": seed,
                   **write_dev_candidates(work / "dev.jsonl", data, qids, depth, bm25_k1, bm25_b)}
        write_json(work / SUMMARY, summary)
        if out.exists():  # --overwrite: the new folder is complete before the old one goes
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    logger.info("Pseudo-dev %s: %d synthetic queries over %s (%d of them have their source in BM25's top %d)",
                out, len(qids), corpus, summary["dev_queries_with_positive_in_candidates"], depth)
    return summary
