"""Training tasks: what each builds (models, data) and its loss for one micro-batch.

``stage1`` (UMA, ``umt pretrain``), ``video_text`` (stage 2 with ``umt pretrain`` and retrieval
fine-tuning with ``umt finetune``), ``classify`` (``umt finetune``), ``videomae`` (VideoMAE pixel
reconstruction, ``umt pretrain`` with a ``videomae`` recipe), ``detection`` (AVA action
detection, ``umt finetune`` with a ``finetune-ava`` recipe), ``video_qa`` (open-ended video QA,
``umt finetune`` with a ``finetune-qa`` recipe). Which class runs which ``task`` is registered
once, with the task's config (:func:`umt.config.registry.register_task`). The loop
(:mod:`umt.train.loop`) never names a task.
"""

from __future__ import annotations

import importlib

from umt.config.registry import task_entry
from umt.train.tasks.base import RunContext, Task


def task_class(task: str) -> type[Task]:
    """The task class that runs a config's ``task`` (its module imported now)."""
    module, _, name = task_entry(task).task_path.partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["RunContext", "Task", "task_class"]
