"""Clip transforms for video tensors ``[T, C, H, W]`` (uint8 or float): crops, flips, resizes
(bilinear and bicubic), erasing, HSV colour jitter, normalisation, the model layout.

Every random transform draws its parameters once per clip, so all frames of a clip get the
same crop / flip / colour operation, and draws them from an explicit ``torch.Generator``:
either the one given to the constructor or, taking precedence, ``generator=`` passed at call
time (the datasets pass a per-sample generator seeded from ``(seed, epoch, index)``). With
neither, the global torch RNG is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from umt.data.sampling import randint_inclusive, uniform01
from umt.errors import InputError

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
    "RandomErasing",
    "Resize",
    "short_side_sizes",
    "resize_bilinear",
    "ShortSideResize",
    "CenterCrop",
    "SpatialCrop",
    "Normalize",
    "ToModelLayout",
    "BicubicResizedCrop",
    "BicubicResize",
    "hsv_jitter",
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
            raise InputError(f"unknown normalisation {value!r}; use 'imagenet' or 'clip'") from None

    if isinstance(mean, str):
        m, s = named(mean)
    else:
        m, s = tuple(float(x) for x in mean), IMAGENET_STD
    if std is not None:
        s = named(std)[1] if isinstance(std, str) else tuple(float(x) for x in std)
    if len(m) != 3 or len(s) != 3:
        raise InputError(f"mean and std need 3 values, got {m} and {s}")
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
    """Inception-style random-resized crop, one box per clip (official ``random_resized_crop``).

    Up to 10 tries: area ``uniform(scale) * H * W``, aspect ``exp(uniform(log ratio))``,
    ``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))``; the first box that
    fits is placed uniformly; else a centre crop of clamped aspect. The box is resized to
    ``size`` with bilinear ``F.interpolate`` (``align_corners=False``, no antialiasing, as
    officially; ``antialias=True`` smooths strong downscaling instead). Works on ``[..., H, W]``.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        antialias: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.size = _pair(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.antialias = antialias

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
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, video, generator=None, **params):
        top, left, h, w = self.get_params(video.shape[-2], video.shape[-1], self._gen(generator))
        box = video[..., top : top + h, left : left + w]
        if tuple(box.shape[-2:]) == self.size:
            return box
        lead = box.shape[:-3]
        flat = box.reshape(-1, *box.shape[-3:])  # [N, C, h, w]
        out = torch.nn.functional.interpolate(
            flat.float(),
            size=self.size,
            mode="bilinear",
            align_corners=False,
            antialias=self.antialias,
        )
        if video.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        else:
            out = out.to(video.dtype)
        return out.reshape(*lead, *out.shape[-3:])


