"""Video question answering data: open-ended QA and multiple choice (MSRVTT-MC).

Open-ended QA (the official ``multi_modality/dataset/qa_dataset.py``); the annotation files
are read by :mod:`umt.data.formats.qa`.

* :class:`QADataset` / :func:`collate_qa`: clips (official multi-modality transforms, as
  retrieval fine-tuning) with their question and answers. The answers stay raw strings: the
  tokenising collate of the trainer appends the official eos (``" [SEP]"``) itself
  (:func:`umt.evaluate.qa.tokenize_answers`).

Multiple choice: :class:`MCDataset` / :func:`collate_mc` give the
test clips with their options. MC fine-tuning is plain video-text retrieval training
(:class:`umt.data.video_text.CaptionDataset`).

Faults: a broken training video is replaced by another item (with that item's question and
answers), as :class:`umt.data.video_text.CaptionDataset` does; a broken test video is never
replaced: its sample carries ``"fault": reason`` and no ``"video"``, and the collates leave
it out of the batch and list it in ``"faults"`` as ``(index, path, reason)``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from umt.data.clip_spec import ClipSpec
from umt.data.datasets import VideoDataset
from umt.data.faults import PROGRAMMING_ERRORS, FaultCounter, VideoFault
from umt.data.formats.qa import (
    MCEntry,
    QAEntry,
    answers_with_weights,
    load_mc_annotations,
    load_qa_annotations,
)
from umt.data.formats.records import VideoRecord
from umt.data.retrieval import RetrievalVideoDataset
from umt.data.sampling import SAMPLING_NAMES, make_generator, sample_seed
from umt.data.transforms.recipes import build_caption_transform
from umt.errors import InputError

__all__ = [
    "QADataset",
    "collate_qa",
    "MCDataset",
    "collate_mc",
]


def _fault_reason(err: Exception) -> str:
    return err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"


class QADataset(Dataset):
    """Video QA clips with their question and answers (map-style, indexable by ``(epoch,
    index)``), one item per :class:`QAEntry`.

    ``__getitem__`` returns ``{"video": float [3, T, S, S], "question": str, "answers": [str]
    (distinct, raw: no eos; the tokenising collate appends the official " [SEP]"), "weights":
    [float] (:func:`answers_with_weights`), "answer": str (the first annotated answer: the
    exact-match ground truth), "answer_type": str | None, "question_id", "index": int,
    "path": str, "faults": [(path, reason)]}``.

    Training (``train=True``): a broken video is replaced by another item (seeded from
    ``(seed, epoch, index, attempt)``, at most ``max_retries`` times) whose question and
    answers come with it, counted in :attr:`faults`. Evaluation: never replaced; the item then
    has ``"fault": reason`` instead of ``"video"`` (its question and id kept, so it can be
    scored as wrong). Both count in :attr:`faults`, whose ``max_fail_ratio`` check raises
    :class:`umt.data.TooManyFaultsError` when most loads fail (a wrong ``root``).

    Args:
        annotations: a QA file (:func:`load_qa_annotations` with ``root`` and ``fmt``) or
            :class:`QAEntry` s (load them first for ``mapping=`` / ``video_ext=``).
        num_frames / sampling: the clip; ``sampling=None`` is ``"rand"`` for training and
            ``"middle"`` for evaluation (the official multi-modality sampling).
        input_size / rrc_scale / flip / mean / std: the official transforms
            (:func:`umt.data.video_text.build_caption_transform`, as retrieval fine-tuning);
            ``transform`` replaces them.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Sequence[QAEntry],
        root: str | os.PathLike | None = None,
        fmt: str = "auto",
        num_frames: int = 12,
        sampling: str | None = None,
        input_size: int = 224,
        train: bool = True,
        rrc_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        mean: str | Sequence[float] = "imagenet",
        std: str | Sequence[float] | None = None,
        seed: int = 0,
        backend: str = "auto",
        max_retries: int = 10,
        max_fail_ratio: float = 0.5,
        transform: Callable | None = None,
    ) -> None:
        if isinstance(annotations, (str, os.PathLike)):
            self.source = os.fspath(annotations)
            self.entries = load_qa_annotations(annotations, root, fmt)
        else:
            self.source = "<entries>"
            self.entries = list(annotations)
            if not self.entries:
                raise InputError("QADataset: no entries given")
            bad = next((n for n, e in enumerate(self.entries) if not isinstance(e, QAEntry)), None)
            if bad is not None:
                raise TypeError(f"QADataset: entry {bad} is not a QAEntry")
        sampling = sampling or ("rand" if train else "middle")
        if sampling not in SAMPLING_NAMES:
            raise InputError(
                f"sampling must be one of {', '.join(SAMPLING_NAMES)}; got {sampling!r}"
            )
        if transform is None:
            transform = build_caption_transform(
                train, input_size, rrc_scale, flip, mean, std, antialias=False
            )
        self.train = bool(train)
        self.seed = int(seed)
        self.records = [VideoRecord(e.video, listed=e.video) for e in self.entries]
        self.videos = VideoDataset(
            self.records,
            clip=ClipSpec(num_frames=num_frames, sampling=sampling, image_repeat=1, train=train),
            transform=transform,
            seed=seed,
            backend=backend,
            max_retries=max_retries,
            max_fail_ratio=max_fail_ratio,
        )
        self.videos.source = self.source

    @property
    def faults(self) -> FaultCounter:
        """This process's tally of skipped videos."""
        return self.videos.faults

    def fault_summary(self) -> str:
        return self.faults.summary(len(self.entries))

    def set_epoch(self, epoch: int) -> None:
        self.videos.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def _text_fields(self, entry_index: int) -> dict[str, Any]:
        entry = self.entries[entry_index]
        answers, weights = answers_with_weights(entry.answers)
        return {
            "question": entry.question,
            "answers": answers,
            "weights": weights,
            "answer": entry.answers[0],
            "answer_type": entry.answer_type,
            "question_id": entry.question_id,
        }

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if self.train:
            s = self.videos[item]
            return {
                "video": s["video"],
                **self._text_fields(s["record_index"]),
                "index": s["index"],
                "path": s["path"],
                "faults": s["faults"],
            }
        epoch, index = (
            (int(item[0]), int(item[1]))
            if isinstance(item, tuple)
            else (self.videos.epoch, int(item))
        )
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} samples")
        path = self.records[index].path
        sample = {**self._text_fields(index), "index": index, "path": path}
        gen = make_generator(sample_seed(self.seed, epoch, index))
        try:
            video = self.videos.loader.clip(path, path, gen)
        except PROGRAMMING_ERRORS:
            raise
        except Exception as err:  # noqa: BLE001 - a bad file is reported, never a crash
            reason = _fault_reason(err)
            self.faults.record(path, reason)
            self.faults.check()
            return {**sample, "fault": reason, "faults": [(path, reason)]}
        self.faults.record_success()
        return {"video": video, **sample, "faults": []}


