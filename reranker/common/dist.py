"""Everything distributed lives here: rank queries, process-group set-up for our own jobs, sharding, gathering.

Data, model and loss code never call torch.distributed. (Training's process group is the Trainer's.)
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if is_initialized():
        return dist.get_rank()
    # Before a process group exists, torchrun's environment already says the rank.
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    if is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    return rank() == 0


def init_from_env() -> str | None:
    """Join torchrun's process group for a job without a Trainer (mining). Returns this rank's CUDA device."""
    if world_size() <= 1 or is_initialized():
        return None
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}"
    dist.init_process_group("gloo")
    return None


def shard(n: int) -> np.ndarray:
    """The row indices this rank handles: every world_size-th, so shards differ by at most one row."""
    return np.arange(rank(), n, world_size())


def gather_shards(local: np.ndarray, n: int) -> np.ndarray | None:
    """Reassemble per-rank rows (from `shard(n)`) on rank 0, in the original order; None on other ranks."""
    if not is_initialized() or world_size() == 1:
        return local
    parts = [None] * world_size() if is_main_process() else None
    dist.gather_object(local, parts, dst=0)
    if not is_main_process():
        return None
    out = np.empty((n, local.shape[1]), dtype=local.dtype)
    for r, part in enumerate(parts):
        out[r::world_size()] = part
    return out


def all_gather_objects(obj) -> list:
    """Every rank's object, in rank order, on every rank (pickled by torch.distributed between our own processes,
    never from a file); [obj] in one process."""
    if not is_initialized() or world_size() == 1:
        return [obj]
    parts = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return parts


def barrier() -> None:
    """Every rank waits here for the others (nothing in one process)."""
    if is_initialized() and world_size() > 1:
        dist.barrier()


def shard_batches(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """This rank's items when the items in `order` are cut into batches of `batch_size` and the batches dealt out
    in turn (batch i to rank i mod world_size), and every rank's share in rank order.

    Whole batches are dealt, not items, so each batch is the batch one process would form: padding, and therefore
    every score, is the same as in one process."""
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    shares = [np.concatenate(batches[r::world_size()]) if batches[r::world_size()] else
              np.empty(0, dtype=np.int64) for r in range(world_size())]
    return shares[rank()], shares


def _all_sizes(n: int, device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s.item()) for s in sizes]


def _gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows, rank order; ranks may hold different numbers (padded for the collective, then cut)."""
    most = max(sizes)
    padded = tensor.new_zeros((most, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows summed over every rank's loss:
    with DDP's gradient average on top, W ranks of b queries get the gradient of one process's batch of W x b."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.sizes = _all_sizes(tensor.shape[0], tensor.device)
        ctx.rank = rank()
        return _gather_rows(tensor, ctx.sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # all_reduce rather than reduce_scatter: gloo (CPU) has no reduce_scatter
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Rows of every rank concatenated in rank order, differentiable; the tensor itself in one process."""
    if not is_initialized() or world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Rows of every rank concatenated in rank order, without gradient (ids, labels); the tensor in one process."""
    if not is_initialized() or world_size() == 1:
        return tensor
    return _gather_rows(tensor, _all_sizes(tensor.shape[0], tensor.device))


def rank_offset(n: int) -> int:
    """Where this rank's first row lands among everyone's gathered rows (ranks before it hold the ones ahead)."""
    if not is_initialized() or world_size() == 1:
        return 0
    return sum(_all_sizes(n, torch.device("cpu") if dist.get_backend() == "gloo" else torch.device("cuda"))[: rank()])


def destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()
