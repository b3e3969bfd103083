"""Process-group helpers for code that runs with or without ``torch.distributed``.

Every function works in a single process (no process group): rank 0 of 1, nothing to gather.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["gather_objects", "rank_world", "unwrap_ddp"]


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` when not distributed)."""
    import torch.distributed as dist

    _, world = rank_world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (whose forward would sync buffers), else
    ``model`` itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
