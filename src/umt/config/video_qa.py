"""Open-ended video QA fine-tuning (``umt finetune`` with a ``finetune-qa`` recipe): the stage-2
model's video and text towers with an answer decoder, answers ranked from a list at test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config._loader import ConfigError
from umt.config.common import EvalConfig, ScheduleConfig, TaskConfig
from umt.config.registry import register_task
from umt.config.video_text import (
    TextClipDataConfig,
    TextEncoderConfig,
    VideoTextModelConfig,
    VideoTextOptimConfig,
)


@dataclass
class QAModelConfig(VideoTextModelConfig):
    """The QA model: the stage-2 video encoder, its BERT as the question encoder and an answer
    decoder (``decoder_layers``; null = the text layers above ``fusion_layer``, the official
    3 for B/16 and 5 for L/16) initialised from the fusion layers. ``init``: a stage-2 checkpoint
    (umt's or official), an official QA checkpoint, or umt's QA checkpoint."""

    decoder_layers: int | None = None


@dataclass
class QATextConfig(TextEncoderConfig):
    """Questions of ``max_length`` tokens (official ``max_q_len`` 25); answers of
    ``answer_max_length`` (``max_a_len`` 5) written as ``answer + " " + eos`` (official)."""

    max_length: int = 25
    answer_max_length: int = 5
    eos: str = "[SEP]"


@dataclass
class QADataConfig(TextClipDataConfig):
    """QA annotations (``train_list``, ``val_list``, ``test_list``): the official JSON
    (``{"video", "question", "answer", "question_id"}``) or the raw MSRVTT-QA / MSVD-QA /
    ActivityNet-QA releases (``format``); ``answer_list``: the JSON list of candidate answers
    ranked at test. ``train_list: null``: the built-in synthetic QA set."""

    format: Literal["auto", "umt", "msrvtt-qa", "msvd-qa", "anet-qa"] = "auto"
    answer_list: str | None = None
    num_frames: int = 12


@dataclass
class QAEvalConfig(EvalConfig):
    """Answer-list ranking: the ``k_test`` answers likeliest by their first token are re-scored
    by the whole decoder; exact-match accuracy."""

    k_test: int = 128
    num_frames: int | None = None  # null = data.num_frames
    test_best: bool = True

    def validate(self) -> None:
        super().validate()
        if self.k_test < 1:
            raise ConfigError("eval.k_test: must be >= 1")


@register_task(name="finetune-qa", command="finetune", task="umt.train.tasks.video_qa:QATask")
@dataclass
class QAConfig(TaskConfig):
    """Open-ended video QA fine-tuning (``umt finetune`` with a ``finetune-qa`` recipe)."""

    recipe: str = "umt-tiny-synthetic-qa"
    task: Literal["finetune-qa"] = "finetune-qa"
    model: QAModelConfig = field(default_factory=QAModelConfig)
    text: QATextConfig = field(default_factory=QATextConfig)
    data: QADataConfig = field(default_factory=QADataConfig)
    eval: QAEvalConfig = field(default_factory=QAEvalConfig)
    optim: VideoTextOptimConfig = field(default_factory=VideoTextOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            epochs=8, warmup_epochs=1, kind="cosine_floor", lr_floor=0.01
        )
    )

    def validate(self) -> None:
        if self.text.answer_max_length < 3:
            raise ConfigError("text.answer_max_length: must be >= 3 ([CLS], a token, the eos)")
        if self.text.max_length < 2:
            raise ConfigError("text.max_length: must be >= 2")
        if self.model.decoder_layers is not None and self.model.decoder_layers < 1:
            raise ConfigError("model.decoder_layers: must be >= 1, or null")
        super().validate()
