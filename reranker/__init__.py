"""reranker: fine-tune cross-encoder rerankers (training, inference; mining and evaluation build on these)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Reranker"]


def __getattr__(name: str):
    # Lazy: `import reranker` stays cheap (no torch/transformers import) for tools that need only a submodule.
    if name == "Reranker":
        from .inference import Reranker

        return Reranker
    raise AttributeError(f"module 'reranker' has no attribute {name!r}")
