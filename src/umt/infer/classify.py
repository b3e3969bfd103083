"""Classify a user's videos with a fine-tuned UMT classifier (``umt classify``).

Each video is decoded once into its test views (:class:`umt.data.datasets.MultiViewDataset`: the
official test clips and crops; one centre view by default), the views go through the model as
one batch, and the class probabilities (softmax per view) are averaged over the views, as the
official test fuses them. The top-k classes come with names from a labels file, or from the
names shipped for the official datasets when the head's class count matches one of them.

Example::

    from umt.infer import classify_videos, load_classifier
    model = load_classifier("b16_ptk710_ftk710_ftk400_f8_res224.pth")
    for result in classify_videos(model, ["a.mp4", "b.mp4"], top_k=5):
        print(result.path, result.top[0].label if result.ok else result.error)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from umt.data.formats.labels import TITLES, guess_class_names, guess_dataset, load_class_names
from umt.errors import InputError
from umt.models import VideoViT, load_checkpoint
from umt.utils.device import resolve_device  # exported here too (umt.infer.resolve_device)

__all__ = [
    "Prediction",
    "VideoResult",
    "ClassNames",
    "parse_views",
    "resolve_device",
    "load_classifier",
    "resolve_class_names",
    "classify_videos",
    "format_result",
]


@dataclass(frozen=True)
class Prediction:
    """One of a video's top classes: its name (None when the names are unknown), its index in
    the classifier's output and its probability averaged over the views."""

    label: str | None
    index: int
    score: float


@dataclass
class VideoResult:
    """The top-k classes of one video, or why it could not be classified."""

    path: str
    top: list[Prediction] = field(default_factory=list)
    error: str | None = None
    views: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> str:
        """One JSON line: ``{"path", "top_k": [{"label", "index", "score"}], "views"}`` or
        ``{"path", "error"}``."""
        if not self.ok:
            return json.dumps({"path": self.path, "error": self.error}, ensure_ascii=False)
        top = [{"label": p.label, "index": p.index, "score": round(p.score, 6)} for p in self.top]
        return json.dumps(
            {"path": self.path, "top_k": top, "views": self.views}, ensure_ascii=False
        )


@dataclass(frozen=True)
class ClassNames:
    """Class names and where they came from (``names`` None: unknown, indices are printed)."""

    names: list[str] | None
    source: str


def parse_views(text: str) -> tuple[int, int]:
    """``"4x3"`` -> (4 temporal clips, 3 spatial crops)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--views: {text!r} is not CLIPSxCROPS with positive counts (e.g. 4x3)")
    return int(parts[0]), int(parts[1])


def load_classifier(
    checkpoint: str | os.PathLike,
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
) -> VideoViT:
    """A fine-tuned classifier from any checkpoint :func:`umt.load_checkpoint` reads (umt folder,
    official fine-tuned ``.pth``), in eval mode on the CPU. Sizes not given come from the
    checkpoint's own config, else the official defaults (8 frames, 224 px, head width 64).
    A checkpoint without a classification head is refused with a ``ValueError``."""
    sizes: dict[str, Any] = {}
    if num_frames is not None:
        sizes["num_frames"] = int(num_frames)
    if img_size is not None:
        sizes["img_size"] = int(img_size)
    if num_heads is not None:
        sizes["num_heads"] = int(num_heads)
    model = load_checkpoint(checkpoint, **sizes)
    if not isinstance(model, VideoViT):
        raise InputError(
            f"{checkpoint}: holds a {type(model).__name__}, not a video classifier; give a "
            "fine-tuned UMT checkpoint (e.g. b16_ptk710_ftk710_ftk400_f8_res224.pth), or "
            "classify from class names with a video-text model: umt classify --zero-shot LABELS"
        )
    if model.head is None:
        raise InputError(
            f"{checkpoint}: a UMT encoder without a classification head (pretraining or "
            "multimodal weights); give a fine-tuned classifier checkpoint, or fine-tune this "
            "one first"
        )
    return model.eval()


def resolve_class_names(num_classes: int, labels: str | os.PathLike | None = None) -> ClassNames:
    """The names for a ``num_classes``-way head: from ``labels`` (a file, see
    :func:`umt.data.formats.labels.load_class_names`), else the shipped list with that many classes,
    else unknown. A labels file with another count is refused."""
    if labels is not None:
        names = load_class_names(labels)
        if len(names) != num_classes:
            raise InputError(
                f"{labels}: {len(names)} class names, but the checkpoint's head has "
                f"{num_classes} classes; give the labels the model was trained with"
            )
        return ClassNames(names, os.fspath(labels))
    dataset = guess_dataset(num_classes)
    if dataset is None:
        return ClassNames(None, f"unknown for a {num_classes}-class head")
    return ClassNames(
        guess_class_names(num_classes),
        f"{TITLES[dataset]} (guessed from the head's {num_classes} classes)",
    )


@torch.inference_mode()
def _scores(
    model: VideoViT,
    views: torch.Tensor,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities of one video: softmax per view, mean over views. ``[V, 3, T, S, S]``
    -> ``[K]``."""
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(views.to(device, non_blocking=True))  # [V, K]
    return logits.float().softmax(dim=-1).mean(dim=0).cpu()


