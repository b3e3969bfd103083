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
* :func:`build_finetune_transform` — the official fine-tuning augmentation: RandAugment
  (``rand-m7-n4-mstd0.5-inc1``) on the raw frames, normalise, random-resized crop, flip, random
  erasing; output ``[C, T, H, W]``. Batch-level :class:`Mixup` (mixup/cutmix with label
  smoothing) runs on the collated batch.
* :func:`build_eval_transform` — the official evaluation views: short-side resize (bilinear,
  no antialiasing, like OpenCV), the validation centre crop or crop ``k`` of ``K`` windows along
  the long side (multi-view test), normalise; output ``[C, T, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    "RandAugment",
    "RandAugmentStep",
    "RAND_AUGMENT_DEFAULT",
    "RAND_AUGMENT_OPS",
    "RAND_AUGMENT_INCREASING_OPS",
    "parse_rand_augment",
    "RandomErasing",
    "Resize",
    "short_side_sizes",
    "resize_bilinear",
    "ShortSideResize",
    "CenterCrop",
    "SpatialCrop",
    "Normalize",
    "ToModelLayout",
    "Mixup",
    "MixParams",
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


# --------------------------------------------------------------------------- RandAugment
RAND_AUGMENT_DEFAULT = "rand-m7-n4-mstd0.5-inc1"
_MAX_LEVEL = 10.0
_PIL_GRAY = (128, 128, 128)  # the official fill: create_random_augment passes no img_mean

RAND_AUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
RAND_AUGMENT_INCREASING_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)


def parse_rand_augment(config: str) -> dict[str, Any]:
    """``"rand-m7-n4-mstd0.5-inc1"`` -> ``{"magnitude": 7, "num_ops": 4, "magnitude_std": 0.5,
    "increasing": True}`` (timm's RandAugment string; defaults m10, n2, mstd0, inc0)."""
    parts = str(config).strip().split("-")
    if parts[0] != "rand":
        raise InputError(
            f"RandAugment config {config!r} must start with 'rand-' (e.g. {RAND_AUGMENT_DEFAULT})"
        )
    out: dict[str, Any] = {
        "magnitude": _MAX_LEVEL,
        "num_ops": 2,
        "magnitude_std": 0.0,
        "increasing": False,
    }
    for part in parts[1:]:
        key = part.rstrip("0123456789.")
        value = part[len(key) :]
        try:
            if key == "m":
                out["magnitude"] = float(int(value))
            elif key == "n":
                out["num_ops"] = int(value)
            elif key == "mstd":
                out["magnitude_std"] = float(value)
            elif key == "inc":
                out["increasing"] = bool(int(value))
            else:
                raise ValueError
        except ValueError:
            raise InputError(
                f"RandAugment config {config!r}: cannot read {part!r}; use m<int>, n<int>, "
                f"mstd<float>, inc<0|1>, e.g. {RAND_AUGMENT_DEFAULT}"
            ) from None
    return out


@dataclass(frozen=True)
class RandAugmentStep:
    """One of the ``num_ops`` ops drawn for a clip: whether it fires (probability 0.5), its
    noisy magnitude (clipped to [0, 10]) and the argument it gets (angle in degrees, enhance
    factor, bits, threshold, shear factor or translation as a fraction of the frame side)."""

    name: str
    applied: bool
    magnitude: float | None = None
    args: tuple[float, ...] = ()


def _op_args(name: str, level: float, generator: torch.Generator | None) -> tuple[float, ...]:
    """The official ``*_level_to_arg`` of op ``name`` at ``level`` in [0, 10]; signed ops are
    negated with probability 0.5 (one draw, as ``_randomly_negate``)."""
    frac = level / _MAX_LEVEL

    def signed(value: float) -> float:
        return -value if uniform01(generator) > 0.5 else value

    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (signed(frac * 30.0),)
    if name == "Posterize":
        return (int(frac * 4),)
    if name == "PosterizeIncreasing":
        return (4 - int(frac * 4),)
    if name == "Solarize":
        return (int(frac * 256),)
    if name == "SolarizeIncreasing":
        return (256 - int(frac * 256),)
    if name == "SolarizeAdd":
        return (int(frac * 110),)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (frac * 1.8 + 0.1,)
    if name in (
        "ColorIncreasing",
        "ContrastIncreasing",
        "BrightnessIncreasing",
        "SharpnessIncreasing",
    ):
        return (1.0 + signed(frac * 0.9),)
    if name in ("ShearX", "ShearY"):
        return (signed(frac * 0.3),)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (signed(frac * 0.45),)
    raise InputError(f"unknown RandAugment op {name!r}")


