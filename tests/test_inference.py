import math

import pytest

from reranker import Reranker

PAIRS = [("what is the capital of france", "paris is the capital of france and a big city with a long history"),
         ("sky", "blue"), ("why is water cold", "ice"), ("a", "the cat and the dog in the tree by the river")]


@pytest.fixture
def reranker(tiny_model):
    return Reranker(str(tiny_model))


def test_scores_keep_input_order_despite_length_sorting(reranker):
    batched = reranker.compute_score(PAIRS, batch_size=2)
    one_by_one = [reranker.compute_score(pair) for pair in PAIRS]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert isinstance(one_by_one[0], float)
    normalized = reranker.compute_score(PAIRS, normalize=True)
    assert normalized == pytest.approx([1 / (1 + math.exp(-s)) for s in batched], abs=1e-6)


def test_rerank_sorts_and_cuts(reranker):
    passages = [p for _, p in PAIRS]
    ranked = reranker.rerank("sky", passages, top_k=2)
    scores = reranker.compute_score([("sky", p) for p in passages])
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -scores[i])[:2]
    assert ranked[0]["text"] == passages[ranked[0]["index"]]


def test_long_query_does_not_crash_and_bf16_runs(reranker, tiny_model):
    long_pair = ("what is the capital " * 200, "paris")
    assert math.isfinite(reranker.compute_score(long_pair, max_length=32))
    bf16 = Reranker(str(tiny_model), dtype="bf16")
    assert bf16.compute_score(PAIRS) == pytest.approx(reranker.compute_score(PAIRS), abs=0.05)
    with pytest.raises(ValueError, match="fp16 on CPU"):
        Reranker(str(tiny_model), dtype="fp16", device="cpu")


def test_missing_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-model' does not exist locally"):
        Reranker(str(tmp_path / "no-such-model"))
