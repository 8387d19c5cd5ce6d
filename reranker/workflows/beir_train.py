"""Training data from a BEIR folder: {query, pos} records from its train qrels, and a dev split carved from them.

The dev queries never reach training. They are written twice: as BEIR-style qrels (for tuning fusion weights in
reranker-eval) and as first-stage candidate lists (for ranking evaluation during training in reranker-train).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from reranker.common.errors import DataError
from reranker.common.files import atomic_write
from reranker.data import runs
from reranker.data.beir import BeirData, load_beir
from reranker.data.records import positive_ids

logger = logging.getLogger(__name__)


def split_queries(qids: list[str], dev_queries: int, seed: int, where: str = "qrels") -> tuple[list[str], list[str]]:
    """(train, dev) query ids: dev is a seeded sample; both keep the qrels file's order."""
    if dev_queries >= len(qids):
        raise DataError(where, f"asked for {dev_queries} dev queries but only {len(qids)} queries have a positive")
    picked = set(np.random.default_rng(seed).choice(len(qids), size=dev_queries, replace=False).tolist())
    return ([q for i, q in enumerate(qids) if i not in picked], [q for i, q in enumerate(qids) if i in picked])


def train_record(data: BeirData, qid: str) -> dict:
    """Positives are the judged documents with relevance > 0, most relevant first; grades kept."""
    judged = sorted(((d, r) for d, r in data.qrels[qid].items() if r > 0 and d in data.corpus), key=lambda x: -x[1])
    return {"query_id": qid, "query": data.queries[qid], "pos": [data.corpus[d] for d, _ in judged],
            "pos_ids": [d for d, _ in judged], "pos_relevance": [r for _, r in judged]}


def write_qrels(path: Path, data: BeirData, qids: list[str]) -> None:
    with atomic_write(path) as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid in qids:
            for did, rel in data.qrels[qid].items():
                handle.write(f"{qid}\t{did}\t{rel}\n")


def write_dev_candidates(path: Path, data: BeirData, qids: list[str], depth: int, k1: float, b: float) -> dict:
    """BM25 top-`depth` of each dev query with its graded labels, in first-stage order (a --dev_file)."""
    from reranker.retrieval.first_stage import bm25_run

    dev = BeirData(data.name, data.corpus, {q: data.queries[q] for q in qids}, {q: data.qrels[q] for q in qids},
                   data.missing_docs, data.fingerprint)
    run = bm25_run(dev, depth, k1, b)
    with_positive = 0
    with atomic_write(path) as handle:
        for qid in qids:
            docs = run.get(qid, {})
            ranked = [(d, docs[d]) for d in runs.ranked(docs)]
            labels = data.qrels[qid]
            with_positive += any(labels.get(d, 0) > 0 for d, _ in ranked)
            handle.write(json.dumps({
                "query_id": qid, "query": data.queries[qid],
                "candidates": [{"id": d, "text": data.corpus[d], "score": s} for d, s in ranked],
                "relevance": {d: r for d, r in labels.items() if r > 0},
            }, ensure_ascii=False) + "\n")
    return {"dev_candidates_depth": depth, "dev_queries_with_positive_in_candidates": with_positive}


def build(folder: str, out_dir: str | Path, split: str = "train", dev_queries: int = 0, seed: int = 42,
          dev_depth: int = 30, bm25_k1: float = 1.2, bm25_b: float = 0.75, test_split: str | None = None) -> dict:
    """Write train.jsonl (and dev_qrels.tsv, dev.jsonl when dev_queries > 0) under out_dir; returns a summary."""
    out_dir = Path(out_dir)
    data = load_beir(folder, split)
    qids = [q for q, docs in data.qrels.items() if any(r > 0 and d in data.corpus for d, r in docs.items())]
    skipped = len(data.qrels) - len(qids)
    if skipped:
        logger.warning("%s/qrels/%s.tsv: %d queries have no relevant document in the corpus; skipped", folder,
                       split, skipped)
    qrels_file = str(Path(folder) / "qrels" / f"{split}.tsv")
    if test_split is not None:
        from reranker.data.beir import read_qrels

        shared = set(qids) & set(read_qrels(Path(folder) / "qrels" / f"{test_split}.tsv"))
        if shared:
            raise DataError(qrels_file, f"shares {len(shared)} query ids with the {test_split} split (e.g. "
                                        f"{sorted(shared)[0]!r}): training on them would leak the test set")
    train_ids, dev_ids = split_queries(qids, dev_queries, seed, qrels_file) if dev_queries else (qids, [])
    with atomic_write(out_dir / "train.jsonl") as handle:
        for qid in train_ids:
            handle.write(json.dumps(train_record(data, qid), ensure_ascii=False) + "\n")
    graded = any(r > 1 for docs in data.qrels.values() for r in docs.values())
    summary = {"dataset": data.name, "split": split, "train_queries": len(train_ids), "dev_queries": len(dev_ids),
               "skipped_queries_without_positive": skipped, "graded_relevance": graded,
               "positives": sum(len(train_record(data, q)["pos"]) for q in train_ids)}
    if dev_ids:
        write_qrels(out_dir / "dev_qrels.tsv", data, dev_ids)
        summary.update(write_dev_candidates(out_dir / "dev.jsonl", data, dev_ids, dev_depth, bm25_k1, bm25_b))
    logger.info("Training data from %s: %d train queries, %d dev queries (%d skipped without a positive)",
                folder, len(train_ids), len(dev_ids), skipped)
    return summary


