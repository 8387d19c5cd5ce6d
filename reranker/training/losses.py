"""Ranking losses as pure functions over a [n_groups, group_size] score matrix whose first `positives` columns
are the positives (one by default) and the rest the negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def softmax_ce(scores: torch.Tensor, positives: int = 1) -> torch.Tensor:
    """Group softmax cross-entropy: -log softmax(scores)[positive], averaged over groups.

    With several positives, each is scored against the group's negatives only (never against the other
    positives, which are not worse than it): -log(e^s_p / (e^s_p + sum of e^s_n)), averaged over positives and
    groups. So chance is ln(negatives + 1), and one positive gives the plain group softmax.
    """
    scores = scores.float()
    if positives == 1:
        return -F.log_softmax(scores, dim=-1)[:, 0].mean()
    negatives = scores[:, positives:].unsqueeze(1).expand(-1, positives, -1)
    rows = torch.cat([scores[:, :positives].unsqueeze(-1), negatives], dim=-1)  # [groups, positives, 1 + negatives]
    return -F.log_softmax(rows, dim=-1)[..., 0].mean()


def chance_loss(group_size: int, positives: int = 1) -> float:
    """softmax_ce when every passage scores alike: ln(negatives + 1)."""
    return math.log(group_size - positives + 1)


def pointwise_bce(scores: torch.Tensor, positives: int = 1) -> torch.Tensor:
    """Binary cross-entropy on every pair: the positives labelled 1, the negatives 0, averaged over pairs."""
    labels = torch.zeros_like(scores, dtype=torch.float32)
    labels[:, :positives] = 1.0
    return F.binary_cross_entropy_with_logits(scores.float(), labels)


def distill_kl(scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) between temperature-scaled softmaxes over each group, times T^2 (Hinton et al.).

    The T^2 keeps gradient magnitudes comparable across temperatures, so mixing with the hard loss is stable.
    """
    student = F.log_softmax(scores.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_scores.float() / temperature, dim=-1)
    kl = (teacher.exp() * (teacher - student)).sum(dim=-1)
    return kl.mean() * temperature**2


def inranker_soft(scores: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
    """InRanker: cross-entropy between the student's and the teacher's (relevant, not relevant) distributions.

    With one logit s the student's distribution is (sigmoid(s), 1 - sigmoid(s)), so this is binary
    cross-entropy against the teacher's probability softmax(true_logit, false_logit)[0].
    """
    return F.binary_cross_entropy_with_logits(scores.float(), soft_labels.float())


LOSSES = ("softmax_ce", "bce", "distill", "inranker")


def compute(name: str, scores: torch.Tensor, teacher_scores: torch.Tensor | None = None,
            soft_labels: torch.Tensor | None = None, temperature: float = 1.0, alpha: float = 1.0,
            positives: int = 1) -> torch.Tensor:
    """Dispatch by name. `distill` mixes alpha * KL + (1 - alpha) * softmax_ce."""
    if name == "softmax_ce":
        return softmax_ce(scores, positives)
    if name == "bce":
        return pointwise_bce(scores, positives)
    if name == "distill":
        if teacher_scores is None:
            raise ValueError("loss 'distill' needs teacher scores (pos_scores/neg_scores) in every training record")
        kl = distill_kl(scores, teacher_scores, temperature)
        return kl if alpha == 1.0 else alpha * kl + (1.0 - alpha) * softmax_ce(scores, positives)
    if name == "inranker":
        if soft_labels is None:
            raise ValueError("loss 'inranker' needs InRanker records {query, contents, true_logit, false_logit}")
        return inranker_soft(scores, soft_labels)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
