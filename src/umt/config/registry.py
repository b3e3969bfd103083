"""The one task registry: ``@register_task`` on a task's config class.

Each registration names the task (a recipe's ``task:``), the command that runs it (``umt
pretrain`` / ``umt finetune``) and the task class, as ``"module:Class"``: that class imports torch,
so it is imported only when a run starts (:func:`umt.train.tasks.task_class`). The config
classes, the commands and the validation (each config's ``validate()``) all come from here.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from umt.config._loader import ConfigError, suggest

if TYPE_CHECKING:
    from umt.config.common import TaskConfig

C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class TaskEntry:
    """One registered task: ``name`` (a recipe's ``task``), the ``command`` that runs it, its
    ``config_class`` and ``task_path``, its task class as ``"module:Class"`` (imported when a run
    starts, by :func:`umt.train.tasks.task_class`)."""

    name: str
    command: str
    config_class: type[TaskConfig]
    task_path: str


# name -> entry, in registration order (the order :mod:`umt.config` imports the schemas).
TASKS: dict[str, TaskEntry] = {}


def register_task(*, name: str, command: str, task: str) -> Callable[[C], C]:
    """Class decorator registering a task config class (put it above ``@dataclass``), e.g.::

        @register_task(name="pretrain", command="pretrain", task="umt.train.tasks.stage1:Stage1Task")
        @dataclass
        class Stage1Config(TaskConfig):
            task: Literal["pretrain"] = "pretrain"
            ...

    ``name`` is what a recipe's ``task:`` says (the class's ``task`` field must allow it; a name
    is registered once), ``command`` the ``umt`` command that runs it, ``task`` the task class.
    A class may carry several registrations (one per name). Its module is imported by
    :mod:`umt.config` (add it to the import line there)."""

    def register(cls: C) -> C:
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        allowed = typing.get_args(typing.get_type_hints(cls)["task"])
        if name not in allowed:
            raise ValueError(f"{cls.__name__}.task allows {list(allowed)}, not '{name}'")
        module, _, attr = task.partition(":")
        if not module or not attr:
            raise ValueError(f"task '{name}': {task!r} is not 'module:Class'")
        TASKS[name] = TaskEntry(name, command, cls, task)
        return cls

    return register


def task_entry(task: str) -> TaskEntry:
    """The registration of ``task``; an unknown name is refused with the known ones."""
    if task not in TASKS:
        raise ConfigError(f"task: {task!r} is not one of {list(TASKS)}{suggest(str(task), TASKS)}")
    return TASKS[task]


def config_class(data: dict[str, Any]) -> type[TaskConfig]:
    """The config class of a raw mapping, from its ``task`` (default ``pretrain``)."""
    return task_entry(data.get("task", "pretrain")).config_class


def task_command(task: str) -> str:
    """The command (``pretrain`` / ``finetune``) that runs a config's ``task``."""
    return TASKS[task].command if task in TASKS else task
