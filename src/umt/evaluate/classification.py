"""The official multi-view classification test and single-view validation.

:func:`evaluate_classification` runs a classifier over every test view of every video of
a :class:`umt.data.datasets.MultiViewDataset` and merges the views as the official
``final_test`` + ``merge`` do (``engines/engine_for_finetuning.py``): softmax per view, mean of the
probabilities over the views, top-1 / top-5 of that mean. Unlike the official merge, videos are
keyed by their position in the list, not by file name, so two files of the same name in
different folders stay two videos; a video that cannot be read is skipped, counted and named,
never replaced by another one.

:func:`validate` is the single-view check used during training (the official
``mode='validation'``: one clip, short-side resize, centre crop): top-1, top-5 and the mean loss.

Both take any model with ``model(video [B, 3, T, S, S]) -> logits [B, classes]``. Under
``torch.distributed`` (an initialised process group) each rank evaluates a disjoint shard of
the videos (``rank::world_size``, no padding, no duplicates) and the results are gathered to
every rank; every rank runs the same number of forward calls (a rank with fewer batches runs
throw-away ones), so sharded (FSDP) models work too. Accuracies are percentages (0-100), as the
official code prints them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.utils.device import maybe_autocast, model_device
from umt.utils.dist import gather_objects, rank_world, unwrap_ddp

__all__ = [
    "ClassificationResult",
    "ClassificationRun",
    "ValidationResult",
    "evaluate_classification",
    "validate",
    "topk_correct",
    "write_predictions",
    "write_per_class_csv",
    "write_confusion_png",
    "write_classification_outputs",
    "run_classification",
    "CONFUSION_MAX_CLASSES",
]

CONFUSION_MAX_CLASSES = 50
"""Largest class count drawn as a confusion-matrix picture (more would be unreadable)."""


# --------------------------------------------------------------------------- helpers
def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """bool ``[N]``: whether ``labels`` is among the ``k`` highest ``scores [N, classes]``
    (``k`` is capped at the class count; ties go to the lower class index, like ``argmax``)."""
    if scores.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    k = min(int(k), scores.shape[1])
    top = torch.topk(scores, k, dim=1, sorted=True).indices
    return (top == labels.view(-1, 1)).any(dim=1)


def _percent(hits: torch.Tensor) -> float:
    return float(hits.double().mean().item() * 100.0) if hits.numel() else float("nan")


def _batches_per_rank(num_items: int, batch_size: int, world: int) -> int:
    """Batches of the largest shard (rank 0's): every rank runs that many forward calls."""
    return math.ceil(math.ceil(num_items / world) / batch_size)


def _check_labels(records: Sequence[Any], source: str, num_classes: int | None) -> None:
    """Refuse unlabelled videos and labels the classifier cannot output (before any decoding)."""
    for record in records:
        where = getattr(record, "listed", None) or record.path
        if record.label is None:
            raise InputError(
                f"{source}: video {where} has no label; the classification test needs a label "
                "on every line (path,label)"
            )
        if record.label < 0 or (num_classes is not None and record.label >= num_classes):
            raise InputError(
                f"{source}: video {where} has label {record.label}, but the classifier outputs "
                f"{num_classes} classes (labels 0..{(num_classes or 0) - 1})"
            )


# --------------------------------------------------------------------------- result
@dataclass
class ClassificationResult:
    """The merged multi-view test of a list of videos (every rank holds all of it).

    Per scored video ``n`` (in list order): ``positions[n]`` (0-based line of the list),
    ``paths[n]`` (as written in the list), ``files[n]`` (the file read), ``labels [N]``,
    ``view_logits [N, V, classes]`` float32 (views segment-major: view = clip * crops + crop;
    None when not kept),
    ``scores [N, classes]`` float64 = mean over views of softmax(view logits), and
    ``frame_indices [N, clips, T]``. ``skipped``: ``(path as listed, reason)`` of every video
    that could not be read (not scored, not in the accuracies). Accuracies in percent.
    """

    positions: list[int]
    paths: list[str]
    files: list[str]
    labels: torch.Tensor
    view_logits: torch.Tensor | None
    scores: torch.Tensor
    frame_indices: torch.Tensor
    skipped: list[tuple[str, str]]
    num_listed: int
    num_clips: int
    num_crops: int

    @property
    def num_videos(self) -> int:
        """Videos scored."""
        return len(self.paths)

    @property
    def num_views(self) -> int:
        """Views per video, ``num_clips * num_crops``."""
        return self.num_clips * self.num_crops

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1]) if self.scores.ndim == 2 else 0

    @property
    def predictions(self) -> torch.Tensor:
        """long ``[N]``: the argmax of the merged scores."""
        return self.scores.argmax(dim=1)

    def topk(self, k: int) -> float:
        """Top-``k`` accuracy over the scored videos, percent (NaN when none was scored)."""
        return _percent(topk_correct(self.scores, self.labels, k))

    @property
    def top1(self) -> float:
        return self.topk(1)

    @property
    def top5(self) -> float:
        return self.topk(5)

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: ``class``, ``videos``, ``correct`` (top-1), ``accuracy`` (percent,
        None without videos) and ``predicted`` (videos predicted as this class)."""
        k = self.num_classes
        hits = (self.predictions == self.labels).long()
        videos = torch.bincount(self.labels, minlength=k)[:k]
        correct = torch.bincount(self.labels, weights=hits.double(), minlength=k)[:k].long()
        predicted = torch.bincount(self.predictions, minlength=k)[:k]
        return [
            {
                "class": c,
                "videos": int(videos[c]),
                "correct": int(correct[c]),
                "accuracy": float(correct[c]) / int(videos[c]) * 100.0 if videos[c] else None,
                "predicted": int(predicted[c]),
            }
            for c in range(k)
        ]

    @property
    def mean_class_acc(self) -> float:
        """Mean over the classes that have videos of their top-1 accuracy, percent."""
        accs = [row["accuracy"] for row in self.per_class() if row["accuracy"] is not None]
        return sum(accs) / len(accs) if accs else float("nan")

    def confusion_matrix(self) -> torch.Tensor:
        """long ``[classes, classes]``: row = true class, column = predicted class."""
        k = self.num_classes
        flat = torch.bincount(self.labels * k + self.predictions, minlength=k * k)
        return flat[: k * k].view(k, k)

    def summary(self) -> dict[str, Any]:
        """The JSON-able summary the CLI prints (accuracies in percent, None when nothing was
        scored)."""

        def number(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 4)

        return {
            "top1": number(self.top1),
            "top5": number(self.top5),
            "mean_class_acc": number(self.mean_class_acc),
            "videos": self.num_videos,
            "views": self.num_views,
            "clips": self.num_clips,
            "crops": self.num_crops,
            "classes": self.num_classes,
            "listed": self.num_listed,
            "skipped": len(self.skipped),
            "skipped_videos": [{"path": p, "reason": r} for p, r in self.skipped],
        }


@dataclass
class ValidationResult:
    """Single-view validation: top-1 / top-5 in percent, the mean loss (None without a
    criterion), videos evaluated, and ``(path, reason)`` of unreadable samples met."""

    top1: float
    top5: float
    loss: float | None
    num_videos: int
    faults: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- multi-view test
def evaluate_classification(
    model: nn.Module,
    dataset: Any,
    batch_size: int = 4,
    num_workers: int = 4,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    desc: str = "test",
    keep_view_logits: bool = True,
) -> ClassificationResult:
    """The official multi-view test of ``model`` over ``dataset``, a
    :class:`umt.data.datasets.MultiViewDataset` (``normalize=False`` saves DataLoader bytes).

    ``batch_size`` counts **videos**: one forward call takes the ``batch_size x V`` views of
    that many videos (``[B * V, 3, T, S, S]``). ``num_workers`` DataLoader processes decode;
    ``autocast_dtype`` (e.g. ``torch.float16``, the official test) runs the forward under
    autocast; logits are kept in float32 and merged in float64. ``device`` defaults to the
    model's. A progress bar (tqdm, stderr) counts videos on rank 0 when ``progress``.

    Unreadable videos are warned about (``RuntimeWarning``, "skipping video PATH: REASON"),
    listed in ``result.skipped`` and left out of the accuracies. Under torch.distributed each
    rank scores its shard and every rank returns the gathered result.
    ``keep_view_logits=False`` keeps only the merged scores (``result.view_logits`` is None):
    ``V`` times less to gather, for large test sets when only the accuracy is wanted.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from umt.data.datasets import collate_views

    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1 video, got {batch_size}")
    rank, world = rank_world()
    net = unwrap_ddp(model)
    num_classes = getattr(net, "num_classes", None)
    _check_labels(dataset.records, dataset.source, num_classes if num_classes else None)
    device = torch.device(device) if device is not None else model_device(net)
    views = dataset.num_views
    shard = list(range(rank, len(dataset), world))
    loader = DataLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_views,
        pin_memory=device.type == "cuda",
    )
    normalise = _device_normaliser(dataset, device)
    dummy = torch.zeros(
        1, 3, dataset.num_frames, dataset.input_size, dataset.input_size, device=device
    )
    forwards = _batches_per_rank(len(dataset), batch_size, world) if world > 1 else 0

    positions: list[int] = []
    scores_list: list[torch.Tensor] = []
    logits_list: list[torch.Tensor] = []
    index_list: list[torch.Tensor] = []
    faults: list[tuple[int, str]] = []
    calls = 0
    was_training = net.training
    net.eval()
    bar = tqdm(
        total=len(shard), desc=desc, unit="video", file=sys.stderr, disable=not progress or rank
    )
    try:
        with torch.no_grad():
            for batch in loader:
                for position, file, reason in batch["faults"]:
                    where = _listed(dataset, position)
                    named = where if where == file else f"{where} ({file})"
                    warnings.warn(f"skipping video {named}: {reason}", RuntimeWarning, stacklevel=2)
                    faults.append((position, reason))
                calls += 1
                if batch["video"] is None:  # nothing usable: keep in step with the other ranks
                    if world > 1:
                        with maybe_autocast(device, autocast_dtype):
                            net(dummy)
                    bar.update(len(batch["faults"]))
                    continue
                video = normalise(batch["video"].to(device, non_blocking=True))
                with maybe_autocast(device, autocast_dtype):
                    out = net(video)
                count = len(batch["path"])
                logits = out.float().reshape(count, views, -1).cpu()
                scores_list.append(logits.double().softmax(dim=-1).mean(dim=1))
                if keep_view_logits:
                    logits_list.append(logits)
                positions.extend(int(i) for i in batch["index"])
                index_list.append(batch["frame_indices"])
                bar.update(count + len(batch["faults"]))
            for _ in range(forwards - calls):  # a shorter shard: throw-away forward calls
                with maybe_autocast(device, autocast_dtype):
                    net(dummy)
    finally:
        bar.close()
        net.train(was_training)

    local = {
        "positions": positions,
        "scores": torch.cat(scores_list) if scores_list else None,
        "logits": torch.cat(logits_list) if logits_list else None,
        "frame_indices": torch.cat(index_list) if index_list else None,
        "faults": faults,
    }
    return _merge(dataset, gather_objects(local))


