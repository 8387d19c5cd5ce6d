"""Evaluation: load -> first stage -> rerank -> metrics -> outputs. Positives are never injected."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

from reranker.common.errors import ConfigError, DataError
from reranker.common.hashing import file_digest
from reranker.data.beir import BeirData, is_beir_folder, load_beir, load_queries
from reranker.data.records import parse_group
from reranker.data.sources import iter_rows
from reranker.evaluation.arguments import EvalArguments
from reranker.retrieval import first_stage as fs
from reranker.retrieval import fusion
from reranker.retrieval.metrics import pairwise_metrics, ranking_metrics

logger = logging.getLogger(__name__)

STAGES = ("bm25", "dense", "hybrid", "bm25_expanded")


def system_name(path: str) -> str:
    return Path(path.rstrip("/")).name or path


def base_runs(data: BeirData, args: EvalArguments, needed: set[str]) -> dict[str, fs.Run]:
    """BM25 and / or dense runs one deeper than top_k (the ArguAna rule may drop the query's own document)."""
    depth = args.top_k + 1
    runs = {}
    if "bm25" in needed:
        settings = {"kind": "bm25", "k1": args.bm25_k1, "b": args.bm25_b, "depth": depth}
        runs["bm25"] = fs.cached_run(args.cache_dir, data, settings,
                                     lambda: fs.bm25_run(data, depth, args.bm25_k1, args.bm25_b), depth)
    if "bm25_expanded" in needed:
        from reranker.data.expansion import (
            expanded_corpus,  # the scored queries were checked against it (evaluate_beir)
        )

        settings = {"kind": "bm25_expanded", "k1": args.bm25_k1, "b": args.bm25_b, "depth": depth,
                    "expand_from": file_digest(args.expand_from, 16)}
        runs["bm25_expanded"] = fs.cached_run(args.cache_dir, data, settings, lambda: fs.bm25_run(
            replace(data, corpus=expanded_corpus(data.corpus, args.expand_from)), depth, args.bm25_k1, args.bm25_b),
            depth)
    if "dense" in needed:
        from reranker.models.embed_cache import model_fingerprint

        settings = {"kind": "dense", "model": model_fingerprint(args.dense_model), "pooling": args.dense_pooling,
                    "instruction": args.query_instruction, "q": args.dense_query_max_len,
                    "p": args.dense_passage_max_len, "dtype": args.dtype, "depth": depth}
        runs["dense"] = fs.cached_run(args.cache_dir, data, settings, lambda: fs.dense_run(
            data, depth, args.dense_model, args.dense_pooling, args.query_instruction, args.dense_query_max_len,
            args.dense_passage_max_len, args.dtype, args.batch_size), depth)
    if not args.keep_self_matches:
        for stage, run in runs.items():
            runs[stage], dropped = fs.drop_self_matches(run)
            if dropped:
                logger.info("%s/%s: dropped %d candidates whose id equals the query id", data.name, stage, dropped)
    return runs


def first_stage_runs(data: BeirData, args: EvalArguments, user_runs: dict[str, fs.Run],
                     hybrid_weight: float | None, base: dict[str, fs.Run] | None = None) -> dict[str, fs.Run]:
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
        runs[stage] = top(run, args.top_k)
    return runs


def needed_base(args: EvalArguments) -> set[str]:
    """The base runs (BM25, dense) that the first stages need: the hybrid needs both."""
    needed = {s for s in args.first_stage if s in ("bm25", "dense", "bm25_expanded")}
    return needed | ({"bm25", "dense"} if "hybrid" in args.first_stage else set())


def top(run: fs.Run, k: int) -> fs.Run:
    return {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:k]) for q, docs in run.items()}


def rerank_at_depth(first: fs.Run, reranked: fs.Run, depth: int) -> fs.Run:
    """The ranking had only the first stage's top `depth` been reranked: those with the reranker's scores, the rest
    below them in the first stage's order. Ties stay ties on both sides, so the scorer breaks them as it does in
    the first stage's and the full reranking's rows: at depth 1 the first stage's figure, at full depth the
    reranker's."""
    out = {}
    for qid, docs in first.items():
        order = sorted(docs, key=lambda d: -docs[d])
        head = {did: reranked[qid][did] for did in order[:depth]}
        tail = order[depth:]
        floor = min(head.values(), default=0.0) - 1.0
        levels = {value: i for i, value in enumerate(sorted({docs[d] for d in tail}, reverse=True))}
        out[qid] = {**head, **{did: floor - levels[docs[did]] for did in tail}}
    return out


