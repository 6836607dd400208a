"""Processes and devices, in one place for every entry point (training, `eval --checkpoint`, the
benchmarks): `setup_distributed()` says which rank this process is, how many there are, and on which
device it runs; the loader reads that rank's part of the data on that device.

Plain `python ...` runs one process; under `torchrun` the usual environment variables (RANK,
WORLD_SIZE, LOCAL_RANK) are set and we join the process group: NCCL on CUDA, gloo on the CPU.
Device: None picks CUDA when torch sees a GPU, else the CPU; "cuda" is this process's local GPU
(cuda:LOCAL_RANK); "cuda:K" is GPU K (one process per node only). A CUDA device torch cannot use is
an error, never a silent fall-back to the CPU.
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


def resolve_device(device: str | torch.device | None, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """The device a process runs on (see the module docstring); ValueError/RuntimeError when it cannot."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r}: not a torch device ({e})") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"device must be cpu or cuda[:N], got {device!r}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but torch {torch.__version__} (CUDA "
                           f"{torch.version.cuda}) sees no usable GPU; fix the driver/torch build or pass --device cpu")
    if dev.index is None:
        dev = torch.device("cuda", local_rank)
    elif local_world_size > 1:
        raise ValueError(f"device {device!r} names one GPU, but {local_world_size} processes run on this node; "
                         "pass --device cuda (each process takes cuda:LOCAL_RANK)")
    if dev.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {dev} does not exist: torch sees {torch.cuda.device_count()} GPU(s)")
    return dev


def setup_distributed(device: str | torch.device | None = None) -> Dist:
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
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


def gather_to_main(obj) -> list | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0 and None elsewhere; [obj] without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out
