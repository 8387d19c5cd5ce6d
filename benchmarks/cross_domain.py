"""The cross-domain study of results/cross-domain.md: each reranker on its own corpus and on the other one, the
default fusion weight, and how far choices made on pseudo-dev queries agree with choices made on real ones.

    python benchmarks/cross_domain.py score --model scifact  # cache one model's dev and pseudo-dev scores
    python benchmarks/cross_domain.py dev          # dev and pseudo-dev queries only: the default weight, agreement
    python benchmarks/cross_domain.py checkpoints  # the checkpoint each kind of dev query would keep
    python benchmarks/cross_domain.py test         # once, after the default is set in code: the test table

Every ranking reranks BM25's top --top_k. Scores are cached under --out/scores (one json per model, corpus and
query set, whatever the model's weights, backend or depth: delete the folder after changing any of them), so the
analyses re-run without scoring again. The dev phase scores and measures no test query (the corpus is read
through the test split's loader, whose qrels it replaces); the test phase refuses to run unless the default weight
in the code (reranker.retrieval.fusion.DEFAULT_WEIGHT) is the one the dev phase's rule chose, and reads the
pseudo-dev weights from the dev phase's output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paired_test import paired_randomization  # noqa: E402

from reranker.cli import common as cli  # noqa: E402
from reranker.common.files import write_json  # noqa: E402
from reranker.common.hashing import file_digest  # noqa: E402
from reranker.data.beir import BeirData, load_beir, load_queries, read_qrels  # noqa: E402
from reranker.data.pseudo_dev import load_pseudo_dev  # noqa: E402
from reranker.evaluation.arguments import EvalArguments  # noqa: E402
from reranker.evaluation.first_stages import base_runs, first_stage_runs  # noqa: E402
from reranker.evaluation.rerank import rerank_run  # noqa: E402
from reranker.retrieval import fusion  # noqa: E402
from reranker.retrieval.metrics import per_query_metrics, ranking_metrics  # noqa: E402

logger = logging.getLogger("cross_domain")
METRIC = "nDCG@10"
CORPORA = ("scifact", "nfcorpus")


def options(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["score", "dev", "checkpoints", "test"])
    p.add_argument("--model", choices=CORPORA, help="score: the one model whose dev and pseudo-dev scores to cache "
                                                    "(the other may still be training)")
    p.add_argument("--scifact", default="../shared/data/beir/scifact")
    p.add_argument("--nfcorpus", default="../shared/data/beir/nfcorpus")
    p.add_argument("--scifact_model", default="outputs/pipeline/scifact_embedder/model")
    p.add_argument("--nfcorpus_model", default="outputs/cross_domain/nfcorpus_model/model")
    # Real dev queries: scifact has no dev split, so the 80 the pipeline carved from train (seed 42); nfcorpus's
    # own dev split, which neither model trained on.
    p.add_argument("--scifact_dev", default="outputs/pipeline/scifact_embedder/data/dev_qrels.tsv")
    p.add_argument("--nfcorpus_dev", default="../shared/data/beir/nfcorpus/qrels/dev.tsv")
    p.add_argument("--scifact_pseudo", default="outputs/cross_domain/pseudo/scifact")
    p.add_argument("--nfcorpus_pseudo", default="outputs/cross_domain/pseudo/nfcorpus")
    # The training dev files the checkpoints were chosen on (the checkpoint phase compares with these).
    p.add_argument("--scifact_train_dev", default="outputs/pipeline/scifact_embedder/data/dev.jsonl")
    p.add_argument("--nfcorpus_train_dev", default="outputs/cross_domain/nfcorpus_model/data/dev.jsonl")
    p.add_argument("--backend", default="openvino", help="what scores the rerankers (reranker-eval's --backend)")
    p.add_argument("--top_k", type=int, default=100)
    p.add_argument("--out", default="outputs/cross_domain/study")
    return p.parse_args(argv)


def eval_args(a, folder: str) -> EvalArguments:
    return EvalArguments(datasets=[folder], top_k=a.top_k, first_stage=["bm25", "dense", "hybrid"],
                         batch_size=32, backend=a.backend)


def query_set(a, corpus: str, kind: str) -> BeirData:
    """The queries of one corpus: its test split, its real dev queries or its pseudo-dev queries."""
    folder = getattr(a, corpus)
    if kind == "test":
        return load_beir(folder, "test")
    data = load_beir(folder, "test")  # for the corpus only: the queries and qrels are replaced
    if kind == "dev":
        path = Path(getattr(a, f"{corpus}_dev"))
        qrels, queries = read_qrels(path), load_queries(Path(folder) / "queries.jsonl")
        queries = {q: queries[q] for q in qrels}
    else:
        path = Path(getattr(a, f"{corpus}_pseudo")) / "dev_qrels.tsv"
        queries, qrels = load_pseudo_dev(path.parent, Path(folder) / "corpus.jsonl")
    # The fingerprint keys the first stages' run cache.
    return replace(data, queries=queries, qrels=qrels, fingerprint=f"{data.fingerprint}:{kind}:{file_digest(path)}")


def first_stages(a, corpus: str, data: BeirData, bm25_only: bool = False) -> dict:
    """BM25, dense and hybrid (weight 0.5) top --top_k; BM25's alone where nothing else is read."""
    args = eval_args(a, getattr(a, corpus))
    if bm25_only:
        args.first_stage = ["bm25"]
    base = base_runs(data, args, set(args.first_stage) & {"bm25", "dense"} | {"bm25"})
    return first_stage_runs(data, args, {}, 0.5, base)


