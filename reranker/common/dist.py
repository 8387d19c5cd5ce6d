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


def destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()
