"""The clip transform of each recipe, ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float.

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
  erasing; output ``[C, T, H, W]``. Batch-level :class:`umt.data.transforms.mixup.Mixup` (mixup/cutmix with label
  smoothing) runs on the collated batch.
* :func:`build_eval_transform` — the official evaluation views: short-side resize (bilinear,
  no antialiasing, like OpenCV), the validation centre crop or crop ``k`` of ``K`` windows along
  the long side (multi-view test), normalise; output ``[C, T, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from umt.data.clip_spec import ClipSpec
from umt.data.transforms.randaugment import RAND_AUGMENT_DEFAULT, RandAugment
from umt.data.transforms.video import (
    BicubicResize,
    BicubicResizedCrop,
    CenterCrop,
    Compose,
    MultiScaleCrop,
    Normalize,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ShortSideResize,
    SpatialCrop,
    ToModelLayout,
    VideoTransform,
)
from umt.errors import InputError

__all__ = [
    "build_caption_transform",
    "build_clip_transform",
    "build_eval_transform",
    "build_finetune_transform",
    "build_pretrain_transform",
]


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


def build_clip_transform(clip: ClipSpec) -> Callable:
    """The clip transform ``clip`` describes: ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float.

    Evaluation (``clip.train`` False): one view (``num_clips = num_crops = 1``) is the official
    validation view (short-side resize + centre crop); more views are the official multi-view
    test, crop ``crop_index`` of ``num_crops`` windows along the long side."""
    train, augment, input_size, flip = clip.train, clip.augment, clip.input_size, clip.flip
    mean, std, num_crops = clip.mean, clip.std, clip.num_crops
    if not train:
        crop = "center" if clip.num_clips == 1 and num_crops == 1 else "views"
        return build_eval_transform(input_size, clip.short_side, crop, mean, std, num_crops)
    if augment == "pretrain":
        return build_pretrain_transform(input_size, clip.scales, flip, mean, std)
    if augment == "finetune":
        return build_finetune_transform(
            input_size,
            flip=flip,
            rand_augment=clip.rand_augment,
            erase_prob=clip.erase_prob,
            mean=mean,
            std=std,
        )
    raise InputError(f"augment must be 'pretrain' or 'finetune', got {augment!r}")


def build_caption_transform(
    train: bool = True,
    input_size: int = 224,
    rrc_scale: Sequence[float] = (0.5, 1.0),
    flip: bool = True,
    mean: str | Sequence[float] = "imagenet",
    std: str | Sequence[float] | None = None,
    antialias: bool = False,
) -> Compose:
    """The official multi-modality transform: ``[T, 3, H, W]`` uint8 -> ``[3, T, S, S]`` float.

    Training: :class:`BicubicResizedCrop` (area ``rrc_scale``, aspect 3/4..4/3) -> horizontal
    flip (p 0.5, when ``flip``) -> /255 -> normalise. Test: :class:`BicubicResize` to
    ``S x S`` -> /255 -> normalise. Random draws come from the per-sample generator.
    """
    steps: list[VideoTransform]
    if train:
        steps = [BicubicResizedCrop(input_size, rrc_scale, antialias=antialias)]
        if flip:
            steps.append(RandomHorizontalFlip(0.5))
    else:
        steps = [BicubicResize(input_size, antialias=antialias)]
    steps += [Normalize(mean, std), ToModelLayout()]
    return Compose(steps)
