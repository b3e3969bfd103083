"""RandAugment for clips: the official fine-tuning ``rand-m7-n4-mstd0.5-inc1`` (timm's ops on
PIL images), one draw of ops and magnitudes per clip."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from umt.data.sampling import uniform01
from umt.data.transforms.video import VideoTransform
from umt.errors import InputError

__all__ = [
    "RAND_AUGMENT_DEFAULT",
    "RAND_AUGMENT_OPS",
    "RAND_AUGMENT_INCREASING_OPS",
    "RandAugment",
    "RandAugmentStep",
    "parse_rand_augment",
]

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
