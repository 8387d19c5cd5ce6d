"""Score normalisation and the fusion of a reranker's scores with its first stage's, for one query's candidates:
the arithmetic reranker.retrieval.fusion applies to runs and Reranker.rerank to one list of passages."""

from __future__ import annotations

import numpy as np

# The reranker's weight where nothing is tuned: reranker-eval's "+ fusion (default)" rows and Reranker.rerank with
# first-stage scores. Chosen on the cross-domain dev queries by the rule results/cross-domain.md fixed beforehand.
DEFAULT_FUSION_WEIGHT = 0.4


def minmax_array(values: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1]; all zeros when they are all equal (or there are none)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values
    low, span = values.min(), values.max() - values.min()
    return (values - low) / span if span > 0 else np.zeros_like(values)


def fuse_arrays(reranker: np.ndarray, first_stage: np.ndarray, weight: float) -> np.ndarray:
    """weight x reranker + (1 - weight) x first stage, each min-max normalised over these candidates."""
    return weight * minmax_array(reranker) + (1.0 - weight) * minmax_array(first_stage)