def _listed(dataset: Any, position: int) -> str:
    record = dataset.records[position]
    return getattr(record, "listed", None) or record.path


def _device_normaliser(
    dataset: Any, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 views -> ``(x / 255 - mean) / std`` on the device (the same float32 steps as
    :class:`umt.data.transforms.Normalize`); float views pass through."""
    mean = torch.tensor(dataset.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)

    def normalise(video: torch.Tensor) -> torch.Tensor:
        if video.dtype != torch.uint8:
            return video.float()
        return (video.to(torch.float32).div_(255.0) - mean) / std

    return normalise


def _merge(dataset: Any, parts: list[dict[str, Any]]) -> ClassificationResult:
    """Join the ranks' shards in list order (scores: mean over views of the softmax)."""
    rows: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    faults: list[tuple[int, str]] = []
    for part in parts:
        faults.extend(part["faults"])
        if part["scores"] is not None:
            logits = part["logits"] if part["logits"] is not None else [None] * len(part["scores"])
            rows.extend(zip(part["positions"], part["scores"], part["frame_indices"], logits))
    rows.sort(key=lambda row: row[0])
    faults.sort()
    positions = [row[0] for row in rows]
    seen = positions + [p for p, _ in faults]
    if len(set(seen)) != len(seen):
        raise RuntimeError("a video was evaluated twice: the shards overlap")
    records = dataset.records
    view_logits: torch.Tensor | None = None
    if rows:
        scores = torch.stack([row[1] for row in rows])
        frame_indices = torch.stack([row[2] for row in rows])
        if rows[0][3] is not None:
            view_logits = torch.stack([row[3] for row in rows])
    else:
        scores = torch.zeros(0, 0, dtype=torch.float64)
        frame_indices = torch.zeros(0, dataset.num_clips, dataset.num_frames, dtype=torch.long)
        view_logits = torch.zeros(0, dataset.num_views, 0)
    labels = torch.tensor([int(records[p].label) for p in positions], dtype=torch.long)
    classes = scores.shape[-1]
    if labels.numel() and int(labels.max()) >= classes:
        bad = positions[int(labels.argmax())]
        raise InputError(
            f"{dataset.source}: video {_listed(dataset, bad)} has label {records[bad].label}, but "
            f"the classifier outputs {classes} classes"
        )
    return ClassificationResult(
        positions=positions,
        paths=[_listed(dataset, p) for p in positions],
        files=[records[p].path for p in positions],
        labels=labels,
        view_logits=view_logits,
        scores=scores,
        frame_indices=frame_indices,
        skipped=[(_listed(dataset, p), reason) for p, reason in faults],
        num_listed=len(records),
        num_clips=dataset.num_clips,
        num_crops=dataset.num_crops,
    )


# --------------------------------------------------------------------------- validation
def validate(
    model: nn.Module,
    dataset: Any,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 8,
    num_workers: int = 4,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Single-view validation (official ``mode='validation'``) of ``model`` over ``dataset``.

    ``dataset``: a map-style dataset of ``{"video": [3, T, S, S], "label": int}`` samples, e.g.
    ``umt.data.VideoDataset(val_list, train=False)`` (one clip, short-side resize, centre
    crop). ``batch_size`` counts clips. ``criterion(logits [B, K], labels [B])`` returns the
    batch's mean loss (the official validation uses ``nn.CrossEntropyLoss()``); the result's
    ``loss`` is its mean over all videos. Sharded over ranks and gathered like
    :func:`evaluate_classification`. An unreadable video (the dataset not substituting, as
    ``VideoDataset(train=False)``) is warned about, left out of the scores and named in the
    result's ``faults``.
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from umt.data.datasets import collate_videos

    rank, world = rank_world()
    net = unwrap_ddp(model)
    device = torch.device(device) if device is not None else model_device(net)
    shard = list(range(rank, len(dataset), world))
    loader = DataLoader(
        Subset(dataset, shard),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=device.type == "cuda",
    )
    forwards = _batches_per_rank(len(dataset), batch_size, world) if world > 1 else 0
    totals = {"top1": 0, "top5": 0, "loss": 0.0, "videos": 0}
    faults: list[tuple[str, str]] = []
    sample_shape: tuple[int, ...] | None = None
    calls = 0
    was_training = net.training
    net.eval()
    bar = tqdm(
        total=len(shard),
        desc="validate",
        unit="clip",
        file=sys.stderr,
        disable=not progress or rank,
    )
    try:
        with torch.no_grad():
            for batch in loader:
                for path, reason in batch.get("faults", ()):
                    warnings.warn(f"skipping video {path}: {reason}", RuntimeWarning, stacklevel=2)
                    faults.append((path, reason))
                if batch["video"] is None:  # none of the batch readable
                    bar.update(len(batch["faults"]))
                    continue
                if "label" not in batch:
                    raise InputError("validate: the dataset's samples have no 'label'")
                video = batch["video"].to(device, non_blocking=True)
                labels = batch["label"].to(device)
                sample_shape = tuple(video.shape[1:])
                with maybe_autocast(device, autocast_dtype):
                    logits = net(video)
                    loss = criterion(logits, labels) if criterion is not None else None
                logits = logits.float()
                totals["top1"] += int(topk_correct(logits, labels, 1).sum())
                totals["top5"] += int(topk_correct(logits, labels, 5).sum())
                totals["videos"] += int(labels.numel())
                if loss is not None:
                    totals["loss"] += float(loss.float()) * int(labels.numel())
                calls += 1
                bar.update(int(labels.numel()) + len(batch.get("faults", ())))
            if calls < forwards:
                shape = sample_shape or tuple(dataset[0]["video"].shape)
                dummy = torch.zeros(1, *shape, device=device)
                for _ in range(forwards - calls):
                    with maybe_autocast(device, autocast_dtype):
                        net(dummy)
    finally:
        bar.close()
        net.train(was_training)
    parts = gather_objects((totals, faults))
    n = sum(p[0]["videos"] for p in parts)
    if n == 0:
        raise InputError("validate: the dataset has no videos")
    return ValidationResult(
        top1=sum(p[0]["top1"] for p in parts) / n * 100.0,
        top5=sum(p[0]["top5"] for p in parts) / n * 100.0,
        loss=sum(p[0]["loss"] for p in parts) / n if criterion is not None else None,
        num_videos=n,
        faults=[f for p in parts for f in p[1]],
    )


# --------------------------------------------------------------------------- outputs
def write_predictions(result: ClassificationResult, path: str | os.PathLike) -> Path:
    """One JSON line per scored video, in list order: ``path`` (as listed), ``label``,
    ``prediction``, ``scores`` (mean over views of the softmax, one float per class),
    ``view_logits`` (``[views][classes]``, segment-major; absent when not kept) and
    ``frame_indices`` (``[clips][T]``). Skipped videos have no line (they are in the summary)."""
    out = Path(path)
    with out.open("w", encoding="utf-8") as handle:
        for n in range(result.num_videos):
            line = {
                "path": result.paths[n],
                "label": int(result.labels[n]),
                "prediction": int(result.predictions[n]),
                "scores": result.scores[n].tolist(),
                "frame_indices": result.frame_indices[n].tolist(),
            }
            if result.view_logits is not None:
                line["view_logits"] = result.view_logits[n].tolist()
            handle.write(json.dumps(line) + "\n")
    return out


def write_per_class_csv(result: ClassificationResult, path: str | os.PathLike) -> Path:
    """Per-class top-1 accuracy as CSV: ``class,videos,correct,accuracy,predicted`` (accuracy
    in percent, empty for a class without videos)."""
    out = Path(path)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "videos", "correct", "accuracy", "predicted"])
        for row in result.per_class():
            accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
            writer.writerow(
                [row["class"], row["videos"], row["correct"], accuracy, row["predicted"]]
            )
    return out


