"""Training: one loop, many tasks.

``loop`` (the loop behind every ``umt`` training command), ``tasks`` (what each task builds and
its loss), ``step`` (one optimizer step), ``optim`` (AdamW groups, cosine schedules),
``distributed`` (process groups, DDP / FSDP2, resumable sampler), ``checkpoint`` (atomic,
pickle-free checkpoints), ``runs`` (run folders, metrics), ``visualize`` (``umt
visualize-mask``). The library (models, masking, losses, data) never imports this package.
"""

from __future__ import annotations

from collections.abc import Callable

from umt.config import Config
from umt.train.loop import RunResult, train


def pretrain(cfg: Config, echo: Callable[[str], None] | None = None) -> RunResult:
    """Stage-1 pretraining as ``cfg`` says (:class:`umt.train.tasks.Stage1Task` in the loop).

    Under torchrun with the gloo backend, end the worker process with
    :func:`umt.train.distributed.exit_process` after this returns (``umt pretrain`` does)."""
    from umt.train.tasks import Stage1Task

    return train(cfg, Stage1Task, echo)


def finetune(cfg: Config, echo: Callable[[str], None] | None = None) -> RunResult:
    """Classification fine-tuning as ``cfg`` (a :class:`umt.config.FinetuneConfig`) says
    (:class:`umt.train.tasks.ClassifyTask` in the loop)."""
    from umt.train.tasks import ClassifyTask

    return train(cfg, ClassifyTask, echo)


__all__ = ["RunResult", "finetune", "pretrain", "train"]
