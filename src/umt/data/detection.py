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

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from umt.data.faults import FaultCounter, TooManyFaultsError, VideoFault
from umt.data.formats.ava import Keyframe, read_keyframes, read_person_boxes_csv
from umt.data.sampling import make_generator, randint_inclusive, sample_seed
from umt.data.transforms.boxes import crop_boxes, flip_boxes, normalised_to_pixels, resize_size
from umt.data.transforms.video import hsv_jitter
from umt.errors import InputError

__all__ = [
    "AVA_MEAN",
    "AVA_STD",
    "AVADataset",
    "collate_detection",
]

#: Official normalisation (``TransformsCfg``), RGB on the 0-255 scale.
AVA_MEAN = (122.7717, 115.9465, 102.9801)
AVA_STD = (57.375, 57.375, 57.375)
#: AlphAction ``ColorJitter(hue_shift=20, sat_shift=0.1, val_shift=0.1)`` bounds, in OpenCV's
#: uint8 HSV units: hue round(20 / 2) on 0-180, saturation / value round(0.1 * 255) on 0-255.
JITTER_BOUNDS = (10, 26, 26)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError, IndexError, KeyError)


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
        boxes: test only: the detector's box CSV (:func:`umt.data.formats.ava.read_person_boxes_csv`); None at test = the GT
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
            table = read_person_boxes_csv(boxes, box_thresh)
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
            x0, y0 = randint_inclusive(0, w - cw, gen), randint_inclusive(0, h - ch, gen)
            video = video[..., y0 : y0 + ch, x0 : x0 + cw]
            boxes, kept = crop_boxes(boxes, x0, y0, ch, cw)
            labels, scores = labels[kept], scores[kept]
            h, w = ch, cw
            if self.color_jitter:
                bh, bs, bv = JITTER_BOUNDS
                shifts = (
                    randint_inclusive(-bh, bh, gen),
                    randint_inclusive(-bs, bs, gen),
                    randint_inclusive(-bv, bv, gen),
                )
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