def _pil_affine(
    video: torch.Tensor,
    matrix: Sequence[float],
    interpolation: str,
    fill: Sequence[float],
) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, matrix)`` on uint8 ``[T, C, H, W]``: output pixel
    centre ``(x, y)`` samples the input at ``(a x + b y + c, d x + e y + f)``; samples from
    outside the frame get ``fill``; borders are clamped for the interpolation kernel."""
    t, c, h, w = video.shape
    a, b, cc, d, e, f = (float(v) for v in matrix)
    ys = torch.arange(h, dtype=torch.float32, device=video.device) + 0.5
    xs = torch.arange(w, dtype=torch.float32, device=video.device) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    x_in = a * xx + b * yy + cc
    y_in = d * xx + e * yy + f
    grid = torch.stack((x_in / w * 2 - 1, y_in / h * 2 - 1), dim=-1)  # [H, W, 2]
    out = torch.nn.functional.grid_sample(
        video.float(),
        grid.unsqueeze(0).expand(t, h, w, 2),
        mode=interpolation,
        padding_mode="border",
        align_corners=False,
    )
    outside = (x_in < 0) | (x_in >= w) | (y_in < 0) | (y_in >= h)  # [H, W]
    fill_t = torch.tensor(list(fill)[:c], dtype=out.dtype, device=out.device).view(1, c, 1, 1)
    out = torch.where(outside, fill_t, out)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _rotation_matrix(degrees: float, height: int, width: int) -> tuple[float, ...]:
    """PIL's ``Image.rotate`` (counter-clockwise about the frame centre) as an affine matrix."""
    angle = -math.radians(degrees)
    a, b = round(math.cos(angle), 15), round(math.sin(angle), 15)
    d, e = -b, a
    cx, cy = width / 2.0, height / 2.0
    return (a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy)


