"""Bi-encoder losses as pure functions over embeddings: in-batch negatives with the records' hard negatives
(multiple-negatives ranking), optionally symmetric, with in-batch false negatives masked; and MarginMSE
distillation from a cross-encoder's scores.

Layout of a batch: `queries` is [B, dim]; `passages` is [B + H, dim], the B positives first (query i's positive
is row i), then every record's hard negatives. Every passage of the batch is a candidate for every query.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def false_negative_mask(positive_keys, passage_keys) -> torch.Tensor:
    """[B, B + H] True where a passage other than query i's own positive is the same document as that positive
    (same id, or same normalised text): another query's positive or a hard negative that duplicates it would
    otherwise be scored as a negative of query i. Keys are lists of strings or int64 tensors (the collator's)."""
    if not isinstance(positive_keys, torch.Tensor):
        ids = {key: i for i, key in enumerate(dict.fromkeys([*positive_keys, *passage_keys]))}
        positive_keys = torch.tensor([ids[k] for k in positive_keys], dtype=torch.long)
        passage_keys = torch.tensor([ids[k] for k in passage_keys], dtype=torch.long)
    mask = passage_keys.unsqueeze(0) == positive_keys.unsqueeze(1)
    n = positive_keys.shape[0]
    mask[torch.arange(n), torch.arange(n)] = False  # each query's own positive is its target
    return mask


def multiple_negatives_ranking(queries: torch.Tensor, passages: torch.Tensor, temperature: float = 0.05,
                               mask: torch.Tensor | None = None, symmetric: bool = False) -> torch.Tensor:
    """Cross-entropy of each query over all the batch's passages (its positive the target), similarities
    divided by `temperature`. Masked entries (`mask` True) are left out of the softmax. `symmetric` adds the
    same loss from each positive over the batch's queries, and averages the two."""
    n = queries.shape[0]
    if passages.shape[0] < n:
        raise ValueError(f"{passages.shape[0]} passages for {n} queries: the batch's positives come first")
    logits = queries @ passages.T / temperature  # [B, B + H]
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    target = torch.arange(n, device=queries.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        backward = passages[:n] @ queries.T / temperature  # [B, B]: each positive over the queries
        if mask is not None:
            # Query j whose positive is the same document as positive i's: not a negative of positive i.
            backward = backward.masked_fill(mask[:, :n].T, float("-inf"))
        loss = (loss + F.cross_entropy(backward, target)) / 2
    return loss


def group_scores(queries: torch.Tensor, passages: torch.Tensor, group_size: int) -> torch.Tensor:
    """[B, group_size]: each query's similarity to its own record's passages, positive first (row i of the
    positives, then its group_size - 1 hard negatives, which follow the positives record by record)."""
    n = queries.shape[0]
    negatives = passages[n:].reshape(n, group_size - 1, -1)
    own = torch.cat([passages[:n].unsqueeze(1), negatives], dim=1)  # [B, G, dim]
    return torch.einsum("bd,bgd->bg", queries, own)


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over each record's candidates: the teacher's softmax of scores / temperature against
    the student's log-softmax of its (already temperature-scaled) similarities; mean over records."""
    target = F.softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(F.log_softmax(student.float(), dim=-1), target, reduction="batchmean")


def margin_mse(student_positive: torch.Tensor, student_negative: torch.Tensor, teacher_positive: torch.Tensor,
               teacher_negative: torch.Tensor) -> torch.Tensor:
    """MarginMSE (Hofstätter et al.): the student's score margin between a positive and a negative matches the
    teacher's, mean((s+ - s-) - (t+ - t-))^2; the scales of the two need not agree, only their margins."""
    return F.mse_loss(student_positive - student_negative, teacher_positive - teacher_negative)
