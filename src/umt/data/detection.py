"""AVA-style action detection data: keyframes of videos, person boxes and their actions.

The official pipeline (``AD/data/transforms.py`` ``build_transforms``, AlphAction's
``video_transforms``) as one dataset, :class:`AVADataset`:

1. **Clip.** The keyframe of ``(video_id, timestamp)`` is frame ``round(timestamp * fps)`` of
   ``root/<video_id>.<ext>`` (clamped to the video; ``fps`` from the file unless given), and the
   clip is ``num_frames`` frames ``sampling_rate`` apart around it: offsets
   ``(i - num_frames // 2) * sampling_rate`` (AlphAction ``TemporalCrop(8, 8, sparse)``: 8 frames
   at stride 8, a 64-frame span), indices clamped at the ends of the video.

   Supported layout now: **one video file per ``video_id``** whose frame 0 is second 0 (the
   synthetic set: 16 frames at 8 fps, keyframe = timestamp 1 = frame 8, its middle frame; a
   full AVA movie works the same). The official reads AlphAction's per-second clip files around
   the keyframe (``AVA/clips/trainval/<video>/<second>.mp4``); that layout is not supported yet.
2. **Resize** the short side to ``short_side`` (official 256; AlphAction ``Resize.get_size``:
   the long side ``int(short_side * long / short)``), boxes scaled with the frame.
3. **Training only:** a random ``input_size`` square crop (official ``RandomClip`` 224; boxes
   shifted, clipped to the crop, boxes left empty dropped), colour jitter in HSV (AlphAction
   ``ColorJitter(hue 20, sat 0.1, val 0.1)``: integer shifts of up to 10 hue units on OpenCV's
   0-180 scale (wrapping), up to 26 saturation and value units on 0-255 (clipped), one draw per
   clip), horizontal flip with p = 0.5 (boxes flipped: ``x1' = W - 1 - x2``).
   At test: the full resized frame, no crop.
4. **Normalise**, RGB on the 0-255 scale: mean ``(122.7717, 115.9465, 102.9801)``, std 57.375.

Boxes are pixels ``(x1, y1, x2, y2)`` of the transformed (unpadded) frame with AlphAction's
inclusive corners: a normalised AVA box maps to ``x1 = x1n * W``, ``x2 = x2n * W - 1`` of the
original frame (the inverse of :func:`umt.evaluate.detection.pixel_boxes_to_normalised`).

Training items carry the ground-truth boxes and their multi-hot actions (column ``a - 1`` for
action id ``a``); test items the detector's boxes (a box CSV, ``score >= box_thresh``, official
0.8) and their scores. :func:`collate_detection` zero-pads the videos to the batch's largest
frame rounded up to a multiple of 16 (AlphAction ``BatchCollator(size_divisible=16)``).

Randomness: each item's crop / jitter / flip come from ``make_generator(sample_seed(seed, epoch,
index))``, so an item is a pure function of ``(seed, epoch, index)`` and resumes are exact.
Unreadable videos are faults (counted, warned once): in training the item is replaced by
another keyframe chosen from ``(seed, epoch, index, attempt)``, as :class:`~umt.data.VideoDataset`
does; at test the item is ``{"index", "fault"}`` and the collate leaves it out.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from umt.data.faults import FaultCounter, TooManyFaultsError, VideoFault
from umt.data.sampling import make_generator, sample_seed
from umt.errors import InputError
from umt.textfile import read_text

__all__ = [
    "AVA_MEAN",
    "AVA_STD",
    "AVADataset",
    "Keyframe",
    "collate_detection",
    "read_box_csv",
    "read_keyframes",
    "resize_size",
    "crop_boxes",
    "flip_boxes",
    "hsv_jitter",
]

#: Official normalisation (``TransformsCfg``), RGB on the 0-255 scale.
AVA_MEAN = (122.7717, 115.9465, 102.9801)
AVA_STD = (57.375, 57.375, 57.375)
#: AlphAction ``ColorJitter(hue_shift=20, sat_shift=0.1, val_shift=0.1)`` bounds, in OpenCV's
#: uint8 HSV units: hue round(20 / 2) on 0-180, saturation / value round(0.1 * 255) on 0-255.
JITTER_BOUNDS = (10, 26, 26)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError, IndexError, KeyError)


@dataclass
class Keyframe:
    """One keyframe: its boxes (normalised ``x1, y1, x2, y2``), per-box action ids and scores."""

    video_id: str
    timestamp: int
    boxes: list[list[float]] = field(default_factory=list)
    actions: list[list[int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def _rows(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    with io.StringIO(read_text(path, newline=""), newline="") as f:
        reader = csv.reader(f)
        return [
            (reader.line_num, [c.strip() for c in row])
            for row in reader
            if row and not (len(row) == 1 and not row[0].strip())
        ]


def read_keyframes(path: str | os.PathLike, num_classes: int | None = None) -> list[Keyframe]:
    """An AVA ground-truth CSV (``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``) ->
    keyframes in order of first appearance, each with its people (rows of one person: same
    person id and box) and their action ids. Action ids must be in ``1..num_classes``."""
    frames: dict[tuple[str, int], Keyframe] = {}
    people: dict[tuple[str, int, str, tuple[float, ...]], int] = {}
    for line, row in _rows(path):
        where = f"{os.fspath(path)}:{line}"
        if len(row) not in (7, 8):
            raise InputError(
                f"{where}: expected 7 or 8 columns (video_id,timestamp,x1,y1,x2,y2,action_id"
                f"[,person_id]), got {len(row)}"
            )
        try:
            ts, box, action = int(float(row[1])), tuple(float(v) for v in row[2:6]), int(row[6])
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None
        if num_classes is not None and not 1 <= action <= num_classes:
            raise InputError(f"{where}: action id {action} is outside 1..{num_classes}")
        key = (row[0], ts)
        frame = frames.setdefault(key, Keyframe(row[0], ts))
        person = (row[0], ts, row[7] if len(row) == 8 else "", box)
        if person not in people:
            people[person] = len(frame.boxes)
            frame.boxes.append(list(box))
            frame.actions.append([])
            frame.scores.append(1.0)
        acts = frame.actions[people[person]]
        if action not in acts:
            acts.append(action)
    return list(frames.values())


def read_box_csv(
    path: str | os.PathLike, threshold: float = 0.0
) -> dict[tuple[str, int], tuple[list[list[float]], list[float]]]:
    """Detected person boxes: CSV ``video_id,timestamp,x1,y1,x2,y2,score`` (normalised), or
    8 columns with an (ignored) action id before the score, as AVA's box files. Boxes with
    ``score >= threshold`` kept in file order: ``{(video_id, ts): (boxes, scores)}``."""
    out: dict[tuple[str, int], tuple[list[list[float]], list[float]]] = {}
    for line, row in _rows(path):
        where = f"{os.fspath(path)}:{line}"
        if len(row) not in (7, 8):
            raise InputError(
                f"{where}: expected 7 columns (video_id,timestamp,x1,y1,x2,y2,score), got "
                f"{len(row)}"
            )
        try:
            ts, box, score = int(float(row[1])), [float(v) for v in row[2:6]], float(row[-1])
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None
        if score < threshold:
            continue
        boxes, scores = out.setdefault((row[0], ts), ([], []))
        boxes.append(box)
        scores.append(score)
    return out


# --------------------------------------------------------------------------- transforms
def resize_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """AlphAction ``Resize.get_size``: ``(height, width)`` with the short side ``short_side``
    and the long side ``int(short_side * long / short)``."""
    if min(height, width) == short_side:
        return height, width
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def normalised_to_pixels(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``[n, 4]`` -> inclusive pixels of a ``height x width`` frame."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    px = boxes.float() * scale
    px[:, 2:] -= 1.0
    px[:, 2] = torch.maximum(px[:, 2], px[:, 0])
    px[:, 3] = torch.maximum(px[:, 3], px[:, 1])
    return px


def crop_boxes(
    boxes: torch.Tensor, x0: int, y0: int, size_h: int, size_w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of a crop at ``(x0, y0)`` of ``size_h x size_w``: shifted, clipped to
    ``[0, size - 1]``; returns ``(boxes [m, 4], kept [n] bool)``, dropping the boxes that lie
    outside the crop (nothing left after clipping: ``x2 <= x1`` or ``y2 <= y1``)."""
    b = boxes.float() - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    b[:, 0::2] = b[:, 0::2].clamp(0, size_w - 1)
    b[:, 1::2] = b[:, 1::2].clamp(0, size_h - 1)
    kept = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b[kept], kept


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal flip of inclusive pixel boxes (AlphAction ``transpose``: ``x1' = W - 1 - x2``,
    ``x2' = W - 1 - x1``)."""
    b = boxes.clone()
    b[:, 0] = width - 1 - boxes[:, 2]
    b[:, 2] = width - 1 - boxes[:, 0]
    return b


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


def _randint(low: int, high: int, gen: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (inclusive, as ``random.randint``)."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (1,), generator=gen).item())


# --------------------------------------------------------------------------- the dataset
class AVADataset(Dataset):
    """Keyframes of an AVA ground-truth CSV as detection items (see the module docstring).

    ``dataset[i]`` or ``dataset[(epoch, i)]`` ->
    ``{"video": float [3, T, H, W], "boxes": [n, 4] pixels, "labels": [n, num_classes]
    multi-hot (training; zeros at test), "box_scores": [n], "video_id": str, "timestamp": int,
    "image_size": (H, W) of the transformed frame, "orig_size": (H0, W0) of the video, "index":
    i, "faults": [(path, reason)]}``.

    Args:
        annotations: the GT CSV (the keyframes; training boxes and actions).
        root: folder of ``<video_id>.<ext>`` files (default: the CSV's folder).
        boxes: test only: the detector's box CSV (:func:`read_box_csv`); None at test = the GT
            boxes with score 1.
        box_thresh: detector boxes with a lower score are not used (official 0.8).
        fps: frames per second for the keyframe index; None = the video's own.
        input_size: training crop side (official 224).
        short_side: the resize (official 256).
        flip, color_jitter: training augmentations (official: both on).
        num_classes: columns of ``labels`` (action id ``a`` -> column ``a - 1``).
    """

    def __init__(
        self,
        annotations: str | os.PathLike,
        root: str | os.PathLike | None = None,
        *,
        train: bool = True,
        boxes: str | os.PathLike | None = None,
        box_thresh: float = 0.8,
        num_frames: int = 8,
        sampling_rate: int = 8,
        short_side: int = 256,
        input_size: int = 224,
        flip: bool = True,
        color_jitter: bool = True,
        num_classes: int = 80,
        fps: float | None = None,
        seed: int = 0,
        backend: str = "auto",
        max_retries: int = 10,
        max_fail_ratio: float = 0.5,
    ) -> None:
        self.source = os.fspath(annotations)
        self.entries = read_keyframes(annotations, num_classes)
        if not self.entries:
            raise InputError(f"{self.source}: no keyframes")
        self.root = Path(root) if root else Path(annotations).parent
        self.train = bool(train)
        if not self.train and boxes is not None:
            table = read_box_csv(boxes, box_thresh)
            for e in self.entries:
                e.boxes, e.scores = table.get((e.video_id, e.timestamp), ([], []))
                e.actions = [[] for _ in e.boxes]
        self.num_frames, self.sampling_rate = int(num_frames), int(sampling_rate)
        self.short_side, self.input_size = int(short_side), int(input_size)
        self.flip, self.color_jitter = bool(flip), bool(color_jitter)
        self.num_classes, self.fps = int(num_classes), fps
        self.seed, self.epoch, self.backend = int(seed), 0, backend
        self.max_retries = max(0, int(max_retries))
        self.faults = FaultCounter(max_fail_ratio=max_fail_ratio)
        self._paths: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def video_path(self, video_id: str) -> str:
        """``root/<video_id>`` with the first extension that exists (``.mp4`` first)."""
        if video_id not in self._paths:
            base = self.root / video_id
            found = next(
                (str(base) + ext for ext in VIDEO_EXTENSIONS if Path(str(base) + ext).is_file()),
                None,
            )
            if found is None and base.is_file():
                found = str(base)
            self._paths[video_id] = found or str(base) + ".mp4"
        return self._paths[video_id]

    def frame_indices(self, timestamp: float, fps: float, num_video_frames: int) -> list[int]:
        """The clip's frame indices: keyframe ``round(timestamp * fps)`` (clamped), offsets
        ``(i - T // 2) * sampling_rate``, each clamped to the video."""
        last = num_video_frames - 1
        key = min(max(int(round(timestamp * fps)), 0), last)
        half = self.num_frames // 2
        return [
            min(max(key + (i - half) * self.sampling_rate, 0), last) for i in range(self.num_frames)
        ]

    def _load(self, entry: Keyframe, gen: torch.Generator) -> dict[str, Any]:
        from umt.data.decode import probe_video, read_frames

        path = self.video_path(entry.video_id)
        if not Path(path).is_file():
            raise VideoFault(path, "file not found")
        info = probe_video(path, backend="pyav" if self.backend == "auto" else self.backend)
        if info.num_frames < 1:
            raise VideoFault(path, "no frames (too short)")
        fps = self.fps or info.fps
        if not fps or not math.isfinite(fps):
            raise VideoFault(path, "unknown frame rate (set data.fps)")
        idx = self.frame_indices(entry.timestamp, fps, info.num_frames)
        frames = read_frames(path, idx, backend=self.backend, layout="TCHW")  # [T, 3, H0, W0]
        video = torch.from_numpy(np.ascontiguousarray(frames)).float()
        h0, w0 = video.shape[-2:]
        boxes = torch.tensor(entry.boxes, dtype=torch.float32).reshape(-1, 4)
        boxes = normalised_to_pixels(boxes, h0, w0)  # [n, 4] original pixels
        labels = torch.zeros(boxes.shape[0], self.num_classes)
        for i, acts in enumerate(entry.actions):
            for a in acts:
                labels[i, a - 1] = 1.0
        scores = torch.tensor(entry.scores, dtype=torch.float32).reshape(-1)
        # Resize (short side), boxes with the frame.
        h, w = resize_size(h0, w0, self.short_side)
        if (h, w) != (h0, w0):
            video = F.interpolate(video, size=(h, w), mode="bilinear", align_corners=False)
            video = video.clamp(0, 255)
            boxes = boxes * torch.tensor([w / w0, h / h0, w / w0, h / h0])
        if self.train:
            s = self.input_size
            ch, cw = min(s, h), min(s, w)
            x0, y0 = _randint(0, w - cw, gen), _randint(0, h - ch, gen)
            video = video[..., y0 : y0 + ch, x0 : x0 + cw]
            boxes, kept = crop_boxes(boxes, x0, y0, ch, cw)
            labels, scores = labels[kept], scores[kept]
            h, w = ch, cw
            if self.color_jitter:
                bh, bs, bv = JITTER_BOUNDS
                shifts = (_randint(-bh, bh, gen), _randint(-bs, bs, gen), _randint(-bv, bv, gen))
                video = hsv_jitter(video, shifts)
            if self.flip and float(torch.rand(1, generator=gen)) < 0.5:
                video = video.flip(-1)
                boxes = flip_boxes(boxes, w)
        mean = torch.tensor(AVA_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(AVA_STD).view(1, 3, 1, 1)
        video = ((video - mean) / std).permute(1, 0, 2, 3).contiguous()  # [3, T, H, W]
        return {
            "video": video,
            "boxes": boxes,
            "labels": labels,
            "box_scores": scores,
            "video_id": entry.video_id,
            "timestamp": int(entry.timestamp),
            "image_size": (int(h), int(w)),
            "orig_size": (int(h0), int(w0)),
            "path": path,
        }

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (
            (int(item[0]), int(item[1])) if isinstance(item, tuple) else (self.epoch, int(item))
        )
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} keyframes")
        faults: list[tuple[str, str]] = []
        current = index
        for attempt in range(self.max_retries + 1):
            entry = self.entries[current]
            gen = make_generator(sample_seed(self.seed, epoch, index))
            try:
                sample = self._load(entry, gen)
            except _PROGRAMMING_ERRORS:
                raise
            except Exception as err:  # noqa: BLE001 - an unreadable file is a fault, not a crash
                path = self.video_path(entry.video_id)
                reason = (
                    err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"
                )
                self.faults.record(path, reason)
                faults.append((path, reason))
                self.faults.check()
                if not self.train:  # evaluation: never replaced, left out by the collate
                    return {"index": index, "fault": reason, "path": path, "faults": faults}
                pick = make_generator(sample_seed(self.seed, epoch, index, attempt + 1))
                current = int(torch.randint(0, len(self), (1,), generator=pick).item())
                continue
            self.faults.record_success()
            sample.update(index=index, record_index=current, faults=faults)
            return sample
        listing = "; ".join(f"{p}: {r}" for p, r in faults[-3:])
        raise TooManyFaultsError(
            f"{self.source}: keyframe {index}: {self.max_retries + 1} attempts all failed "
            f"({listing})"
        )


def collate_detection(
    samples: Sequence[dict[str, Any]], size_divisible: int = 16
) -> dict[str, Any]:
    """Items -> ``{"video": [B, 3, T, Hp, Wp]`` zero-padded at the bottom / right to the batch's
    largest frame rounded up to a multiple of ``size_divisible``, ``"index": long [B]``, lists
    ``boxes``, ``labels``, ``box_scores``, ``video_id``, ``timestamp``, ``image_size``,
    ``orig_size``, ``"faults"``, ``"skipped"``}``. Fault items (evaluation) are left out."""
    good = [s for s in samples if "fault" not in s]
    faults = [tuple(f) for s in samples for f in s.get("faults", ())]
    batch: dict[str, Any] = {"faults": faults, "skipped": torch.tensor(len(faults))}
    batch["index"] = torch.tensor([int(s["index"]) for s in good], dtype=torch.long)
    if not good:
        batch.update(video=None, boxes=[], labels=[], box_scores=[], video_id=[], timestamp=[])
        batch.update(image_size=[], orig_size=[])
        return batch
    d = max(1, int(size_divisible))
    hp = -(-max(s["video"].shape[-2] for s in good) // d) * d
    wp = -(-max(s["video"].shape[-1] for s in good) // d) * d
    c, t = good[0]["video"].shape[:2]
    video = good[0]["video"].new_zeros(len(good), c, t, hp, wp)
    for i, s in enumerate(good):
        h, w = s["video"].shape[-2:]
        video[i, :, :, :h, :w] = s["video"]
    batch["video"] = video
    for key in (
        "boxes",
        "labels",
        "box_scores",
        "video_id",
        "timestamp",
        "image_size",
        "orig_size",
    ):
        batch[key] = [s[key] for s in good]
    return batch
