"""Scoring a first stage's candidates with a reranker, and what the same scores give at shallower depths."""

from __future__ import annotations

import logging

import numpy as np

from reranker.common import dist
from reranker.common.hashing import digest_of
from reranker.data.beir import BeirData
from reranker.data.runs import Run, ranked
from reranker.evaluation.arguments import EvalArguments
from reranker.models.inference import length_order
from reranker.retrieval.metrics import ranking_metrics

logger = logging.getLogger(__name__)


def rerank_at_depth(first: Run, reranked: Run, depth: int) -> Run:
    """The ranking had only the first stage's top `depth` been reranked: those with the reranker's scores, the rest
    below them in the first stage's order. Ties stay ties on both sides, so the scorer breaks them as it does in
    the first stage's and the full reranking's rows: at depth 1 the first stage's figure, at full depth the
    reranker's."""
    out = {}
    for qid, docs in first.items():
        order = ranked(docs)
        head = {did: reranked[qid][did] for did in order[:depth]}
        tail = order[depth:]
        floor = min(head.values(), default=0.0) - 1.0
        levels = {value: i for i, value in enumerate(sorted({docs[d] for d in tail}, reverse=True))}
        out[qid] = {**head, **{did: floor - levels[docs[did]] for did in tail}}
    return out


def depth_rows(data: BeirData, dev: BeirData | None, first: Run, reranked: Run, dev_first: Run | None,
               dev_reranked: Run | None, args: EvalArguments, row: dict, first_ndcg: float) -> list[dict]:
    """One row per --depth_curve depth, from the scores already computed; the dev figure where dev was scored."""
    rows = []
    for depth in args.depth_curve:
        metrics = ranking_metrics(data.qrels, rerank_at_depth(first, reranked, depth))
        extra = {}
        if dev_reranked is not None:
            extra["dev_nDCG@10"] = ranking_metrics(dev.qrels, rerank_at_depth(dev_first, dev_reranked,
                                                                                 depth))["nDCG@10"]
        rows.append({**row, "system": f"{row['system']} @{depth}", "rerank_depth": depth, **metrics,
                     "delta_nDCG@10": metrics["nDCG@10"] - first_ndcg, **extra})
    return rows


def score_pairs(reranker, pairs: list[tuple[str, str]], batch_size: int, max_length: int | None) -> list[float]:
    """The reranker's score of every pair. Under torchrun each rank scores whole batches of the one-process order
    in turn and every rank gets all the scores back: the same scores as one process, in 1/world_size of the time."""
    if dist.world_size() == 1:
        return list(reranker.compute_score(pairs, batch_size=batch_size, max_length=max_length, show_progress=True))
    # Each rank built its own candidate lists; the scores go back by position, so the lists must be the same.
    digests = dist.all_gather_objects(digest_of([f"{q}\t{p}" for q, p in pairs], 32))
    if len(set(digests)) > 1:
        raise RuntimeError("the torchrun processes built different lists of pairs to score (a first stage differed "
                           f"between them: {len(set(digests))} versions); run eval.py in one process, or with "
                           "--cache_dir none on a deterministic first stage")
    mine, shares = dist.shard_batches(length_order(pairs), batch_size)
    local = reranker.compute_score([pairs[i] for i in mine], batch_size=batch_size, max_length=max_length,
                                   show_progress=dist.is_main_process())
    scores = np.empty(len(pairs), dtype=np.float64)
    for share, part in zip(shares, dist.all_gather_objects(local), strict=True):
        scores[share] = part
    return scores.tolist()


def rerank_run(reranker, data: BeirData, run: Run, args: EvalArguments,
               cache: dict[tuple[str, str], float] | None = None, texts=None) -> Run:
    """The reranker's scores of the run's candidates; pairs already in `cache` (from another first stage over
    the same queries) are not scored again. `texts(qid, did)`, when given, is the document's text as the reranker
    reads it (--expand_from); else the corpus text."""
    cache = {} if cache is None else cache
    todo = list(dict.fromkeys((qid, did) for qid, docs in run.items() for did in docs if (qid, did) not in cache))
    if todo:
        doc = texts or (lambda q, d: data.corpus[d])
        scores = score_pairs(reranker, [(data.queries[q], doc(q, d)) for q, d in todo], args.batch_size,
                             args.rerank_max_length)
        cache.update(zip(todo, scores, strict=True))
    return {qid: {did: cache[(qid, did)] for did in docs} for qid, docs in run.items()}


def pair_texts(args: EvalArguments, data: BeirData, dev: BeirData | None) -> tuple:
    """--expand_from: the texts the rerankers read, for the test queries and the dev queries (None: the corpus)."""
    if not args.expand_from:
        return None, None
    from reranker.data.expansion import Expansion, PairTexts
    from reranker.models.embed import Embedder

    embedder = Embedder(args.dense_model, pooling=args.dense_pooling, dtype=args.dtype, backend=args.dense_backend)
    expansion = Expansion.from_train_file(args.expand_from, embedder, per_pair=args.expand_per_pair)
    return (PairTexts(expansion, embedder, data, f"{data.name} ({args.split} split)"),
            PairTexts(expansion, embedder, dev, f"--dev_qrels {args.dev_qrels}") if dev is not None else None)
