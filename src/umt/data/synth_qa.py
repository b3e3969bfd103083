"""Synthetic video QA and multiple choice over the built-in synthetic clips.

Built from a synthetic dataset folder (:func:`umt.data.synth.ensure_synthetic_dataset`, its
``train.json`` / ``val.json`` records with ``"video"``, ``"caption"``, ``"label"`` and the
actor's ``"category"``, ``"motion"``, ``"colour"``, ``"fill"``, ``"size"``). Every clip gets one
question per type below; answers are single words:

=========  ==========================================  =================================
type       question                                     answers
=========  ==========================================  =================================
category   what is the moving object?                   ball / ring / cross / bar
colour     what colour is the moving object?            the 6 colours
motion     which way does the moving object go?         left / right / up
fill       is the moving object plain or striped?       plain / striped
size       is the moving object small or large?         small / large
=========  ==========================================  =================================

The distractors share the actor's colours, so every question needs the video to find which
object moves; the motion question needs time.

Layout written by :func:`write_synthetic_qa` (under the dataset folder ``root``)::

    qa/train.json, qa/val.json   [{"video": "../videos/00012.mp4", "question", "answer",
                                   "question_id": "val-00012-colour", "type": "colour"}]
                                 (the "umt" format of umt.data.formats.qa.load_qa_annotations)
    qa/answer_list.json          the 17 answers
    qa/.complete                 marker: version, seed and a hash of the source lists
    mc/val.json                  [{"video", "caption": [5 options], "answer": index}]: the
                                 clip's caption and 4 captions that differ from it only in
                                 the actor's category and / or motion (4 of the other 11
                                 classes, seeded), the right one at a seeded position

Multiple choice trains on the video-text captions of ``root/train.json`` (retrieval
fine-tuning); there is no ``mc/train.json``.

Chance levels (:func:`synthetic_qa_chance`): uniform over the 17 answers 5.9 %; a model
reading only the question can reach the majority answer per type, about 33 % on the default
set (category 25, colour about 17, motion 33, fill and size about 50).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umt.data.formats.qa import QAEntry, load_answer_list, load_qa_annotations
from umt.data.synth import CATEGORIES, CLASSES, COLOURS, MARKER, MOTIONS, caption
from umt.errors import InputError

__all__ = [
    "QA_TYPES",
    "ANSWERS",
    "MC_OPTIONS",
    "clip_questions",
    "write_synthetic_qa",
    "ensure_synthetic_qa",
    "synthetic_qa_chance",
]

QA_VERSION = 2
QA_TYPES = ("category", "colour", "motion", "fill", "size")
ANSWERS = (*CATEGORIES, *COLOURS, *MOTIONS, "plain", "striped", "small", "large")
"""The answer list, in the order of ``qa/answer_list.json``."""
MC_OPTIONS = 5


QUESTIONS = {
    "category": "what is the moving object?",
    "colour": "what colour is the moving object?",
    "motion": "which way does the moving object go?",
    "fill": "is the moving object plain or striped?",
    "size": "is the moving object small or large?",
}
_RECORD_KEYS = ("video", "caption", "label", "category", "motion", "colour", "fill", "size")


def clip_questions(record: dict[str, Any]) -> list[dict[str, str]]:
    """The questions of a clip (its ``*.json`` record): ``[{"type", "question", "answer"}]``,
    one per :data:`QA_TYPES`."""
    return [
        {"type": kind, "question": QUESTIONS[kind], "answer": str(record[kind])}
        for kind in QA_TYPES
    ]


def _caption_like(record: dict[str, Any], label: int) -> str:
    """The caption ``record``'s clip would have if it were of class ``label`` (same colour,
    size and fill; the category and motion of ``label``)."""
    spec = CLASSES[label]
    return caption(
        spec["category"], spec["motion"], record["colour"], record["fill"], record["size"]
    )


def _read_split(root: Path, split: str) -> list[dict[str, Any]]:
    path = root / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; {root} is not a synthetic dataset (make one with "
            "umt.data.ensure_synthetic_dataset)"
        )
    entries = json.loads(path.read_text(encoding="utf-8"))
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not set(_RECORD_KEYS) <= set(entry):
            raise InputError(
                f"{path}: entry {n} lacks one of {', '.join(_RECORD_KEYS)} (a synthetic set of "
                "an older version? remake it with umt data synth)"
            )
        if not 0 <= int(entry["label"]) < len(CLASSES):
            raise InputError(f"{path}: entry {n}: label {entry['label']} is not a synthetic class")
    return entries


def _video_from_sub(video: str) -> str:
    """A path relative to the dataset folder, as seen from its ``qa/`` or ``mc/`` folder."""
    return video if os.path.isabs(video) else f"../{video}"


def _clip_number(video: str, n: int) -> int:
    stem = Path(video).stem
    return int(stem) if stem.isdigit() else n


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` atomically (a temporary file beside it, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _qa_entries(split: str, clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n, clip in enumerate(clips):
        number = _clip_number(clip["video"], n)
        for q in clip_questions(clip):
            out.append(
                {
                    "video": _video_from_sub(clip["video"]),
                    "question": q["question"],
                    "answer": q["answer"],
                    "question_id": f"{split}-{number:05d}-{q['type']}",
                    "type": q["type"],
                }
            )
    return out


def _mc_entries(clips: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    out = []
    for n, clip in enumerate(clips):
        label = int(clip["label"])
        rng = np.random.default_rng([int(seed), 0x4D43, _clip_number(clip["video"], n)])
        others = [c for c in range(len(CLASSES)) if c != label]
        picks = rng.choice(others, size=MC_OPTIONS - 1, replace=False)
        options = [_caption_like(clip, int(c)) for c in picks]
        position = int(rng.integers(0, MC_OPTIONS))
        options.insert(position, clip["caption"])
        out.append(
            {"video": _video_from_sub(clip["video"]), "caption": options, "answer": position}
        )
    return out


def _paths(root: Path) -> dict[str, Path]:
    return {
        "train": root / "qa" / "train.json",
        "val": root / "qa" / "val.json",
        "answer_list": root / "qa" / "answer_list.json",
        "mc_val": root / "mc" / "val.json",
        "mc_train": root / "train.json",
    }


def write_synthetic_qa(root: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write the QA and MC files (module docstring) under the synthetic dataset ``root``.

    Returns ``{"train", "val", "answer_list", "mc_val", "mc_train"}`` paths (``mc_train`` is
    the dataset's own ``train.json``: MC fine-tunes on its captions). Deterministic: the same
    dataset and ``seed`` give the same bytes. Every file is replaced atomically.
    """
    root = Path(root)
    splits = {split: _read_split(root, split) for split in ("train", "val")}
    if not splits["val"]:
        raise InputError(f"{root / 'val.json'}: no validation clips to ask about")
    paths = _paths(root)
    for split, clips in splits.items():
        _write_json(paths[split], _qa_entries(split, clips))
    _write_json(paths["answer_list"], list(ANSWERS))
    _write_json(paths["mc_val"], _mc_entries(splits["val"], seed))
    return paths


