"""Ranking and pairwise metrics, computed by standard libraries (ir-measures, scikit-learn), not by hand."""

from __future__ import annotations

import numpy as np

from reranker.data.runs import Qrels, Run

RANKING = ("nDCG@10", "MRR@10", "Recall@100", "MAP")


def _measures():
    from ir_measures import AP, RR, R, nDCG

    return {"nDCG@10": nDCG @ 10, "MRR@10": RR @ 10, "Recall@100": R @ 100, "MAP": AP}


def per_query_metrics(qrels: Qrels, run: Run) -> dict[str, np.ndarray]:
    """Each metric's value for every query with a relevant document, in qrels order; a query missing from the
    run scores 0.

    (ir-measures, like pytrec_eval, averages over the run's queries only, which would hide unanswered ones.)
    nDCG uses the graded relevance as its gain, as BEIR's pytrec_eval evaluation does.
    """
    import ir_measures

    measures = _measures()
    judged = [q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values())]
    per_query: dict[str, dict[str, float]] = {name: {} for name in measures}
    names = {str(m): name for name, m in measures.items()}
    run = {q: docs for q, docs in run.items() if docs}
    for metric in ir_measures.iter_calc(list(measures.values()), {q: qrels[q] for q in judged}, run):
        per_query[names[str(metric.measure)]][metric.query_id] = float(metric.value)
    return {name: np.array([values.get(q, 0.0) for q in judged], dtype=np.float64)
            for name, values in per_query.items()}


def ranking_metrics(qrels: Qrels, run: Run) -> dict[str, float]:
    """Means over every query with a relevant document (see per_query_metrics); 0 when there is none."""
    return {name: float(values.mean()) if len(values) else 0.0
            for name, values in per_query_metrics(qrels, run).items()}


def pairwise_metrics(labels: list[int], scores: list[float], threshold: float = 0.5) -> dict[str, float]:
    """AUC over all pairs, and precision / recall / F1 of sigmoid(score) >= threshold."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    labels_array = np.asarray(labels)
    probabilities = 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))
    predicted = (probabilities >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels_array, predicted, average="binary",
                                                               zero_division=0)
    auc = roc_auc_score(labels_array, probabilities) if len(set(labels)) == 2 else float("nan")
    return {"AUC": float(auc), "precision": float(precision), "recall": float(recall), "F1": float(f1)}