def depth_rows(data: BeirData, dev: BeirData | None, first: fs.Run, reranked: fs.Run, dev_first: fs.Run | None,
               dev_reranked: fs.Run | None, args: EvalArguments, row: dict, first_ndcg: float) -> list[dict]:
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


def rerank_run(reranker, data: BeirData, run: fs.Run, args: EvalArguments,
               cache: dict[tuple[str, str], float] | None = None, texts=None) -> fs.Run:
    """The reranker's scores of the run's candidates; pairs already in `cache` (from another first stage over
    the same queries) are not scored again. `texts(qid, did)`, when given, is the document's text as the reranker
    reads it (--expand_from); else the corpus text."""
    cache = {} if cache is None else cache
    todo = list(dict.fromkeys((qid, did) for qid, docs in run.items() for did in docs if (qid, did) not in cache))
    if todo:
        doc = texts or (lambda q, d: data.corpus[d])
        scores = reranker.compute_score([(data.queries[q], doc(q, d)) for q, d in todo],
                                        batch_size=args.batch_size, max_length=args.rerank_max_length,
                                        show_progress=True)
        cache.update(zip(todo, scores, strict=True))
    return {qid: {did: cache[(qid, did)] for did in docs} for qid, docs in run.items()}


def tune_hybrid(dev: BeirData, args: EvalArguments, base: dict[str, fs.Run]) -> tuple[float, float]:
    weight, value = fusion.tune(dev.qrels, lambda w: fusion.rrf([base["bm25"], base["dense"]], [w, 1.0 - w],
                                                                args.rrf_k, args.top_k), rule=args.fusion_tuning)
    logger.info("%s: hybrid BM25 weight %.4f tuned (%s) on %d dev queries (dev nDCG@10 %.4f)", dev.name, weight,
                args.fusion_tuning, len(dev.queries), value)
    return weight, value


def pair_texts(args: EvalArguments, data: BeirData, dev: BeirData | None) -> tuple:
    """--expand_from: the texts the rerankers read, for the test queries and the dev queries (None: the corpus)."""
    if not args.expand_from:
        return None, None
    from reranker.data.expansion import Expansion, PairTexts
    from reranker.models.embed import Embedder

    embedder = Embedder(args.dense_model, pooling=args.dense_pooling, dtype=args.dtype)
    expansion = Expansion.from_train_file(args.expand_from, embedder, per_pair=args.expand_per_pair)
    return (PairTexts(expansion, embedder, data, f"{data.name} ({args.split} split)"),
            PairTexts(expansion, embedder, dev, f"--dev_qrels {args.dev_qrels}") if dev is not None else None)


