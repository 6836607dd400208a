"""One place that knows about processes and devices: `setup_distributed()`.

Plain `python train/main.py` runs one process; under `torchrun` the usual environment variables
(RANK, WORLD_SIZE, LOCAL_RANK) are set and we join the process group: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        cuda = dev.type == "cuda"
        dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=dev if cuda else None)
    return Dist(rank, world, local, dev)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def print0(d: Dist, *args, **kwargs) -> None:
    if d.is_main:
        print(*args, **kwargs, flush=True)


def all_reduce_mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Mean over processes (a sync point: call only when logging)."""
    if d.world_size > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= d.world_size
    return t