def write_confusion_png(
    result: ClassificationResult,
    path: str | os.PathLike,
    max_classes: int = CONFUSION_MAX_CLASSES,
) -> Path | None:
    """Draw the confusion matrix (rows: true class, columns: predicted) as a PNG; None (and no
    file) when there are more than ``max_classes`` classes or no scored video."""
    k = result.num_classes
    if k == 0 or k > max_classes or result.num_videos == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = result.confusion_matrix().numpy()
    side = min(2.0 + 0.3 * k, 16.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="videos")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"top-1 {result.top1:.2f}%  ({result.num_videos} videos, {result.num_views} views each)"
    )
    ticks = range(k) if k <= 25 else range(0, k, 5)
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    if k <= 20:
        for true in range(k):
            for pred in range(k):
                if matrix[true, pred]:
                    dark = matrix[true, pred] > matrix.max() / 2
                    ax.text(
                        pred,
                        true,
                        str(matrix[true, pred]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if dark else "black",
                    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_classification_outputs(result: ClassificationResult, predictions: Path) -> list[Path]:
    """Write ``predictions`` (:func:`write_predictions`), ``*.per_class.csv`` beside it and, for
    at most :data:`CONFUSION_MAX_CLASSES` classes, ``*.confusion.png``; the files written."""
    written = [
        write_predictions(result, predictions),
        write_per_class_csv(result, predictions.with_suffix(".per_class.csv")),
        write_confusion_png(result, predictions.with_suffix(".confusion.png")),
    ]
    return [p for p in written if p is not None]


# --------------------------------------------------------------------------- the test of a file
@dataclass
class ClassificationRun:
    """What :func:`run_classification` measured (``result``), with the clip size the model
    took and this process's place among the test's processes (rank 0 reports)."""

    result: ClassificationResult
    num_frames: int
    img_size: int
    rank: int
    world: int


def _test_device(device: str) -> torch.device:
    """``auto``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU;
    else the device named."""
    if device == "auto":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run_classification(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    format: str = "auto",  # noqa: A002 - the annotation format, as MultiViewDataset names it
    labels: str | os.PathLike | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    short_side: int | None = None,
    views: tuple[int, int] = (4, 3),
    sampling: str = "sparse",
    frame_stride: int = 4,
    batch_size: int = 4,
    num_workers: int = 4,
    backend: str = "auto",
    device: str = "auto",
    amp: str = "auto",
    predictions: str | os.PathLike | None = None,
    progress: bool = True,
) -> ClassificationRun:
    """``umt evaluate classification``: load the classifier of ``checkpoint`` and run the
    official multi-view test (``views`` = (clips, crops)) over the videos of ``annotations``.

    Sizes not given come from the checkpoint (else 8 frames, 224 px, heads of width 64);
    ``amp``: ``auto`` (float16 on CUDA), ``fp16``, ``bf16`` or ``none``. Under ``torchrun``
    (``WORLD_SIZE`` > 1) it joins the process group and each process scores a shard. Warnings
    about assumed sizes are shown once the model is known to be a classifier. ``predictions``
    is only checked to be writable, before the test (see :func:`write_classification_outputs`).
    Raises :class:`InputError` for a checkpoint without a head or an unusable option,
    ``FileNotFoundError`` for a missing checkpoint and ``TooManyFaultsError`` when no video
    could be read.
    """
    import torch.distributed as dist

    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import MultiViewDataset
    from umt.data.decode import available_backends
    from umt.data.faults import TooManyFaultsError
    from umt.models import load_checkpoint
    from umt.models.released import checkpoint_exists, release_hint
    from umt.outputs import check_writable
    from umt.utils.device import resolve_amp

    if backend not in ("auto", "pyav") and backend not in available_backends():
        raise InputError(
            f"--backend {backend}: not usable here; use one of: {', '.join(available_backends())}"
        )
    if not checkpoint_exists(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found{release_hint(checkpoint)}")
    if predictions is not None:  # before the (long) test, not after it
        check_writable(predictions, "predictions file")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = _test_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0

    sizes = {
        key: value
        for key, value in (
            ("num_frames", num_frames),
            ("img_size", img_size),
            ("num_heads", num_heads),
        )
        if value is not None
    }
    with warnings.catch_warnings(record=True) as assumed:  # shown once it is a classifier
        warnings.simplefilter("always")
        model = load_checkpoint(checkpoint, part="student", **sizes)
    if getattr(model, "head", None) is None or not getattr(model, "num_classes", 0):
        raise InputError(
            f"{checkpoint}: not a classifier (the model has no classification head); "
            "evaluate a fine-tuned checkpoint, not a pretraining one"
        )
    for caught in assumed:
        warnings.showwarning(caught.message, caught.category, caught.filename, caught.lineno)
    if short_side is not None and short_side < model.img_size:
        raise InputError(
            f"--short-side {short_side} is smaller than the input size {model.img_size}: "
            "the crops would not fit; give at least the input size"
        )
    clips, crops = views
    dataset = MultiViewDataset(
        annotations,
        clip=ClipSpec(
            num_frames=model.num_frames,
            sampling=sampling,
            frame_stride=frame_stride,
            input_size=model.img_size,
            short_side=short_side or model.img_size,
            num_clips=clips,
            num_crops=crops,
        ),
        root=root,
        format=format,
        normalize=False,
        backend=backend,
        labels=labels,
    )
    result = evaluate_classification(
        model.to(dev),
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        device=dev,
        autocast_dtype=resolve_amp(amp, dev),
        progress=progress,
    )
    if result.num_videos == 0:
        first = f"{result.skipped[0][0]}: {result.skipped[0][1]}" if result.skipped else "none"
        raise TooManyFaultsError(
            f"{annotations}: none of its {result.num_listed} videos could be read (first: {first})"
        )
    return ClassificationRun(result, model.num_frames, model.img_size, rank, world)
