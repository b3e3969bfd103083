"""The video-text retrieval test-time video dataset.

The annotation files are read by :mod:`umt.data.formats.retrieval`.

:class:`RetrievalVideoDataset` is the official multimodal test input: ``T`` frames by
``"middle"`` sampling (the middle frame of each of ``T`` equal segments), every frame resized
to ``size x size`` (bicubic), ImageNet normalisation. It reuses :class:`VideoDataset`'s
decoding; a video that cannot be read is reported in its sample, never replaced by another.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from umt.data.clip_spec import ClipSpec
from umt.data.datasets import VideoDataset
from umt.data.faults import PROGRAMMING_ERRORS, VideoFault
from umt.data.formats.records import VideoRecord
from umt.data.formats.retrieval import RetrievalSet
from umt.data.transforms.video import (
    BicubicResize,
    Compose,
    Normalize,
    ToModelLayout,
    VideoTransform,
    resolve_mean_std,
)
from umt.errors import InputError

__all__ = [
    "RetrievalVideoDataset",
    "collate_retrieval",
]


class RetrievalVideoDataset(VideoDataset):
    """The official multimodal test clips of a retrieval set's videos, in video order.

    Sample ``v``: ``{"video": [3, T, S, S], "index": v, "path": str}``: ``T = num_frames``
    frames by ``"middle"`` sampling (the middle frame of each of ``T`` equal intervals, the
    official ``sample_type_test``), each resized to ``S x S`` (bicubic, no antialiasing:
    :class:`umt.data.video_text.BicubicResize`, the official test transform). uint8
    in [0, 255] by default (normalise where the model runs with :attr:`mean` / :attr:`std`:
    a quarter of the bytes through the DataLoader); ``normalize=True`` gives the normalised
    float clip. ``max_seconds``: sample only from the first seconds of a longer video (DiDeMo:
    30, the official ``trimmed30``). A video that cannot be used gives ``{"index", "path",
    "fault": reason}``: it is never replaced by another one.
    """

    def __init__(
        self,
        videos: RetrievalSet | Sequence[str] | Sequence[VideoRecord],
        num_frames: int = 4,
        input_size: int = 224,
        max_seconds: float | None = None,
        mean: str | Sequence[float] = "imagenet",
        std: str | Sequence[float] | None = None,
        normalize: bool = False,
        backend: str = "auto",
    ) -> None:
        if isinstance(videos, RetrievalSet):
            records = videos.records()
        else:
            records = [
                v if isinstance(v, VideoRecord) else VideoRecord(os.fspath(v)) for v in videos
            ]
        if not records:
            raise InputError("RetrievalVideoDataset: no videos")
        self.mean, self.std = resolve_mean_std(mean, std)
        self.normalize = bool(normalize)
        steps: list[VideoTransform] = [BicubicResize(input_size)]
        if normalize:
            steps.append(Normalize(self.mean, self.std))
        steps.append(ToModelLayout())
        super().__init__(
            records,
            clip=ClipSpec(
                num_frames=num_frames,
                sampling="middle",
                min_frames=1,
                max_seconds=max_seconds,
                image_repeat=num_frames,
                train=False,
                input_size=input_size,
            ),
            transform=Compose(steps),
            backend=backend,
            max_retries=0,
        )
        self.num_frames = int(num_frames)
        self.input_size = int(input_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} videos")
        record = self.records[index]
        try:
            video = self.loader.clip(record.path, record.path, None)
        except PROGRAMMING_ERRORS:
            raise
        except Exception as err:  # noqa: BLE001 - a bad file is reported, never a crash
            reason = err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"
            return {"index": index, "path": record.path, "fault": reason}
        return {"video": video, "index": index, "path": record.path}


def collate_retrieval(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`RetrievalVideoDataset` samples: ``{"video": [B, 3, T, S, S] (None when no
    video of the batch is usable), "index": long [B], "path": [str], "faults": [(index, path,
    reason)]}`` over the ``B`` usable videos."""
    good = [s for s in samples if "fault" not in s]
    return {
        "video": torch.stack([s["video"] for s in good]) if good else None,
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "faults": [(int(s["index"]), s["path"], s["fault"]) for s in samples if "fault" in s],
    }