def reranked(a, model: str, corpus: str, kind: str, data: BeirData, bm25: dict, rerankers: dict) -> dict:
    """The model's scores of BM25's candidates (cached on disk)."""
    path = Path(a.out) / "scores" / f"{model}.{corpus}.{kind}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if model not in rerankers:
        from reranker import Reranker

        rerankers[model] = Reranker(getattr(a, f"{model}_model"), dtype="auto", backend=a.backend)
    logger.info("Scoring %s on %s (%s queries: %d)", model, corpus, kind, len(data.queries))
    run = rerank_run(rerankers[model], data, bm25, eval_args(a, getattr(a, corpus)))
    write_json(path, run)
    return run


def weight_curve(qrels, first, run) -> np.ndarray:
    """Mean nDCG@10 of the fusion at each GRID weight (0: the first stage alone, 1: the reranker alone)."""
    return fusion.grid_table(qrels, lambda w: fusion.fuse_scores(first, run, w), fusion.GRID).mean(axis=1)


def bagged(qrels, first, run) -> float:
    return fusion.tune(qrels, lambda w: fusion.fuse_scores(first, run, w))[0]


def kendall_tau(x: list[float], y: list[float]) -> float:
    pairs = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x))]
    agree = sum(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in pairs)
    return float(agree / len(pairs))


def dev_phase(a) -> dict:
    rerankers: dict = {}
    out = {"grid": list(fusion.GRID), "cells": {}, "orders": {}}
    for corpus in CORPORA:
        figures = {}
        for kind in ("dev", "pseudo"):
            data = query_set(a, corpus, kind)
            stages = first_stages(a, corpus, data)
            systems = {s: ranking_metrics(data.qrels, stages[s])[METRIC] for s in ("bm25", "dense", "hybrid")}
            for model in CORPORA:
                run = reranked(a, model, corpus, kind, data, stages["bm25"], rerankers)
                curve = weight_curve(data.qrels, stages["bm25"], run)
                cell = out["cells"].setdefault(f"{model} on {corpus}", {})
                cell[kind] = {"queries": len(data.queries), "bm25": systems["bm25"], "pure": float(curve[-1]),
                              "curve": curve.tolist(), "argmax_weight": fusion.GRID[int(fusion.first_best(curve)[0])],
                              "bagged_weight": bagged(data.qrels, stages["bm25"], run)}
                systems[f"bm25 > {model}"] = float(curve[-1])
                default = fusion.fuse_scores(stages["bm25"], run, fusion.DEFAULT_WEIGHT)
                systems[f"bm25 > {model} + fusion (default)"] = float(ranking_metrics(data.qrels, default)[METRIC])
            figures[kind] = systems
        names = list(figures["dev"])
        out["orders"][corpus] = {"systems": names, "dev": [figures["dev"][s] for s in names],
                                 "pseudo": [figures["pseudo"][s] for s in names],
                                 "kendall_tau": kendall_tau([figures["dev"][s] for s in names],
                                                            [figures["pseudo"][s] for s in names])}
    # The rule fixed in results/cross-domain.md: the weight whose worse cross-domain gain over BM25 (real dev) is
    # largest, ties to the smaller reranker weight.
    gains = np.stack([np.asarray(out["cells"][c]["dev"]["curve"]) - out["cells"][c]["dev"]["bm25"]
                      for c in ("scifact on nfcorpus", "nfcorpus on scifact")])
    worst = gains.min(axis=0)
    out["default_rule"] = {"worst_gain_by_weight": worst.tolist(),
                           "chosen": fusion.GRID[int(fusion.first_best(worst)[0])]}
    for cell in out["cells"].values():
        cell["agreement"] = {
            "bagged_weight_gap": abs(cell["dev"]["bagged_weight"] - cell["pseudo"]["bagged_weight"]),
            "argmax_weight_gap": abs(cell["dev"]["argmax_weight"] - cell["pseudo"]["argmax_weight"]),
            "pure_beats_bm25": {k: cell[k]["pure"] > cell[k]["bm25"] for k in ("dev", "pseudo")}}
    write_json(Path(a.out) / "dev.json", out)
    return out


