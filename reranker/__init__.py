"""reranker: fine-tune rerankers on your own data (hard-negative mining, group-wise training, evaluation).

The library API: `Reranker` scores (query, passage) pairs with a trained model; `train(**options)` trains one
with the same option names as `reranker-train`. Subpackages, lowest layer first: common, data, models,
retrieval, then training, mining, evaluation and synth, then workflows, then cli; imports only run downwards.
"""

from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["Reranker", "train"]


def __getattr__(name: str):
    # Lazy: `import reranker` stays cheap (no torch/transformers import) for tools that need only a submodule.
    if name == "Reranker":
        from reranker.models.inference import Reranker

        return Reranker
    if name == "train":
        from reranker.training.train import train

        return train
    raise AttributeError(f"module 'reranker' has no attribute {name!r}")