def _source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for split in ("train", "val"):
        digest.update((root / f"{split}.json").read_bytes())
    return digest.hexdigest()[:16]


def ensure_synthetic_qa(root: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Return the paths of :func:`write_synthetic_qa`, writing the files when they are
    missing or were made from other source lists, another ``seed`` or another version
    (marker ``qa/.complete``, written last). ``root`` without a synthetic dataset gets the
    default one first (:func:`umt.data.ensure_synthetic_dataset`)."""
    root = Path(root)
    if not (root / "train.json").is_file() and not (root / MARKER).is_file():
        from umt.data.synth import ensure_synthetic_dataset

        ensure_synthetic_dataset(root)
    params = {
        "version": QA_VERSION,
        "seed": int(seed),
        "mc_options": MC_OPTIONS,
        "source": _source_hash(root),
    }
    paths = _paths(root)
    marker = root / "qa" / ".complete"
    if marker.is_file() and all(p.is_file() for p in paths.values()):
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                return paths
        except json.JSONDecodeError:
            pass
    write_synthetic_qa(root, seed)
    _write_json(marker, params)
    return paths


def synthetic_qa_chance(
    entries: Sequence[QAEntry] | str | os.PathLike,
    answer_list: Sequence[str] | str | os.PathLike | None = None,
    train_entries: Sequence[QAEntry] | None = None,
) -> dict[str, Any]:
    """Chance levels (in %) of exact-match accuracy on ``entries`` (ground truth:
    ``answers[0]``; entries without a type count as type ``"all"``).

    * ``"uniform"``: a uniform guess over the answer list (default: every answer seen);
    * ``"majority_per_type"``: answering each question type's most frequent answer (counted
      on ``train_entries`` when given, else on ``entries`` themselves; ties go to the first
      answer in sorted order): the honest chance level of a model that reads the question;
    * ``"majority_per_question"``: the same per question text;
    * ``"per_type"``: ``{type: {"questions", "majority", "accuracy"}}``;
    * ``"questions"``, ``"answers"``: the counts.
    """
    if isinstance(entries, (str, os.PathLike)):
        entries = load_qa_annotations(entries)
    if not entries:
        raise InputError("synthetic_qa_chance: no entries")
    if isinstance(answer_list, (str, os.PathLike)):
        answer_list = load_answer_list(answer_list)
    reference = list(train_entries) if train_entries is not None else list(entries)
    if answer_list is None:
        answer_list = sorted({e.answers[0] for e in [*entries, *reference]})

    def majority(key) -> dict[Any, str]:
        counts: dict[Any, Counter] = defaultdict(Counter)
        for e in reference:
            counts[key(e)][e.answers[0]] += 1
        return {k: min(c, key=lambda a: (-c[a], a)) for k, c in counts.items()}

    def accuracy(key, table: dict[Any, str], subset: Sequence[QAEntry]) -> float:
        hits = sum(table.get(key(e)) == e.answers[0] for e in subset)
        return 100.0 * hits / len(subset)

    def by_type(e: QAEntry) -> str:
        return e.answer_type or "all"

    def by_question(e: QAEntry) -> str:
        return e.question

    type_table = majority(by_type)
    per_type = {}
    for kind in dict.fromkeys(by_type(e) for e in entries):
        subset = [e for e in entries if by_type(e) == kind]
        per_type[kind] = {
            "questions": len(subset),
            "majority": type_table.get(kind),
            "accuracy": accuracy(by_type, type_table, subset),
        }
    return {
        "uniform": 100.0 / len(answer_list),
        "majority_per_type": accuracy(by_type, type_table, list(entries)),
        "majority_per_question": accuracy(by_question, majority(by_question), list(entries)),
        "per_type": per_type,
        "questions": len(entries),
        "answers": len(answer_list),
    }