class RandomHorizontalFlip(VideoTransform):
    """Flip the whole clip left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.p = p

    def __call__(self, video, generator=None, **params):
        if self.p > 0 and uniform01(self._gen(generator)) < self.p:
            return video.flip(-1)
        return video


class RandomErasing(VideoTransform):
    """Random erasing of the official fine-tuning (timm's, ``cube=True``): with probability
    ``p`` erase ``count`` boxes (``count`` drawn in [1, max_count]), each at the same place in
    every frame of the clip.

    Per box, up to 100 tries: area ``uniform(scale) * H * W / count``, aspect
    ``exp(uniform(log(min_aspect), log(1 / min_aspect)))``, ``h = round(sqrt(area * aspect))``,
    ``w = round(sqrt(area / aspect))``; the first box smaller than the frame is placed
    uniformly. Fill: ``"pixel"`` standard-normal noise per pixel, drawn anew for every frame
    (as the official loop does), ``"rand"`` one normal colour per channel and frame,
    ``"const"`` zeros. Works on normalised float ``[T, C, H, W]``.
    """

    def __init__(
        self,
        p: float = 0.25,
        scale: Sequence[float] = (0.02, 1 / 3),
        min_aspect: float = 0.3,
        mode: str = "pixel",
        max_count: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        if mode not in ("pixel", "rand", "const"):
            raise InputError(f"RandomErasing mode must be 'pixel', 'rand' or 'const', got {mode!r}")
        if max_count < 1:
            raise InputError(f"RandomErasing max_count must be >= 1, got {max_count}")
        self.p = p
        self.scale = (float(scale[0]), float(scale[1]))
        self.min_aspect = float(min_aspect)
        self.mode = mode
        self.max_count = int(max_count)

    def get_boxes(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> list[tuple[int, int, int, int]]:
        """``[(top, left, h, w), ...]`` for one clip; empty when it is not erased."""
        gen = self._gen(generator)
        if self.p <= 0 or uniform01(gen) > self.p:
            return []
        count = 1 if self.max_count == 1 else randint_inclusive(1, self.max_count, gen)
        area = height * width
        log_lo, log_hi = math.log(self.min_aspect), math.log(1.0 / self.min_aspect)
        boxes = []
        for _ in range(count):
            for _ in range(100):
                share = self.scale[0] + uniform01(gen) * (self.scale[1] - self.scale[0])
                target = share * area / count
                aspect = math.exp(log_lo + uniform01(gen) * (log_hi - log_lo))
                h = int(round(math.sqrt(target * aspect)))
                w = int(round(math.sqrt(target / aspect)))
                if w < width and h < height:
                    top = randint_inclusive(0, height - h, gen)
                    left = randint_inclusive(0, width - w, gen)
                    boxes.append((top, left, h, w))
                    break
        return boxes

    def __call__(self, video, generator=None, **params):
        gen = self._gen(generator)
        if not video.is_floating_point():
            raise TypeError("RandomErasing expects a float (normalised) clip [T, C, H, W]")
        boxes = self.get_boxes(video.shape[-2], video.shape[-1], gen)
        if not boxes:
            return video
        video = video.clone()
        frames, channels = video.shape[0], video.shape[1]
        for top, left, h, w in boxes:
            if self.mode == "pixel":
                fill = torch.randn((frames, channels, h, w), generator=gen)
            elif self.mode == "rand":
                fill = torch.randn((frames, channels, 1, 1), generator=gen).expand(-1, -1, h, w)
            else:
                fill = torch.zeros((frames, channels, h, w))
            video[..., top : top + h, left : left + w] = fill.to(video.dtype)
        return video


class Resize(VideoTransform):
    """Resize every frame to ``size`` (h, w), bilinear with antialiasing."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(None)
        self.size = _pair(size)

    def __call__(self, video, generator=None, **params):
        return _resize(video, self.size)


def short_side_sizes(height: int, width: int, size: int) -> tuple[int, int]:
    """``(new_h, new_w)`` with the short side ``size``, the long side ``int(size * long / short)``
    (the official ``get_resize_sizes``; a square frame becomes ``size x size``)."""
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_bilinear(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[..., H, W]`` to ``size`` (h, w), no antialiasing.

    ``F.interpolate(mode="bilinear", align_corners=False)`` samples like OpenCV's
    ``INTER_LINEAR`` (the official test resize); uint8 input is rounded back to uint8.
    """
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    lead = video.shape[:-3]
    flat = video.reshape(-1, *video.shape[-3:])
    out = torch.nn.functional.interpolate(
        flat.float(), size=tuple(size), mode="bilinear", align_corners=False
    )
    if video.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(video.dtype)
    return out.reshape(*lead, *out.shape[-3:])


class ShortSideResize(VideoTransform):
    """Resize so the shorter side equals ``size`` (the official test/validation ``Resize``).

    The long side becomes ``int(size * long / short)``; nothing happens when the short side
    already equals ``size``. Bilinear without antialiasing (:func:`resize_bilinear`).
    """

    def __init__(self, size: int) -> None:
        super().__init__(None)
        self.size = int(size)

    def __call__(self, video, generator=None, **params):
        h, w = video.shape[-2:]
        if min(h, w) == self.size:
            return video
        return resize_bilinear(video, short_side_sizes(h, w, self.size))


class CenterCrop(VideoTransform):
    """Centre crop to ``size`` at ``round((H - h) / 2), round((W - w) / 2)`` (half to even, the
    official validation ``CenterCrop``). The clip must be at least ``size``."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(None)
        self.size = _pair(size)

    def __call__(self, video, generator=None, **params):
        h, w = video.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            raise InputError(
                f"centre crop {ch}x{cw} is larger than the {h}x{w} frames; "
                "resize the short side to at least the crop size"
            )
        top, left = round((h - ch) / 2), round((w - cw) / 2)
        return video[..., top : top + ch, left : left + cw]


class SpatialCrop(VideoTransform):
    """Crop ``crop_index`` of ``num_crops`` square-ish windows along the longer side (the
    official multi-crop test).

    Window ``k`` starts at ``int(k * (long - size) / (num_crops - 1))`` along the long side (one
    crop: ``int((long - size) / 2)``); along the short side it is centred
    (``int((short - size) / 2)``; 0 when the short side equals ``size``, the official case).
    Height counts as the long side when ``H >= W``, as officially. The crop index comes from
    the call parameter ``crop_index`` (multi-view testing), else from ``position``.
    """

    def __init__(self, size: int | Sequence[int], num_crops: int = 3, position: int = 0) -> None:
        super().__init__(None)
        if num_crops < 1:
            raise InputError(f"num_crops must be positive, got {num_crops}")
        self.size = _pair(size)
        self.num_crops = int(num_crops)
        self.position = position

    def offsets(self, height: int, width: int, crop_index: int) -> tuple[int, int]:
        """``(top, left)`` of window ``crop_index`` in a ``height x width`` frame."""
        if not 0 <= crop_index < self.num_crops:
            raise InputError(f"crop index must be in [0, {self.num_crops}), got {crop_index}")
        ch, cw = self.size
        if ch > height or cw > width:
            raise InputError(
                f"crop {ch}x{cw} is larger than the {height}x{width} frames; "
                "resize the short side to at least the crop size"
            )
        along_height = height >= width
        long_free = height - ch if along_height else width - cw
        short_free = width - cw if along_height else height - ch
        if self.num_crops == 1:
            start = int(long_free / 2)
        else:
            start = int(crop_index * (long_free / (self.num_crops - 1)))
        across = int(short_free / 2)
        return (start, across) if along_height else (across, start)

    def __call__(self, video, generator=None, crop_index: int | None = None, **params):
        pos = self.position if crop_index is None else int(crop_index)
        top, left = self.offsets(video.shape[-2], video.shape[-1], pos)
        ch, cw = self.size
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


def _resize_bicubic(video: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bicubic resize of ``[..., C, H, W]`` (uint8 results rounded and clamped, like
    torchvision's tensor resize)."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    lead = video.shape[:-3]
    flat = video.reshape(-1, *video.shape[-3:]).float()  # [N, C, H, W]
    out = torch.nn.functional.interpolate(
        flat, size=tuple(size), mode="bicubic", align_corners=False, antialias=antialias
    )
    if video.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(video.dtype)
    return out.reshape(*lead, *out.shape[-3:])


class BicubicResizedCrop(RandomResizedCrop):
    """:class:`umt.data.transforms.RandomResizedCrop` (same box draw, one box per clip) with
    a bicubic resize: torchvision's ``RandomResizedCrop(..., interpolation=BICUBIC)`` of the
    official multi-modality code. ``antialias=False`` is torchvision's tensor behaviour of
    the official environment."""

    def __call__(
        self, video: torch.Tensor, generator: torch.Generator | None = None, **params: Any
    ) -> torch.Tensor:
        top, left, h, w = self.get_params(video.shape[-2], video.shape[-1], self._gen(generator))
        box = video[..., top : top + h, left : left + w]
        return _resize_bicubic(box, self.size, self.antialias)


class BicubicResize(VideoTransform):
    """Resize every frame to ``size x size`` (or ``(h, w)``), bicubic: the official test
    ``Resize((size, size), interpolation=BICUBIC)`` (aspect ratio not kept)."""

    def __init__(self, size: int | Sequence[int], antialias: bool = False) -> None:
        super().__init__(None)
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        self.antialias = antialias

    def __call__(
        self, video: torch.Tensor, generator: torch.Generator | None = None, **params: Any
    ) -> torch.Tensor:
        return _resize_bicubic(video, self.size, self.antialias)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """float RGB 0-255 ``[..., 3, H, W]`` -> OpenCV uint8 HSV units (H 0-180, S, V 0-255),
    rounded as OpenCV rounds."""
    r, g, b = x.unbind(-3)
    v, _ = x.max(dim=-3)
    mn, _ = x.min(dim=-3)
    diff = v - mn
    s = torch.where(v > 0, 255.0 * diff / v.clamp(min=1e-6), torch.zeros_like(v))
    safe = diff.clamp(min=1e-6)
    h = torch.where(
        v == r,
        60.0 * (g - b) / safe,
        torch.where(v == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe),
    )
    h = torch.where(diff > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 360.0, h)
    return torch.stack([torch.round(h / 2) % 180, torch.round(s), v], dim=-3)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """OpenCV uint8 HSV units -> float RGB 0-255 (rounded)."""
    h, s, v = hsv.unbind(-3)
    h = (h * 2.0) / 60.0  # sector 0..6
    s = s / 255.0
    c = v * s
    xx = c * (1 - torch.abs(torch.remainder(h, 2.0) - 1))
    m = v - c
    zero = torch.zeros_like(h)
    sector = torch.floor(h).long() % 6
    choices = [
        (c, xx, zero),
        (xx, c, zero),
        (zero, c, xx),
        (zero, xx, c),
        (xx, zero, c),
        (c, zero, xx),
    ]
    out = torch.zeros(*hsv.shape, dtype=hsv.dtype)
    for k, (rr, gg, bb) in enumerate(choices):
        sel = sector == k
        out[..., 0, :, :] = torch.where(sel, rr + m, out[..., 0, :, :])
        out[..., 1, :, :] = torch.where(sel, gg + m, out[..., 1, :, :])
        out[..., 2, :, :] = torch.where(sel, bb + m, out[..., 2, :, :])
    return torch.round(out).clamp(0, 255)


def hsv_jitter(video: torch.Tensor, shifts: Sequence[int]) -> torch.Tensor:
    """AlphAction ``ColorJitter`` with drawn integer ``shifts = (hue, sat, val)``: float RGB
    0-255 ``[T, 3, H, W]`` -> the same, hue wrapping on 0-180, saturation / value clipped."""
    hsv = _rgb_to_hsv(video.float())
    dh, ds, dv = (float(s) for s in shifts)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + dh + 180.0, 180.0)
    hsv[:, 1] = (hsv[:, 1] + ds).clamp(0, 255)
    hsv[:, 2] = (hsv[:, 2] + dv).clamp(0, 255)
    return _hsv_to_rgb(hsv)
