"""Data-parallel training under ``torchrun`` (DDP; Li et al. 2020, arXiv:2006.15704).

A process is part of a distributed run when ``torchrun`` set ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; otherwise everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # the processes of this run on this machine

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """The process's place in a ``torchrun`` job (a single process when not launched so)."""
    try:
        return DistInfo(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world_size=max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))),
        )
    except (KeyError, ValueError):
        return DistInfo()


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """One GPU per process: ``cuda:LOCAL_RANK`` under torchrun."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def init(info: DistInfo, device: torch.device) -> bool:
    """Join the process group (nccl on CUDA, gloo on the CPU); True if this call created it."""
    if not info.enabled or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return True


def shutdown(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def sum_across(info: DistInfo, value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over all processes (the value itself for one process)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def any_across(info: DistInfo, flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any process (so all processes stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
