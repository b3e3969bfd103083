"""Frame sampling: which frame indices of a video make a clip.

* :func:`segment_indices` — the official UMT *pretraining* sampling (``"segments"``): split the
  video into ``num_frames`` segments of ``n // num_frames`` frames and take one random frame of
  each; the last ``n mod num_frames`` frames are never used, a video shorter than
  ``num_frames`` gives copies of frame 0.
* :func:`sparse_indices` — the official fine-tuning sampling (``"sparse"``,
  ``kinetics_sparse.py``): ``num_frames`` segments of ``(n - 1) / T`` frames; training draws one
  frame per segment, test view ``c`` of ``C`` takes a fixed offset in every segment.
* :func:`ssv2_indices` — the official Something-Something-v2 scheme (``"ssv2"``, ``ssv2.py``):
  training as ``"segments"``; the test takes segment starts (view 0) and middles (view 1) of
  ``n / T``-frame segments, validation the middles. Exactly two temporal test views.
* :func:`dense_indices` — ``num_frames`` frames ``stride`` apart from a random (training) or
  centred (testing) start. When the video is shorter than the span, the stride shrinks so
  the frames stay distinct (needs at least ``num_frames`` frames).
  :func:`dense_test_indices` is the official dense multi-clip test (``kinetics.py``).
* :func:`interval_indices` — the official multi-modality (stage 2 / retrieval) sampling of
  ``multi_modality/dataset/video_utils.py``: ``"rand"`` (training: one random frame in each
  of ``T`` equal intervals) and ``"middle"`` (test: the middle of each interval).
* :func:`eval_views` — ``num_clips x num_crops`` test views, segment-major.

Evaluation has two single-clip flavours, as in the official code: the *validation* view (the
one clip used during training, ``clip_index=None``) and test view ``clip_index`` of
``num_clips`` (the multi-view test). All random draws come from an explicit
``torch.Generator``; :func:`sample_seed` turns ``(seed, epoch, index)`` into the seed of a
sample's generator.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
import torch

from umt.errors import InputError

SAMPLING_NAMES = ("segments", "sparse", "dense", "ssv2", "rand", "middle")
"""The sampling names :func:`sample_indices` (and the datasets) accept."""

SSV2_TEST_CLIPS = 2
"""Temporal test views of the official SSv2 scheme (every 2nd of ``2 T`` loaded frames)."""

__all__ = [
    "SAMPLING_NAMES",
    "SSV2_TEST_CLIPS",
    "sample_seed",
    "make_generator",
    "segment_indices",
    "sparse_indices",
    "ssv2_indices",
    "dense_indices",
    "dense_test_indices",
    "interval_indices",
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


def _check_counts(video_frames: int, num_frames: int) -> None:
    if video_frames <= 0:
        raise InputError(f"video has no frames (video_frames={video_frames})")
    if num_frames <= 0:
        raise InputError(f"num_frames must be positive, got {num_frames}")


def _check_clip(clip_index: int, num_clips: int) -> None:
    if num_clips <= 0 or not 0 <= clip_index < num_clips:
        raise InputError(
            f"test clip {clip_index} of {num_clips}: need num_clips >= 1 and "
            "0 <= clip_index < num_clips"
        )


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
    frame 0. (The official SSv2 fine-tuning trains with the same draw.)

    The official pretraining has no test mode. Here ``train=False`` takes the segment middles
    ``i * L + L // 2`` (or ``i * L + int(position * L)`` for a relative ``position`` in
    ``[0, 1)``, used for multi-clip testing). Training draws come from ``generator``.

    Returns ``T`` non-decreasing indices in ``[0, n)``.
    """
    _check_counts(video_frames, num_frames)
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
    clip_index: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """Official fine-tuning sampling (``kinetics_sparse.py`` ``_get_seq_frames``).

    With ``seg = max(0, (n - 1) / T)`` and ``round`` half to even (numpy's and Python's):

    * training: frame ``i`` is uniform in ``[round(seg * i), round(seg * (i + 1))]`` (both ends
      inclusive, one draw per segment from ``generator``), capped at ``n - 1``;
    * test view ``c = clip_index`` of ``C = num_clips``: frame ``i`` is
      ``min(round(seg * i) + int(seg / (C + 1) * (c + 1)), n - 1)``. The official validation
      view (``mode='validation'``) is ``c = 0`` of ``C = 1``, the default.

    Short videos repeat frames (``n < T``); ``n = 1`` gives ``T`` copies of frame 0.
    Returns ``T`` non-decreasing indices in ``[0, n)``.
    """
    _check_counts(video_frames, num_frames)
    seg = max(0.0, float(video_frames - 1) / num_frames)
    last = video_frames - 1
    if train:
        return [
            min(randint_inclusive(round(seg * i), round(seg * (i + 1)), generator), last)
            for i in range(num_frames)
        ]
    _check_clip(clip_index, num_clips)
    offset = int(seg / (num_clips + 1) * (clip_index + 1))
    return [min(round(seg * i) + offset, last) for i in range(num_frames)]