def query_and_source(path: str, line: int, row: dict, docs: dict[str, str], corpus: str) -> tuple[str, str]:
    """(query, source document id) of a reranker-synth record used as a dev query; an error naming the file, line
    and field when it has no query or its pos_id is not a document of the corpus."""
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise DataError(path, "expected a non-empty string", line=line, field="query")
    source = row.get("pos_id")
    if source is None or str(source) not in docs:
        raise DataError(path, f"{source!r} is not a document of {corpus}: a dev query needs the id of the document "
                              "it was made from (reranker-synth writes it)", line=line, field="pos_id")
    return query.strip(), str(source)


def carve_pairs_dev(files: list[str], corpus: str, out_dir: str | Path, dev_queries: int, seed: int = 42,
                    depth: int = 30, k1: float = 1.2, b: float = 0.75) -> dict:
    """A dev split for data without labels: hold out synthetic pairs (reranker-synth output) as dev queries.

    The dev queries are drawn (seeded) from the first file only, so a mix of InPars queries and crops can keep
    its dev set to the realistic queries. Each held-out query's one relevant document is its pos_id; its
    candidates are the BM25 top-`depth` of the whole corpus, as for labelled data. Training pairs of any file
    whose positive is a dev document (by pos_id or pos_ids) are dropped too (counted): otherwise a crop of the
    same abstract would teach the dev answer. Writes train.jsonl, dev.jsonl and dev_qrels.tsv under out_dir;
    returns a summary.
    """
    from reranker.common.files import iter_jsonl
    from reranker.synth.synthesize import load_documents

    docs = {d.id: d.full for d in load_documents(corpus)}
    rows = [[(f, line, row) for line, row in iter_jsonl(f)] for f in files]
    for f, line, row in rows[0]:
        query_and_source(f, line, row, docs, corpus)
    if dev_queries >= len(rows[0]):
        raise DataError(files[0], f"asked for {dev_queries} dev queries but it holds only {len(rows[0])} pairs")
    picked = set(np.random.default_rng(seed).choice(len(rows[0]), size=dev_queries, replace=False).tolist())
    dev_rows = [r for i, r in enumerate(rows[0]) if i in picked]
    dev_docs = {str(row["pos_id"]) for _, _, row in dev_rows}
    qids = [f"dev-{line}" for _, line, _ in dev_rows]
    data = BeirData("pairs", docs, {q: row["query"] for q, (_, _, row) in zip(qids, dev_rows, strict=True)},
                    {q: {str(row["pos_id"]): 1} for q, (_, _, row) in zip(qids, dev_rows, strict=True)}, 0, "")
    out_dir = Path(out_dir)
    kept, dropped = 0, 0
    with atomic_write(out_dir / "train.jsonl") as handle:
        for i, file_rows in enumerate(rows):
            for j, (_, _, row) in enumerate(file_rows):
                if i == 0 and j in picked:
                    continue
                if any(str(d) in dev_docs for d in positive_ids(row)):
                    dropped += 1
                    continue
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                kept += 1
    write_qrels(out_dir / "dev_qrels.tsv", data, qids)
    summary = {"train_pairs": kept, "dev_queries": len(qids), "dropped_pairs_on_dev_documents": dropped,
               **write_dev_candidates(out_dir / "dev.jsonl", data, qids, depth, k1, b)}
    logger.info("Dev split from %s: %d dev queries, %d training pairs (%d dropped: their positive is a dev "
                "document)", files[0], len(qids), kept, dropped)
    return summary
