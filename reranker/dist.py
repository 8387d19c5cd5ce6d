"""Everything distributed lives here: rank queries. Data, model and loss code never call torch.distributed."""

from __future__ import annotations

import os

import torch.distributed as dist


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    # Before the Trainer initialises the process group, torchrun's environment already says the rank.
    return int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    return rank() == 0
