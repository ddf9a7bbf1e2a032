"""Process-group setup for ``torchrun``: one process per GPU (NCCL), or per CPU process (gloo).

A single process (no ``WORLD_SIZE`` in the environment) is the world of one; nothing here requires
``torchrun`` to be used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from plip_runtime.device import resolve_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str | None = None) -> DistEnv:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, device)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_from_main(env: DistEnv, value):
    """``value`` as the main rank has it, on every rank (a picklable object; other ranks pass anything, e.g. None).
    A collective: every rank must call it."""
    if not env.distributed:
        return value
    holder = [value if env.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
