"""Clip transforms for video tensors ``[T, C, H, W]`` (uint8 or float).

Every random transform draws its parameters once per clip, so all frames of a clip get the
same crop / flip / colour operation, and draws them from an explicit ``torch.Generator``:
either the one given to the constructor or, taking precedence, ``generator=`` passed at call
time (the datasets pass a per-sample generator seeded from ``(seed, epoch, index)``). With
neither, the global torch RNG is used.

Pipelines:

* :func:`build_pretrain_transform` — official UMT pretraining augmentation: GroupMultiScaleCrop
  (scales ``(1, .875, .75, .66)``, ``max_distort=1``, fixed-offset grid with ``more_fix_crop``),
  resize to ``input_size``, optional horizontal flip, normalise, output ``[C, T, H, W]`` float.
* :func:`build_finetune_transform` — random-resized crop, flip, optional RandAugment, normalise,
  optional random erasing; output ``[C, T, H, W]``. Batch-level :class:`Mixup` (mixup/cutmix
  with label smoothing) runs on the collated batch.
* :func:`build_eval_transform` — short-side resize, centre crop or one of three crops,
  normalise; output ``[C, T, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from umt.data.sampling import randint_inclusive, uniform01

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CLIP_MEAN",
    "CLIP_STD",
    "resolve_mean_std",
    "VideoTransform",
    "Compose",
    "MultiScaleCrop",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "RandAugment",
    "RandomErasing",
    "Resize",
    "ShortSideResize",
    "CenterCrop",
    "SpatialCrop",
    "Normalize",
    "ToModelLayout",
    "Mixup",
    "build_pretrain_transform",
    "build_finetune_transform",
    "build_eval_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_NAMED = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}


def resolve_mean_std(
    mean: str | Sequence[float] = "imagenet", std: str | Sequence[float] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std from names (``"imagenet"``, ``"clip"``) or explicit triples."""

    def named(value: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        try:
            return _NAMED[value.lower()]
        except KeyError:
            raise ValueError(f"unknown normalisation {value!r}; use 'imagenet' or 'clip'") from None

    if isinstance(mean, str):
        m, s = named(mean)
    else:
        m, s = tuple(float(x) for x in mean), IMAGENET_STD
    if std is not None:
        s = named(std)[1] if isinstance(std, str) else tuple(float(x) for x in std)
    if len(m) != 3 or len(s) != 3:
        raise ValueError(f"mean and std need 3 values, got {m} and {s}")
    return m, s


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    if tuple(video.shape[-2:]) == size:
        return video
    return F.resize(video, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


class VideoTransform:
    """Base class: ``__call__(video [T, C, H, W], generator=None, **params)``."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def _gen(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self.generator

    def __call__(
        self, video: torch.Tensor, generator: torch.Generator | None = None, **params: Any
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "generator" and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class Compose(VideoTransform):
    """Apply transforms in order, handing each the same generator and call parameters."""

    def __init__(
        self, transforms: Sequence[VideoTransform], generator: torch.Generator | None = None
    ):
        super().__init__(generator)
        self.transforms = list(transforms)

    def __call__(self, video, generator=None, **params):
        gen = self._gen(generator)
        for t in self.transforms:
            video = t(video, generator=gen, **params)
        return video

    def __repr__(self) -> str:
        inner = "".join(f"\n  {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class MultiScaleCrop(VideoTransform):
    """GroupMultiScaleCrop of the official code (TSN lineage), then resize to ``input_size``.

    Crop sides are ``int(min(H, W) * s)`` for ``s`` in ``scales`` (snapped to the output size when
    within 3 px); (height, width) pairs ``(i, j)`` with ``|i - j| <= max_distort`` are allowed,
    one is chosen uniformly; the offset is chosen among a fixed grid (5 positions, 13 with
    ``more_fix_crop``) or uniformly when ``fix_crop=False``.
    """

    def __init__(
        self,
        input_size: int | Sequence[int],
        scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.input_size = _pair(input_size)
        self.scales = tuple(float(s) for s in scales)
        self.max_distort = max_distort
        self.fix_crop = fix_crop
        self.more_fix_crop = more_fix_crop

    @staticmethod
    def fixed_offsets(
        more_fix_crop: bool, image_w: int, image_h: int, crop_w: int, crop_h: int
    ) -> list[tuple[int, int]]:
        """The (x, y) offsets of the fixed crop grid."""
        w_step = (image_w - crop_w) // 4
        h_step = (image_h - crop_h) // 4
        offsets = [
            (0, 0),
            (4 * w_step, 0),
            (0, 4 * h_step),
            (4 * w_step, 4 * h_step),
            (2 * w_step, 2 * h_step),
        ]
        if more_fix_crop:
            offsets += [
                (0, 2 * h_step),
                (4 * w_step, 2 * h_step),
                (2 * w_step, 4 * h_step),
                (2 * w_step, 0),
                (1 * w_step, 1 * h_step),
                (3 * w_step, 1 * h_step),
                (1 * w_step, 3 * h_step),
                (3 * w_step, 3 * h_step),
            ]
        return offsets

    def get_params(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """``(top, left, crop_h, crop_w)`` for one clip."""
        out_h, out_w = self.input_size
        base = min(height, width)
        sizes = [int(base * s) for s in self.scales]
        crop_hs = [out_h if abs(x - out_h) < 3 else x for x in sizes]
        crop_ws = [out_w if abs(x - out_w) < 3 else x for x in sizes]
        pairs = [
            (w, h)
            for i, h in enumerate(crop_hs)
            for j, w in enumerate(crop_ws)
            if abs(i - j) <= self.max_distort
        ]
        crop_w, crop_h = pairs[randint_inclusive(0, len(pairs) - 1, generator)]
        crop_w, crop_h = min(crop_w, width), min(crop_h, height)
        if self.fix_crop:
            offsets = self.fixed_offsets(self.more_fix_crop, width, height, crop_w, crop_h)
            left, top = offsets[randint_inclusive(0, len(offsets) - 1, generator)]
        else:
            left = randint_inclusive(0, width - crop_w, generator)
            top = randint_inclusive(0, height - crop_h, generator)
        return top, left, crop_h, crop_w

    def __call__(self, video, generator=None, **params):
        top, left, h, w = self.get_params(video.shape[-2], video.shape[-1], self._gen(generator))
        return _resize(video[..., top : top + h, left : left + w], self.input_size)


class RandomResizedCrop(VideoTransform):
    """Inception-style random-resized crop (area ``scale``, aspect ``ratio``), one per clip."""

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.size = _pair(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def get_params(
        self, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """``(top, left, crop_h, crop_w)``; 10 tries, then a centre crop of clamped ratio."""
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * (self.scale[0] + uniform01(generator) * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + uniform01(generator) * (log_hi - log_lo))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                return (
                    randint_inclusive(0, height - h, generator),
                    randint_inclusive(0, width - w, generator),
                    h,
                    w,
                )
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, video, generator=None, **params):
        top, left, h, w = self.get_params(video.shape[-2], video.shape[-1], self._gen(generator))
        return _resize(video[..., top : top + h, left : left + w], self.size)


class RandomHorizontalFlip(VideoTransform):
    """Flip the whole clip left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.p = p

    def __call__(self, video, generator=None, **params):
        if self.p > 0 and uniform01(self._gen(generator)) < self.p:
            return video.flip(-1)
        return video


class RandAugment(VideoTransform):
    """torchvision v2 RandAugment on the whole clip as one batch (same ops for all frames).

    torchvision draws from the global RNG, so the op runs inside ``torch.random.fork_rng``
    seeded from our generator: reproducible, and the global RNG is left untouched.
    """

    def __init__(
        self, num_ops: int = 2, magnitude: int = 9, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(generator)
        self.num_ops = num_ops
        self.magnitude = magnitude
        self._op: Any = None

    def __call__(self, video, generator=None, **params):
        if self._op is None:
            from torchvision.transforms import v2

            self._op = v2.RandAugment(num_ops=self.num_ops, magnitude=self.magnitude)
        seed = int(torch.randint(0, 2**62, (1,), generator=self._gen(generator)).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._op(video)


class RandomErasing(VideoTransform):
    """Erase one random box (same box and noise in every frame) with probability ``p``.

    ``mode="pixel"`` fills with standard-normal noise (meant for normalised input), ``"const"``
    with zeros. Works on float ``[T, C, H, W]``.
    """

    def __init__(
        self,
        p: float = 0.25,
        scale: Sequence[float] = (0.02, 1 / 3),
        ratio: Sequence[float] = (0.3, 3.3),
        mode: str = "pixel",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        if mode not in ("pixel", "const"):
            raise ValueError(f"RandomErasing mode must be 'pixel' or 'const', got {mode!r}")
        self.p = p
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.mode = mode

    def __call__(self, video, generator=None, **params):
        gen = self._gen(generator)
        if self.p <= 0 or uniform01(gen) >= self.p:
            return video
        if not video.is_floating_point():
            raise TypeError("RandomErasing expects a float (normalised) clip")
        height, width = video.shape[-2:]
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * (self.scale[0] + uniform01(gen) * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + uniform01(gen) * (log_hi - log_lo))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if 0 < w < width and 0 < h < height:
                top, left = (
                    randint_inclusive(0, height - h, gen),
                    randint_inclusive(0, width - w, gen),
                )
                video = video.clone()
                box = video[..., top : top + h, left : left + w]
                if self.mode == "pixel":  # one noise image shared by all frames
                    noise = torch.randn(box.shape[-3:], generator=gen, dtype=torch.float32)
                    fill = noise.to(box.dtype).expand_as(box)
                else:
                    fill = torch.zeros_like(box)
                video[..., top : top + h, left : left + w] = fill
                return video
        return video


class Resize(VideoTransform):
    """Resize every frame to ``size`` (h, w), bilinear with antialiasing."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(None)
        self.size = _pair(size)

    def __call__(self, video, generator=None, **params):
        return _resize(video, self.size)


class ShortSideResize(VideoTransform):
    """Resize so the shorter side equals ``size``, keeping the aspect ratio."""

    def __init__(self, size: int) -> None:
        super().__init__(None)
        self.size = int(size)

    def __call__(self, video, generator=None, **params):
        h, w = video.shape[-2:]
        if h <= w:
            new = (self.size, max(1, int(round(w * self.size / h))))
        else:
            new = (max(1, int(round(h * self.size / w))), self.size)
        return _resize(video, new)


class CenterCrop(VideoTransform):
    """Centre crop to ``size`` (padding is not done: the clip must be large enough)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(None)
        self.size = _pair(size)

    def __call__(self, video, generator=None, **params):
        return SpatialCrop(self.size, 1)(video)


class SpatialCrop(VideoTransform):
    """One of three crops along the longer side (0: start, 1: centre, 2: end).

    The crop index comes from the call parameter ``crop_index`` when given (multi-view
    testing), else from ``position``.
    """

    def __init__(self, size: int | Sequence[int], position: int = 1) -> None:
        super().__init__(None)
        self.size = _pair(size)
        self.position = position

    def __call__(self, video, generator=None, crop_index: int | None = None, **params):
        pos = self.position if crop_index is None else int(crop_index)
        if pos not in (0, 1, 2):
            raise ValueError(f"crop index must be 0, 1 or 2, got {pos}")
        h, w = video.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            video = _resize(video, (max(h, ch), max(w, cw)))
            h, w = video.shape[-2:]
        top, left = (h - ch) // 2, (w - cw) // 2
        if w >= h:
            left = [0, (w - cw) // 2, w - cw][pos]
        else:
            top = [0, (h - ch) // 2, h - ch][pos]
        return video[..., top : top + ch, left : left + cw]


class Normalize(VideoTransform):
    """uint8 (0..255) or float (0..1) clip -> float32 ``(x - mean) / std`` per channel."""

    def __init__(
        self, mean: str | Sequence[float] = "imagenet", std: str | Sequence[float] | None = None
    ):
        super().__init__(None)
        self.mean, self.std = resolve_mean_std(mean, std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, video, generator=None, **params):
        if video.dtype == torch.uint8:
            video = video.to(torch.float32).div_(255.0)
        else:
            video = video.to(torch.float32)
        return (video - self._mean) / self._std


class ToModelLayout(VideoTransform):
    """``[T, C, H, W]`` -> ``[C, T, H, W]`` (contiguous), the model's per-sample layout."""

    def __init__(self) -> None:
        super().__init__(None)

    def __call__(self, video, generator=None, **params):
        return video.permute(1, 0, 2, 3).contiguous()


class Mixup:
    """Batch-level mixup / cutmix with label smoothing (timm "batch" mode semantics).

    ``__call__(videos [B, C, T, H, W], labels [B] long, generator=None)`` returns the mixed
    videos and soft targets ``[B, num_classes]``. One lambda per batch; each sample is mixed
    with its mirror ``B-1-i``. Cutmix cuts the same box from every frame and corrects lambda
    to the box's true area. With ``prob`` the batch is mixed at all; ``switch_prob`` picks
    cutmix over mixup when both alphas are positive.
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
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.generator = generator

    def smooth_one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, K]`` with ``label_smoothing`` spread over all classes."""
        off = self.label_smoothing / self.num_classes
        out = torch.full((labels.shape[0], self.num_classes), off, dtype=torch.float32)
        out.scatter_(1, labels.long().view(-1, 1), 1.0 - self.label_smoothing + off)
        return out

    def __call__(
        self, videos: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        gen = generator if generator is not None else self.generator
        target = self.smooth_one_hot(labels)
        if (
            self.prob <= 0
            or uniform01(gen) >= self.prob
            or (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0)
        ):
            return videos, target
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or uniform01(gen) < self.switch_prob
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen).item()))
        lam = float(rng.beta(alpha, alpha))
        flipped = videos.flip(0)
        if use_cutmix:
            height, width = videos.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(height * cut), int(width * cut)
            cy, cx = randint_inclusive(0, height - 1, gen), randint_inclusive(0, width - 1, gen)
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
            videos = videos.clone()
            videos[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
        else:
            videos = videos * lam + flipped * (1.0 - lam)
        return videos, target * lam + target.flip(0) * (1.0 - lam)


def build_pretrain_transform(
    input_size: int = 224,
    scales: Sequence[float] = (1, 0.875, 0.75, 0.66),
    flip: bool = True,
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
) -> Compose:
    """Official pretraining augmentation: ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float."""
    steps: list[VideoTransform] = [MultiScaleCrop(input_size, scales)]
    if flip:
        steps.append(RandomHorizontalFlip(0.5))
    steps += [Normalize(mean, std), ToModelLayout()]
    return Compose(steps)


def build_finetune_transform(
    input_size: int = 224,
    scale: Sequence[float] = (0.08, 1.0),
    flip: bool = True,
    rand_augment: bool = True,
    rand_augment_ops: int = 2,
    rand_augment_magnitude: int = 9,
    erase_prob: float = 0.25,
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
) -> Compose:
    """Fine-tuning augmentation: RandAugment, random-resized crop, flip, normalise, erasing.

    ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float. Mixup/cutmix is batch-level (:class:`Mixup`).
    """
    steps: list[VideoTransform] = []
    if rand_augment:
        steps.append(RandAugment(rand_augment_ops, rand_augment_magnitude))
    steps.append(RandomResizedCrop(input_size, scale))
    if flip:
        steps.append(RandomHorizontalFlip(0.5))
    steps.append(Normalize(mean, std))
    if erase_prob > 0:
        steps.append(RandomErasing(erase_prob))
    steps.append(ToModelLayout())
    return Compose(steps)


def build_eval_transform(
    input_size: int = 224,
    short_side: int | None = None,
    crop: str = "center",
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
) -> Compose:
    """Test transform: short-side resize (default ``input_size``), crop, normalise.

    ``crop="center"`` takes the centre; ``crop="three"`` takes crop ``crop_index`` (0, 1, 2)
    given at call time (default centre). ``[T, 3, H, W]`` -> ``[3, T, S, S]`` float.
    """
    if crop not in ("center", "three"):
        raise ValueError(f"crop must be 'center' or 'three', got {crop!r}")
    steps: list[VideoTransform] = [ShortSideResize(short_side or input_size)]
    steps.append(CenterCrop(input_size) if crop == "center" else SpatialCrop(input_size, 1))
    steps += [Normalize(mean, std), ToModelLayout()]
    return Compose(steps)
