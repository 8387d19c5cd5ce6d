"""Fusing rankings: reciprocal-rank fusion of first stages, and a reranker's score with its first stage's.

Pure functions over runs (query id -> doc id -> score); weights are tuned on dev queries, never on test.
"""

from __future__ import annotations

import numpy as np

from reranker.common.scores import DEFAULT_FUSION_WEIGHT, minmax_array
from reranker.data.runs import Qrels, Run, ranked
from reranker.retrieval.metrics import per_query_metrics, ranking_metrics

GRID = tuple(float(round(x, 2)) for x in np.linspace(0.0, 1.0, 21))
# (reranker weight, first weight), the second first stage getting the rest: the simplex at GRID's step.
GRID2 = tuple((a, b) for a in GRID for b in GRID if a + b <= 1.0 + 1e-9)


def rrf(runs: list[Run], weights: list[float], k: int = 60, depth: int | None = None) -> Run:
    """Weighted reciprocal-rank fusion: sum of w / (k + rank), rank 1-based; a document absent from a run gets
    nothing from it. Each query's result is cut to `depth`."""
    out: Run = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        fused: dict[str, float] = {}
        for run, weight in zip(runs, weights, strict=True):
            for rank, did in enumerate(ranked(run.get(qid, {})), start=1):
                fused[did] = fused.get(did, 0.0) + weight / (k + rank)
        out[qid] = {d: fused[d] for d in ranked(fused)[:depth]}
    return out


def minmax(docs: dict[str, float]) -> dict[str, float]:
    values = minmax_array(np.fromiter(docs.values(), dtype=np.float64, count=len(docs)))
    return dict(zip(docs, values.tolist(), strict=True))


def fuse_scores(first: Run, reranked: Run, alpha: float) -> Run:
    """alpha x reranker + (1 - alpha) x first stage, each min-max normalised per query (the first stage over its
    own list, which is the candidates when the reranker scored all of them)."""
    return fuse_with_stages([first], reranked, (alpha,))


def fuse_with_stages(stages: list[Run], reranked: Run, weights: tuple[float, ...]) -> Run:
    """weights[0] x reranker + weights[i] x first stage i, the rest of 1 going to the last stage.

    Each is min-max normalised per query: the reranker over the candidates, a first stage over its own list, so
    that a candidate one stage did not retrieve (it came in through the other) gets 0 from that stage, its
    floor. Used for the hybrid first stage: its reciprocal-rank score keeps only ranks, while BM25's and the
    embedder's scores also say how far apart the candidates are.
    """
    weights = (*weights, 1.0 - sum(weights))
    if len(weights) != len(stages) + 1:
        raise ValueError(f"{len(stages)} first stages take {len(stages)} weights: the reranker's and those of all "
                         "but the last stage, which gets the rest of 1")
    out: Run = {}
    for qid, docs in reranked.items():
        r = minmax(docs)
        normed = [minmax(stage.get(qid, {})) for stage in stages]
        out[qid] = {d: weights[0] * r[d] + sum(w * n.get(d, 0.0) for w, n in zip(weights[1:], normed, strict=True))
                    for d in docs}
    return out


# The reranker's weight where nothing is tuned (results/cross-domain.md).
DEFAULT_WEIGHT = DEFAULT_FUSION_WEIGHT

TUNING = ("bagged", "argmax")
BAGS = 200  # bootstrap resamples of the dev queries in the bagged rule


def grid_table(qrels: Qrels, make_run, grid, metric: str = "nDCG@10") -> np.ndarray:
    """The metric of every dev query (columns) at every grid weight (rows)."""
    return np.stack([per_query_metrics(qrels, make_run(weight))[metric] for weight in grid])


def first_best(means: np.ndarray) -> np.ndarray:
    """Per row, the first column within float noise of the row's best: the smallest weight wins ties, so the
    choice is stable."""
    means = np.atleast_2d(means)
    return np.argmax(means >= means.max(axis=1, keepdims=True) - 1e-12, axis=1)


def choose(table: np.ndarray, grid, rule: str = "bagged", bags: int = BAGS, seed: int = 0):
    """The weight a rule picks from a grid table (grid_table's rows and columns).

    argmax: the grid weight with the best mean over the dev queries. On a few dozen queries its choice swings with
    a handful of them (two seeds of one recipe can get very different weights), so the default is bagged: the mean
    of the argmax weights of `bags` bootstrap resamples of the queries (seeded). Each grid weight pulls in
    proportion to the share of resamples that pick it, so a choice that rests on a few queries is pulled back. A
    weight may be a tuple (GRID2); the mean of points of the simplex stays on it.
    """
    if rule not in TUNING:
        raise ValueError(f"unknown fusion tuning rule {rule!r}; choose from {', '.join(TUNING)}")
    queries = table.shape[1]
    if queries == 0:  # no judged dev query: nothing to choose by
        return grid[0]
    if rule == "argmax":
        return grid[int(first_best(table.mean(axis=1))[0])]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(queries, np.full(queries, 1.0 / queries), size=bags)  # (bags, queries)
    picks = first_best(counts @ table.T / queries)
    mean = np.asarray([grid[i] for i in picks], dtype=np.float64).mean(axis=0)
    # Rounded down to 4 decimals: rounding each to nearest could sum past 1 and leave the last stage a negative
    # weight (the 1e-6 only absorbs float error such as 0.29999999 for 0.3).
    floored = np.floor(mean * 1e4 + 1e-6) / 1e4
    return tuple(float(w) for w in floored) if floored.ndim else float(floored)


def tune(qrels: Qrels, make_run, grid=GRID, metric: str = "nDCG@10", rule: str = "bagged",
         seed: int = 0) -> tuple:
    """(chosen weight, its metric over all the dev queries), where make_run(weight) gives the run; see choose."""
    weight = choose(grid_table(qrels, make_run, grid, metric), grid, rule, seed=seed)
    return weight, ranking_metrics(qrels, make_run(weight))[metric]