def evaluate_beir(data: BeirData, dev: BeirData | None, user_runs: dict[str, fs.Run], rerankers: dict,
                  args: EvalArguments, runs_out: dict[str, tuple[fs.Run, str]]) -> list[dict]:
    logger.info("%s: %d judged queries, %d documents", data.name, len(data.queries), len(data.corpus))
    if args.expand_from:  # before anything is retrieved: a scored query must not read its own labels
        from reranker.data.expansion import check_no_overlap, read_training_queries

        sources = read_training_queries(args.expand_from)[0]
        check_no_overlap(data.queries, sources, f"{data.name} ({args.split} split)")
        if dev is not None:
            check_no_overlap(dev.queries, sources, f"--dev_qrels {args.dev_qrels}")
    hybrid_weight, hybrid_dev = args.hybrid_bm25_weight, None
    dev_base = base_runs(dev, args, needed_base(args)) if dev is not None else None
    if "hybrid" in args.first_stage and args.tune_hybrid:
        hybrid_weight, hybrid_dev = tune_hybrid(dev, args, dev_base)
    test_base = base_runs(data, args, needed_base(args))
    test_runs = first_stage_runs(data, args, user_runs, hybrid_weight, test_base)
    dev_runs = first_stage_runs(dev, args, {}, hybrid_weight, dev_base) if dev is not None else {}
    # The dev runs are written too, in runs/dev/ (apart: a user's run file may be called anything): a new fusion
    # rule can be tried on them without scoring anything again.
    for stage, run in dev_runs.items():
        runs_out[f"dev/{data.name}.{stage}.trec"] = (run, stage)
    caches = {name: {} for name in rerankers}  # (qid, did) -> score, shared by the first stages
    test_texts, dev_texts = pair_texts(args, data, dev) if rerankers else (None, None)
    rows = []
    for stage, run in test_runs.items():
        base = {"dataset": data.name, "first_stage": stage, "queries": len(data.queries),
                "qrels_docs_missing_from_corpus": data.missing_docs}
        if stage == "hybrid":
            base.update({"hybrid_bm25_weight": hybrid_weight, "rrf_k": args.rrf_k})
            if hybrid_dev is not None:
                base["hybrid_dev_nDCG@10"] = hybrid_dev
        first = {**base, "system": stage, **ranking_metrics(data.qrels, run)}
        if args.depth_curve and stage in dev_runs:  # the baseline the depth rows' dev figures are read against
            first["dev_nDCG@10"] = ranking_metrics(dev.qrels, dev_runs[stage])["nDCG@10"]
        rows.append(first)
        runs_out[f"{data.name}.{stage}.trec"] = (run, stage)
        for name, reranker in rerankers.items():
            reranked = rerank_run(reranker, data, run, args, caches[name], test_texts)
            metrics = ranking_metrics(data.qrels, reranked)
            row = {**base, "system": f"{stage} > {name}", **metrics,
                   "delta_nDCG@10": metrics["nDCG@10"] - first["nDCG@10"]}
            rows.append(row)
            runs_out[f"{data.name}.{stage}.{name}.trec"] = (reranked, name)
            if stage not in dev_runs:
                if dev is not None:
                    logger.info("%s: no dev run for first stage %s; its fusion is not tuned or reported", data.name,
                                stage)
                rows.extend(depth_rows(data, None, run, reranked, None, None, args, row, first["nDCG@10"]))
                continue
            dev_first = dev_runs[stage]
            dev_reranked = rerank_run(reranker, dev, dev_first, args, caches[name], dev_texts)
            runs_out[f"dev/{data.name}.{stage}.{name}.trec"] = (dev_reranked, name)
            if args.depth_curve:
                row["dev_nDCG@10"] = ranking_metrics(dev.qrels, dev_reranked)["nDCG@10"]
            rows.extend(depth_rows(data, dev, run, reranked, dev_first, dev_reranked, args, row, first["nDCG@10"]))
            if stage == "hybrid" and "hybrid" in args.first_stage:
                # The hybrid's own score is a reciprocal-rank sum; fuse with the scores of its two parts instead.
                parts = ("bm25", "dense")
                dev_parts = [top(dev_base[p], args.top_k) for p in parts]
                for part, part_run in zip(parts, dev_parts, strict=True):
                    runs_out.setdefault(f"dev/{data.name}.{part}.trec", (part_run, part))
                weights, dev_value = fusion.tune(
                    dev.qrels, lambda w, r=dev_reranked, f=dev_parts: fusion.fuse_with_stages(f, r, w), fusion.GRID2,
                    rule=args.fusion_tuning)
                fused = fusion.fuse_with_stages([top(test_base[p], args.top_k) for p in parts], reranked, weights)
                chosen = {"fusion_reranker_weight": weights[0], "fusion_bm25_weight": weights[1],
                          "fusion_dense_weight": round(1.0 - sum(weights), 4)}
            else:
                alpha, dev_value = fusion.tune(
                    dev.qrels, lambda a, f=dev_first, r=dev_reranked: fusion.fuse_scores(f, r, a),
                    rule=args.fusion_tuning)
                fused = fusion.fuse_scores(run, reranked, alpha)
                chosen = {"fusion_reranker_weight": alpha}
            logger.info("%s: %s > %s fused with weights %s, tuned (%s) on %d dev queries (dev nDCG@10 %.4f)",
                        data.name, stage, name, ", ".join(f"{k.split('_')[1]} {v:.4f}" for k, v in chosen.items()),
                        args.fusion_tuning, len(dev.queries), dev_value)
            metrics = ranking_metrics(data.qrels, fused)
            rows.append({**base, "system": f"{stage} > {name} + fusion", **metrics,
                         "delta_nDCG@10": metrics["nDCG@10"] - first["nDCG@10"], **chosen,
                         "fusion_dev_nDCG@10": dev_value, "fusion_tuning": args.fusion_tuning,
                         "dev_queries": len(dev.queries)})
            runs_out[f"{data.name}.{stage}.{name}.fusion.trec"] = (fused, f"{name}+fusion")
    return rows


def load_pairs(spec: str, args: EvalArguments) -> list:
    return [parse_group(row, where, line) for where, line, row in iter_rows(spec, args.sub_data_name, args.split)]