def score_phase(a) -> dict:
    rerankers: dict = {}
    done = {}
    for corpus in CORPORA:
        for kind in ("dev", "pseudo"):
            data = query_set(a, corpus, kind)
            bm25 = first_stages(a, corpus, data, bm25_only=True)["bm25"]
            run = reranked(a, a.model, corpus, kind, data, bm25, rerankers)
            done[f"{corpus}.{kind}"] = len(run)
    return done


def checkpoint_phase(a) -> dict:
    """For each model: its checkpoints' nDCG@10 on the training dev file (real) and on the pseudo-dev's dev.jsonl,
    both BM25 top 30, scored the same way; which checkpoint each would keep."""
    from reranker import Reranker
    from reranker.training.dev_eval import first_stage_run, load_dev, qrels_of

    out = {}
    for model in CORPORA:
        folder = Path(getattr(a, f"{model}_model"))
        checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        sets = {"dev": load_dev(getattr(a, f"{model}_train_dev")),
                "pseudo": load_dev(str(Path(getattr(a, f"{model}_pseudo")) / "dev.jsonl"))}
        rows = {}
        for checkpoint in checkpoints:
            reranker = Reranker(str(checkpoint), dtype="auto")
            row = {}
            for kind, dev in sets.items():
                pairs = [(q.query, t) for q in dev for t in q.texts]
                scores = iter(reranker.compute_score(pairs, batch_size=32, show_progress=True))
                run = {q.qid: {d: next(scores) for d in q.doc_ids} for q in dev}
                row[kind] = ranking_metrics(qrels_of(dev), run)[METRIC]
                row[f"{kind}_first_stage"] = ranking_metrics(qrels_of(dev), first_stage_run(dev))[METRIC]
            rows[checkpoint.name] = row
            logger.info("%s %s: %s", model, checkpoint.name, row)
        picks = {kind: max(rows, key=lambda c, k=kind: (rows[c][k], -int(c.split("-")[1]))) for kind in sets}
        out[model] = {"checkpoints": rows, "kept_by": picks, "agree": picks["dev"] == picks["pseudo"]}
    write_json(Path(a.out) / "checkpoints.json", out)
    return out


def test_phase(a) -> dict:
    dev = json.loads((Path(a.out) / "dev.json").read_text())
    if dev["default_rule"]["chosen"] != fusion.DEFAULT_WEIGHT:
        raise SystemExit(f"the dev phase's rule chose {dev['default_rule']['chosen']}, the code's default is "
                         f"{fusion.DEFAULT_WEIGHT}: set the default first (the test split is read once)")
    rerankers: dict = {}
    out = {"default_weight": fusion.DEFAULT_WEIGHT, "rows": []}
    for model, corpus in (("scifact", "nfcorpus"), ("nfcorpus", "scifact")):
        data = query_set(a, corpus, "test")
        bm25 = first_stages(a, corpus, data, bm25_only=True)["bm25"]
        run = reranked(a, model, corpus, "test", data, bm25, rerankers)
        cell = dev["cells"][f"{model} on {corpus}"]
        rankings = {"BM25": bm25, "pure reranker": run,
                    f"fused, default {fusion.DEFAULT_WEIGHT}": fusion.fuse_scores(bm25, run, fusion.DEFAULT_WEIGHT),
                    f"fused, pseudo-dev weight {cell['pseudo']['bagged_weight']}":
                        fusion.fuse_scores(bm25, run, cell["pseudo"]["bagged_weight"]),
                    f"fused, real-dev weight {cell['dev']['bagged_weight']}":
                        fusion.fuse_scores(bm25, run, cell["dev"]["bagged_weight"])}
        base = per_query_metrics(data.qrels, bm25)[METRIC]
        for name, ranking in rankings.items():
            values = per_query_metrics(data.qrels, ranking)[METRIC]
            row = {"model": model, "corpus": corpus, "ranking": name, METRIC: float(values.mean())}
            if name != "BM25":
                row["vs_bm25"] = paired_randomization(base, values)
            out["rows"].append(row)
            logger.info("%s model on %s: %s %.4f", model, corpus, name, row[METRIC])
    write_json(Path(a.out) / "test.json", out)
    return out


def main(argv: list[str] | None = None) -> dict:
    cli.setup_logging()
    a = options(argv)
    result = {"score": score_phase, "dev": dev_phase, "checkpoints": checkpoint_phase, "test": test_phase}[a.phase](a)
    print(json.dumps(result, indent=1)[:20000])
    return result


if __name__ == "__main__":
    main()
