"""Training: one loop, many tasks.

``loop`` (the loop behind every ``umt`` training command), ``tasks`` (what each task builds and
its loss), ``step`` (one optimizer step), ``optim`` (AdamW groups, cosine schedules),
``distributed`` (process groups, DDP / FSDP2, resumable sampler), ``checkpoint`` (atomic,
pickle-free checkpoints), ``runs`` (run folders, metrics), ``visualize`` (``umt
visualize-mask``). The library (models, masking, losses, data) never imports this package.
"""

from __future__ import annotations

from collections.abc import Callable

from umt.config import TaskConfig
from umt.train.loop import RunResult, train


def pretrain(cfg: TaskConfig, echo: Callable[[str], None] | None = None) -> RunResult:
    """Pretraining as ``cfg`` says: stage 1 (:class:`umt.train.tasks.Stage1Task`) or, for a
    ``stage2`` recipe, video-text stage 2 (:class:`umt.train.tasks.VideoTextTask`).

    Under torchrun with the gloo backend, end the worker process with
    :func:`umt.train.distributed.exit_process` after this returns (``umt pretrain`` does)."""
    from umt.train.tasks import task_class

    return train(cfg, task_class(cfg.task), echo)


def finetune(cfg: TaskConfig, echo: Callable[[str], None] | None = None) -> RunResult:
    """Fine-tuning as ``cfg`` says: classification (:class:`umt.train.tasks.ClassifyTask`) or,
    for a ``finetune-retrieval`` recipe, text-video retrieval or multiple choice
    (:class:`umt.train.tasks.VideoTextTask`), ``finetune-ava`` AVA detection
    (:class:`umt.train.tasks.DetectionTask`), ``finetune-qa`` open-ended video QA
    (:class:`umt.train.tasks.QATask`)."""
    from umt.train.tasks import task_class

    return train(cfg, task_class(cfg.task), echo)


__all__ = ["RunResult", "finetune", "pretrain", "train"]
