"""The encoder against FlagEmbedding's, and faiss search: chunking, approximate indexes, GPU when present."""

import numpy as np
import pytest

from reranker.models.embed import Embedder
from reranker.retrieval.search import build_index, dense_search, gpu_count

TEXTS = ["the sky is blue", "paris is the capital of france", "a", "bread bakes in an oven with flour and yeast"]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_matches_flagembedding_embedder(tiny_model_master, pooling):
    from FlagEmbedding import FlagModel

    ours = Embedder(str(tiny_model_master), pooling=pooling).encode(TEXTS, max_length=32, batch_size=3,
                                                                     instruction="query: ")
    theirs = FlagModel(str(tiny_model_master), pooling_method=pooling, use_fp16=False, devices="cpu",
                       query_instruction_for_retrieval="query: ", query_instruction_format="{}{}")
    expected = theirs.encode_queries(TEXTS, batch_size=3, max_length=32)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_bf16_close_to_fp32(tiny_model_master):
    fp32 = Embedder(str(tiny_model_master), pooling="mean").encode(TEXTS)
    bf16 = Embedder(str(tiny_model_master), pooling="mean", dtype="bf16").encode(TEXTS)
    assert float(np.min(np.sum(fp32 * bf16, axis=1))) > 0.99


def _vectors(n, dim=16, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_chunked_search_equals_one_shot_and_exact():
    pool, queries = _vectors(500), _vectors(37, seed=1)
    index = build_index(pool, use_gpu=False)
    s1, r1 = dense_search(index, queries, depth=10, chunk_size=5)
    s2, r2 = dense_search(index, queries, depth=10, chunk_size=1000)
    np.testing.assert_array_equal(r1, r2)
    exact = np.argsort(-(queries @ pool.T), axis=1)[:, :10]
    np.testing.assert_array_equal(r1, exact)
    assert dense_search(index, queries, depth=10_000)[1].shape == (37, 500)  # depth capped at the pool


def _clustered(n, dim=32, clusters=40, seed=0):
    """Points around cluster centres, as real embeddings are (uniform random vectors defeat any IVF)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    v = (centres[rng.integers(clusters, size=n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recall(kind):
    points = _clustered(4050)
    pool, queries = points[:4000], points[4000:]
    exact = dense_search(build_index(pool, use_gpu=False), queries, 10)[1]
    approx = dense_search(build_index(pool, kind, nprobe=16, use_gpu=False), queries, 10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall > 0.8


@pytest.mark.skipif(gpu_count() == 0, reason="needs faiss with GPU support and a GPU")
def test_gpu_index_matches_cpu():
    pool, queries = _vectors(1000), _vectors(20, seed=3)
    cpu = dense_search(build_index(pool, use_gpu=False), queries, 10)[1]
    gpu = dense_search(build_index(pool, use_gpu=True), queries, 10)[1]
    np.testing.assert_array_equal(cpu, gpu)


def test_bm25_language_picks_the_stemmer_and_stop_words():
    from reranker.common.errors import ConfigError
    from reranker.mining.arguments import MineArguments
    from reranker.retrieval.search import BM25

    texts = ["Die Katze schläft auf dem Sofa", "Der Hund und die Hunde laufen", "Ein Vogel singt"]
    # German stemming matches 'Katzen' to 'Katze' (both 'katz'); English rules leave 'katzen' as it is.
    assert BM25(texts, language="german").search(["Katzen"], 3)[0][0][0] > 0
    assert BM25(texts).search(["Katzen"], 3)[0][0][0] == 0
    # German stop words: 'die' alone matches nothing in German, everything that has it in English (not a stop word).
    assert BM25(texts, language="german").search(["die"], 3)[0][0][0] == 0
    assert BM25(texts, language="english").search(["die"], 3)[0][0][0] > 0
    assert BM25(texts, language="none").search(["hunde"], 3)[0][0][0] > 0
    with pytest.raises(ConfigError, match="--bm25_language 'klingon' is not a language BM25 can stem"):
        MineArguments(input_file="a", output_file="b", bm25_language="klingon")


def test_dense_run_encodes_a_corpus_once_for_both_splits(tiny_model_master, monkeypatch):
    """The test split and the dev queries share the corpus: the second dense run reuses its vectors, and ranks as
    a fresh encoding does; another corpus is encoded anew."""
    from reranker.data.beir import BeirData
    from reranker.models import embed
    from reranker.retrieval import first_stage as fs

    corpus = {f"d{i}": text for i, text in enumerate(["paris is in france", "berlin is in germany",
                                                       "the sky is blue", "bread is baked in an oven"])}
    test = BeirData("tiny", corpus, {"q1": "capital of france"}, {"q1": {"d0": 1}}, 0, "a")
    dev = BeirData("tiny", dict(corpus), {"q2": "why is the sky blue"}, {"q2": {"d2": 1}}, 0, "b")
    sizes = []
    original = embed.Embedder.encode
    monkeypatch.setattr(embed.Embedder, "encode", lambda self, texts, *a, **k: sizes.append(len(texts)) or
                        original(self, texts, *a, **k))
    args = (4, str(tiny_model_master), "mean", "", 16, 32, "fp32", 8)
    fs._LAST_CORPUS.clear()
    fs.dense_run(test, *args)
    reused = fs.dense_run(dev, *args)
    assert sizes == [4, 1, 1]  # the corpus once, then each split's one query
    fs._LAST_CORPUS.clear()
    assert fs.dense_run(dev, *args) == reused
    other = BeirData("tiny", {**corpus, "d4": "a new document"}, {"q2": "why is the sky blue"}, {}, 0, "c")
    sizes.clear()
    fs.dense_run(other, *args)
    assert sizes == [5, 1]
