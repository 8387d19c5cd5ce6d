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


def test_inranker_mse_pair_by_hand():
    # No centring: student (0, 1), teacher (-1, 3): errors (1, -2), squares (1, 4), mean 2.5.
    pair = losses.inranker_mse_pair(torch.tensor([[0.0, 1.0]]), torch.tensor([[-1.0, 3.0]]), center_teacher=False)
    assert pair.item() == pytest.approx(2.5, abs=1e-6)
    # Mean over both logits of every pair: rows (2.5 above) and student (0, 0) vs teacher (1, 1): (1 + 1) / 2 = 1,
    # so (2 * 2.5 + 2 * 1) / 4 = 1.75.
    two = losses.inranker_mse_pair(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.tensor([[-1.0, 3.0], [1.0, 1.0]]),
                                   center_teacher=False)
    assert two.item() == pytest.approx(1.75, abs=1e-6)


def test_inranker_mse_pair_centres_the_teacher():
    # Teacher (false 5, true 23.2): mean 14.1, centred (-9.1, 9.1). Student (-9, 9): errors (0.1, -0.1),
    # squares 0.01 each, mean 0.01.
    student, teacher = torch.tensor([[-9.0, 9.0]]), torch.tensor([[5.0, 23.2]])
    assert losses.inranker_mse_pair(student, teacher, center_teacher=True).item() == pytest.approx(0.01, abs=1e-5)
    # Uncentred: errors (-14, -14.2), squares (196, 201.64), mean 198.82.
    assert losses.inranker_mse_pair(student, teacher, center_teacher=False).item() == pytest.approx(198.82, abs=1e-3)
    # Shifting both teacher logits alike changes nothing once centred: (0, 18.2) -> (-9.1, 9.1) again.
    shifted = losses.inranker_mse_pair(student, torch.tensor([[0.0, 18.2]]), center_teacher=True)
    assert shifted.item() == pytest.approx(0.01, abs=1e-5)


def test_inranker_mse_by_hand():
    # s = (1, 0.5), d = (4, -1.5): (1 - 4)^2 = 9, (0.5 + 1.5)^2 = 4, mean 6.5, / 4 = 1.625.
    mse = losses.inranker_mse(torch.tensor([[1.0], [0.5]]), torch.tensor([[4.0], [-1.5]]))
    assert mse.item() == pytest.approx(1.625, abs=1e-6)
    with pytest.raises(ValueError, match="differ"):
        losses.inranker_mse(torch.tensor([1.0, 0.5]), torch.tensor([[4.0], [-1.5]]))


def test_inranker_pair_equals_difference_loss_on_centred_logits():
    # Teacher (-1, 3): d = 4, centred (-2, 2). Student s = 1 written centred: (-0.5, 0.5).
    # Pair: errors (1.5, -1.5), squares 2.25 each, mean 2.25. Difference: (1 - 4)^2 / 4 = 9 / 4 = 2.25.
    teacher = torch.tensor([[-1.0, 3.0]])
    pair = losses.inranker_mse_pair(torch.tensor([[-0.5, 0.5]]), teacher, center_teacher=True)
    diff = losses.inranker_mse(torch.tensor([[1.0]]), torch.tensor([[4.0]]))
    assert pair.item() == pytest.approx(2.25, abs=1e-6)
    assert diff.item() == pytest.approx(2.25, abs=1e-6)
    # A student pair that is not centred, (0, 1) (s = 1, mean m = 0.5), adds m^2: errors (2, -1) against (-2, 2),
    # squares (4, 1), mean 2.5 = 0.25 + 2.25.
    off = losses.inranker_mse_pair(torch.tensor([[0.0, 1.0]]), teacher, center_teacher=True)
    assert off.item() == pytest.approx(0.25 + 2.25, abs=1e-6)


def test_inranker_bce_by_hand():
    soft = torch.tensor([[1.0 / (1.0 + math.exp(-2.0))]])  # teacher (false 0, true 2): p = sigmoid(2) = 0.880797
    # Student logit 0: both outcomes have probability 1/2, so the cross-entropy is ln 2 whatever p is.
    assert losses.inranker_bce(torch.tensor([[0.0]]), soft).item() == pytest.approx(math.log(2), abs=1e-6)
    # Student logit 1: -(0.880797 * ln sigmoid(1) + 0.119203 * ln sigmoid(-1))
    #                = 0.880797 * 0.313262 + 0.119203 * 1.313262 = 0.275920 + 0.156545 = 0.432465
    assert losses.inranker_bce(torch.tensor([[1.0]]), soft).item() == pytest.approx(0.432465, abs=1e-5)
    # The same through compute, from the teacher's logits (0, 2) or from its P(true).
    by_logits = losses.compute("inranker_bce", torch.tensor([[1.0]]), teacher_scores=torch.tensor([[0.0, 2.0]]))
    by_prob = losses.compute("inranker_bce", torch.tensor([[1.0]]), soft_labels=soft)
    assert by_logits.item() == pytest.approx(0.432465, abs=1e-5)
    assert by_prob.item() == pytest.approx(0.432465, abs=1e-5)


def test_compute_inranker_targets():
    # Teacher (false -1, true 3): d = 4. One score s = 1: (1 - 4)^2 / 4 = 2.25, from the logits or from
    # P(true) = sigmoid(4) = 0.982014, whose logit gives d = 4 back.
    scores, teacher = torch.tensor([[1.0]]), torch.tensor([[-1.0, 3.0]])
    soft = torch.tensor([[1.0 / (1.0 + math.exp(-4.0))]])
    assert losses.compute("inranker", scores, teacher_scores=teacher).item() == pytest.approx(2.25, abs=1e-6)
    assert losses.compute("inranker", scores, soft_labels=soft).item() == pytest.approx(2.25, abs=1e-4)
    # A two-logit student (0, 1) against the centred teacher (-2, 2): 2.5 as above, by logits or by P(true).
    pair = torch.tensor([[0.0, 1.0]])
    assert losses.compute("inranker", pair, teacher_scores=teacher).item() == pytest.approx(2.5, abs=1e-6)
    assert losses.compute("inranker", pair, soft_labels=soft).item() == pytest.approx(2.5, abs=1e-4)
    # Teacher (5, 23.2), d = 18.2: float32 rounds sigmoid(18.2) to 1, so only its logits keep d.
    big = torch.tensor([[5.0, 23.2]])
    exact = losses.compute("inranker", torch.tensor([[18.2]]), teacher_scores=big)
    assert exact.item() == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="rounded to 0 or 1"):
        losses.compute("inranker", scores, soft_labels=torch.sigmoid(torch.tensor([[18.2]])))
    with pytest.raises(ValueError, match=r"teacher_scores \[n, 2\]"):
        losses.compute("inranker", scores, teacher_scores=torch.tensor([[1.0, 2.0, 3.0]]))


def test_compute_names_and_missing_targets():
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="teacher scores"):
        losses.compute("distill", scores)
    for name in losses.INRANKER_LOSSES:
        with pytest.raises(ValueError, match="InRanker"):
            losses.compute(name, scores)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.compute("margin", scores)
