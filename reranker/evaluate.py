"""Evaluation: load -> first stage -> rerank -> metrics -> outputs. Positives are never injected."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from . import first_stage as fs
from .beir import BeirData, is_beir_folder, load_beir
from .eval_args import EvalArguments
from .metrics import pairwise_metrics, ranking_metrics
from .records import parse_group
from .sources import iter_rows

logger = logging.getLogger(__name__)


def system_name(path: str) -> str:
    return Path(path.rstrip("/")).name or path


def first_stage_runs(data: BeirData, args: EvalArguments, user_runs: dict[str, fs.Run]) -> dict[str, fs.Run]:
    depth = args.top_k + 1  # one spare: the ArguAna rule may drop the query's own document
    runs = {}
    for stage in args.first_stage:
        if stage == "bm25":
            settings = {"kind": "bm25", "k1": args.bm25_k1, "b": args.bm25_b, "depth": depth}
            run = fs.cached_run(args.cache_dir, data, settings,
                                lambda: fs.bm25_run(data, depth, args.bm25_k1, args.bm25_b), depth)
        elif stage == "dense":
            from .embed_cache import model_fingerprint

            settings = {"kind": "dense", "model": model_fingerprint(args.dense_model), "pooling": args.dense_pooling,
                        "instruction": args.query_instruction, "q": args.dense_query_max_len,
                        "p": args.dense_passage_max_len, "dtype": args.dtype, "depth": depth}
            run = fs.cached_run(args.cache_dir, data, settings, lambda: fs.dense_run(
                data, depth, args.dense_model, args.dense_pooling, args.query_instruction, args.dense_query_max_len,
                args.dense_passage_max_len, args.dtype, args.batch_size), depth)
        else:
            run = user_runs[stage]
            stage = system_name(stage)
        if not args.keep_self_matches:
            run, dropped = fs.drop_self_matches(run)
            if dropped:
                logger.info("%s/%s: dropped %d candidates whose id equals the query id", data.name, stage, dropped)
        runs[stage] = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[: args.top_k]) for q, docs in run.items()}
    return runs


def rerank_run(reranker, data: BeirData, run: fs.Run, args: EvalArguments) -> fs.Run:
    pairs, keys = [], []
    for qid, docs in run.items():
        for did in docs:
            pairs.append((data.queries[qid], data.corpus[did]))
            keys.append((qid, did))
    scores = reranker.compute_score(pairs, batch_size=args.batch_size, max_length=args.rerank_max_length,
                                    show_progress=True)
    out: fs.Run = {}
    for (qid, did), score in zip(keys, scores, strict=True):
        out.setdefault(qid, {})[did] = score
    return out


def evaluate_beir(data: BeirData, user_runs: dict[str, fs.Run], rerankers: dict, args: EvalArguments,
                  runs_out: dict[str, tuple[fs.Run, str]]) -> list[dict]:
    logger.info("%s: %d judged queries, %d documents", data.name, len(data.queries), len(data.corpus))
    rows = []
    for stage, run in first_stage_runs(data, args, user_runs).items():
        base = {"dataset": data.name, "first_stage": stage, "queries": len(data.queries),
                "qrels_docs_missing_from_corpus": data.missing_docs}
        first = {**base, "system": stage, **ranking_metrics(data.qrels, run)}
        rows.append(first)
        runs_out[f"{data.name}.{stage}.trec"] = (run, stage)
        for name, reranker in rerankers.items():
            reranked = rerank_run(reranker, data, run, args)
            metrics = ranking_metrics(data.qrels, reranked)
            rows.append({**base, "system": f"{stage} > {name}", **metrics,
                         "delta_nDCG@10": metrics["nDCG@10"] - first["nDCG@10"]})
            runs_out[f"{data.name}.{stage}.{name}.trec"] = (reranked, name)
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
    run_files = [s for s in args.first_stage if s not in ("bm25", "dense")]
    for spec in args.datasets:
        if is_beir_folder(spec):
            data = load_beir(spec, args.split)
            loaded.append((spec, data, {path: fs.read_run(path, data) for path in run_files}))
        else:
            loaded.append((spec, load_pairs(spec, args), {}))
    return loaded


def evaluate(args: EvalArguments, rerankers: dict) -> tuple[list[dict], dict[str, tuple[fs.Run, str]]]:
    """Rows of metrics (first stages and rerankers) and the runs to write, keyed by file name."""
    rows: list[dict] = []
    runs_out: dict[str, tuple[fs.Run, str]] = {}
    for spec, data, user_runs in load_all(args):
        if isinstance(data, BeirData):
            rows.extend(evaluate_beir(data, user_runs, rerankers, args, runs_out))
        elif not rerankers:
            logger.warning("%s has pairs to score but no --models were given; skipped", spec)
        else:
            rows.extend(evaluate_pairs(spec, data, rerankers, args))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    return rows, runs_out
