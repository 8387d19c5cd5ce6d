"""Starting a fresh classification head from a linear probe instead of random weights.

A new head on an embedding checkpoint scores every passage alike, so the group loss starts at chance, ln(group
size), and the encoder's gradient (which flows through the head's small random weights) is weak and
directionless: runs sit on that plateau for many steps, and how long varies with the seed. Fitting the last
linear layer on the frozen features of a few training groups first gives the encoder a data-derived direction
from step one: the probe alone need not rank well, yet runs leave the plateau sooner (results/ablations.md,
the seed ablation). Only the head's starting point changes; the model stays a plain
sequence-classification model.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from reranker.common import precision
from reranker.training.losses import chance_loss, softmax_ce

logger = logging.getLogger(__name__)


def fit_linear_head(features: torch.Tensor, l2: float = 1e-2, steps: int = 100, positives: int = 1) -> torch.Tensor:
    """Weights w minimising the group softmax loss of `features @ w` plus l2 * |w|^2.

    features: [n_groups, group_size, dim], the first `positives` of each group positive. A bias is irrelevant
    to a softmax within the group, so none is fitted. The L2 term keeps w finite when the groups are separable
    (with a few hundred groups in hundreds of dimensions they often are). Convex, so L-BFGS from zero finds the
    optimum.
    """
    x = features.float()
    w = torch.zeros(x.shape[-1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = group_loss(x, w, positives) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def group_loss(features: torch.Tensor, w: torch.Tensor, positives: int = 1) -> torch.Tensor:
    """The training loss (softmax_ce) of the linear scores `features @ w`."""
    return softmax_ce(features.float() @ w, positives)


def final_fresh_linear(model) -> tuple[str, torch.nn.Linear] | None:
    """The freshly initialised linear layer with one output (the score), if the model has one."""
    fresh = set(getattr(model, "fresh_parameter_names", []))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.out_features == 1 and f"{name}.weight" in fresh:
            return name, module
    return None


def probe_features(model, layer: torch.nn.Module, batches, device, autocast_dtype=None) -> torch.Tensor:
    """The inputs of `layer` for every pair of the batches, in eval mode (no dropout), without gradients.

    Encoder heads see one vector per pair. Decoder-only models (GPT-2, Llama, Qwen ...) apply their score layer
    to every token and then keep the last real one; the same token is taken here, by the same rule.
    """
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    autocast = precision.autocast(device.type, autocast_dtype)
    features = []
    try:
        with torch.no_grad(), autocast:
            for batch in batches:
                captured.clear()
                model(**{k: v.to(device) for k, v in batch.items()})
                x = captured[-1]
                if x.dim() == 3:
                    x = x[torch.arange(x.shape[0]), last_real_token(batch["input_ids"], model.config.pad_token_id)]
                features.append(x)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(features)


def last_real_token(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Index of each row's last non-pad token: transformers' rule for sequence classification by decoders."""
    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1)
    positions = torch.arange(input_ids.shape[1])
    return (positions * (input_ids.cpu() != pad_token_id)).argmax(-1)


def init_head_from_probe(model, dataset, collator, n_groups: int, seed: int, device, autocast_dtype=None,
                         batch_groups: int = 8, l2: float = 1e-2) -> dict | None:
    """Fit the fresh scoring layer on `n_groups` seeded training groups; held-out loss reported.

    Returns a summary, or None when the model has no fresh one-output linear layer (a checkpoint that already
    is a cross-encoder keeps its trained head).
    """
    found = final_fresh_linear(model)
    if found is None:
        logger.info("--head_init probe: the checkpoint has no fresh scoring layer; its own head is kept")
        return None
    name, layer = found
    if getattr(dataset, "kind", "group") != "group" or dataset.group_size < 2:
        # One passage per record (InRanker soft labels): a softmax over one score has nothing to fit.
        logger.info("--head_init probe: needs groups of a positive and negatives; the head starts at random")
        return None
    # Seeded, in a random order: the held-out half is not one source's tail when several are mixed.
    picks = np.random.default_rng(seed).permutation(len(dataset))[:n_groups]
    groups = [dataset[int(i)] for i in picks]
    group_size = len(groups[0].passages)
    positives = getattr(dataset, "positives", 1)
    batches = []
    for start in range(0, len(groups), batch_groups):
        batch = collator(groups[start:start + batch_groups])
        batches.append({k: v for k, v in batch.items() if k not in ("teacher_scores", "soft_labels")})
    features = probe_features(model, layer, batches, device, autocast_dtype).view(len(groups), group_size, -1)
    # Fit on one half and report the other: the held-out loss says whether the probe found signal or noise.
    half = len(groups) // 2
    w_half = fit_linear_head(features[:half], l2=l2, positives=positives)
    held_out = float(group_loss(features[half:], w_half, positives))
    w = fit_linear_head(features, l2=l2, positives=positives)
    with torch.no_grad():
        layer.weight.copy_(w.to(layer.weight.dtype).view_as(layer.weight))
        if layer.bias is not None:
            layer.bias.zero_()
    chance = chance_loss(group_size, positives)
    summary = {"layer": name, "groups": len(groups), "chance": chance,
               "train_loss": float(group_loss(features, w, positives)), "held_out_loss": held_out,
               "weight_norm": float(w.norm())}
    logger.info("Head %s initialised by a linear probe on %d training groups: group loss %.3f (held out: %.3f "
                "on %d groups; chance ln %d = %.3f)", name, len(groups), summary["train_loss"], held_out,
                len(groups) - half, group_size - positives + 1, chance)
    if held_out >= summary["chance"]:
        # Expected for a bi-encoder's [CLS]: the probe then sets a starting direction, not a ranker.
        logger.info("The probe's held-out loss is not below chance: the frozen features carry little relevance "
                    "signal yet, and training must find it")
    return summary