class RandAugment(VideoTransform):
    """Video RandAugment of the official fine-tuning (timm ``rand_augment_transform`` on a list
    of frames): the same ops and magnitudes for every frame of a clip.

    ``config`` is timm's string (default ``"rand-m7-n4-mstd0.5-inc1"``): ``num_ops`` ops are
    drawn uniformly with replacement from the 15 ops (the "increasing" set with ``inc1``); each
    fires with probability 0.5, its magnitude is ``N(m, mstd)`` clipped to [0, 10], and signed
    ops flip their sign with probability 0.5. Geometric ops follow PIL's affine convention
    (translations are ``0.45 * level / 10`` of the frame side, as ``TranslateXRel``) with
    ``interpolation`` (official: bicubic) and gray ``fill`` (official: 128); AutoContrast,
    Equalize and Contrast use each frame's own statistics, as PIL does per image. Input:
    uint8 ``[T, 3, H, W]`` (raw frames, before normalisation). All draws come from the
    generator.
    """

    def __init__(
        self,
        config: str = RAND_AUGMENT_DEFAULT,
        interpolation: str = "bicubic",
        fill: Sequence[int] = _PIL_GRAY,
        prob: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        if interpolation not in ("bicubic", "bilinear", "nearest"):
            raise InputError(
                f"RandAugment interpolation must be bicubic, bilinear or nearest, "
                f"not {interpolation!r}"
            )
        params = parse_rand_augment(config)
        self.config = config
        self.num_ops = int(params["num_ops"])
        self.magnitude = float(params["magnitude"])
        self.magnitude_std = float(params["magnitude_std"])
        self.ops = RAND_AUGMENT_INCREASING_OPS if params["increasing"] else RAND_AUGMENT_OPS
        self.prob = float(prob)
        self.interpolation = interpolation
        self.fill = tuple(int(v) for v in fill)

    def sample(self, generator: torch.Generator | None = None) -> list[RandAugmentStep]:
        """The ops for one clip, in the official draw order: the ``num_ops`` op choices, then
        per op the firing draw, the magnitude noise and the sign."""
        gen = self._gen(generator)
        picks = torch.randint(0, len(self.ops), (self.num_ops,), generator=gen).tolist()
        steps = []
        for index in picks:
            name = self.ops[index]
            if self.prob < 1.0 and uniform01(gen) > self.prob:
                steps.append(RandAugmentStep(name, applied=False))
                continue
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                noise = float(torch.randn((1,), generator=gen, dtype=torch.float64).item())
                magnitude = magnitude + self.magnitude_std * noise
            magnitude = min(_MAX_LEVEL, max(0.0, magnitude))
            steps.append(RandAugmentStep(name, True, magnitude, _op_args(name, magnitude, gen)))
        return steps

    def apply_op(self, video: torch.Tensor, name: str, args: tuple[float, ...]) -> torch.Tensor:
        """Apply one op with its argument to uint8 ``[T, 3, H, W]`` (every frame alike)."""
        from torchvision.transforms.v2 import functional as F

        base = name.removesuffix("Increasing")
        height, width = video.shape[-2:]
        if base == "AutoContrast":
            return F.autocontrast(video)
        if base == "Equalize":
            return F.equalize(video)
        if base == "Invert":
            return F.invert(video)
        (value,) = args
        if base == "Posterize":
            return video if value >= 8 else F.posterize(video, int(value))
        if base == "Solarize":
            return video if value >= 256 else F.solarize(video, int(value))
        if base == "SolarizeAdd":
            added = (video.to(torch.int16) + int(value)).clamp_(max=255).to(torch.uint8)
            return torch.where(video < 128, added, video)
        if base == "Color":
            return F.adjust_saturation(video, value)
        if base == "Contrast":
            return F.adjust_contrast(video, value)
        if base == "Brightness":
            return F.adjust_brightness(video, value)
        if base == "Sharpness":
            return F.adjust_sharpness(video, value)
        if base == "Rotate":
            matrix = _rotation_matrix(value, height, width)
        elif base == "ShearX":
            matrix = (1.0, value, 0.0, 0.0, 1.0, 0.0)
        elif base == "ShearY":
            matrix = (1.0, 0.0, 0.0, value, 1.0, 0.0)
        elif base == "TranslateXRel":
            matrix = (1.0, 0.0, value * width, 0.0, 1.0, 0.0)
        elif base == "TranslateYRel":
            matrix = (1.0, 0.0, 0.0, 0.0, 1.0, value * height)
        else:
            raise InputError(f"unknown RandAugment op {name!r}")
        return _pil_affine(video, matrix, self.interpolation, self.fill)

    def __call__(self, video, generator=None, **params):
        if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[1] != 3:
            raise TypeError(
                f"RandAugment needs uint8 frames [T, 3, H, W] (apply it before Normalize), "
                f"got {video.dtype} {tuple(video.shape)}"
            )
        for step in self.sample(generator):
            if step.applied:
                video = self.apply_op(video, step.name, step.args)
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
    rand_augment: str | bool | None = RAND_AUGMENT_DEFAULT,
    erase_prob: float = 0.25,
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
    ratio: Sequence[float] = (0.75, 1.3333),
    interpolation: str = "bicubic",
    erase_mode: str = "pixel",
    erase_count: int = 1,
) -> Compose:
    """The official fine-tuning augmentation (``kinetics_sparse._aug_frame``), in its order:

    RandAugment on the raw uint8 frames (``rand_augment``: timm string, True = the official
    ``"rand-m7-n4-mstd0.5-inc1"``, False/None = off; ``interpolation`` for its geometric ops)
    -> scale to [0, 1] and normalise -> random-resized crop (area ``scale``, aspect ``ratio``,
    bilinear to ``input_size``) -> horizontal flip with p 0.5 (``flip=False`` for SSv2) ->
    random erasing (``erase_prob``, ``erase_mode``, up to ``erase_count`` boxes, the same box
    in every frame) -> ``[C, T, H, W]``.

    ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float. Mixup/cutmix is batch-level (:class:`Mixup`).
    """
    steps: list[VideoTransform] = []
    if rand_augment:
        config = RAND_AUGMENT_DEFAULT if rand_augment is True else str(rand_augment)
        steps.append(RandAugment(config, interpolation=interpolation))
    steps.append(Normalize(mean, std))
    steps.append(RandomResizedCrop(input_size, scale, ratio))
    if flip:
        steps.append(RandomHorizontalFlip(0.5))
    if erase_prob > 0:
        steps.append(RandomErasing(erase_prob, mode=erase_mode, max_count=erase_count))
    steps.append(ToModelLayout())
    return Compose(steps)


def build_eval_transform(
    input_size: int = 224,
    short_side: int | None = None,
    crop: str = "center",
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
    num_crops: int = 3,
) -> Compose:
    """Evaluation transform: ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float, ``S = input_size``.

    The short side is resized to ``short_side`` (default ``input_size``) with
    :class:`ShortSideResize`, then

    * ``crop="center"``: the official validation view, a :class:`CenterCrop`;
    * ``crop="views"`` (or ``"three"``, ``num_crops=3``): the official multi-crop test, crop
      ``crop_index`` (given at call time) of ``num_crops`` windows along the long side
      (:class:`SpatialCrop`). The official test crops windows of ``short_side``; equal sizes
      (the default) reproduce it exactly,

    then values scaled to [0, 1] and normalised (ImageNet by default).
    """
    if crop not in ("center", "views", "three"):
        raise InputError(f"crop must be 'center', 'views' or 'three', got {crop!r}")
    side = int(short_side or input_size)
    if side < input_size:
        raise InputError(
            f"short side {side} is smaller than the crop size {input_size}; "
            "use a short side of at least the input size"
        )
    steps: list[VideoTransform] = [ShortSideResize(side)]
    if crop == "center":
        steps.append(CenterCrop(input_size))
    else:
        steps.append(SpatialCrop(input_size, 3 if crop == "three" else num_crops))
    steps += [Normalize(mean, std), ToModelLayout()]
    return Compose(steps)
