"""What a task gives the training loop.

The loop (:mod:`umt.train.loop`) owns everything every task shares: processes, output folder,
optimizer and schedules, mixed precision, accumulation, clipping, checkpoints and exact resume,
logging, signals and guards. A task builds its models and its data and computes the loss of one
micro-batch; it never takes an optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import TaskConfig
from umt.train.distributed import DistInfo


def not_none(**kw: Any) -> dict[str, Any]:
    """The keyword arguments that are set (``None`` = keep the registry's default)."""
    return {k: v for k, v in kw.items() if v is not None}


def resolve_init(cfg: Any, resume_from: Path | None = None) -> tuple[str | None, str]:
    """Where a task's weights start, from ``cfg.model.init`` (a path, ``scratch`` or ``auto``:
    the latest `umt pretrain` run of ``cfg.model.init_recipe``): ``(checkpoint path or None
    for scratch, a sentence saying where the weights start)``. A resumed run
    (``resume_from``, the loop's choice) starts from its own checkpoint, not from
    ``model.init``, which it never reads."""
    if resume_from is not None:
        return str(resume_from), f"from the checkpoint this run resumes ({resume_from})"
    init = cfg.model.init
    if init == "scratch":
        return None, "from scratch (random init)"
    if init == "auto":
        from umt.train import runs

        found = runs.latest_run_dir(cfg.model.init_recipe)
        if found is None:
            return None, (
                f"from scratch: no 'umt pretrain' run of {cfg.model.init_recipe} with a "
                f"checkpoint under {runs.RUNS}/ (model.init auto)"
            )
        return str(found[1]), f"from the latest 'umt pretrain' run: {found[1]}"
    return init, f"from {init}"


def load_best_weights(net: nn.Module, best: Path | None, enabled: bool, strict: bool = True) -> str:
    """Load ``best/model.safetensors`` (the best-validation export) into ``net`` when ``enabled``
    and present; returns which weights ``net`` now holds, for the test's report line."""
    if not enabled or best is None or not (best / "model.safetensors").is_file():
        return "the last weights"
    from safetensors.torch import load_model

    load_model(net, str(best / "model.safetensors"), strict=strict)
    return f"the best-validation weights ({best})"


@dataclass
class RunContext:
    """What the loop decided before building the task: processes, device, precision."""

    info: DistInfo
    amp_dtype: torch.dtype | None = None  # autocast dtype (None = float32)
    # The checkpoint a resume continues from (set before Task.check): the model is built from
    # it; model.init is neither needed nor read.
    resume_from: Path | None = None

    @property
    def device(self) -> torch.device:
        return self.info.device


class Task:
    """One training task. Subclasses set ``name`` and ``loss_name`` and implement the
    ``build_*`` methods and :meth:`loss`.

    Call order, all before anything is written: :meth:`check` (settings only; cheap),
    :meth:`build_data`, :meth:`build_model`. Then the loop wraps the model (DDP / FSDP2), builds
    the optimizer over :meth:`param_groups` and calls :meth:`loss` per micro-batch.
    """

    name = "task"
    loss_name = "loss"
    # Config keys whose change makes a checkpoint unusable for a resume ("section.key"); the
    # loop compares them with the checkpoint's config.yaml. Sections listed whole.
    resume_sections: tuple[str, ...] = ("model", "data")
    resume_ignored: frozenset[str] = frozenset(
        {
            "data.root",
            "data.num_workers",
            "data.synthetic_root",
            "model.compile",
            "model.grad_checkpointing",
        }
    )

    def __init__(self, cfg: TaskConfig, ctx: RunContext) -> None:
        self.cfg = cfg
        self.ctx = ctx

    @property
    def reads_init(self) -> bool:
        """Whether the model starts from ``model.init`` (a resumed run builds it from its own
        checkpoint instead: ``model.init`` is then neither checked nor read)."""
        return self.ctx.resume_from is None

    # ---------------------------------------------------------------- building
    def check(self) -> None:
        """Refuse settings this task cannot run with (raise ``ConfigError``), before any work."""

    def build_data(self) -> torch.utils.data.Dataset:
        """The training set: map-style (items ``{"index": i, ...}``, indexable by
        ``(epoch, i)``) or an ``IterableDataset`` that streams (needs ``data.num_samples``)."""
        raise NotImplementedError

    def build_sampler(
        self,
        dataset: torch.utils.data.Dataset,
        batch_size: int,
        world_size: int,
        rank: int,
        seed: int,
    ) -> Any:
        """The sampler of a map-style training set: it yields ``(epoch, index)`` items, has
        ``num_batches`` (per process and epoch) and ``set_position(epoch, batch)`` for exact
        resumes. Default: every clip once per epoch, shuffled with ``seed + epoch``."""
        from umt.train.distributed import ResumableSampler

        return ResumableSampler(
            len(dataset), batch_size, world_size, rank, seed=seed, with_epoch=True
        )

    def collate(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        from umt.data import collate_videos

        return collate_videos

    def build_model(self) -> nn.Module:
        """The trainable module on ``ctx.device``: what the loop wraps, optimizes and saves."""
        raise NotImplementedError

    def export_model(self, model: nn.Module) -> nn.Module | None:
        """The plain model inside ``model`` whose constructor config goes beside each
        checkpoint's weights (``config.json``), so the checkpoint loads back on its own."""
        return None

    def export_files(self) -> dict[str, bytes]:
        """Files written beside each checkpoint's weights (e.g. a tokenizer's ``vocab.txt``)."""
        return {}

    def describe(self, model: nn.Module) -> list[str]:
        """Lines printed at the start of a run (sizes, teacher, ...)."""
        return []

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups (``params``, ``weight_decay``, optional ``lr_scale``)."""
        from umt.train.optim import default_param_groups

        return default_param_groups(model, self.cfg.optim.weight_decay)

    # ---------------------------------------------------------------- training
    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Move a collated batch's tensors to the device (what :meth:`loss` receives)."""
        dev = self.ctx.device
        return {
            k: v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) and k != "index" else v
            for k, v in batch.items()
        }

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        """The loss of one micro-batch (a scalar tensor with a graph to ``model``)."""
        raise NotImplementedError

    def step_metrics(self) -> dict[str, float]:
        """Extra numbers logged with each step (e.g. the parts of a summed loss), from the
        last micro-batch :meth:`loss` computed on this process."""
        return {}

    # ---------------------------------------------------------------- evaluation
    # The metric whose best value is kept as ``<run>/best/`` (higher is better); None: no best.
    best_metric: str | None = None

    def evaluates(self, epoch: int | None) -> bool:
        """Whether to validate after ``epoch`` (``None``: the run ended inside an epoch)."""
        return False

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        """Validation metrics (every rank calls it; the loop logs rank 0's)."""
        return None

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """End-of-run work on every rank (e.g. the final test; ``best``: the best-validation
        export, if any); returns lines for rank 0 to print."""
        return []
