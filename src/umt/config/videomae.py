"""VideoMAE pretraining (``umt pretrain`` with a ``videomae`` recipe): masked tubelets' pixels
reconstructed, in the same loop as UMT stage 1 (to compare objectives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from umt.config.common import (
    PretrainDataConfig,
    PretrainModelConfig,
    ProbeConfig,
    TaskConfig,
    check_mask_ratio,
)
from umt.config.registry import register_task


@dataclass
class VideoMAEModelConfig(PretrainModelConfig):
    """VideoMAE: the encoder is the ``VideoViT`` of the registry ``name`` (sizes as in
    :class:`~umt.config.common.EncoderConfig`, no alignment heads), the pixel decoder as below
    (official ViT-B: 384 wide, 4 deep, 6 heads; ViT-L: 512, 4, 8). Defaults: the official
    tubelet 2, no drop path."""

    tubelet_size: int = 2
    drop_path_rate: float = 0.0
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6


@dataclass
class VideoMAEMaskConfig:
    """Which tokens are masked (and reconstructed). ``tube``: the same ``int(HW * ratio)``
    positions in every time slot (VideoMAE); ``random``: ``int(N * ratio)`` over all tokens."""

    kind: Literal["tube", "random"] = "tube"
    ratio: float = 0.9

    def validate(self) -> None:
        check_mask_ratio("mask.ratio", self.ratio)


@dataclass
class VideoMAELossConfig:
    # Targets: each tubelet-patch's pixels standardised per channel (VideoMAE's default), or raw.
    normalize_target: bool = True


@register_task(name="videomae", command="pretrain", task="umt.train.tasks.videomae:VideoMAETask")
@dataclass
class VideoMAEConfig(TaskConfig):
    """VideoMAE pretraining (``umt pretrain`` with a ``videomae`` recipe)."""

    recipe: str = "videomae-tiny-synthetic"
    task: Literal["videomae"] = "videomae"
    model: VideoMAEModelConfig = field(default_factory=VideoMAEModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    mask: VideoMAEMaskConfig = field(default_factory=VideoMAEMaskConfig)
    loss: VideoMAELossConfig = field(default_factory=VideoMAELossConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
