"""Frame sampling: which frame indices of a video make a clip.

* :func:`segment_indices` — the official UMT *pretraining* sampling (``"segments"``): split the
  video into ``num_frames`` segments of ``n // num_frames`` frames and take one random frame of
  each; the last ``n mod num_frames`` frames are never used, a video shorter than
  ``num_frames`` gives copies of frame 0.
* :func:`sparse_indices` — the official UMT / VideoMAE segment sampling: split the video into
  ``num_frames`` equal segments and take one frame per segment (a random one when training,
  the middle one when testing). Videos shorter than ``num_frames`` repeat frames evenly.
* :func:`dense_indices` — ``num_frames`` frames ``stride`` apart from a random (training) or
  centred (testing) start. When the video is shorter than the span, the stride shrinks so
  the frames stay distinct (needs at least ``num_frames`` frames).
* :func:`eval_views` — ``num_clips x num_crops`` views for multi-view testing.

All random draws come from an explicit ``torch.Generator``; :func:`sample_seed` turns
``(seed, epoch, index)`` into the seed of a sample's generator.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import torch

SAMPLING_NAMES = ("segments", "sparse", "dense")
"""The sampling names :func:`sample_indices` (and the datasets) accept."""

__all__ = [
    "SAMPLING_NAMES",
    "sample_seed",
    "make_generator",
    "segment_indices",
    "sparse_indices",
    "dense_indices",
    "sample_indices",
    "min_frames_needed",
    "ClipView",
    "eval_views",
]


def sample_seed(seed: int, epoch: int, index: int, *extra: int) -> int:
    """A 63-bit seed for one sample, a pure function of ``(seed, epoch, index, *extra)``.

    Independent of worker id, process and Python hash randomisation. The trainer uses the
    same function to seed per-sample masks.
    """
    numbers = (int(seed), int(epoch), int(index), *(int(x) for x in extra))
    data = b"umt-sample" + b"".join(struct.pack("<Q", n & 0xFFFFFFFFFFFFFFFF) for n in numbers)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def randint_inclusive(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]`` (inclusive)."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def uniform01(generator: torch.Generator | None) -> float:
    """One uniform draw in [0, 1)."""
    return float(torch.rand((1,), generator=generator).item())


def segment_indices(
    video_frames: int,
    num_frames: int,
    train: bool = True,
    generator: torch.Generator | None = None,
    position: float | None = None,
) -> list[int]:
    """Official UMT pretraining sampling: one frame from each of ``T`` segments of ``n // T``.

    This is ``VideoMAE._sample_train_indices`` + ``_video_TSN_decord_batch_loader`` of the
    official ``single_modality/datasets/mae.py`` with ``num_segments = new_length = T``,
    ``skip_length = 1`` and ``sampling_rate = 1`` (the official pretraining scripts): with
    ``L = n // T``, segment ``i`` gives frame ``i * L + randint(0, L - 1)`` (uniform, both ends
    inclusive), so the last ``n mod T`` frames are never used; ``n < T`` gives ``T`` copies of
    frame 0.

    The official pretraining has no test mode. Here ``train=False`` takes the segment middles
    ``i * L + L // 2`` (or ``i * L + int(position * L)`` for a relative ``position`` in
    ``[0, 1)``, used for multi-clip testing). Training draws come from ``generator``.

    Returns ``T`` non-decreasing indices in ``[0, n)``.
    """
    if video_frames <= 0:
        raise ValueError(f"video has no frames (video_frames={video_frames})")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    length = video_frames // num_frames  # frames per segment
    if length == 0:
        return [0] * num_frames
    if train and position is None:
        return [i * length + randint_inclusive(0, length - 1, generator) for i in range(num_frames)]
    pos = 0.5 if position is None else min(max(float(position), 0.0), 1.0)
    inside = min(int(pos * length), length - 1)
    return [i * length + inside for i in range(num_frames)]


def sparse_indices(
    video_frames: int,
    num_frames: int,
    train: bool = True,
    generator: torch.Generator | None = None,
    offset: float | None = None,
) -> list[int]:
    """Segment-based sparse sampling (official UMT/VideoMAE ``num_frames`` sampling).

    Segment ``i`` covers frames ``[i*n/T, (i+1)*n/T)``. Training takes a uniform random frame
    in each segment (one draw per segment); testing takes the middle (or the relative position
    ``offset`` in ``[0, 1)``, used for multi-clip testing). ``n < T`` repeats frames evenly.

    Returns ``T`` indices in ``[0, n)``, non-decreasing.
    """
    if video_frames <= 0:
        raise ValueError(f"video has no frames (video_frames={video_frames})")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    n, t = video_frames, num_frames
    out = []
    for i in range(t):
        start = (i * n) // t
        end = max(((i + 1) * n) // t, start + 1)  # exclusive
        if train and offset is None:
            idx = randint_inclusive(start, end - 1, generator)
        else:
            pos = 0.5 if offset is None else float(offset)
            idx = start + int(pos * (end - start))
        out.append(min(idx, n - 1))
    return out


def dense_indices(
    video_frames: int,
    num_frames: int,
    stride: int,
    train: bool = True,
    generator: torch.Generator | None = None,
    position: float | None = None,
) -> list[int]:
    """Dense sampling: ``T`` frames ``stride`` apart.

    Training picks a uniform random start; testing centres the clip (or puts its start at the
    relative ``position`` in ``[0, 1]`` of the free range, used for multi-clip testing). When
    the span ``(T-1)*stride+1`` exceeds the video, the stride shrinks to fit; fewer than ``T``
    frames raises ``ValueError`` (callers report such videos as too short).
    """
    if num_frames <= 0 or stride <= 0:
        raise ValueError(f"num_frames and stride must be positive, got {num_frames}, {stride}")
    n, t = video_frames, num_frames
    if n < t:
        raise ValueError(f"video has {n} frames, dense sampling needs at least {t}")
    if t > 1:
        stride = min(stride, (n - 1) // (t - 1))
    span = (t - 1) * stride + 1
    free = n - span
    if train and position is None:
        start = randint_inclusive(0, free, generator)
    else:
        pos = 0.5 if position is None else min(max(float(position), 0.0), 1.0)
        start = int(round(pos * free))
    return [start + i * stride for i in range(t)]


def min_frames_needed(num_frames: int, sampling: str) -> int:
    """The default shortest usable video for a clip.

    Segment sampling (the official pretraining) accepts any video with a frame, like the
    official code (a short one gives copies of frame 0). Dense sampling needs ``num_frames``
    distinct frames. Sparse sampling repeats frames of a
    short video like the official code, but at most 2x: it needs ``ceil(num_frames / 2)``
    frames (and at least 2 for multi-frame clips), so a 1-frame video is never a clip.
    """
    if sampling == "segments":
        return 1
    if sampling == "dense":
        return num_frames
    if num_frames <= 1:
        return 1
    return max(2, (num_frames + 1) // 2)


def sample_indices(
    video_frames: int,
    num_frames: int,
    sampling: str = "sparse",
    stride: int = 4,
    train: bool = True,
    generator: torch.Generator | None = None,
    position: float | None = None,
) -> list[int]:
    """Dispatch to :func:`segment_indices` / :func:`sparse_indices` / :func:`dense_indices` by
    ``sampling`` name (one of :data:`SAMPLING_NAMES`)."""
    if sampling == "segments":
        return segment_indices(video_frames, num_frames, train, generator, position)
    if sampling == "sparse":
        return sparse_indices(video_frames, num_frames, train, generator, offset=position)
    if sampling == "dense":
        return dense_indices(video_frames, num_frames, stride, train, generator, position)
    raise ValueError(f"sampling must be one of {', '.join(SAMPLING_NAMES)}; got {sampling!r}")


@dataclass(frozen=True)
class ClipView:
    """One test view: which temporal clip and which spatial crop."""

    clip: int
    crop: int
    position: float  # relative temporal position handed to the sampler


def eval_views(num_clips: int = 1, num_crops: int = 1, sampling: str = "sparse") -> list[ClipView]:
    """``num_clips x num_crops`` views; clips are spread evenly over the video.

    Sparse and segment sampling use in-segment offsets ``(k + 0.5) / num_clips``; dense
    sampling spreads clip starts evenly from the first to the last possible start (centred for
    one clip).
    """
    if num_clips <= 0 or num_crops <= 0:
        raise ValueError("num_clips and num_crops must be positive")
    views = []
    for k in range(num_clips):
        if sampling in ("sparse", "segments"):
            pos = (k + 0.5) / num_clips
        else:
            pos = 0.5 if num_clips == 1 else k / (num_clips - 1)
        for c in range(num_crops):
            views.append(ClipView(clip=k, crop=c, position=pos))
    return views
