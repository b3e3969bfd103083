"""Validation, a component the loop calls (as torchtitan's ``components/validate.py``).

It owns what every task's validation shares: eval mode (restored afterwards), no gradients,
where the work runs (rank 0 alone, or every rank for a collective evaluation), the loop's
precision around each batch, and the metrics reaching every rank. A task gives only its part:
its validation set, a per-batch step and a reduction into metrics
(:meth:`~umt.train.tasks.base.Task.eval_dataset`, :meth:`~umt.train.tasks.base.Task.eval_step`,
:meth:`~umt.train.tasks.base.Task.eval_metrics`), or, for a protocol that needs the whole set at
once (retrieval's similarity matrix, QA's answer ranking), one whole-set function
(:meth:`~umt.train.tasks.base.Task.evaluate`); and when to validate
(:meth:`~umt.train.tasks.base.Task.evaluates`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from umt.train.data import build_loader
from umt.train.distributed import broadcast_str
from umt.utils.device import maybe_autocast

if TYPE_CHECKING:
    from umt.train.tasks.base import Task


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients for the block; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def eval_batches(task: Task, model: nn.Module, dataset: torch.utils.data.Dataset) -> list[Any]:
    """``task.eval_step`` over every batch of ``dataset`` in order (the loop's loader, under the
    run's autocast): the per-batch results, for ``task.eval_metrics``. Call it inside
    :func:`evaluating`."""
    ctx = task.ctx
    loader = build_loader(
        dataset,
        task.eval_batch_size(),
        task.collate(),
        task.cfg.data.num_workers,
        ctx.device,
    )
    parts = []
    for batch in loader:
        with maybe_autocast(ctx.device, ctx.amp_dtype):
            parts.append(task.eval_step(model, batch))
    return parts


def evaluate_here(task: Task, model: nn.Module, epoch: int) -> dict[str, Any] | None:
    """The task's validation metrics computed on this process: eval mode, no gradients, the
    per-batch protocol (or the task's whole-set function), the mode restored."""
    with evaluating(model):
        dataset = task.eval_dataset()
        if dataset is None:
            return task.evaluate(model, epoch)
        return task.eval_metrics(eval_batches(task, model, dataset))


def validate(task: Task, model: nn.Module, epoch: int) -> dict[str, Any] | None:
    """Validate ``model`` after ``epoch`` as ``task`` says; every rank calls it and gets the
    same metrics (None: nothing to report). Rank 0 computes and broadcasts them, unless the
    task's evaluation is collective (``task.eval_on_every_rank``: every rank computes)."""
    if task.eval_on_every_rank:
        return evaluate_here(task, model, epoch)
    metrics = evaluate_here(task, model, epoch) if task.ctx.info.is_main else None
    text = broadcast_str(json.dumps(metrics) if metrics is not None else None)
    return json.loads(text) if text else None