def collate_qa(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`QADataset` items; faulted ones (evaluation) are left out.

    Returns, over the ``B`` usable items: ``{"video": [B, 3, T, S, S] (None when none is
    usable), "question": [str] * B, "answers": [str] (all items' distinct answers, flat, raw),
    "weights": float32 [sum k], "counts": long [B] (answers per item: split ``answers`` /
    ``weights`` with it), "answer": [str] * B, "answer_type": [str | None] * B,
    "question_id": [...] * B, "index": long [B], "path": [str] * B, "faults": [(index, path,
    reason)], "skipped": long scalar}``. ``faults`` lists the left-out items and the broken
    videos that training items replaced (``index`` = the item that met it); feed a
    :class:`umt.data.FaultCounter` with ``counter.add((p, r) for _, p, r in faults)``.
    """
    if not samples:
        raise InputError("collate_qa: empty batch")
    good = [s for s in samples if "fault" not in s]
    faults: list[tuple[int, str, str]] = []
    for s in samples:
        if "fault" in s:
            faults.append((int(s["index"]), s["path"], s["fault"]))
        else:
            faults.extend((int(s["index"]), str(p), str(r)) for p, r in s.get("faults", ()))
    return {
        "video": torch.stack([s["video"] for s in good]) if good else None,
        "question": [s["question"] for s in good],
        "answers": [a for s in good for a in s["answers"]],
        "weights": torch.tensor([w for s in good for w in s["weights"]], dtype=torch.float32),
        "counts": torch.tensor([len(s["answers"]) for s in good], dtype=torch.long),
        "answer": [s["answer"] for s in good],
        "answer_type": [s.get("answer_type") for s in good],
        "question_id": [s["question_id"] for s in good],
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "faults": faults,
        "skipped": torch.tensor(len(faults), dtype=torch.long),
    }


# --------------------------------------------------------------------------- MC dataset
class MCDataset(RetrievalVideoDataset):
    """Multiple-choice test clips, one per :class:`MCEntry`, as
    :class:`umt.data.retrieval.RetrievalVideoDataset` makes them (``num_frames`` frames by
    middle sampling, bicubic resize to ``S x S``; uint8 unless ``normalize=True``: normalise
    with :attr:`mean` / :attr:`std` where the model runs, as the retrieval test does).

    Item ``i``: ``{"video": [3, T, S, S], "options": [str], "answer": int, "index": i,
    "path": str}``, or for an unusable video ``{"options", "answer", "index", "path",
    "fault": reason}`` (never replaced by another video). :attr:`option_counts`: how many
    entries have each option count.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Sequence[MCEntry],
        root: str | os.PathLike | None = None,
        num_frames: int = 12,
        input_size: int = 224,
        mean: str | Sequence[float] = "imagenet",
        std: str | Sequence[float] | None = None,
        normalize: bool = False,
        backend: str = "auto",
        max_seconds: float | None = None,
    ) -> None:
        if isinstance(annotations, (str, os.PathLike)):
            source = os.fspath(annotations)
            self.entries = load_mc_annotations(annotations, root)
        else:
            source = "<entries>"
            self.entries = list(annotations)
            if not self.entries:
                raise InputError("MCDataset: no entries given")
        self.option_counts = Counter(e.num_options for e in self.entries)
        super().__init__(
            [VideoRecord(e.video, listed=e.video) for e in self.entries],
            num_frames=num_frames,
            input_size=input_size,
            max_seconds=max_seconds,
            mean=mean,
            std=std,
            normalize=normalize,
            backend=backend,
        )
        self.source = source  # the annotation file (the base class names its records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        entry = self.entries[index]
        sample["options"] = list(entry.options)
        sample["answer"] = entry.answer
        return sample


def collate_mc(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`MCDataset` items over the ``B`` usable ones: ``{"video": [B, 3, T, S,
    S] (None when none is usable), "options": [[str]] * B, "num_options": long [B], "answer":
    long [B], "index": long [B], "path": [str], "faults": [(index, path, reason)]}``."""
    if not samples:
        raise InputError("collate_mc: empty batch")
    good = [s for s in samples if "fault" not in s]
    return {
        "video": torch.stack([s["video"] for s in good]) if good else None,
        "options": [list(s["options"]) for s in good],
        "num_options": torch.tensor([len(s["options"]) for s in good], dtype=torch.long),
        "answer": torch.tensor([int(s["answer"]) for s in good], dtype=torch.long),
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "faults": [(int(s["index"]), s["path"], s["fault"]) for s in samples if "fault" in s],
    }
