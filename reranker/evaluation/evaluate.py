"""Evaluation: load every dataset and run file before any scoring, then score BEIR splits (beir_eval.py) or
{query, pos, neg} pairs (pairwise metrics)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

from reranker.common import dist
from reranker.common.errors import ConfigError, DataError
from reranker.common.hashing import file_digest
from reranker.data.beir import is_beir_folder, load_beir, load_queries
from reranker.data.beir_hub import is_hub_layout, materialize
from reranker.data.records import parse_group
from reranker.data.runs import Run
from reranker.data.sources import iter_rows
from reranker.evaluation.arguments import EvalArguments
from reranker.evaluation.beir_eval import evaluate_beir
from reranker.evaluation.first_stages import STAGES, system_name
from reranker.evaluation.rerank import score_pairs
from reranker.retrieval import first_stage as fs
from reranker.retrieval.metrics import pairwise_metrics, ranking_metrics

logger = logging.getLogger(__name__)



def load_pairs(spec: str, args: EvalArguments) -> list:
    return [parse_group(row, where, line) for where, line, row in iter_rows(spec, args.sub_data_name, args.split)]


def evaluate_pairs(spec: str, groups: list, rerankers: dict, args: EvalArguments) -> list[dict]:
    """{query, pos, neg} data: each query's candidates are its own pos and neg, nothing added."""
    qrels = {str(i): {f"p{j}": 1 for j in range(len(g.pos))} for i, g in enumerate(groups)}
    name = system_name(spec)
    rows = []
    for model_name, reranker in rerankers.items():
        pairs = [(g.query, t) for g in groups for t in (*g.pos, *g.neg)]
        scores = iter(score_pairs(reranker, pairs, args.batch_size, args.rerank_max_length))
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
    for option in ("dev_qrels", "pseudo_dev"):
        if getattr(args, option) and len(args.datasets) != 1:
            raise ConfigError(f"--{option} names the dev queries of one BEIR folder; give exactly one --datasets")
    for spec in args.datasets:
        if is_hub_layout(spec):  # a hub id such as BeIR/scifact: read once into a local BEIR folder
            if not dist.is_main_process():  # under torchrun rank 0 writes it; the others read its copy
                dist.barrier()
            spec = str(materialize(spec, [args.split]))
            if dist.is_main_process():
                dist.barrier()
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
            elif args.pseudo_dev:
                from reranker.data.pseudo_dev import load_pseudo_dev

                queries, qrels = load_pseudo_dev(args.pseudo_dev, Path(spec) / "corpus.jsonl")
                digest = file_digest(Path(args.pseudo_dev) / "dev_qrels.tsv", 16)
                dev = replace(data, queries=queries, qrels=qrels, fingerprint=f"{data.fingerprint}:pseudo:{digest}")
            if dev is not None:
                shared = set(dev.queries) & set(data.queries)
                if shared:
                    raise ConfigError(f"--dev_qrels {args.dev_qrels} shares {len(shared)} queries with the "
                                      f"{args.split} split (e.g. {sorted(shared)[0]!r}): tuning on them would leak "
                                      "the test set")
            loaded.append((spec, (data, dev), user_runs))
        else:
            if args.dev_qrels or args.pseudo_dev:
                raise ConfigError(f"--dev_qrels and --pseudo_dev apply to BEIR folders; {spec} is not one")
            if args.expand_from:
                raise ConfigError(f"--expand_from expands BEIR documents by their ids; {spec} is not a BEIR folder")
            loaded.append((spec, load_pairs(spec, args), {}))
    return loaded


def evaluate(args: EvalArguments, rerankers: dict) -> tuple[list[dict], dict[str, tuple[Run, str]]]:
    """Rows of metrics (first stages and rerankers) and the runs to write, keyed by file name."""
    rows: list[dict] = []
    runs_out: dict[str, tuple[Run, str]] = {}
    for spec, data, user_runs in load_all(args):
        if isinstance(data, tuple):
            rows.extend(evaluate_beir(*data, user_runs, rerankers, args, runs_out))
        elif not rerankers:
            logger.warning("%s has pairs to score but no --models were given; skipped", spec)
        else:
            rows.extend(evaluate_pairs(spec, data, rerankers, args))
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]
    return rows, runs_out


def load_rerankers(args: EvalArguments, device: str | None = None) -> dict:
    """Every model loads before any scoring starts: a wrong path fails in seconds. `device`: this torchrun rank's
    GPU (default: the first GPU, else the CPU)."""
    from reranker import Reranker

    rerankers = {}
    for path in args.models:
        name = system_name(path)
        if name in rerankers:
            raise ConfigError(f"two models are named {name!r}; give them distinct folder names")
        rerankers[name] = Reranker(path, device=device, dtype=None if args.dtype == "fp32" else args.dtype,
                                   max_length=args.rerank_max_length, max_length_option="--rerank_max_length",
                                   backend=args.backend)
    return rerankers
