"""Device choice and the little of torch.distributed the trainer needs.

Single process is the default and what CI proves. Under torchrun (`WORLD_SIZE` > 1) every rank
runs the same code: it joins the process group, trains its shard of each batch under DDP, and
only rank 0 writes checkpoints and publishes; the others wait at a barrier so that no rank
exits (and lets the Job look finished) before the version exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from certmodel.runtime.errors import UsageError


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: rank, world size, device and weights dtype."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """`auto` = CUDA when present, else CPU; `cuda` without a GPU is a usage error."""
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise UsageError("--device cuda requested but no CUDA device is available")
    if requested in {"auto", "cuda"} and has_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def select_dtype(precision: str, device: torch.device) -> torch.dtype:
    """`auto` = bf16 on a GPU that supports it (half the memory, same range), else fp32.

    bf16 on CPU is allowed when asked for, but it is slower than fp32 there on most machines.
    """
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def start(device: str, precision: str) -> Runtime:
    """Join the process group when launched by torchrun, and pick device and dtype."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = select_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Runtime(rank, world, local_rank, chosen, select_dtype(precision, chosen))


def stop(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def all_sum(runtime: Runtime, value: float) -> float:
    """Sum a number over ranks (token counts, loss sums); identity in one process."""
    if not runtime.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def wrap(model: Any, runtime: Runtime) -> Any:
    """DDP-wrap for several ranks; the bare model otherwise."""
    if not runtime.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
