"""Process groups, model wrapping (DDP / FSDP2) and a resumable distributed sampler.

One process on CPU or GPU needs nothing; many processes come from ``torchrun`` (which sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR), on one node or many.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from umt.config import TaskConfig
from umt.errors import InputError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    joined: bool = False  # in a process group (torchrun), even of one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.joined


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(cfg: TaskConfig) -> DistInfo:
    """Join the process group when launched by torchrun (with one process too when
    ``dist.strategy`` names ddp or fsdp: the wrapping runs as it would on more); otherwise a
    single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.train.device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    join = world > 1 or (torchrun and cfg.dist.strategy in ("ddp", "fsdp"))
    if join and not dist.is_initialized():
        backend = cfg.dist.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(minutes=cfg.dist.timeout_min),
            **({"device_id": device} if device.type == "cuda" else {}),
        )
    return DistInfo(
        rank=rank, world_size=world, local_rank=local, device=device,
        joined=dist.is_available() and dist.is_initialized(),
    )  # fmt: skip


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a torchrun worker now, with ``code``, skipping the interpreter's teardown.

    Gloo's worker threads may still be releasing the tensors of the last collectives when the
    interpreter finalises (the wrapped model keeps the process group alive past
    ``destroy_process_group``); a thread taking the GIL at that point aborts the process
    ("terminate called without an active exception": pytorch/pytorch PR 179291 describes it;
    seen here in about 1 of 15 two-process runs on a loaded 2-core machine). Call it only
    after everything the run writes is closed: it flushes stdout, stderr and logging."""
    import logging
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over processes (``t`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()


def all_reduce_sum_int(value: int, device: torch.device) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def broadcast_str(text: str | None) -> str | None:
    """Rank 0's string on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def fsdp_available() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        try:
            from torch.distributed._composable.fsdp import fully_shard  # noqa: F401
        except ImportError:
            return False
    return True


def _fully_shard():
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
    return fully_shard, MixedPrecisionPolicy


def strategy(cfg: TaskConfig, info: DistInfo) -> str:
    """ "none", "ddp" or "fsdp" for this run."""
    if not info.distributed:
        return "none"
    if cfg.dist.strategy == "fsdp":
        if not fsdp_available():
            raise InputError("dist.strategy=fsdp needs torch's FSDP2 (fully_shard); use ddp")
        return "fsdp"
    return "ddp"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP / ``torch.compile`` wrapper (FSDP2 shards in place: itself)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def wrap_model(
    model: nn.Module, cfg: TaskConfig, info: DistInfo, amp_dtype: torch.dtype | None
) -> nn.Module:
    """Apply the data-parallel strategy outside the model code.

    DDP: one replica per process, gradients averaged. FSDP2: each transformer block and the root
    are sharded with ``fully_shard`` (parameters gathered per block), for models too big to
    replicate."""
    how = strategy(cfg, info)
    if how == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if how == "fsdp":
        fully_shard, MixedPrecisionPolicy = _fully_shard()
        mp = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)
        inner = getattr(model, "student", model)
        for block in getattr(inner, "blocks", []):
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model
    return model


class ResumableSampler(Sampler):
    """Like ``DistributedSampler`` (shuffle with ``seed + epoch``, rank r takes every
    world-th index) but always drops the tail so every process has the same number of full
    batches, and can start part-way through an epoch (``set_position``) for exact resumes.

    Rank r's k-th batch of size b together with the other ranks' k-th batches is exactly the
    single-process k-th batch of size b x world, so N processes see the same clips per step as one
    process with an N-times larger batch.

    ``with_epoch`` yields ``(epoch, index)`` pairs, which :class:`umt.data.VideoDataset` takes
    as items: the epoch then reaches persistent DataLoader workers without re-creating them."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        with_epoch: bool = False,
    ) -> None:
        self.n = num_samples
        self.with_epoch = with_epoch
        self.batch_size = batch_size
        self.world = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0
        self.batches_per_rank = num_samples // (batch_size * world_size)
        if self.batches_per_rank == 0:
            raise InputError(
                f"{num_samples} clips are fewer than one step's batch "
                f"({batch_size} x {world_size} processes)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start_batch = 0

    def set_position(self, epoch: int, batch: int) -> None:
        """Start ``epoch`` at its ``batch``-th (per-process) batch."""
        self.epoch = epoch
        self.start_batch = batch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        used = self.batches_per_rank * self.batch_size * self.world
        mine = self._order()[:used][self.rank :: self.world][self.start_batch * self.batch_size :]
        if self.with_epoch:
            return iter([(self.epoch, i) for i in mine])
        return iter(mine)

    def __len__(self) -> int:
        return (self.batches_per_rank - self.start_batch) * self.batch_size

    @property
    def num_batches(self) -> int:
        return self.batches_per_rank


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
