"""Batch-level mixup / cutmix with label smoothing (the official fine-tuning ``Mixup``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from umt.data.sampling import randint_inclusive, uniform01
from umt.errors import InputError

__all__ = [
    "MixParams",
    "Mixup",
]


@dataclass(frozen=True)
class MixParams:
    """One batch's mixing draw: ``lam`` (the weight of each sample itself; 1.0 = no mixing),
    whether it is cutmix, and the cutmix box ``(y0, y1, x0, x1)`` (rows / columns, end
    exclusive) that every frame takes from the paired sample."""

    lam: float = 1.0
    cutmix: bool = False
    box: tuple[int, int, int, int] | None = None


class Mixup:
    """Batch-level mixup / cutmix with label smoothing: the official fine-tuning ``Mixup``
    (timm's, ``mode="batch"``, ``correct_lam=True``) for videos.

    ``__call__(videos [B, C, T, H, W], labels [B] long, generator=None)`` returns the mixed
    videos and soft targets ``[B, num_classes]``. Sample ``i`` is mixed with ``B-1-i`` (the
    batch flipped). With probability ``prob`` the batch is mixed at all; when both alphas are
    positive, cutmix is chosen with ``switch_prob``; ``lam ~ Beta(alpha, alpha)``. Cutmix cuts
    the box ``sqrt(1 - lam)`` of the frame's height and width around a uniform centre, clipped
    to the frame, in every frame, and corrects ``lam`` to ``1 - box area / (H W)``. Targets are
    ``lam * y_i + (1 - lam) * y_{B-1-i}`` with smoothed one-hots ``off = smoothing / K``,
    ``on = 1 - smoothing + off``. Every draw comes from the generator (the beta variate from a
    NumPy generator seeded by it), so a seed gives the same batch in every process.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        if num_classes < 1:
            raise InputError(f"Mixup needs num_classes >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.generator = generator

    def smooth_one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, K]`` float32 on the labels' device: ``on`` at the label, ``off``
        elsewhere."""
        labels = labels.long().view(-1, 1)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise InputError(
                f"labels must be in [0, {self.num_classes}) for a {self.num_classes}-class "
                f"Mixup; got {int(labels.min())}..{int(labels.max())}"
            )
        off = self.label_smoothing / self.num_classes
        on = 1.0 - self.label_smoothing + off
        out = torch.full(
            (labels.shape[0], self.num_classes), off, dtype=torch.float32, device=labels.device
        )
        return out.scatter_(1, labels, on)

    def sample(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> MixParams:
        """Draw one batch's parameters for frames of ``height x width``."""
        gen = generator if generator is not None else self.generator
        mixup_on, cutmix_on = self.mixup_alpha > 0, self.cutmix_alpha > 0
        if not (mixup_on or cutmix_on) or uniform01(gen) >= self.prob:
            return MixParams()
        use_cutmix = cutmix_on and (not mixup_on or uniform01(gen) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = self._beta(alpha, gen)
        if lam == 1.0:
            return MixParams()
        if not use_cutmix:
            return MixParams(lam=lam)
        cy = randint_inclusive(0, height - 1, gen)
        cx = randint_inclusive(0, width - 1, gen)
        return self.cutmix_params(height, width, lam, cy, cx)

    @staticmethod
    def cutmix_params(height: int, width: int, lam: float, cy: int, cx: int) -> MixParams:
        """The cutmix box for a drawn ``lam`` and centre ``(cy, cx)``: sides
        ``int(H * sqrt(1 - lam))`` x ``int(W * sqrt(1 - lam))`` around the centre, clipped to the
        frame, and ``lam`` corrected to ``1 - box area / (H W)``."""
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        y0, y1 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
        x0, x1 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
        corrected = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        return MixParams(lam=corrected, cutmix=True, box=(y0, y1, x0, x1))

    @staticmethod
    def _beta(alpha: float, generator: torch.Generator | None) -> float:
        import numpy as np

        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return float(np.random.default_rng(seed).beta(alpha, alpha))

    def apply(
        self, videos: torch.Tensor, labels: torch.Tensor, params: MixParams
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix ``videos [B, ..., H, W]`` and build the soft targets for a given draw."""
        target = self.smooth_one_hot(labels)
        if params.lam == 1.0:
            return videos, target
        flipped = videos.flip(0)
        if params.cutmix:
            y0, y1, x0, x1 = params.box
            videos = videos.clone()
            videos[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        else:
            videos = videos * params.lam + flipped * (1.0 - params.lam)
        return videos, target * params.lam + target.flip(0) * (1.0 - params.lam)

    def __call__(
        self, videos: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if labels.shape[0] != videos.shape[0]:
            raise InputError(f"Mixup got {videos.shape[0]} videos but {labels.shape[0]} labels")
        params = self.sample(videos.shape[-2], videos.shape[-1], generator)
        return self.apply(videos, labels, params)
