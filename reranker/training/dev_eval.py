"""Ranking evaluation on a dev split during training: the model against the first stage it will rerank.

A dev file is jsonl, one query per line, its candidates in first-stage order (best first):
    {"query": str, "candidates": [{"id": str, "text": str, "score"?: float}, ...], "relevance": {id: grade}}
`beir_train.build` writes one from a BEIR folder (BM25 candidates of queries carved from the train split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from reranker.common import precision
from reranker.common.errors import DataError
from reranker.common.files import iter_jsonl
from reranker.data.collator import GroupCollator
from reranker.data.groups import Group
from reranker.retrieval.metrics import ranking_metrics
from reranker.training.forward import by_length

logger = logging.getLogger(__name__)

FIRST_STAGE = "first_stage_"


@dataclass(frozen=True)
class DevQuery:
    qid: str
    query: str
    doc_ids: tuple[str, ...]  # first-stage order
    texts: tuple[str, ...]
    relevance: dict[str, int]


def load_dev(path: str) -> list[DevQuery]:
    out, seen = [], set()
    for line, row in iter_jsonl(path):
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise DataError(path, "expected a non-empty string", line=line, field="query")
        candidates = row.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise DataError(path, "expected a non-empty list of {id, text}", line=line, field="candidates")
        ids, texts = [], []
        for i, c in enumerate(candidates):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str) or "id" not in c:
                raise DataError(path, "expected an object with 'id' and a string 'text'", line=line,
                                field=f"candidates[{i}]")
            ids.append(str(c["id"]))
            texts.append(c["text"])
        if len(set(ids)) != len(ids):
            raise DataError(path, "has a candidate id twice", line=line, field="candidates")
        relevance = row.get("relevance")
        if not isinstance(relevance, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                      for v in relevance.values()):
            raise DataError(path, "expected an object of document id -> integer grade", line=line,
                            field="relevance")
        if not any(v > 0 for v in relevance.values()):
            raise DataError(path, "names no relevant document (grade > 0)", line=line, field="relevance")
        qid = str(row.get("query_id", f"line-{line}"))
        if qid in seen:
            raise DataError(path, f"query id {qid!r} appears twice", line=line, field="query_id")
        seen.add(qid)
        out.append(DevQuery(qid, query, tuple(ids), tuple(texts), {str(k): v for k, v in relevance.items()}))
    if not out:
        raise DataError(path, "holds no dev queries")
    return out


def first_stage_run(dev: list[DevQuery]) -> dict[str, dict[str, float]]:
    # Scores from the ranks, so ties and missing scores cannot reorder the first stage.
    return {q.qid: {d: float(len(q.doc_ids) - r) for r, d in enumerate(q.doc_ids)} for q in dev}


def qrels_of(dev: list[DevQuery]) -> dict[str, dict[str, int]]:
    return {q.qid: q.relevance for q in dev}


@torch.no_grad()
def score_dev(model, scorer, collator: GroupCollator, dev: list[DevQuery], pairs_per_batch: int, device,
              autocast_dtype=None, forward_tokens: int = 0) -> dict[str, dict[str, float]]:
    """The model's run over each query's candidates (a query's candidates may span batches), scored by the
    family's `scorer` from the training collator's inputs, each batch in forward passes of at most
    `forward_tokens` padded tokens as training scores its batches (0: one pass)."""
    was_training = model.training
    model.eval()
    pairs = [(q, i) for q in dev for i in range(len(q.doc_ids))]
    run: dict[str, dict[str, float]] = {}
    autocast = precision.autocast(device.type, autocast_dtype)
    try:
        for start in range(0, len(pairs), pairs_per_batch):
            chunk = pairs[start:start + pairs_per_batch]
            # One-passage groups: the collator cuts query and passage to the training budgets.
            batch = collator([Group(q.query, (q.texts[i],)) for q, i in chunk])
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast:
                logits = by_length(lambda part: scorer.scores(model, part), batch, forward_tokens)
                logits = logits.float().cpu().tolist()
            for (q, i), score in zip(chunk, logits, strict=True):
                run.setdefault(q.qid, {})[q.doc_ids[i]] = score
    finally:
        model.train(was_training)
    return run


def dev_metrics(dev: list[DevQuery], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10 and MRR@10 of the model and of the first stage over the same candidates."""
    qrels = qrels_of(dev)
    model = ranking_metrics(qrels, run)
    first = ranking_metrics(qrels, first_stage_run(dev))
    out = {name: model[name] for name in ("nDCG@10", "MRR@10")}
    out.update({FIRST_STAGE + name: first[name] for name in ("nDCG@10", "MRR@10")})
    return out
