"""Video question answering data: open-ended QA and multiple choice (MSRVTT-MC).

Open-ended QA (the official ``multi_modality/dataset/qa_dataset.py``):

* :func:`load_qa_annotations` reads the official processed JSON ``[{"video", "question",
  "answer": str | [str], "question_id"}]`` (``"umt"``; also JSONL) and the raw releases of
  MSRVTT-QA, MSVD-QA (with ``youtube_mapping.txt``) and ActivityNet-QA (``<split>_q.json`` +
  ``<split>_a.json``) into :class:`QAEntry` s. Questions are kept as written: the tokenizer
  cleans them (:func:`umt.text.clean_caption`, the official ``pre_question``).
* :func:`load_answer_list`: the candidate answers of the evaluation (a JSON list of strings).
* :func:`answers_with_weights`: the official training targets: distinct answers in order of
  first appearance, weight = count / number of answers.
* :class:`QADataset` / :func:`collate_qa`: clips (official multi-modality transforms, as
  retrieval fine-tuning) with their question and answers. The answers stay raw strings: the
  tokenising collate of the trainer appends the official eos (``" [SEP]"``) itself
  (:func:`umt.evaluate.qa.tokenize_answers`).

Multiple choice: :func:`load_mc_annotations` reads ``[{"video", "caption": [option, ...],
"answer": index of the right option}]``; :class:`MCDataset` / :func:`collate_mc` give the
test clips with their options. MC fine-tuning is plain video-text retrieval training
(:class:`umt.data.video_text.CaptionDataset`).

Faults: a broken training video is replaced by another item (with that item's question and
answers), as :class:`umt.data.video_text.CaptionDataset` does; a broken test video is never
replaced: its sample carries ``"fault": reason`` and no ``"video"``, and the collates leave
it out of the batch and list it in ``"faults"`` as ``(index, path, reason)``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from umt.data.clip_spec import ClipSpec
from umt.data.datasets import VideoDataset
from umt.data.faults import PROGRAMMING_ERRORS, FaultCounter, VideoFault
from umt.data.formats.records import VideoRecord
from umt.data.retrieval import RetrievalVideoDataset
from umt.data.sampling import SAMPLING_NAMES, make_generator, sample_seed
from umt.data.transforms.recipes import build_caption_transform
from umt.errors import InputError
from umt.textfile import read_text

__all__ = [
    "QA_FORMATS",
    "QAEntry",
    "MCEntry",
    "load_qa_annotations",
    "load_answer_list",
    "answers_with_weights",
    "load_mc_annotations",
    "QADataset",
    "collate_qa",
    "MCDataset",
    "collate_mc",
]

QA_FORMATS = ("umt", "msrvtt-qa", "msvd-qa", "anet-qa")
"""Annotation formats of :func:`load_qa_annotations` (besides ``"auto"``)."""

_COMMON_EXTS = (".mp4", ".avi", ".webm", ".mkv")
_DEFAULT_EXT = {"msrvtt-qa": ".mp4", "msvd-qa": ".avi", "anet-qa": ".mp4"}


# --------------------------------------------------------------------------- entries
@dataclass
class QAEntry:
    """One question about one video.

    ``video``: resolved path; ``question``: as written; ``answers``: the annotated answers
    (repeats kept: they are the weights of :func:`answers_with_weights`; ``answers[0]`` is the
    ground truth of exact-match accuracy); ``question_id``: the id predictions are keyed by;
    ``answer_type``: the question / answer type when the file gives one (ActivityNet-QA
    ``type``, MSRVTT-QA ``category_id``, the synthetic set's ``type``), as a string.
    """

    video: str
    question: str
    answers: list[str]
    question_id: str | int
    answer_type: str | None = None


@dataclass
class MCEntry:
    """One multiple-choice test item: ``options[answer]`` is the right caption of ``video``."""

    video: str
    options: list[str]
    answer: int

    @property
    def num_options(self) -> int:
        return len(self.options)


# --------------------------------------------------------------------------- reading
def _short(value: Any, limit: int = 60) -> str:
    """A one-line, bounded ``repr`` for error messages."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_lines(path: Path, raw: str) -> list[Any]:
    out = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {lineno}: not valid JSON ({err.msg})") from None
    return out


def _read_list(path: Path, what: str) -> list[Any]:
    """The entries of a JSON list (or JSONL) file, with one-line errors naming ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    raw = read_text(path)
    if not raw.strip():
        raise InputError(f"{path}: the file is empty (expected a JSON list of {what} entries)")
    if path.suffix.lower() == ".jsonl":
        data: Any = _json_lines(path, raw)
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            lines = [line for line in raw.splitlines() if line.strip()]
            if len(lines) > 1 and all(line.lstrip().startswith("{") for line in lines):
                data = _json_lines(path, raw)  # JSON lines under another suffix
            else:
                raise InputError(
                    f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
                ) from None
    if not isinstance(data, list):
        raise InputError(
            f"{path}: expected a JSON list of {what} entries, got a JSON {type(data).__name__}"
        )
    if not data:
        raise InputError(f"{path}: the list is empty (no {what} entries)")
    return data


def _object(entry: Any, path: Path, n: int) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: entry {n} is a JSON {type(entry).__name__}, not an object")
    return entry


def _require(entry: dict[str, Any], key: str, path: Path, n: int) -> Any:
    if key not in entry:
        raise InputError(f"{path}: entry {n} has no '{key}' (keys: {sorted(entry)})")
    return entry[key]


def _text(entry: dict[str, Any], key: str, path: Path, n: int) -> str:
    value = _require(entry, key, path, n)
    if not isinstance(value, str):
        raise InputError(f"{path}: entry {n}: '{key}' must be a string, got {_short(value)}")
    if not value.strip():
        raise InputError(f"{path}: entry {n}: '{key}' is empty")
    return value


def _answers(entry: dict[str, Any], path: Path, n: int) -> list[str]:
    value = _require(entry, "answer", path, n)
    answers = [value] if isinstance(value, str) else value
    if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
        raise InputError(
            f"{path}: entry {n}: 'answer' must be a string or a non-empty list of strings, "
            f"got {_short(value)}"
        )
    if any(not a.strip() for a in answers):
        raise InputError(f"{path}: entry {n}: 'answer' holds an empty string")
    return list(answers)


def _question_id(entry: dict[str, Any], key: str, path: Path, n: int) -> str | int:
    """The entry's id under ``key``, or its index ``n`` when it has none."""
    if key not in entry:
        return n
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(
            f"{path}: entry {n}: '{key}' must be a string or an integer, got {_short(value)}"
        )
    return value


def _type_of(entry: dict[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        if entry.get(key) is not None:
            return str(entry[key])
    return None


def _number(value: Any, prefix: str, key: str, path: Path, n: int) -> int:
    """An integer id written as ``7``, ``"7"`` or ``"<prefix>7"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value[len(prefix) :] if value.startswith(prefix) else value
        if text.isdigit():
            return int(text)
    raise InputError(
        f"{path}: entry {n}: '{key}' must be an integer (or '{prefix}<N>'), got {_short(value)}"
    )


class _VideoFinder:
    """``root / (stem + ext)`` with the extension fallback of the raw formats: when the file
    with the default extension is missing and exactly one other common extension exists under
    ``root``, that one. Only when ``root`` is a folder; its listing is read once."""

    def __init__(self, root: Path, ext: str, fixed: bool) -> None:
        self.root = root
        self.ext = ext
        self.names: set[str] | None = None
        if not fixed and root.is_dir():
            try:
                self.names = set(os.listdir(root))
            except OSError:
                self.names = None

    def __call__(self, stem: str) -> str:
        name = stem + self.ext
        if self.names is not None and name not in self.names and "/" not in stem:
            others = [stem + e for e in _COMMON_EXTS if e != self.ext and stem + e in self.names]
            if len(others) == 1:
                name = others[0]
        return os.fspath(self.root / name)


def _extension(video_ext: str | None, fmt: str) -> tuple[str, bool]:
    if video_ext is None:
        return _DEFAULT_EXT[fmt], False
    ext = video_ext if video_ext.startswith(".") else "." + video_ext
    return ext, True


def _resolve(name: str, root: Path) -> str:
    p = Path(name)
    return os.fspath(p if p.is_absolute() else root / p)


def _anet_pair(path: Path) -> tuple[Path, Path]:
    """``(questions file, answers file)`` of an ActivityNet-QA split from either file."""
    name = path.name
    for mine, other in (("_q.json", "_a.json"), ("_a.json", "_q.json")):
        if name.endswith(mine):
            partner = path.with_name(name[: -len(mine)] + other)
            if not partner.is_file():
                raise FileNotFoundError(
                    f"{path}: the matching ActivityNet-QA file {partner.name} is not beside it"
                )
            return (path, partner) if mine == "_q.json" else (partner, path)
    raise InputError(
        f"{path}: ActivityNet-QA files must be named <split>_q.json / <split>_a.json to be "
        "paired; rename it or convert it to the 'umt' format"
    )


def _detect(path: Path, first: Any) -> str:
    if isinstance(first, dict):
        keys = set(first)
        if "video" in keys:
            if "question" not in keys and "caption" in keys:
                raise InputError(
                    f"{path}: entries have 'video' and 'caption' but no 'question': a "
                    "multiple-choice or caption file (use load_mc_annotations)"
                )
            return "umt"
        if "video_name" in keys:
            return "anet-qa"
        if "question_id" in keys and "answer" in keys and "question" not in keys:
            return "anet-qa"
        if "video_id" in keys:
            return "msrvtt-qa" if "category_id" in keys else "msvd-qa"
    if path.name.endswith(("_q.json", "_a.json")):
        return "anet-qa"
    keys_text = sorted(first) if isinstance(first, dict) else type(first).__name__
    raise InputError(
        f"{path}: cannot tell the QA format from entry 0 ({keys_text}); expected 'video' (umt), "
        "'video_id' (MSRVTT-QA / MSVD-QA) or 'video_name' (ActivityNet-QA); pass fmt="
    )


def _load_umt(path: Path, entries: list[Any], root: Path) -> list[QAEntry]:
    out = []
    for n, raw in enumerate(entries):
        entry = _object(raw, path, n)
        video = _text(entry, "video", path, n)
        out.append(
            QAEntry(
                video=_resolve(video, root),
                question=_text(entry, "question", path, n),
                answers=_answers(entry, path, n),
                question_id=_question_id(entry, "question_id", path, n),
                answer_type=_type_of(entry, ("type", "answer_type")),
            )
        )
    return out


def _load_msrvtt(
    path: Path, entries: list[Any], root: Path, video_ext: str | None
) -> list[QAEntry]:
    ext, fixed = _extension(video_ext, "msrvtt-qa")
    find = _VideoFinder(root, ext, fixed)
    out = []
    for n, raw in enumerate(entries):
        entry = _object(raw, path, n)
        vid = _number(_require(entry, "video_id", path, n), "video", "video_id", path, n)
        out.append(
            QAEntry(
                video=find(f"video{vid}"),
                question=_text(entry, "question", path, n),
                answers=_answers(entry, path, n),
                question_id=_question_id(entry, "id", path, n),
                answer_type=_type_of(entry, ("category_id",)),
            )
        )
    return out


def _read_mapping(mapping: str | os.PathLike | dict | None, path: Path) -> dict[int, str]:
    """MSVD ``vid<N>`` number -> YouTube clip name."""
    if isinstance(mapping, dict):
        return {int(k): str(v) for k, v in mapping.items()}
    file = Path(mapping) if mapping is not None else path.parent / "youtube_mapping.txt"
    if not file.is_file():
        raise FileNotFoundError(
            f"{path}: MSVD-QA needs the video id mapping {file} (lines '<clip_name> vid<N>'); "
            "pass mapping= (or fmt='msrvtt-qa' if this is MSRVTT-QA)"
        )
    table: dict[int, str] = {}
    for lineno, line in enumerate(read_text(file).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("vid") or not parts[1][3:].isdigit():
            raise InputError(f"{file}: line {lineno}: expected '<clip_name> vid<N>', got {line!r}")
        number = int(parts[1][3:])
        if number in table:
            raise InputError(f"{file}: line {lineno}: vid{number} is listed twice")
        table[number] = parts[0]
    if not table:
        raise InputError(f"{file}: the mapping file is empty")
    return table


def _load_msvd(
    path: Path,
    entries: list[Any],
    root: Path,
    video_ext: str | None,
    mapping: str | os.PathLike | dict | None,
) -> list[QAEntry]:
    table = _read_mapping(mapping, path)
    ext, fixed = _extension(video_ext, "msvd-qa")
    find = _VideoFinder(root, ext, fixed)
    out = []
    for n, raw in enumerate(entries):
        entry = _object(raw, path, n)
        vid = _number(_require(entry, "video_id", path, n), "vid", "video_id", path, n)
        if vid not in table:
            raise InputError(f"{path}: entry {n}: video_id {vid} is not in the MSVD mapping")
        out.append(
            QAEntry(
                video=find(table[vid]),
                question=_text(entry, "question", path, n),
                answers=_answers(entry, path, n),
                question_id=_question_id(entry, "id", path, n),
                answer_type=_type_of(entry, ("type",)),
            )
        )
    return out


def _load_anet(path: Path, root: Path | None, video_ext: str | None) -> list[QAEntry]:
    q_path, a_path = _anet_pair(path)
    base = root if root is not None else q_path.parent
    ext, fixed = _extension(video_ext, "anet-qa")
    find = _VideoFinder(base, ext, fixed)
    answers: dict[str | int, tuple[int, list[str], str | None]] = {}
    for n, raw in enumerate(_read_list(a_path, "ActivityNet-QA answer")):
        entry = _object(raw, a_path, n)
        _require(entry, "question_id", a_path, n)
        qid = _question_id(entry, "question_id", a_path, n)
        if qid in answers:
            raise InputError(
                f"{a_path}: entry {n}: question_id {qid!r} already answered by entry "
                f"{answers[qid][0]}"
            )
        answers[qid] = (n, _answers(entry, a_path, n), _type_of(entry, ("type",)))
    out: list[QAEntry] = []
    used: set[str | int] = set()
    for n, raw in enumerate(_read_list(q_path, "ActivityNet-QA question")):
        entry = _object(raw, q_path, n)
        _require(entry, "question_id", q_path, n)
        qid = _question_id(entry, "question_id", q_path, n)
        name = _text(entry, "video_name", q_path, n)
        if qid not in answers:
            raise InputError(f"{q_path}: entry {n}: question_id {qid!r} has no answer in {a_path}")
        # video_name is the YouTube id (11 characters); files are named v_<id>.<ext>.
        stem = name if name.startswith("v_") and len(name) == 13 else f"v_{name}"
        if qid in used:
            raise InputError(f"{q_path}: entry {n}: question_id {qid!r} is asked twice")
        _, ans, kind = answers[qid]
        used.add(qid)
        out.append(QAEntry(find(stem), _text(entry, "question", q_path, n), ans, qid, kind))
    for qid, (n, _, _) in answers.items():
        if qid not in used:
            raise InputError(
                f"{a_path}: entry {n}: question_id {qid!r} has no question in {q_path}"
            )
    return out


def load_qa_annotations(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    fmt: str = "auto",
    *,
    mapping: str | os.PathLike | dict | None = None,
    video_ext: str | None = None,
) -> list[QAEntry]:
    """Read a QA annotation file into :class:`QAEntry` s, in file order.

    ``fmt``: ``"auto"`` (from entry 0's keys, then the file name) or one of
    :data:`QA_FORMATS`:

    * ``"umt"``: the official processed JSON (or JSONL) ``[{"video", "question", "answer": str
      | [str], "question_id"?, "type"?}]``; without ``question_id`` the entry index is the id.
    * ``"msrvtt-qa"``: the raw release ``[{"question", "answer", "video_id", "id",
      "category_id"}]``; video ``video{video_id}.mp4``, question id ``id``, answer type
      ``category_id``.
    * ``"msvd-qa"``: the raw release ``[{"question", "answer", "video_id", "id"}]``; video
      ``{clip}.avi`` where ``youtube_mapping.txt`` (beside the file, or ``mapping=``: a file
      or ``{N: clip}``) has the line ``"<clip> vid<video_id>"``.
    * ``"anet-qa"``: the raw ActivityNet-QA pair ``<split>_q.json`` ``[{"video_name",
      "question_id", "question"}]`` + ``<split>_a.json`` ``[{"question_id", "answer",
      "type"}]`` (either may be given); video ``v_{video_name}.mp4``, answer type ``type``.

    ``root`` prefixes relative videos (default: the annotation file's folder). Raw formats:
    ``video_ext`` replaces the default extension; without it, a video whose default-extension
    file is missing while exactly one other of .mp4 / .avi / .webm / .mkv exists under
    ``root`` gets that one (checked only when ``root`` exists; one listing of it). Videos are
    not required to exist (the datasets report missing ones). Any problem raises a
    ``ValueError`` / ``FileNotFoundError`` with one line naming the file and the entry; no
    entry is ever dropped. Repeated question ids are refused (predictions are keyed by them).
    """
    ann = Path(path)
    fmt = fmt.lower().replace("_", "-")
    if fmt != "auto" and fmt not in QA_FORMATS:
        raise InputError(f"unknown QA format {fmt!r}; choose from auto, {', '.join(QA_FORMATS)}")
    if fmt == "anet-qa":
        out = _load_anet(ann, Path(root) if root is not None else None, video_ext)
    else:
        entries = _read_list(ann, "QA")
        if fmt == "auto":
            fmt = _detect(ann, entries[0])
        base = Path(root) if root is not None else ann.parent
        if fmt == "umt":
            out = _load_umt(ann, entries, base)
        elif fmt == "msrvtt-qa":
            out = _load_msrvtt(ann, entries, base, video_ext)
        elif fmt == "msvd-qa":
            out = _load_msvd(ann, entries, base, video_ext, mapping)
        else:  # detected from the keys
            out = _load_anet(ann, Path(root) if root is not None else None, video_ext)
    seen: dict[str | int, int] = {}
    for n, entry in enumerate(out):
        first_n = seen.setdefault(entry.question_id, n)
        if first_n != n:
            raise InputError(
                f"{ann}: entry {n}: question_id {entry.question_id!r} repeats entry {first_n}'s"
            )
    return out


def load_answer_list(path: str | os.PathLike) -> list[str]:
    """The candidate answers of QA evaluation: a JSON list of distinct non-empty strings."""
    ann = Path(path)
    items = _read_list(ann, "answer")
    seen: dict[str, int] = {}
    for n, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise InputError(f"{ann}: entry {n} must be a non-empty string, got {_short(item)}")
        if item in seen:
            raise InputError(
                f"{ann}: entry {n}: answer {item!r} repeats entry {seen[item]} (duplicates "
                "would split the candidates' scores)"
            )
        seen[item] = n
    return list(items)


def answers_with_weights(answers: Sequence[str]) -> tuple[list[str], list[float]]:
    """The official training targets: distinct answers in order of first appearance and
    weight = count / ``len(answers)`` (``["a", "a", "b"]`` -> ``(["a", "b"], [2/3, 1/3])``)."""
    if isinstance(answers, str):
        answers = [answers]
    if not answers:
        raise InputError("answers_with_weights: no answers")
    counts = Counter(answers)
    distinct = list(dict.fromkeys(answers))
    return distinct, [counts[a] / len(answers) for a in distinct]


# --------------------------------------------------------------------------- multiple choice
def load_mc_annotations(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[MCEntry]:
    """Read a multiple-choice list ``[{"video", "caption": [option, ...], "answer": int}]``
    (the official MSRVTT-MC). Options must be non-empty strings, the answer an index into
    them; the option count may differ between entries (see :attr:`MCEntry.num_options`)."""
    ann = Path(path)
    base = Path(root) if root is not None else ann.parent
    out = []
    for n, raw in enumerate(_read_list(ann, "multiple-choice")):
        entry = _object(raw, ann, n)
        video = _text(entry, "video", ann, n)
        options = _require(entry, "caption", ann, n)
        if not (
            isinstance(options, list)
            and options
            and all(isinstance(o, str) and o.strip() for o in options)
        ):
            raise InputError(
                f"{ann}: entry {n}: 'caption' must be a non-empty list of option strings, got "
                f"{_short(options)}"
            )
        answer = _require(entry, "answer", ann, n)
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise InputError(
                f"{ann}: entry {n}: 'answer' must be the integer index of the right option, "
                f"got {_short(answer)}"
            )
        if not 0 <= answer < len(options):
            raise InputError(
                f"{ann}: entry {n}: 'answer' {answer} is out of range for {len(options)} options"
            )
        out.append(MCEntry(_resolve(video, base), list(options), answer))
    return out


# --------------------------------------------------------------------------- QA dataset
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
