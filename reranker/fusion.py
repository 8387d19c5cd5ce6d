"""Fusing rankings: reciprocal-rank fusion of first stages, and a reranker's score with its first stage's.

Pure functions over runs (query id -> doc id -> score); weights are tuned on dev queries, never on test.
"""

from __future__ import annotations

import numpy as np

from .metrics import ranking_metrics

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))


def ranked(docs: dict[str, float]) -> list[str]:
    # Ties broken by doc id so that fused scores never depend on dict order.
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))]


def rrf(runs: list[Run], weights: list[float], k: int = 60, depth: int | None = None) -> Run:
    """Weighted reciprocal-rank fusion: sum of w / (k + rank), rank 1-based; a document absent from a run gets
    nothing from it. Each query's result is cut to `depth`."""
    out: Run = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        fused: dict[str, float] = {}
        for run, weight in zip(runs, weights, strict=True):
            for rank, did in enumerate(ranked(run.get(qid, {})), start=1):
                fused[did] = fused.get(did, 0.0) + weight / (k + rank)
        out[qid] = dict(sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:depth])
    return out


def minmax(docs: dict[str, float]) -> dict[str, float]:
    values = np.fromiter(docs.values(), dtype=np.float64, count=len(docs))
    if not len(values):
        return {}
    low, span = values.min(), values.max() - values.min()
    if span == 0:
        return dict.fromkeys(docs, 0.0)
    return {d: (v - low) / span for d, v in docs.items()}


def fuse_scores(first: Run, reranked: Run, alpha: float) -> Run:
    """alpha x reranker + (1 - alpha) x first stage, each min-max normalised per query over the candidates."""
    out: Run = {}
    for qid, docs in reranked.items():
        r, f = minmax(docs), minmax({d: first[qid][d] for d in docs})
        out[qid] = {d: alpha * r[d] + (1 - alpha) * f[d] for d in docs}
    return out


def tune(qrels: Qrels, make_run, grid=GRID, metric: str = "nDCG@10") -> tuple[float, float]:
    """(best weight, its metric) over `grid`, where make_run(weight) gives the run; the smallest weight wins ties
    so the choice is stable."""
    best_weight, best = grid[0], -1.0
    for weight in grid:
        value = ranking_metrics(qrels, make_run(weight))[metric]
        if value > best + 1e-12:
            best_weight, best = weight, value
    return best_weight, best