def evaluate_pairs(spec: str, groups: list, rerankers: dict, args: EvalArguments) -> list[dict]:
    """{query, pos, neg} data: each query's candidates are its own pos and neg, nothing added."""
    qrels = {str(i): {f"p{j}": 1 for j in range(len(g.pos))} for i, g in enumerate(groups)}
    name = system_name(spec)
    rows = []
    for model_name, reranker in rerankers.items():
        pairs = [(g.query, t) for g in groups for t in (*g.pos, *g.neg)]
        scores = iter(reranker.compute_score(pairs, batch_size=args.batch_size, max_length=args.rerank_max_length,
                                             show_progress=True))
        run, labels, flat = {}, [], []
        for i, g in enumerate(groups):
            for j, label in enumerate([1] * len(g.pos) + [0] * len(g.neg)):
                score = next(scores)
                doc = f"p{j}" if label else f"n{j - len(g.pos)}"
                run.setdefault(str(i), {})[doc] = score
                labels.append(label)
                flat.append(score)
        metrics = {**pairwise_metrics(labels, flat, args.threshold), **ranking_metrics(qrels, run)}
        metrics.pop("Recall@100")
        metrics.pop("MAP")
        rows.append({"dataset": name, "system": model_name, "queries": len(groups), "pairs": len(pairs), **metrics})
    return rows


def load_all(args: EvalArguments) -> list[tuple[str, object, dict]]:
    """Every dataset and run file is read and validated before anything is scored or written."""
    loaded = []
    run_files = [s for s in args.first_stage if s not in STAGES]
    if args.dev_qrels and len(args.datasets) != 1:
        raise ConfigError("--dev_qrels names the dev queries of one BEIR folder; give exactly one --datasets")
    for spec in args.datasets:
        if is_beir_folder(spec):
            data = load_beir(spec, args.split)
            user_runs = {path: fs.read_run(path, data) for path in run_files}
            if args.max_queries and args.max_queries < len(data.queries):
                logger.warning("%s: evaluating the first %d of %d judged queries (--max_queries)", spec,
                               args.max_queries, len(data.queries))
                kept = list(data.queries)[: args.max_queries]
                data = replace(data, queries={q: data.queries[q] for q in kept},
                               qrels={q: data.qrels[q] for q in kept}, fingerprint=f"{data.fingerprint}:{len(kept)}")
                user_runs = {p: {q: run[q] for q in kept if q in run} for p, run in user_runs.items()}
            dev = None
            if args.dev_qrels:
                # Only the qrels and queries differ: read them, and share the corpus already in memory.
                from reranker.data.beir import read_qrels

                dev_qrels = read_qrels(Path(args.dev_qrels))
                all_queries = load_queries(Path(spec) / "queries.jsonl")
                unknown = [q for q in dev_qrels if q not in all_queries]
                if unknown:
                    raise DataError(args.dev_qrels, f"{len(unknown)} dev queries are not in {spec}/queries.jsonl, "
                                                    f"e.g. {unknown[0]!r}")
                dev = replace(data, name=data.name, queries={q: all_queries[q] for q in dev_qrels}, qrels=dev_qrels,
                              fingerprint=f"{data.fingerprint}:dev:{file_digest(args.dev_qrels, 16)}")
            if dev is not None:
                shared = set(dev.queries) & set(data.queries)
                if shared:
                    raise ConfigError(f"--dev_qrels {args.dev_qrels} shares {len(shared)} queries with the "
                                      f"{args.split} split (e.g. {sorted(shared)[0]!r}): tuning on them would leak "
                                      "the test set")
            loaded.append((spec, (data, dev), user_runs))
        else:
            if args.dev_qrels:
                raise ConfigError(f"--dev_qrels applies to BEIR folders; {spec} is not one")
            if args.expand_from:
                raise ConfigError(f"--expand_from expands BEIR documents by their ids; {spec} is not a BEIR folder")
            loaded.append((spec, load_pairs(spec, args), {}))
    return loaded


def evaluate(args: EvalArguments, rerankers: dict) -> tuple[list[dict], dict[str, tuple[fs.Run, str]]]:
    """Rows of metrics (first stages and rerankers) and the runs to write, keyed by file name."""
    rows: list[dict] = []
    runs_out: dict[str, tuple[fs.Run, str]] = {}
    for spec, data, user_runs in load_all(args):
        if isinstance(data, tuple):
            rows.extend(evaluate_beir(*data, user_runs, rerankers, args, runs_out))
        elif not rerankers:
            logger.warning("%s has pairs to score but no --models were given; skipped", spec)
        else:
            rows.extend(evaluate_pairs(spec, data, rerankers, args))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    return rows, runs_out


def load_rerankers(args: EvalArguments) -> dict:
    """Every model loads before any scoring starts: a wrong path fails in seconds."""
    from reranker import Reranker

    rerankers = {}
    for path in args.models:
        name = system_name(path)
        if name in rerankers:
            raise ConfigError(f"two models are named {name!r}; give them distinct folder names")
        rerankers[name] = Reranker(path, dtype=None if args.dtype == "fp32" else args.dtype,
                                   max_length=args.rerank_max_length, max_length_option="--rerank_max_length")
    return rerankers
