"""How a clip is cut from a video and transformed: one :class:`ClipSpec` instead of a dataset
constructor with a keyword for every knob."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ClipSpec"]


@dataclass(frozen=True)
class ClipSpec:
    """The clip a dataset makes of each video: which frames, which transform, how many views.

    Sampling:
        num_frames / sampling / frame_stride: ``T`` frames by ``sampling`` (``"segments"``:
            official pretraining segments of ``n // T`` frames; ``"sparse"``: fine-tuning
            segments; ``"ssv2"``; ``"dense"`` with ``frame_stride``; ``"rand"`` / ``"middle"``).
        min_frames: shortest usable video (None: :func:`umt.data.sampling.min_frames_needed`;
            :class:`umt.data.datasets.MultiViewDataset` reads None as 1, as the official test).
        max_seconds: sample only from the first ``max_seconds`` of a longer video (DiDeMo's
            ``trimmed30`` is 30); needs the frame rate, so not for folders of extracted frames.
        image_repeat: copies of a still image that make its clip.
    Transform (:func:`umt.data.transforms.recipes.build_clip_transform`):
        train: random sampling + augmentation; else the evaluation views.
        input_size: side ``S`` of the square clip ``[3, T, S, S]``.
        augment: ``"pretrain"`` (multi-scale crop + flip) or ``"finetune"`` (RRC, flip,
            RandAugment when ``rand_augment``, erasing with ``erase_prob``) when ``train``.
        scales / flip: the pretraining crop scales and the horizontal flip.
        short_side: the evaluation short-side resize (None: ``input_size``).
        mean / std: ``"imagenet"`` / ``"clip"`` or triples (std None: the named one's).
    Views:
        num_clips / num_crops: evaluation views (1 x 1: the official validation view; more:
            the official multi-view test, ``num_clips x num_crops`` views in segment-major order).
        clips_per_video: repeated augmentation (the official fine-tuning ``num_sample``; the
            config's ``data.clips_per_video``): the decoded frames are transformed
            ``clips_per_video`` times, the clip is ``[clips_per_video, 3, T, S, S]``.
    """

    num_frames: int = 8
    sampling: str = "sparse"
    frame_stride: int = 4
    min_frames: int | None = None
    max_seconds: float | None = None
    image_repeat: int = 1
    train: bool = True
    input_size: int = 224
    augment: str = "pretrain"
    scales: Sequence[float] = (1, 0.875, 0.75, 0.66)
    flip: bool = True
    rand_augment: bool = False
    erase_prob: float = 0.0
    short_side: int | None = None
    mean: str | Sequence[float] = "imagenet"
    std: str | Sequence[float] | None = None
    num_clips: int = 1
    num_crops: int = 1
    clips_per_video: int = 1