def ssv2_indices(
    video_frames: int,
    num_frames: int,
    train: bool = True,
    generator: torch.Generator | None = None,
    clip_index: int | None = None,
    num_clips: int = SSV2_TEST_CLIPS,
) -> list[int]:
    """Official Something-Something-v2 sampling (``ssv2.py`` ``loadvideo_decord``).

    * training: :func:`segment_indices` (segments of ``n // T`` frames, one uniform draw each;
      ``n < T``: copies of frame 0);
    * test (``clip_index`` given): with ``tick = n / T`` the official code loads the ``2 T``
      frames ``int(tick * x)`` and ``int(tick / 2 + tick * x)``, sorted, and temporal view ``c``
      takes every 2nd of them from position ``c``: view 0 = ``int(tick * x)`` (segment starts),
      view 1 = ``int(tick / 2 + tick * x)`` (middles). So ``num_clips`` is 2 (the official
      SSv2 test) or 1 (view 0 only);
    * validation (``clip_index=None``, ``mode='validation'``): the middles.

    Returns ``T`` non-decreasing indices in ``[0, n)``.
    """
    _check_counts(video_frames, num_frames)
    if train:
        return segment_indices(video_frames, num_frames, True, generator)
    tick = video_frames / float(num_frames)
    if clip_index is None:
        return [int(tick / 2.0 + tick * x) for x in range(num_frames)]
    if num_clips not in (1, SSV2_TEST_CLIPS):
        raise InputError(
            f"ssv2 sampling has 1 or 2 temporal test views (every 2nd of 2T frames), "
            f"not {num_clips}; use --views 2xK"
        )
    _check_clip(clip_index, num_clips)
    if clip_index == 0:
        return [int(tick * x) for x in range(num_frames)]
    return [int(tick / 2.0 + tick * x) for x in range(num_frames)]


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
    relative ``position`` in ``[0, 1]`` of the free range). When the span ``(T-1)*stride+1``
    exceeds the video, the stride shrinks to fit; fewer than ``T`` frames raises
    ``ValueError`` (callers report such videos as too short). The official dense multi-clip
    test is :func:`dense_test_indices`.
    """
    if num_frames <= 0 or stride <= 0:
        raise InputError(f"num_frames and stride must be positive, got {num_frames}, {stride}")
    n, t = video_frames, num_frames
    if n < t:
        raise InputError(f"video has {n} frames, dense sampling needs at least {t}")
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


def dense_test_indices(
    video_frames: int, num_frames: int, stride: int, clip_index: int, num_clips: int
) -> list[int]:
    """Official dense multi-clip test (``kinetics.py`` ``loadvideo_decord``, ``mode='test'``).

    With ``span = T * stride``, clip ``c`` of ``C`` starts at
    ``int(c * max((n - span) / (C - 1), 0))`` and takes every ``stride``-th frame below
    ``min(start + span, n)``, the last one repeated up to ``T`` frames. The official code divides
    by zero for ``C = 1``; here one clip starts at ``int(max(n - span, 0) / 2)`` (centred).
    """
    _check_counts(video_frames, num_frames)
    if stride <= 0:
        raise InputError(f"stride must be positive, got {stride}")
    _check_clip(clip_index, num_clips)
    span = num_frames * stride
    if num_clips == 1:
        start = int(max(video_frames - span, 0) / 2)
    else:
        start = int(clip_index * max((video_frames - span) / (num_clips - 1), 0.0))
    out = list(range(start, min(start + span, video_frames), stride))
    out += [out[-1]] * (num_frames - len(out))
    return out


def interval_indices(
    video_frames: int,
    num_frames: int,
    train: bool = True,
    generator: torch.Generator | None = None,
    position: float | None = None,
) -> list[int]:
    """Official multi-modality sampling (``get_frame_indices`` of the official
    ``multi_modality/dataset/video_utils.py``): ``"rand"`` for training, ``"middle"`` for test.

    With ``A = min(T, n)`` the video is cut at ``int(linspace(0, n, A + 1))`` into ``A``
    intervals; interval ``i`` covers ``[x0, x1]`` with ``x1 = next start - 1``.

    * training (``train=True``, ``position=None``): one frame uniform in ``[x0, x1 - 1]`` per
      interval (the official ``random.choice(range(x0, x1))``: the last frame of an interval is
      never drawn). When an interval is a single frame that range is empty and, as officially,
      the whole clip is instead ``A`` distinct frames drawn uniformly and sorted;
    * test: the middles ``(x0 + x1) // 2``; a relative ``position`` in ``[0, 1]`` gives
      ``x0 + int(position * (x1 - x0))`` instead (0.5 is the middle; used for multi-clip tests,
      which the official code does not have).

    A video shorter than ``T`` frames gets its ``A = n`` frames padded with the last one.
    Draws come from ``generator``. Returns ``T`` non-decreasing indices in ``[0, n)``.
    """
    _check_counts(video_frames, num_frames)
    count = min(num_frames, video_frames)
    cuts = [int(x) for x in np.linspace(0, video_frames, count + 1).astype(int)]
    ranges = [(cuts[i], cuts[i + 1] - 1) for i in range(count)]
    if train and position is None:
        if all(hi > lo for lo, hi in ranges):
            out = [randint_inclusive(lo, hi - 1, generator) for lo, hi in ranges]
        else:  # the official fallback when an interval is one frame long
            perm = torch.randperm(video_frames, generator=generator)[:count]
            out = sorted(int(i) for i in perm)
    elif position is None:
        out = [(lo + hi) // 2 for lo, hi in ranges]
    else:
        pos = min(max(float(position), 0.0), 1.0)
        out = [lo + int(pos * (hi - lo)) for lo, hi in ranges]
    return out + [out[-1]] * (num_frames - len(out))


def min_frames_needed(num_frames: int, sampling: str) -> int:
    """The default shortest usable video for a clip.

    Segment, SSv2, rand and middle sampling (official pretraining / SSv2 / multi-modality)
    accept any video with a frame, like the official code (a short one repeats frames). Dense sampling needs
    ``num_frames`` distinct frames. Sparse sampling repeats frames of a short video like the
    official code, but at most 2x: it needs ``ceil(num_frames / 2)`` frames (and at least 2 for
    multi-frame clips), so a 1-frame video is never a training clip. (The multi-view test takes
    every video with a frame, as the official test does.)
    """
    if sampling in ("segments", "ssv2", "rand", "middle"):
        return 1
    if sampling == "dense":
        return num_frames
    if num_frames <= 1:
        return 1
    return max(2, (num_frames + 1) // 2)


@dataclass(frozen=True)
class ClipView:
    """One test view: temporal clip ``clip`` of ``num_clips``, spatial crop ``crop`` of
    ``num_crops``. ``index`` is its position in the segment-major order."""

    clip: int
    crop: int
    num_clips: int = 1
    num_crops: int = 1

    @property
    def index(self) -> int:
        """``clip * num_crops + crop``."""
        return self.clip * self.num_crops + self.crop


def sample_indices(
    video_frames: int,
    num_frames: int,
    sampling: str = "sparse",
    stride: int = 4,
    train: bool = True,
    generator: torch.Generator | None = None,
    view: ClipView | None = None,
) -> list[int]:
    """The frame indices of one clip, by ``sampling`` name (one of :data:`SAMPLING_NAMES`).

    ``train``: a random draw from ``generator``. Otherwise ``view=None`` is the validation clip
    (sparse: the official ``mode='validation'`` clip; ssv2: the segment middles; segments /
    dense: centred; rand / middle: the interval middles) and a :class:`ClipView` is test clip
    ``view.clip`` of ``view.num_clips`` (sparse, ssv2 and dense follow the official test;
    segments, rand and middle, which the official code never tests with several clips, take
    the relative position ``(clip + 0.5) / num_clips`` in each segment / interval).

    ``"rand"`` and ``"middle"`` are :func:`interval_indices` (the official multi-modality
    ``sample_type``): ``"rand"`` draws when ``train``, ``"middle"`` never draws (also when
    ``train``), exactly like the official ``sample_type="middle"``.
    """
    if sampling not in SAMPLING_NAMES:
        raise InputError(f"sampling must be one of {', '.join(SAMPLING_NAMES)}; got {sampling!r}")
    if sampling in ("rand", "middle"):
        if train and sampling == "rand":
            return interval_indices(video_frames, num_frames, True, generator)
        if view is None:
            return interval_indices(video_frames, num_frames, False)
        _check_clip(view.clip, view.num_clips)
        position = (view.clip + 0.5) / view.num_clips
        return interval_indices(video_frames, num_frames, False, position=position)
    if train or view is None:
        if sampling == "segments":
            return segment_indices(video_frames, num_frames, train, generator)
        if sampling == "sparse":
            return sparse_indices(video_frames, num_frames, train, generator)
        if sampling == "ssv2":
            return ssv2_indices(video_frames, num_frames, train, generator)
        return dense_indices(video_frames, num_frames, stride, train, generator)
    clip, clips = view.clip, view.num_clips
    if sampling == "segments":
        _check_clip(clip, clips)
        return segment_indices(video_frames, num_frames, False, position=(clip + 0.5) / clips)
    if sampling == "sparse":
        return sparse_indices(video_frames, num_frames, False, clip_index=clip, num_clips=clips)
    if sampling == "ssv2":
        return ssv2_indices(video_frames, num_frames, False, clip_index=clip, num_clips=clips)
    return dense_test_indices(video_frames, num_frames, stride, clip, clips)


def eval_views(num_clips: int = 1, num_crops: int = 1, sampling: str = "sparse") -> list[ClipView]:
    """The ``num_clips x num_crops`` test views, segment-major (view = clip * crops + crop).

    Refuses counts the sampling cannot give (ssv2: 1 or 2 temporal views).
    """
    if num_clips <= 0 or num_crops <= 0:
        raise InputError(f"num_clips and num_crops must be positive, got {num_clips} x {num_crops}")
    if sampling == "ssv2" and num_clips not in (1, SSV2_TEST_CLIPS):
        raise InputError(
            f"ssv2 sampling has 1 or 2 temporal test views (every 2nd of 2T frames), "
            f"not {num_clips}; use 2 clips"
        )
    return [
        ClipView(clip=k, crop=c, num_clips=num_clips, num_crops=num_crops)
        for k in range(num_clips)
        for c in range(num_crops)
    ]
