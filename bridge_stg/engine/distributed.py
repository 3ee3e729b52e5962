"""Process-group setup and collectives. Works under torchrun (env vars) and as a single plain process.

CPU runs use gloo, GPU runs NCCL. Every collective here is a no-op in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistContext:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over ranks (keys must agree; missing ones count as absent, not zero)."""
    gathered = all_gather_objects(values)
    keys = sorted({k for g in gathered for k in g})
    return {k: sum(g[k] for g in gathered if k in g) / sum(1 for g in gathered if k in g) for k in keys}


def shutdown() -> None:
    """Leave the process group; the barrier first avoids the occasional abort at exit seen with gloo."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def any_over_ranks(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (every rank must call this)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
