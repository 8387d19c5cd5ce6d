"""On-disk cache of pool embeddings, keyed by everything that changes them, so re-mining skips encoding."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from reranker.common.files import atomic_write
from reranker.common.hashing import digest_of

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")


def model_fingerprint(path: str) -> dict:
    """Where the model is and which weight files it has (name, size, mtime): changes when it is retrained."""
    folder = Path(path)
    if not folder.is_dir():
        return {"model": path}
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    return {"model": str(folder.resolve()),
            "files": [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def variant(model_path: str, backend: str, bf16_weights: bool) -> dict:
    """What else changes the vectors of the same settings, for the cache key: a graph backend ("auto" resolved) and
    its one-shape copies, or torch's bf16 weights (earlier versions cached autocast's vectors under the same dtype).
    Empty for torch otherwise, so older caches of those stay valid."""
    from reranker.models.backends import static_copies_of

    if backend != "torch":
        copies = static_copies_of(model_path, backend)
        return {"backend": backend, **({"shape_copies": copies} if copies else {})}
    return {"weights": "bf16"} if bf16_weights else {}


def cache_key(model_path: str, settings: dict, pool_hash: str) -> str:
    return digest_of({"model": model_fingerprint(model_path), "settings": settings, "pool": pool_hash}, 32)


def load(cache_dir: str | Path, key: str, rows: int) -> np.ndarray | None:
    path = Path(cache_dir) / f"{key}.npy"
    if not path.exists():
        return None
    array = np.load(path, allow_pickle=False)  # plain arrays only: never unpickle a file from disk
    if array.ndim != 2 or array.shape[0] != rows:
        logger.warning("Ignoring embedding cache %s: shape %s does not match %d passages", path, array.shape, rows)
        return None
    logger.info("Loaded %d pool embeddings from the cache %s", rows, path)
    return array


def save(cache_dir: str | Path, key: str, array: np.ndarray) -> Path:
    path = Path(cache_dir) / f"{key}.npy"
    with atomic_write(path, mode="wb") as handle:
        np.save(handle, array, allow_pickle=False)
    logger.info("Cached pool embeddings at %s", path)
    return path
