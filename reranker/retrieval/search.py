"""First-stage search for mining: faiss inner product (GPU when available, chunked queries) and BM25."""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    # Imported lazily: only mining needs it. Its loader logs every SIMD variant it tries at INFO.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


def gpu_count() -> int:
    """GPUs faiss can use: 0 with faiss-cpu, whatever the machine has."""
    faiss = _faiss()
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return faiss.get_num_gpus()


def _torch_sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def build_index(vectors: np.ndarray, kind: str = "flat", nlist: int = 0, nprobe: int = 32, hnsw_m: int = 32,
                ef_search: int = 128, use_gpu: bool = True):
    """An inner-product index over `vectors`; exact (flat) by default, IVF or HNSW for large pools."""
    faiss = _faiss()
    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))  # faiss wants >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors if n <= nlist * 256 else vectors[np.random.default_rng(0).choice(n, nlist * 256, False)]
        index.train(sample)
        index.nprobe = min(nprobe, nlist)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
    gpus = gpu_count() if use_gpu else 0
    if gpus and kind != "hnsw":
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True  # split the pool over the GPUs rather than copying it to each
        index = faiss.index_cpu_to_all_gpus(index, co=options)
        logger.info("faiss: %s index on %d GPU(s), sharded", kind, gpus)
    elif use_gpu and not gpus and _torch_sees_gpu():
        logger.warning("faiss: a GPU is present but this faiss build has no GPU support (faiss-cpu); searching on "
                       "the CPU. Install faiss-gpu (conda: faiss-gpu) to search on the GPU.")
    else:
        reason = "HNSW has no GPU version" if gpus else ("asked for" if not use_gpu else "no GPU")
        logger.info("faiss: %s index on the CPU (%s)", kind, reason)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def dense_search(index, queries: np.ndarray, depth: int, chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-`depth` (scores, rows) per query, searched `chunk_size` queries at a time.

    Memory stays at the index plus one chunk's results: never a queries x pool matrix.
    """
    depth = min(depth, index.ntotal)
    scores = np.empty((len(queries), depth), dtype=np.float32)
    rows = np.empty((len(queries), depth), dtype=np.int64)
    for start in tqdm(range(0, len(queries), chunk_size), desc="Searching", unit="chunk"):
        chunk = np.ascontiguousarray(queries[start:start + chunk_size], dtype=np.float32)
        scores[start:start + len(chunk)], rows[start:start + len(chunk)] = index.search(chunk, depth)
    return scores, rows


def bm25_languages() -> list[str]:
    """The languages BM25 can stem (PyStemmer's Snowball algorithms), and "none": no stemming, no stop words."""
    import Stemmer

    return [*Stemmer.algorithms(), "none"]


def check_bm25_language(language: str, option: str) -> None:
    from reranker.common.errors import ConfigError

    if language not in bm25_languages():
        raise ConfigError(f"{option} {language!r} is not a language BM25 can stem; choose one of "
                          f"{', '.join(bm25_languages())}")


def stopwords_of(language: str) -> list[str]:
    """bm25s's stop-word list for a language; none for a language it has no list for (stemming still applies)."""
    import bm25s.stopwords as lists

    name = {"english": "EN", "porter": "EN"}.get(language, language.upper())
    return list(getattr(lists, f"STOPWORDS_{name}", ()))


class BM25:
    """bm25s with a language's stop words and Snowball stemmer (English by default; k1, b as in Anserini's
    defaults). `language="none"` indexes the lower-cased words as they are."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75, language: str = "english"):
        import bm25s
        import Stemmer

        if language not in bm25_languages():
            raise ValueError(f"BM25 language {language!r} is not one of {', '.join(bm25_languages())}")
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs index building at DEBUG through ours
        self._bm25s = bm25s
        self.stemmer = None if language == "none" else Stemmer.Stemmer(language)
        self.stopwords = [] if language == "none" else stopwords_of(language)
        self.size = len(texts)
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.retriever.index(self._tokenize(texts), show_progress=False)

    def _tokenize(self, texts: list[str], return_ids: bool = True):
        return self._bm25s.tokenize(texts, stopwords=self.stopwords, stemmer=self.stemmer, show_progress=False,
                                    return_ids=return_ids)

    def search(self, queries: list[str], depth: int) -> tuple[np.ndarray, np.ndarray]:
        depth = min(depth, self.size)
        rows, scores = self.retriever.retrieve(self._tokenize(queries), k=depth, show_progress=False)
        return scores.astype(np.float32), rows.astype(np.int64)

    def score_rows(self, query: str, rows: list[int]) -> list[float]:
        """BM25 scores of given pool rows for one query (for positives outside the retrieved list)."""
        tokens = self._tokenize([query], return_ids=False)[0]
        all_scores = self.retriever.get_scores(tokens)
        return [float(all_scores[r]) for r in rows]
