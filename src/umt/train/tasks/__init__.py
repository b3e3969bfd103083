"""Training tasks: what each builds (models, data) and its loss for one micro-batch.

``stage1`` (UMA, ``umt pretrain``), ``classify`` (``umt finetune``). The loop (:mod:`umt.train.loop`) never names a task.
"""

from umt.train.tasks.base import RunContext, Task
from umt.train.tasks.classify import ClassifyTask
from umt.train.tasks.stage1 import Stage1Task

__all__ = ["ClassifyTask", "RunContext", "Stage1Task", "Task"]
