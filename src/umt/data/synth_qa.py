"""Synthetic video QA and multiple choice over the built-in synthetic clips.

Built from a synthetic dataset folder (:func:`umt.data.synth.ensure_synthetic_dataset`, its
``train.json`` / ``val.json`` with ``"video"``, ``"caption"``, ``"label"``). Every clip gets
one question per type below; answers are single words and need the video, appearance
(colour, shape) and motion (direction, speed, order of events):

=========  =========================================  ==================================
type       question                                    answers
=========  =========================================  ==================================
colour     what colour is the object?                  red / blue / green (moving classes)
           what colour is the first object?            red / blue (two-object classes)
shape      what shape is the object?                   square / circle (moving classes)
           what shape is the last object?              square / circle (two-object classes)
direction  which way does the object move?             left / right / up (moving classes)
speed      how fast does the object move?              slowly / quickly (the two "up" classes)
order      which shape appears first?                  square / circle (two-object classes)
=========  =========================================  ==================================

Classes 0-7 get colour, shape, direction; 8-9 (green square up slowly / quickly) colour,
shape, direction, speed; 10-11 (red square then blue circle, or the reverse) colour, shape,
order: 38 questions per round of 12 clips.

Layout written by :func:`write_synthetic_qa` (under the dataset folder ``root``)::

    qa/train.json, qa/val.json   [{"video": "../videos/00012.mp4", "question", "answer",
                                   "question_id": "val-00012-colour", "type": "colour"}]
                                 (the "umt" format of umt.data.formats.qa.load_qa_annotations)
    qa/answer_list.json          the 10 answers
    qa/.complete                 marker: version, seed and a hash of the source lists
    mc/val.json                  [{"video", "caption": [5 options], "answer": index}]: the
                                 clip's caption from val.json and captions of 4 other classes
                                 (seeded), the right one at a seeded position

Multiple choice trains on the video-text captions of ``root/train.json`` (retrieval
fine-tuning); there is no ``mc/train.json``.

Chance levels of the default set (300 clips, 60 val clips = 5 per class, 190 val questions;
:func:`synthetic_qa_chance`): uniform over the 10 answers 10.0 %; the majority answer per
question type (what a model reading only the question can reach) 47.4 % (colour 41.7,
shape 58.3, direction 40.0, speed 50.0, order 50.0); per question text also 47.4 %.
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
from umt.data.synth import CLASSES
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

QA_VERSION = 1
QA_TYPES = ("colour", "shape", "direction", "speed", "order")
ANSWERS = ("red", "blue", "green", "square", "circle", "left", "right", "up", "slowly", "quickly")
"""The answer list, in the order of ``qa/answer_list.json``."""
MC_OPTIONS = 5


def clip_questions(label: int) -> list[dict[str, str]]:
    """The questions of a clip of class ``label``: ``[{"type", "question", "answer"}]``."""
    spec = CLASSES[label]
    if spec["kind"] == "move":
        out = [
            {"type": "colour", "question": "what colour is the object?", "answer": spec["colour"]},
            {"type": "shape", "question": "what shape is the object?", "answer": spec["shape"]},
            {
                "type": "direction",
                "question": "which way does the object move?",
                "answer": spec["direction"],
            },
        ]
        if spec["speed"] is not None:
            out.append(
                {
                    "type": "speed",
                    "question": "how fast does the object move?",
                    "answer": spec["speed"],
                }
            )
        return out
    (c1, s1), (_, s2) = spec["order"]
    return [
        {"type": "colour", "question": "what colour is the first object?", "answer": c1},
        {"type": "shape", "question": "what shape is the last object?", "answer": s2},
        {"type": "order", "question": "which shape appears first?", "answer": s1},
    ]


def _class_caption(label: int, rng: np.random.Generator) -> str:
    """A caption of class ``label`` as :func:`umt.data.synth.render_clip` writes them (the
    speed word of classes 0-7 drawn from ``rng``)."""
    spec = CLASSES[label]
    if spec["kind"] == "sequence":
        (c1, s1), (c2, s2) = spec["order"]
        return f"a {c1} {s1} appears, then a {c2} {s2} appears"
    word = spec["speed"] or ("slowly", "quickly")[int(rng.integers(0, 2))]
    return f"a {spec['colour']} {spec['shape']} moves {spec['direction']} {word}"


def _read_split(root: Path, split: str) -> list[dict[str, Any]]:
    path = root / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; {root} is not a synthetic dataset (make one with "
            "umt.data.ensure_synthetic_dataset)"
        )
    entries = json.loads(path.read_text(encoding="utf-8"))
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"video", "caption", "label"} <= set(entry):
            raise InputError(f"{path}: entry {n} lacks 'video', 'caption' or 'label'")
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
        for q in clip_questions(int(clip["label"])):
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
        options = [_class_caption(int(c), rng) for c in picks]
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
    if not (root / "train.json").is_file() and not (root / ".complete").is_file():
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
