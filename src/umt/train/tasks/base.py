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
    :meth:`build_data`, :meth:`build_model`. Then the loop compiles the blocks of
    :meth:`compile_roots` (``train.compile``), wraps the model (DDP / FSDP2), builds
    the optimizer over :meth:`param_groups` and calls :meth:`loss` per micro-batch under the
    run's autocast; after the epochs :meth:`evaluates` names, it validates through
    :mod:`umt.train.validate`; at the end it calls :meth:`finish`. Helpers tasks share live in
    :mod:`umt.train.tasks.common`.
    """

    name = "task"  # the command's name, printed at the start of a run and in the log
    loss_name = "loss"  # what the loss is called in the end-of-run line
    # One line saying which teacher the task distils (``build_model`` sets it; the loop returns
    # it in ``RunResult.teacher``); empty for a task without a teacher.
    teacher_desc: str = ""
    # Config keys whose change makes a checkpoint unusable for a resume ("section.key"); the
    # loop compares them with the checkpoint's config.yaml. Sections listed whole.
    resume_sections: tuple[str, ...] = ("model", "data")
    resume_ignored: frozenset[str] = frozenset(
        {
            "data.root",
            "data.num_workers",
            "data.synthetic_root",
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
    @classmethod
    def prepare(cls, cfg: Any, say: Callable[[str], None] | None) -> None:
        """Work each process does before the processes join and the task is built, e.g. making
        a cached input on first use (the built-in teacher, itself trained by the loop);
        ``say``: where its lines go (None: the loop's default, printing)."""

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

    def compile_roots(self, model: nn.Module) -> list[nn.Module]:
        """The modules whose repeated blocks ``train.compile`` compiles (see
        :mod:`umt.train.compile`): ``model`` (a teacher inside it included); a task that keeps a
        frozen module outside the model (stage 1's teacher) adds it."""
        return [model]

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

    def after_step(self, step: int, loss: float) -> None:
        """Hears each optimizer step's number (from 1) and loss, on every process, after the
        step (e.g. progress lines of a task run inside another command)."""

    def step_metrics(self) -> dict[str, float]:
        """Extra numbers logged with each step (e.g. the parts of a summed loss), from the
        last micro-batch :meth:`loss` computed on this process."""
        return {}

    # ---------------------------------------------------------------- evaluation
    # The loop validates through :func:`umt.train.validate.validate`: it sets eval mode (and
    # restores it), turns gradients off, runs the work where the task says, opens the run's
    # autocast around each batch and hands every rank the same metrics. A task gives a per-batch
    # protocol (:meth:`eval_dataset`, :meth:`eval_step`, :meth:`eval_metrics`) or a whole-set
    # function (:meth:`evaluate`), and says when (:meth:`evaluates`).

    # The metric whose best value is kept as ``<run>/best/`` (higher is better); None: no best.
    best_metric: str | None = None
    # False: rank 0 alone computes the validation, the loop broadcasts its metrics. True: the
    # validation is collective, every rank calls it (e.g. a whole-set protocol that shards the
    # set over the ranks and gathers the counts itself) and gets the same metrics.
    eval_on_every_rank: bool = False

    def evaluates(self, epoch: int | None) -> bool:
        """Whether to validate after ``epoch`` (``None``: the run ended inside an epoch)."""
        return False

    def validation_due(self, epoch: int | None) -> bool:
        """``eval.every_epochs`` of the recipe: after every N-th epoch and when the run ends
        inside an epoch; never with 0."""
        every = self.cfg.eval.every_epochs
        return every > 0 and (epoch is None or (epoch + 1) % every == 0)

    def eval_dataset(self) -> torch.utils.data.Dataset | None:
        """The validation set of a per-batch protocol, batched by the loop's loader with
        :meth:`collate` and :meth:`eval_batch_size`; None: :meth:`evaluate` is the protocol."""
        return None

    def eval_batch_size(self) -> int:
        """Clips per validation batch."""
        return self.cfg.train.batch_size

    def eval_step(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """One validation batch (as collated, on the CPU): its part of the result, e.g. scores
        or counts. Runs in eval mode, without gradients, under the run's autocast."""
        raise NotImplementedError

    def eval_metrics(self, parts: list[Any]) -> dict[str, Any] | None:
        """The metrics from every batch's :meth:`eval_step` result, in the set's order."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any] | None:
        """A whole-set validation protocol (when :meth:`eval_dataset` is None): the metrics of
        ``model`` after ``epoch``. Runs in eval mode without gradients; it opens its own
        autocast to ``ctx.amp_dtype`` where the protocol computes in lower precision."""
        return None

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """End-of-run work on every rank (e.g. the final test; ``best``: the best-validation
        export, if any); returns lines for rank 0 to print."""
        return []
