"""Scoring a training batch in length-sorted slices: the scores and gradients of one pass, fewer padded tokens, and
on a CPU much faster.

A batch of groups is padded to its longest pair. Forward passes over slices of pairs of similar length, each cut
to the columns its rows use (right padding; left-padded rows keep their width), give every pair the score it gets
in the whole batch (padding is masked), and one backward over the reassembled scores gives the same gradients.
With dropout the masks are drawn per slice: the same training on another random path, as another seed would be.
Every slice's activations are kept until the backward, so slicing saves no memory.

On the CPU the gain is mostly not the padding: the attention of 32 pairs of 300 tokens works on far more memory
than the caches hold. Training on scifact pairs ran 1.39x faster with slices of 2048 tokens than in one pass
(results/peers.md), while pairs of about 100 tokens gained nothing in a one-step probe. On a GPU one pass over
the whole batch is assumed the faster (not measured here), so slicing is off there by default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reranker.common.errors import ConfigError

# The default budget on the CPU: padded tokens per forward pass.
CPU_FORWARD_TOKENS = 2048
# Slices are padded to a multiple of this, as the collator pads the batch.
MULTIPLE = 8
# The inputs whose columns are tokens, cut with the slice; any other per-pair input is taken by row only.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def resolve_forward_tokens(value: int | None, device_type: str) -> int:
    """--forward_tokens as given (None: the device's default): 0 means the whole batch in one pass."""
    if value is None:
        return CPU_FORWARD_TOKENS if device_type == "cpu" else 0
    return value


def check_slicing(args, forward_tokens: int) -> None:
    """Refuse the settings under which ranks scoring different numbers of slices would fail or hang: each forward
    pass that talks to the other ranks (DDP's buffer broadcast, FSDP's and DeepSpeed's parameter gathering) would
    wait on passes the others never make, and reentrant checkpointing marks a parameter ready once per slice,
    which DDP refuses."""
    if not forward_tokens:
        return
    fix = "set --forward_tokens 0 (one forward pass per batch) or drop"
    if args.fsdp or args.deepspeed:
        raise ConfigError(f"--forward_tokens with {'--fsdp' if args.fsdp else '--deepspeed'}: the ranks score their "
                          f"batches in different numbers of forward passes, and each pass gathers parameters from "
                          f"all ranks; {fix} {'--fsdp' if args.fsdp else '--deepspeed'}")
    if args.world_size <= 1:
        return
    if args.ddp_broadcast_buffers:
        raise ConfigError("--ddp_broadcast_buffers with --forward_tokens: the ranks score their batches in "
                          "different numbers of forward passes, and each pass would wait on a broadcast of the "
                          f"buffers that the other ranks do not make; {fix} --ddp_broadcast_buffers")
    checkpointing = getattr(args, "activation_checkpointing", False) or getattr(args, "gradient_checkpointing", False)
    kwargs = (getattr(args, "activation_checkpointing_kwargs", None) or getattr(args, "gradient_checkpointing_kwargs",
                                                                               None) or {})
    if checkpointing and kwargs.get("use_reentrant"):
        raise ConfigError("--forward_tokens with reentrant gradient checkpointing under torchrun: each slice's "
                          "checkpointed layers run their own backward and DDP refuses a parameter marked ready "
                          f"twice; {fix} use_reentrant (the non-reentrant default works)")


def length_slices(mask: torch.Tensor, budget: int) -> list[tuple[torch.Tensor, int]]:
    """(row indices, width) of slices in ascending width, each at most `budget` padded tokens (a wider row alone).

    A row's width is the columns up to its last token, rounded up to a multiple of MULTIPLE: its length with right
    padding, the full width with left padding. Only trailing columns are ever cut, so a left-padded row keeps its
    leading padding and a model that numbers positions by column (BERT) sees every token where it saw it in the
    whole batch."""
    columns = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    ends = (mask.bool() * columns).amax(1)
    order = torch.argsort(ends, stable=True).tolist()
    ends = ends.tolist()  # one device sync, not one per row
    slices, current, width = [], [], 0
    for row in order:
        row_width = min(mask.shape[1], -(-max(1, ends[row]) // MULTIPLE) * MULTIPLE)
        if current and (len(current) + 1) * max(width, row_width) > budget:
            slices.append((torch.tensor(current, device=mask.device), width))
            current, width = [], 0
        current.append(row)
        width = max(width, row_width)
    if current:
        slices.append((torch.tensor(current, device=mask.device), width))
    return slices


def by_length(score: Callable[[dict], torch.Tensor], inputs: dict[str, torch.Tensor], budget: int) -> torch.Tensor:
    """`score(inputs)` (one row of output per pair) computed over length-sorted slices of at most `budget` padded
    tokens and put back in the batch's order; `budget` 0, or a batch that fits it, is one call."""
    mask = inputs.get("attention_mask")
    if not budget or mask is None or mask.dim() != 2 or mask.numel() <= budget:
        return score(inputs)
    rows, width = mask.shape
    parts, order = [], []
    for index, end in length_slices(mask, budget):
        part = {}
        for name, value in inputs.items():
            if not torch.is_tensor(value) or value.dim() == 0 or value.shape[0] != rows:
                part[name] = value
            elif name in TOKEN_INPUTS and value.dim() == 2 and value.shape[1] == width:
                part[name] = value[index, :end]
            else:  # one row per pair of something else (a seq2seq decoder start)
                part[name] = value[index]
        parts.append(score(part))
        order.append(index)
    inverse = torch.argsort(torch.cat(order))
    return torch.cat(parts)[inverse]
