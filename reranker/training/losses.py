"""Ranking losses as pure functions over a [n_groups, group_size] score matrix whose first `positives` columns
are the positives (one by default) and the rest the negatives, and the InRanker losses over one pair per row."""

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


# InRanker (Laitz et al. 2024, "InRanker: Distilled Rankers for Zero-shot Information Retrieval") regresses the
# student's (false, true) logits on the teacher's with a mean squared error over both. Checked against the
# authors' code, unicamp-dl/InRanker inranker/training/trainer.py: the loss is torch's MSELoss between the
# student's first decoder step logits at the "false" and "true" tokens and the labels [false_logit, true_logit];
# labels read from a custom jsonl {query, contents, true_logit, false_logit} are zero-centred per pair (the mean
# of the two subtracted) first. The student's own logits are not centred. Our records are that custom format.


def inranker_mse_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      center_teacher: bool = True) -> torch.Tensor:
    """InRanker's loss for two-logit students: mean squared error over the [n, 2] (false, true) logits.

    With `center_teacher` each teacher pair is shifted to mean zero first, (f, t) -> (f - m, t - m) with
    m = (f + t) / 2, as InRanker does for user-written teacher logits.
    """
    teacher = teacher_logits.float()
    if center_teacher:
        teacher = teacher - teacher.mean(dim=-1, keepdim=True)
    return F.mse_loss(student_logits.float(), teacher)


def inranker_mse(scores: torch.Tensor, teacher_diff: torch.Tensor) -> torch.Tensor:
    """InRanker's loss for one-score students: mean((s - d)^2) / 4 on logit differences.

    s is the student's score, read as logit(true) - logit(false); d = t_true - t_false is the teacher's. This
    equals `inranker_mse_pair` exactly when both sides are zero-centred: the teacher (-d/2, d/2) (which
    centring gives) and the student (-s/2, s/2), since each of the two logits is then off by (s - d) / 2. A
    student pair (a, b) with mean m = (a + b) / 2 adds m^2 to the pair loss (m^2 + (s - d)^2 / 4); one score
    has no such mean, so only the difference term is trained.
    """
    if scores.shape != teacher_diff.shape:  # [n] against [n, 1] would broadcast to [n, n]
        raise ValueError(f"scores {tuple(scores.shape)} and teacher differences {tuple(teacher_diff.shape)} differ")
    return (scores.float() - teacher_diff.float()).pow(2).mean() / 4


def inranker_bce(scores: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(s) against the teacher's P(true) = sigmoid(t_true - t_false).

    The earlier behaviour of `inranker`, kept for comparison; InRanker itself uses the MSE above.
    """
    return F.binary_cross_entropy_with_logits(scores.float(), teacher_prob.float())


def _student_diff(scores: torch.Tensor) -> torch.Tensor:
    """[n, 1] logit differences from [n, 1] scores or [n, 2] (false, true) logits."""
    return scores[:, 1:] - scores[:, :1] if scores.shape[-1] == 2 else scores


def _teacher_diff(teacher_scores: torch.Tensor | None, soft_labels: torch.Tensor | None) -> torch.Tensor:
    """[n, 1] teacher logit differences t_true - t_false, from [n, 2] (false, true) logits or from P(true).

    P(true) only gives them back while it is not rounded to 0 or 1: in float32, 1 - p resolves d up to about 16
    (its error grows before that), while monoT5-3B teachers often give more. So the logits are preferred.
    """
    if teacher_scores is not None:
        teacher = teacher_scores.double()
        return (teacher[:, 1:] - teacher[:, :1]).float()
    p = soft_labels.double()
    if bool(((p <= 0) | (p >= 1)).any()):
        raise ValueError("an InRanker soft label rounded to 0 or 1, so the teacher's logit difference is lost; "
                         "pass the teacher's (false, true) logits as teacher_scores [n, 2]")
    return torch.logit(p).float()


LOSSES = ("softmax_ce", "bce", "distill", "inranker", "inranker_bce")
INRANKER_LOSSES = ("inranker", "inranker_bce")  # the losses that train on InRanker records


def compute(name: str, scores: torch.Tensor, teacher_scores: torch.Tensor | None = None,
            soft_labels: torch.Tensor | None = None, temperature: float = 1.0, alpha: float = 1.0,
            positives: int = 1) -> torch.Tensor:
    """Dispatch by name. `distill` mixes alpha * KL + (1 - alpha) * softmax_ce.

    The InRanker losses take one pair per row: `scores` [n, 1] (one score, logit(true) - logit(false)) or [n, 2]
    (a student's (false, true) logits); the teacher as `teacher_scores` [n, 2] (its (false, true) logits,
    zero-centred here as InRanker does) or, failing that, `soft_labels` [n, 1] (its P(true)).
    """
    if name == "softmax_ce":
        return softmax_ce(scores, positives)
    if name == "bce":
        return pointwise_bce(scores, positives)
    if name == "distill":
        if teacher_scores is None:
            raise ValueError("loss 'distill' needs teacher scores (pos_scores/neg_scores) in every training record")
        kl = distill_kl(scores, teacher_scores, temperature)
        return kl if alpha == 1.0 else alpha * kl + (1.0 - alpha) * softmax_ce(scores, positives)
    if name in INRANKER_LOSSES:
        if teacher_scores is None and soft_labels is None:
            raise ValueError(f"loss '{name}' needs InRanker records {{query, contents, true_logit, false_logit}}")
        if teacher_scores is not None and teacher_scores.shape[-1] != 2:
            raise ValueError(f"loss '{name}' needs the teacher's (false, true) logits as teacher_scores [n, 2], "
                             f"got shape {tuple(teacher_scores.shape)}")
        if name == "inranker_bce":
            prob = torch.sigmoid(_teacher_diff(teacher_scores, None)) if teacher_scores is not None else soft_labels
            return inranker_bce(_student_diff(scores), prob)
        if scores.shape[-1] == 2:
            if teacher_scores is not None:
                return inranker_mse_pair(scores, teacher_scores, center_teacher=True)
            d = _teacher_diff(None, soft_labels)
            return inranker_mse_pair(scores, torch.cat([-d / 2, d / 2], dim=-1), center_teacher=False)
        return inranker_mse(scores, _teacher_diff(teacher_scores, soft_labels))
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
