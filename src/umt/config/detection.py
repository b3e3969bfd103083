"""AVA action detection fine-tuning (``umt finetune`` with a ``finetune-ava`` recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config._loader import ConfigError
from umt.config.common import (
    ClipDataConfig,
    EvalConfig,
    InitEncoderConfig,
    LayerDecayOptimConfig,
    ScheduleConfig,
    TaskConfig,
)
from umt.config.registry import register_task


@dataclass
class DetectionModelConfig(InitEncoderConfig):
    """The AVA detector (:class:`umt.models.detection.VideoDetector`: the video ViT with its
    final norm, RoIAlign on the time-averaged features, max over the bins, a linear head).
    ``init`` (required): a K710 fine-tuned file (official), a stage-1 / stage-2 / AVA checkpoint
    (umt or official), ``scratch``, or ``auto`` (the latest ``umt pretrain`` run of
    ``init_recipe``, else scratch)."""

    name: str = "umt-b16-ava"
    num_classes: int = 80
    drop_path_rate: float = 0.2
    head_init_scale: float = 0.001  # the head starts at trunc_normal(0.02) x 0.001
    proposals_per_clip: int = 100  # GT boxes per training clip (a random subset when more)
    box_jitter: list[float] = field(default_factory=lambda: [0.2, 0.1, 0.1, 0.05])
    test_box_ext: list[float] = field(default_factory=lambda: [0.1, 0.05])


@dataclass
class DetectionDataConfig(ClipDataConfig):
    """AVA-format keyframes (see :mod:`umt.data.detection`). ``train_list`` (AVA GT CSV of the
    training keyframes) null = the built-in synthetic detection set (its train / val splits,
    boxes, label map, exclusions; ``synthetic_root`` default $UMT_HOME/synthetic-detection-v2).
    ``root``: the folder of ``<video_id>.mp4`` files (default: the GT CSV's folder)."""

    val_list: str | None = None  # AVA GT CSV of the validation keyframes
    val_boxes: str | None = None  # detected person boxes (CSV video,ts,x1,y1,x2,y2,score)
    label_map: str | None = None  # the evaluated classes (AVA .pbtxt)
    excluded: str | None = None  # excluded keyframes (CSV video,ts)
    sampling_rate: int = 8
    short_side: int = 256  # resize (training and test); input_size is the training crop
    box_thresh: float = 0.8  # detector boxes below this score are not used at validation
    fps: float | None = None  # keyframe = round(timestamp x fps); null = the video's frame rate
    color_jitter: bool = True


@dataclass
class DetectionEvalConfig(EvalConfig):
    """Validation (frame-mAP@0.5 on the detector's boxes), every ``every_epochs`` epochs and
    after the last one, on rank 0."""


@dataclass
class DetectionOptimConfig(LayerDecayOptimConfig):
    """AdamW as the official AVA scripts: lr 2.5e-4 and min_lr 1e-6 per 256 clips, warm-up from
    0, betas (0.9, 0.999), wd 0.05, layer decay."""

    lr: float = 2.5e-4
    min_lr: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@register_task(
    name="finetune-ava", command="finetune", task="umt.train.tasks.detection:DetectionTask"
)
@dataclass
class DetectionConfig(TaskConfig):
    """AVA action detection fine-tuning (``umt finetune`` with a ``finetune-ava`` recipe)."""

    recipe: str = "umt-tiny-synthetic-ava"
    task: Literal["finetune-ava"] = "finetune-ava"
    model: DetectionModelConfig = field(default_factory=DetectionModelConfig)
    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    eval: DetectionEvalConfig = field(default_factory=DetectionEvalConfig)
    optim: DetectionOptimConfig = field(default_factory=DetectionOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(epochs=30, warmup_epochs=5)
    )

    def validate(self) -> None:
        m, d = self.model, self.data
        if m.num_classes < 1:
            raise ConfigError("model.num_classes: must be >= 1")
        if m.proposals_per_clip < 1:
            raise ConfigError("model.proposals_per_clip: must be >= 1")
        if len(m.box_jitter) != 4:
            raise ConfigError("model.box_jitter: needs four numbers (x_out, x_in, y_out, y_in)")
        if len(m.test_box_ext) != 2:
            raise ConfigError("model.test_box_ext: needs two numbers (x, y)")
        if d.short_side < 1:
            raise ConfigError("data.short_side: must be >= 1")
        if not 0.0 <= d.box_thresh <= 1.0:
            raise ConfigError("data.box_thresh: must be in [0, 1]")
        if d.fps is not None and not d.fps > 0:
            raise ConfigError("data.fps: must be > 0, or null (the video's frame rate)")
        super().validate()
