"""Evaluating rerankers on a BEIR split: each first stage, each reranker over it, its depth curve, and its fusion
with the first stage, with weights chosen on the dev queries. Positives are never injected."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from reranker.common import dist
from reranker.data.beir import BeirData
from reranker.data.runs import Run, top_k
from reranker.evaluation.arguments import EvalArguments
from reranker.evaluation.first_stages import base_runs, first_stage_runs, needed_base, tune_hybrid
from reranker.evaluation.rerank import depth_rows, pair_texts, rerank_run
from reranker.retrieval import fusion
from reranker.retrieval.metrics import ranking_metrics

logger = logging.getLogger(__name__)


@dataclass
class BeirEval:
    """One BEIR split under evaluation: the test and dev data, their base runs, and the runs to write."""

    data: BeirData
    dev: BeirData | None
    args: EvalArguments
    runs_out: dict[str, tuple[Run, str]]
    test_base: dict[str, Run] = field(default_factory=dict)
    dev_base: dict[str, Run] | None = None

    def out(self, name: str, run: Run, tag: str, dev: bool = False) -> None:
        # The dev runs are written too, in runs/dev/ (apart: a user's run file may be called anything): a new
        # fusion rule can be tried on them without scoring anything again.
        self.runs_out[f"{'dev/' if dev else ''}{self.data.name}.{name}.trec"] = (run, tag)


def check_expansion_sources(data: BeirData, dev: BeirData | None, args: EvalArguments) -> None:
    """Before anything is retrieved: a scored query must not read its own labels."""
    from reranker.data.expansion import check_no_overlap, read_training_queries

    sources = read_training_queries(args.expand_from)[0]
    check_no_overlap(data.queries, sources, f"{data.name} ({args.split} split)")
    if dev is not None:
        check_no_overlap(dev.queries, sources, f"--dev_qrels {args.dev_qrels}")


def fused_row(ev: BeirEval, stage: str, name: str, run: Run, reranked: Run, dev_first: Run, dev_reranked: Run,
              base: dict, first_ndcg: float) -> dict:
    """The reranker's scores fused with its first stage's, at weights tuned on the dev queries."""
    args, dev = ev.args, ev.dev
    if stage == "hybrid":
        # The hybrid's own score is a reciprocal-rank sum; fuse with the scores of its two parts instead.
        parts = ("bm25", "dense")
        dev_parts = [top_k(ev.dev_base[p], args.top_k) for p in parts]
        for part, part_run in zip(parts, dev_parts, strict=True):
            ev.runs_out.setdefault(f"dev/{ev.data.name}.{part}.trec", (part_run, part))
        weights, dev_value = fusion.tune(
            dev.qrels, lambda w, r=dev_reranked, f=dev_parts: fusion.fuse_with_stages(f, r, w), fusion.GRID2,
            rule=args.fusion_tuning)
        fused = fusion.fuse_with_stages([top_k(ev.test_base[p], args.top_k) for p in parts], reranked, weights)
        chosen = {"fusion_reranker_weight": weights[0], "fusion_bm25_weight": weights[1],
                  "fusion_dense_weight": round(1.0 - sum(weights), 4)}
    else:
        alpha, dev_value = fusion.tune(
            dev.qrels, lambda a, f=dev_first, r=dev_reranked: fusion.fuse_scores(f, r, a), rule=args.fusion_tuning)
        fused = fusion.fuse_scores(run, reranked, alpha)
        chosen = {"fusion_reranker_weight": alpha}
    logger.info("%s: %s > %s fused with weights %s, tuned (%s) on %d dev queries (dev nDCG@10 %.4f)",
                ev.data.name, stage, name, ", ".join(f"{k.split('_')[1]} {v:.4f}" for k, v in chosen.items()),
                args.fusion_tuning, len(dev.queries), dev_value)
    ev.out(f"{stage}.{name}.fusion", fused, f"{name}+fusion")
    metrics = ranking_metrics(ev.data.qrels, fused)
    return {**base, "system": f"{stage} > {name} + fusion", **metrics,
            "delta_nDCG@10": metrics["nDCG@10"] - first_ndcg, **chosen, "fusion_dev_nDCG@10": dev_value,
            "fusion_tuning": args.fusion_tuning, "dev_queries": len(dev.queries)}


DEFAULT_FUSION = "+ fusion (default)"


def default_fused_row(ev: BeirEval, stage: str, name: str, run: Run, reranked: Run, base: dict,
                      first_ndcg: float) -> dict:
    """The reranker fused with its first stage at --fusion_weight, tuned on nothing: the ranking to ship where no
    dev queries say more (results/cross-domain.md). The first stage's own scores, the hybrid's included."""
    weight = ev.args.fusion_weight
    fused = fusion.fuse_scores(run, reranked, weight)
    ev.out(f"{stage}.{name}.fusion_default", fused, f"{name}+fusion_default")
    metrics = ranking_metrics(ev.data.qrels, fused)
    return {**base, "system": f"{stage} > {name} {DEFAULT_FUSION}", **metrics,
            "delta_nDCG@10": metrics["nDCG@10"] - first_ndcg, "fusion_reranker_weight": weight,
            "fusion_tuning": "default"}


def check_evidence(ev: BeirEval, stage: str, name: str, dev_first: Run | None, dev_reranked: Run | None,
                   row: dict) -> None:
    """Says, in the row ("dev_evidence") and the log, whether dev queries of this corpus show the pure reranker
    above its first stage; a warning names the safe ranking when they do not, or when there are none."""
    safe = f"'{stage} > {name} {DEFAULT_FUSION}'"
    where = f"{ev.data.name}: '{stage} > {name}'"
    warn = logger.warning if dist.is_main_process() else logger.debug  # once, not once per torchrun rank
    if dev_reranked is None:
        row["dev_evidence"] = "none"
        missing = (f"the dev queries have no run of first stage {stage}" if ev.dev is not None else
                   "no dev queries (--dev_qrels) or pseudo-dev queries (--pseudo_dev)")
        warn("%s is unchecked on this corpus: %s, so nothing shows that it ranks above %s, and on a corpus it was "
             "not trained on a reranker can rank below its first stage. The safe ranking is %s "
             "(docs/cross-domain.md).", where, missing, stage, safe)
        return
    kind = "pseudo-dev" if ev.args.pseudo_dev else "dev"
    model = ranking_metrics(ev.dev.qrels, dev_reranked)["nDCG@10"]
    first = ranking_metrics(ev.dev.qrels, dev_first)["nDCG@10"]
    row.update({"dev_evidence": kind, "dev_evidence_nDCG@10": model, "dev_evidence_first_stage_nDCG@10": first})
    if model <= first:
        warn("%s is not above %s on the %d %s queries (nDCG@10 %.4f against %.4f): ship %s or the fusion tuned on "
             "them, not the pure ranking.", where, stage, len(ev.dev.queries), kind, model, first, safe)


def reranker_rows(ev: BeirEval, stage: str, run: Run, dev_first: Run | None, name: str, reranker, cache: dict,
                  texts: tuple, base: dict, first_ndcg: float) -> list[dict]:
    """One reranker over one first stage: its row, its depth curve, its fusion at the default weight and, with dev
    queries, its fusion at weights tuned on them."""
    data, dev, args = ev.data, ev.dev, ev.args
    reranked = rerank_run(reranker, data, run, args, cache, texts[0])
    metrics = ranking_metrics(data.qrels, reranked)
    row = {**base, "system": f"{stage} > {name}", **metrics, "delta_nDCG@10": metrics["nDCG@10"] - first_ndcg}
    ev.out(f"{stage}.{name}", reranked, name)
    default = default_fused_row(ev, stage, name, run, reranked, base, first_ndcg)
    if dev_first is None:
        if dev is not None:
            logger.info("%s: no dev run for first stage %s; its fusion is not tuned or reported", data.name, stage)
        check_evidence(ev, stage, name, None, None, row)
        return [row, *depth_rows(data, None, run, reranked, None, None, args, row, first_ndcg), default]
    dev_reranked = rerank_run(reranker, dev, dev_first, args, cache, texts[1])
    ev.out(f"{stage}.{name}", dev_reranked, name, dev=True)
    check_evidence(ev, stage, name, dev_first, dev_reranked, row)
    if args.depth_curve:
        row["dev_nDCG@10"] = row["dev_evidence_nDCG@10"]
    return [row, *depth_rows(data, dev, run, reranked, dev_first, dev_reranked, args, row, first_ndcg), default,
            fused_row(ev, stage, name, run, reranked, dev_first, dev_reranked, base, first_ndcg)]


def evaluate_beir(data: BeirData, dev: BeirData | None, user_runs: dict[str, Run], rerankers: dict,
                  args: EvalArguments, runs_out: dict[str, tuple[Run, str]]) -> list[dict]:
    logger.info("%s: %d judged queries, %d documents", data.name, len(data.queries), len(data.corpus))
    if args.expand_from:
        check_expansion_sources(data, dev, args)
    ev = BeirEval(data, dev, args, runs_out)
    hybrid_weight, hybrid_dev = args.hybrid_bm25_weight, None
    ev.dev_base = base_runs(dev, args, needed_base(args)) if dev is not None else None
    if "hybrid" in args.first_stage and args.tune_hybrid:
        hybrid_weight, hybrid_dev = tune_hybrid(dev, args, ev.dev_base)
    ev.test_base = base_runs(data, args, needed_base(args))
    test_runs = first_stage_runs(data, args, user_runs, hybrid_weight, ev.test_base)
    dev_runs = first_stage_runs(dev, args, {}, hybrid_weight, ev.dev_base) if dev is not None else {}
    for stage, run in dev_runs.items():
        ev.out(stage, run, stage, dev=True)
    caches = {name: {} for name in rerankers}  # (qid, did) -> score, shared by the first stages
    texts = pair_texts(args, data, dev) if rerankers else (None, None)
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
        ev.out(stage, run, stage)
        for name, reranker in rerankers.items():
            rows.extend(reranker_rows(ev, stage, run, dev_runs.get(stage), name, reranker, caches[name], texts, base,
                                      first["nDCG@10"]))
    return rows
