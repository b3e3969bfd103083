"""Typed configuration of every training task.

A config is a tree of dataclasses loaded from YAML (a file path or a packaged recipe name such as
``umt-b16-k710``) and adjusted with dotted overrides (``optim.lr=3e-4 data.num_frames=4``).
Unknown keys and values of the wrong type are refused with the key named, before any work starts;
a renamed key is refused with its new name. A recipe may start with ``base: OTHER_RECIPE`` to
inherit everything it does not set. Its ``task`` picks the config class.

Layout: :mod:`umt.config._loader` (YAML -> dataclasses, overrides, ``base:``, did-you-mean),
:mod:`umt.config.registry` (``@register_task``: each task's name, command, config class and task
class, once), :mod:`umt.config.common` (:class:`TaskConfig` and the sections tasks share), and one
module per task's schema: :mod:`~umt.config.stage1`, :mod:`~umt.config.classify`,
:mod:`~umt.config.video_text` (stage 2 and retrieval), :mod:`~umt.config.video_qa`,
:mod:`~umt.config.videomae`, :mod:`~umt.config.detection`, :mod:`~umt.config.teacher` (the built-in
teacher's training). The schemas live here, not beside
their tasks in :mod:`umt.train.tasks`, because the tasks import torch and this package must not:
the CLI reads recipes for its ``--help``. Importing this package registers every task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Each schema module registers its task(s) on import; this order is the registry's order.
from umt.config import (  # noqa: F401
    classify,
    detection,
    stage1,
    teacher,
    video_qa,
    video_text,
    videomae,
)
from umt.config._loader import (
    ConfigError,
    apply_overrides,
    build,
    flatten,
    list_recipes,
    read_recipe,
    rename_keys,
)
from umt.config.common import DEFAULT_FINETUNE_RECIPE, DEFAULT_RECIPE, TaskConfig
from umt.config.registry import TASKS, config_class, task_command

__all__ = [
    "DEFAULT_FINETUNE_RECIPE",
    "DEFAULT_RECIPE",
    "ConfigError",
    "TaskConfig",
    "flatten",
    "from_dict",
    "list_recipes",
    "load_config",
    "recipe_names",
    "save_config",
    "task_command",
    "upgrade_saved_config",
]


def recipe_names(command: str | None = None) -> list[str]:
    """Names of the packaged recipes; with ``command`` (``pretrain`` / ``finetune``) only those
    that command runs. Reads each recipe's ``task`` without building or validating it (cheap
    enough for ``--help``)."""
    names = list_recipes()
    if command is None:
        return names
    return [n for n in names if task_command(read_recipe(n).get("task", "pretrain")) == command]


def from_dict(data: dict[str, Any]) -> TaskConfig:
    """Build a checked config (the class its ``task`` names) from a mapping."""
    cls = config_class(data)
    cfg = build(cls, data, renamed=cls.renamed_keys)
    cfg.validate()
    return cfg


def load_config(
    name_or_path: str | None = None,
    overrides: Sequence[str] = (),
    task: str | None = None,
) -> TaskConfig:
    """Load a recipe (path or packaged name) plus overrides. Without a name, the tiny synthetic
    recipe of ``task`` (default ``pretrain``); with ``task``, a recipe of another task is refused
    naming the command that runs it."""
    default = DEFAULT_FINETUNE_RECIPE if task == "finetune" else DEFAULT_RECIPE
    data = read_recipe(name_or_path or default)
    found = data.get("task", "pretrain")
    if task is not None and task_command(found) != task:
        command = task_command(found)
        raise ConfigError(
            f"recipe '{name_or_path}' is a {found} recipe: run it with 'umt {command}'"
        )
    cls = config_class(data)
    data = apply_overrides(data, overrides, cls, renamed=cls.renamed_keys)
    return from_dict(data)


def upgrade_saved_config(data: Any) -> Any:
    """A run's saved ``config.yaml`` (the raw mapping, perhaps written before a key was renamed)
    with the keys its task renamed since under their new names: what a resume compares with the
    run's config, so an old run resumes. A recipe or an override gets no such help: an old key
    there is refused with its new name."""
    if not isinstance(data, dict) or data.get("task", "pretrain") not in TASKS:
        return data
    cls = config_class(data)
    return rename_keys(data, cls.renamed_keys, cls.renamed_values)


def save_config(cfg: TaskConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (what a run's ``config.yaml`` holds; loadable as a recipe)."""
    Path(path).write_text(cfg.to_yaml())
