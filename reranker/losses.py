"""Ranking losses as pure functions over a [n_groups, group_size] score matrix whose column 0 is the positive."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softmax_ce(scores: torch.Tensor) -> torch.Tensor:
    """Group softmax cross-entropy: -log softmax(scores)[positive], averaged over groups."""
    return -F.log_softmax(scores.float(), dim=-1)[:, 0].mean()


def pointwise_bce(scores: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on every pair: the positive labelled 1, the negatives 0, averaged over pairs."""
    labels = torch.zeros_like(scores, dtype=torch.float32)
    labels[:, 0] = 1.0
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
            soft_labels: torch.Tensor | None = None, temperature: float = 1.0, alpha: float = 1.0) -> torch.Tensor:
    """Dispatch by name. `distill` mixes alpha * KL + (1 - alpha) * softmax_ce."""
    if name == "softmax_ce":
        return softmax_ce(scores)
    if name == "bce":
        return pointwise_bce(scores)
    if name == "distill":
        if teacher_scores is None:
            raise ValueError("loss 'distill' needs teacher scores (pos_scores/neg_scores) in every training record")
        kl = distill_kl(scores, teacher_scores, temperature)
        return kl if alpha == 1.0 else alpha * kl + (1.0 - alpha) * softmax_ce(scores)
    if name == "inranker":
        if soft_labels is None:
            raise ValueError("loss 'inranker' needs InRanker records {query, contents, true_logit, false_logit}")
        return inranker_soft(scores, soft_labels)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