def classify_videos(
    model: VideoViT,
    paths: Iterable[str | os.PathLike],
    class_names: Sequence[str] | None = None,
    top_k: int = 5,
    views: tuple[int, int] = (1, 1),
    device: str | torch.device = "cpu",
    sampling: str = "sparse",
    short_side: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[VideoResult]:
    """Classify each video; yields one :class:`VideoResult` per path, in order.

    Args:
        model: a classifier (:func:`load_classifier`); moved to ``device`` and set to eval.
        paths: video files (or images, or folders of extracted frames).
        class_names: names of the ``K`` outputs; None gives ``label=None``.
        top_k: classes per video (at most ``K``).
        views: ``(clips, crops)`` test views whose probabilities are averaged; the official
            Kinetics test is ``(4, 3)``, SSv2 ``(2, 3)`` with ``sampling="ssv2"``.
        device: where the model runs.
        sampling: the frame sampling of the test clips (``sparse``: the official Kinetics /
            MiT test; ``ssv2``; ``dense``; ``segments``).
        short_side: resize before cropping (default: the model's input size, as officially).
        autocast_dtype: run the model under autocast (e.g. ``torch.float16`` on CUDA, as the
            official fp16 test); None: full precision.

    A video that cannot be read gives a result with ``error`` set; the others still run.
    """
    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import MultiViewDataset
    from umt.data.formats.records import VideoRecord

    if top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {top_k}")
    device = torch.device(device)
    if class_names is not None and len(class_names) != model.num_classes:
        raise InputError(
            f"{len(class_names)} class names for a {model.num_classes}-class classifier"
        )
    model = model.to(device).eval()
    records = [VideoRecord(path=os.fspath(p)) for p in paths]
    if not records:
        return
    clips, crops = views
    dataset = MultiViewDataset(
        records,
        clip=ClipSpec(
            num_frames=model.num_frames,
            sampling=sampling,
            input_size=model.img_size,
            short_side=short_side,
            num_clips=clips,
            num_crops=crops,
        ),
    )
    k = min(int(top_k), model.num_classes)
    for i, record in enumerate(records):
        sample = dataset[i]
        if "fault" in sample:
            yield VideoResult(record.path, error=sample["fault"])
            continue
        probs = _scores(model, sample["video"], device, autocast_dtype)  # [K]
        values, indices = probs.topk(k)
        top = [
            Prediction(
                label=None if class_names is None else class_names[int(j)],
                index=int(j),
                score=float(v),
            )
            for v, j in zip(values, indices)
        ]
        yield VideoResult(record.path, top=top, views=int(sample["video"].shape[0]))


def format_result(result: VideoResult) -> str:
    """Human-readable block: ``"path:"`` then ``"  0.873  playing guitar"`` lines (the class
    index when its name is unknown)."""
    if not result.ok:
        return f"{result.path}: cannot classify: {result.error}"
    lines = [f"{result.path}:"]
    for p in result.top:
        lines.append(f"  {p.score:.3f}  {p.label if p.label is not None else p.index}")
    return "\n".join(lines)
