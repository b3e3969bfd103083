"""Stage-1 pretraining (``umt pretrain``): the student aligns its kept tokens with the teacher's
features (UMA), the teacher's attention choosing what is masked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config._loader import ConfigError
from umt.config.common import (
    DEFAULT_RECIPE,
    PretrainDataConfig,
    PretrainModelConfig,
    ProbeConfig,
    TaskConfig,
    TeacherConfig,
    check_mask_ratio,
)
from umt.config.registry import register_task


@dataclass
class MaskConfig:
    """Which student tokens are dropped. ``attention``: semantic masking by the teacher's
    class-token attention (UMT); ``random``: uniformly over all tokens; ``tube``: the same random
    positions in every frame (the paper's ablations)."""

    kind: Literal["attention", "random", "tube"] = "attention"
    ratio: float = 0.8

    def validate(self) -> None:
        check_mask_ratio("mask.ratio", self.ratio)


@dataclass
class LossConfig:
    """The UMA loss, named as in stage 2's ``loss`` section."""

    uma: float = 1.0  # its weight
    uma_kind: Literal["l2", "mse"] = "l2"  # l2: mean(2 - 2cos) of l2-normalised features

    def validate(self) -> None:
        if not self.uma >= 0.0:
            raise ConfigError(f"loss.uma: a weight must be >= 0, got {self.uma}")


@register_task(name="pretrain", command="pretrain", task="umt.train.tasks.stage1:Stage1Task")
@dataclass
class Stage1Config(TaskConfig):
    """Stage-1 pretraining (``umt pretrain``)."""

    recipe: str = DEFAULT_RECIPE
    task: Literal["pretrain"] = "pretrain"
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    renamed_keys = {
        **TaskConfig.renamed_keys,
        "loss.kind": "loss.uma_kind",
        "loss.weight": "loss.uma",
    }
