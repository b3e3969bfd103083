"""Training tasks: what each builds (models, data) and its loss for one micro-batch.

``stage1`` (UMA, ``umt pretrain``), ``video_text`` (stage 2 with ``umt pretrain`` and retrieval
fine-tuning with ``umt finetune``), ``classify`` (``umt finetune``), ``videomae`` (VideoMAE pixel
reconstruction, ``umt pretrain`` with a ``videomae`` recipe), ``detection`` (AVA action
detection, ``umt finetune`` with a ``finetune-ava`` recipe), ``video_qa`` (open-ended video QA,
``umt finetune`` with a ``finetune-qa`` recipe). The loop
(:mod:`umt.train.loop`) never names a task.
"""

from umt.train.tasks.base import RunContext, Task
from umt.train.tasks.classify import ClassifyTask
from umt.train.tasks.detection import DetectionTask
from umt.train.tasks.stage1 import Stage1Task
from umt.train.tasks.video_qa import QATask
from umt.train.tasks.video_text import VideoTextTask
from umt.train.tasks.videomae import VideoMAETask

TASKS: dict[str, type[Task]] = {
    "pretrain": Stage1Task,
    "finetune": ClassifyTask,
    "stage2": VideoTextTask,
    "finetune-retrieval": VideoTextTask,
    "videomae": VideoMAETask,
    "finetune-ava": DetectionTask,
    "finetune-qa": QATask,
}


def task_class(task: str) -> type[Task]:
    """The task class that runs a config's ``task``."""
    return TASKS[task]


__all__ = [
    "TASKS",
    "ClassifyTask",
    "DetectionTask",
    "QATask",
    "RunContext",
    "Stage1Task",
    "Task",
    "VideoMAETask",
    "VideoTextTask",
    "task_class",
]
