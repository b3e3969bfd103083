"""Classification fine-tuning (``umt finetune``): a classifier on the video encoder, the official
augmentation and soft targets, single-view validation and the multi-view test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config._loader import ConfigError
from umt.config.common import (
    DEFAULT_FINETUNE_RECIPE,
    EvalConfig,
    InitEncoderConfig,
    LayerDecayOptimConfig,
    TaskConfig,
    VideoDataConfig,
    check_range,
)
from umt.config.registry import register_task


@dataclass
class ClassifyModelConfig(InitEncoderConfig):
    """The classifier (a ``VideoViT`` with mean pooling, ``fc_norm`` and a linear head), as the
    official fine-tuning model. ``init`` (required): a stage-1 checkpoint (umt or official), a
    stage-2 (multimodal) file (its vision encoder), a fine-tuned classifier (its head too),
    ``scratch``, or ``auto`` (the latest ``umt pretrain`` run of ``init_recipe``, else scratch)."""

    # Head rows to keep from a checkpoint head of another class count: JSON list of row indices,
    # row i of the new head = row map[i] of the old one (the official k710/label_mixto600.json);
    # K710 -> K400 needs none (the first 400 rows).
    init_label_map: str | None = None
    num_classes: int = 400
    head_drop_rate: float = 0.0
    head_init_scale: float = 0.001  # the official head starts at trunc_normal(0.02) x 0.001


@dataclass
class ClassifyDataConfig(VideoDataConfig):
    """Fine-tuning clips. With ``train_list: null`` the synthetic set's train and val splits."""

    sampling: Literal["segments", "sparse", "dense", "ssv2"] = "sparse"
    val_list: str | None = (
        None  # single-view validation during training (null: none, unless synthetic)
    )
    test_list: str | None = None  # multi-view test at the end (null: val_list)
    labels: str | None = None  # SSv2-style label map beside JSON lists
    short_side: int | None = None  # test / validation resize; null = input_size
    clips_per_video: int = 2  # repeated augmentation (the official num_sample)
    flip: bool = True  # SSv2: false (left/right matters)


@dataclass
class AugmentConfig:
    """Training augmentation and soft targets, the official fine-tuning defaults."""

    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"
    rrc_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    rrc_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    erase_prob: float = 0.25  # random erasing, pixel mode, one box over all frames
    mixup: float = 0.8  # mixup alpha (0 = off)
    cutmix: float = 1.0  # cutmix alpha (0 = off)
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1

    def validate(self) -> None:
        for key in ("erase_prob", "mixup_prob", "mixup_switch_prob", "smoothing"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"augment.{key}: must be in [0, 1]")
        for key in ("mixup", "cutmix"):
            if not getattr(self, key) >= 0.0:
                raise ConfigError(f"augment.{key}: an alpha must be >= 0 (0 = off)")
        check_range("augment.rrc_scale", self.rrc_scale, 0.0, 1.0)
        check_range("augment.rrc_ratio", self.rrc_ratio, 0.0, None)


@dataclass
class ClassifyEvalConfig(EvalConfig):
    """Single-view validation during training and the multi-view test at the end."""

    test_views: str = "4x3"  # temporal clips x spatial crops
    test_best: bool = True  # test the checkpoint with the best validation top-1


def parse_views(text: str, key: str = "eval.test_views") -> tuple[int, int]:
    """``"4x3"`` -> (4 temporal clips, 3 spatial crops)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{key}: {text!r} is not CLIPSxCROPS (e.g. 4x3)")
    return int(parts[0]), int(parts[1])


@register_task(name="finetune", command="finetune", task="umt.train.tasks.classify:ClassifyTask")
@dataclass
class ClassifyConfig(TaskConfig):
    """Classification fine-tuning (``umt finetune``)."""

    recipe: str = DEFAULT_FINETUNE_RECIPE
    task: Literal["finetune"] = "finetune"
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: ClassifyEvalConfig = field(default_factory=ClassifyEvalConfig)
    optim: LayerDecayOptimConfig = field(default_factory=LayerDecayOptimConfig)

    renamed_keys = {
        **TaskConfig.renamed_keys,
        "eval.val_every_epochs": "eval.every_epochs",
        "data.num_sample": "data.clips_per_video",
    }

    def validate(self) -> None:
        if self.model.num_classes < 1:
            raise ConfigError("model.num_classes: must be >= 1")
        if self.data.clips_per_video < 1:
            raise ConfigError("data.clips_per_video: must be >= 1")
        parse_views(self.eval.test_views)
        super().validate()
