"""Each loss against values worked out by hand (comments show the arithmetic)."""

import math

import pytest
import torch

from reranker.training import losses


def test_softmax_ce_by_hand():
    # Two equal scores: -log(1/2) = ln 2.
    assert losses.softmax_ce(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(math.log(2), abs=1e-6)
    # [2, 0, 0]: -log(e^2 / (e^2 + 2)) = -log(7.389056 / 9.389056) = -log(0.786986) = 0.239545
    assert losses.softmax_ce(torch.tensor([[2.0, 0.0, 0.0]])).item() == pytest.approx(0.239545, abs=1e-5)
    # Mean over groups: (ln 2 + 0.239545) / 2
    both = torch.tensor([[0.0, 0.0, -1e9], [2.0, 0.0, 0.0]])
    assert losses.softmax_ce(both).item() == pytest.approx((math.log(2) + 0.239545) / 2, abs=1e-5)


def test_softmax_ce_with_several_positives_by_hand():
    # [2, 1 | 0, 0], two positives: each against the negatives only.
    # -log(e^2 / (e^2 + 2)) = 0.239545; -log(e / (e + 2)) = -log(2.718282 / 4.718282) = 0.551445; mean 0.395495.
    two = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    assert losses.softmax_ce(two, positives=2).item() == pytest.approx(0.395495, abs=1e-5)
    # The positives do not compete: raising the second leaves the first's term alone, and lowers the loss.
    assert losses.softmax_ce(torch.tensor([[2.0, 5.0, 0.0, 0.0]]), positives=2).item() < 0.395495 - 0.1
    first_alone = losses.softmax_ce(torch.tensor([[2.0, 0.0, 0.0]]))
    raised = torch.tensor([[2.0, 50.0, 0.0, 0.0]])
    assert losses.softmax_ce(raised, positives=2).item() == pytest.approx(first_alone.item() / 2, abs=1e-5)
    # All alike: chance is ln(negatives + 1), here ln 6 for 3 positives in a group of 8.
    flat = torch.zeros(2, 8)
    assert losses.softmax_ce(flat, positives=3).item() == pytest.approx(math.log(6), abs=1e-6)
    assert losses.chance_loss(8, 3) == pytest.approx(math.log(6))
    # One positive is the plain group softmax.
    assert losses.compute("softmax_ce", two, positives=1).item() == pytest.approx(
        losses.softmax_ce(two).item())


def test_pointwise_bce_by_hand():
    # Logits 0: every pair costs ln 2.
    assert losses.pointwise_bce(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(math.log(2), abs=1e-6)
    # [1, -1]: positive costs -log sigmoid(1) = 0.313262; negative -log(1 - sigmoid(-1)) = 0.313262.
    assert losses.pointwise_bce(torch.tensor([[1.0, -1.0]])).item() == pytest.approx(0.313262, abs=1e-5)
    # [1, 1]: (0.313262 + 1.313262) / 2 = 0.813262
    assert losses.pointwise_bce(torch.tensor([[1.0, 1.0]])).item() == pytest.approx(0.813262, abs=1e-5)


def test_pointwise_bce_labels_every_positive():
    # [1, 1, -1] with two positives: every pair costs -log sigmoid(1) = 0.313262.
    assert losses.pointwise_bce(torch.tensor([[1.0, 1.0, -1.0]]), positives=2).item() == pytest.approx(
        0.313262, abs=1e-5)


def test_distill_kl_by_hand():
    same = torch.tensor([[1.0, 2.0, 3.0]])
    assert losses.distill_kl(same, same).item() == pytest.approx(0.0, abs=1e-7)
    # Teacher [1, 0] -> p = (0.731059, 0.268941); student uniform (0.5, 0.5).
    # KL = 0.731059 ln(1.462117) + 0.268941 ln(0.537883)
    #    = 0.731059 * 0.379885 - 0.268941 * 0.620115 = 0.277719 - 0.166774 = 0.110945
    kl = losses.distill_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert kl.item() == pytest.approx(0.110945, abs=1e-5)
    # T = 2 with teacher [2, 0] gives the same distributions, and the result is scaled by T^2 = 4.
    kl_t = losses.distill_kl(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), temperature=2.0)
    assert kl_t.item() == pytest.approx(4 * 0.110945, abs=1e-4)


def test_distill_mix_with_hard_loss():
    scores, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    # 0.25 * 0.110945 + 0.75 * ln 2 = 0.027736 + 0.519860 = 0.547596
    mixed = losses.compute("distill", scores, teacher_scores=teacher, alpha=0.25)
    assert mixed.item() == pytest.approx(0.547596, abs=1e-5)


def test_inranker_by_hand():
    soft = torch.tensor([[1.0 / (1.0 + math.exp(-2.0))]])  # teacher logits (2, 0): p = sigmoid(2) = 0.880797
    # Student logit 0: both outcomes have probability 1/2, so the cross-entropy is ln 2 whatever p is.
    assert losses.inranker_soft(torch.tensor([[0.0]]), soft).item() == pytest.approx(math.log(2), abs=1e-6)
    # Student logit 1: -(0.880797 * ln sigmoid(1) + 0.119203 * ln sigmoid(-1))
    #                = 0.880797 * 0.313262 + 0.119203 * 1.313262 = 0.275920 + 0.156545 = 0.432465
    assert losses.inranker_soft(torch.tensor([[1.0]]), soft).item() == pytest.approx(0.432465, abs=1e-5)


def test_compute_names_and_missing_targets():
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="teacher scores"):
        losses.compute("distill", scores)
    with pytest.raises(ValueError, match="InRanker"):
        losses.compute("inranker", scores)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.compute("margin", scores)
