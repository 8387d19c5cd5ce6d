"""The evaluation's first stages: BM25, dense, the hybrid of both, BM25 over expanded documents, and users'
run files; each cut to --top_k. Cached per dataset and settings."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from reranker.common.hashing import file_digest
from reranker.data.beir import BeirData
from reranker.data.runs import Run, top_k
from reranker.evaluation.arguments import EvalArguments
from reranker.retrieval import first_stage as fs
from reranker.retrieval import fusion

logger = logging.getLogger(__name__)

STAGES = ("bm25", "dense", "hybrid", "bm25_expanded")


def system_name(path: str) -> str:
    return Path(path.rstrip("/")).name or path


def base_runs(data: BeirData, args: EvalArguments, needed: set[str]) -> dict[str, Run]:
    """BM25 and / or dense runs one deeper than top_k (the ArguAna rule may drop the query's own document)."""
    depth = args.top_k + 1
    runs = {}
    # The language joins the cache key only when it is not the default, so English caches stay valid.
    bm25 = {"k1": args.bm25_k1, "b": args.bm25_b, "depth": depth,
            **({"language": args.bm25_language} if args.bm25_language != "english" else {})}

    def bm25_run(corpus_data: BeirData) -> Run:
        return fs.bm25_run(corpus_data, depth, args.bm25_k1, args.bm25_b, args.bm25_language)

    if "bm25" in needed:
        runs["bm25"] = fs.cached_run(args.cache_dir, data, {"kind": "bm25", **bm25}, lambda: bm25_run(data), depth)
    if "bm25_expanded" in needed:
        from reranker.data.expansion import expanded_corpus  # the scored queries were checked against it

        settings = {"kind": "bm25_expanded", **bm25, "expand_from": file_digest(args.expand_from, 16)}
        runs["bm25_expanded"] = fs.cached_run(args.cache_dir, data, settings, lambda: bm25_run(
            replace(data, corpus=expanded_corpus(data.corpus, args.expand_from))), depth)
    if "dense" in needed:
        from reranker.common.precision import autocast_dtype, casts_to_bf16
        from reranker.models.backends import choose_backend
        from reranker.models.embed_cache import model_fingerprint, variant

        settings = {"kind": "dense", "model": model_fingerprint(args.dense_model), "pooling": args.dense_pooling,
                    "instruction": args.query_instruction, "q": args.dense_query_max_len,
                    "p": args.dense_passage_max_len, "dtype": args.dtype, "depth": depth}
        backend = choose_backend(args.dense_model, args.dense_backend)  # "auto" resolved before the cache key
        settings |= variant(args.dense_model, backend, casts_to_bf16(autocast_dtype(args.dtype), "embedder"))
        runs["dense"] = fs.cached_run(args.cache_dir, data, settings, lambda: fs.dense_run(
            data, depth, args.dense_model, args.dense_pooling, args.query_instruction, args.dense_query_max_len,
            args.dense_passage_max_len, args.dtype, args.batch_size, backend), depth)
    if not args.keep_self_matches:
        for stage, run in runs.items():
            runs[stage], dropped = fs.drop_self_matches(run)
            if dropped:
                logger.info("%s/%s: dropped %d candidates whose id equals the query id", data.name, stage, dropped)
    return runs


def first_stage_runs(data: BeirData, args: EvalArguments, user_runs: dict[str, Run],
                     hybrid_weight: float | None, base: dict[str, Run] | None = None) -> dict[str, Run]:
    """Each first stage's top_k; run files without a run for `data` (the dev queries) are left out."""
    base = base if base is not None else base_runs(data, args, needed_base(args))
    runs = {}
    for stage in args.first_stage:
        if stage not in STAGES and stage not in user_runs:
            continue
        if stage == "hybrid":
            run = fusion.rrf([base["bm25"], base["dense"]], [hybrid_weight, 1.0 - hybrid_weight], args.rrf_k)
        elif stage in base:
            run = base[stage]
        else:
            run = user_runs[stage]
            if not args.keep_self_matches:
                run, dropped = fs.drop_self_matches(run)
                if dropped:
                    logger.info("%s/%s: dropped %d candidates whose id equals the query id", data.name, stage,
                                dropped)
            stage = system_name(stage)
        runs[stage] = top_k(run, args.top_k)
    return runs


def needed_base(args: EvalArguments) -> set[str]:
    """The base runs (BM25, dense) that the first stages need: the hybrid needs both."""
    needed = {s for s in args.first_stage if s in ("bm25", "dense", "bm25_expanded")}
    return needed | ({"bm25", "dense"} if "hybrid" in args.first_stage else set())


def tune_hybrid(dev: BeirData, args: EvalArguments, base: dict[str, Run]) -> tuple[float, float]:
    weight, value = fusion.tune(dev.qrels, lambda w: fusion.rrf([base["bm25"], base["dense"]], [w, 1.0 - w],
                                                                args.rrf_k, args.top_k), rule=args.fusion_tuning)
    logger.info("%s: hybrid BM25 weight %.4f tuned (%s) on %d dev queries (dev nDCG@10 %.4f)", dev.name, weight,
                args.fusion_tuning, len(dev.queries), value)
    return weight, value
