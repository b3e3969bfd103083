"""Video question answering annotations (torch-free): open-ended QA and multiple choice.

* :func:`load_qa_annotations` reads the official processed JSON ``[{"video", "question",
  "answer": str | [str], "question_id"}]`` (``"umt"``; also JSONL) and the raw releases of
  MSRVTT-QA, MSVD-QA (with ``youtube_mapping.txt``) and ActivityNet-QA (``<split>_q.json`` +
  ``<split>_a.json``) into :class:`QAEntry` s. Questions are kept as written: the tokenizer
  cleans them (:func:`umt.text.clean_caption`, the official ``pre_question``).
* :func:`load_answer_list`: the candidate answers of the evaluation (a JSON list of strings).
* :func:`answers_with_weights`: the official training targets: distinct answers in order of
  first appearance, weight = count / number of answers.
* :func:`load_mc_annotations` reads ``[{"video", "caption": [option, ...], "answer": index of
  the right option}]`` (MSRVTT-MC).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
                    "multiple-choice or caption file, not QA (score it with `umt evaluate mc` or "
                    "`umt evaluate retrieval`)"
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
