"""The bi-encoder losses against numbers worked out by hand."""

import math

import pytest
import torch

from reranker.embedding.losses import false_negative_mask, margin_mse, multiple_negatives_ranking


def test_multiple_negatives_ranking_by_hand():
    # Two queries, their positives (rows 0, 1) and one hard negative (row 2); unit vectors, temperature 1.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # query 0: similarities (1, 0, 0.6), target 0 -> -log(e^1 / (e^1 + e^0 + e^0.6))
    # query 1: similarities (0, 1, 0.8), target 1 -> -log(e^1 / (e^0 + e^1 + e^0.8))
    q0 = -math.log(math.e / (math.e + 1 + math.exp(0.6)))
    q1 = -math.log(math.e / (1 + math.e + math.exp(0.8)))
    assert multiple_negatives_ranking(q, p, temperature=1.0).item() == pytest.approx((q0 + q1) / 2, abs=1e-6)
    # temperature 0.5 doubles every similarity
    q0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.2)))
    q1 = -math.log(math.exp(2) / (1 + math.exp(2) + math.exp(1.6)))
    assert multiple_negatives_ranking(q, p, temperature=0.5).item() == pytest.approx((q0 + q1) / 2, abs=1e-6)


def test_a_masked_false_negative_leaves_the_softmax():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # The hard negative (row 2) is query 1's positive document under another row: masked for query 1 only.
    mask = false_negative_mask(["a", "b"], ["a", "b", "b"])
    assert mask.tolist() == [[False, False, False], [False, False, True]]
    q0 = -math.log(math.e / (math.e + 1 + math.exp(0.6)))
    q1 = -math.log(math.e / (1 + math.e))  # e^0.8 gone
    assert multiple_negatives_ranking(q, p, 1.0, mask).item() == pytest.approx((q0 + q1) / 2, abs=1e-6)


def test_symmetric_adds_positives_over_queries():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # forward: q0 (1, 0) target 0; q1 (0.6, 0.8) target 1
    forward = (-math.log(math.e / (math.e + 1)) - math.log(math.exp(0.8) / (math.exp(0.6) + math.exp(0.8)))) / 2
    # backward: p0 over queries (1, 0.6) target 0; p1 over queries (0, 0.8) target 1
    backward = (-math.log(math.e / (math.e + math.exp(0.6))) - math.log(math.exp(0.8) / (1 + math.exp(0.8)))) / 2
    loss = multiple_negatives_ranking(q, p, 1.0, symmetric=True)
    assert loss.item() == pytest.approx((forward + backward) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="positives come first"):
        multiple_negatives_ranking(q, p[:1], 1.0)


def test_margin_mse_by_hand():
    # margins: student (3 - 1, 2 - 2) = (2, 0); teacher (10 - 9, 5 - 1) = (1, 4); mean((2-1)^2, (0-4)^2) = 8.5
    loss = margin_mse(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]), torch.tensor([10.0, 5.0]),
                      torch.tensor([9.0, 1.0]))
    assert loss.item() == pytest.approx(8.5)
