"""AVA v2.2 files: the box CSV, the label map, the excluded keyframes, detected person boxes,
and AlphAction's JSON layouts. Only numpy and the standard library are imported.

* :func:`read_groundtruth_csv` / :func:`read_detections_csv` / :func:`write_detections_csv`:
  the AVA CSV (``video_id, timestamp, x1, y1, x2, y2, action_id[, person_id][, score]``, boxes
  normalised to 0-1) as an :class:`AVABoxes` table, one (box, action) pair per row;
  :func:`read_keyframes` groups the ground-truth rows into keyframes of people with their
  actions (what a detection dataset iterates).
* :func:`read_label_map`: the ``.pbtxt`` label map; :func:`read_exclusions`: the excluded
  keyframes; :func:`read_person_boxes_csv`: a detector's person boxes.
* :func:`read_alphaction_annotations`, :func:`read_alphaction_person_boxes`,
  :func:`alphaction_detection_clips`: the official code's (AlphAction's) JSON files.

Each reader raises :class:`umt.errors.InputError` (a ``ValueError``) naming the file, the line
(JSON: the element) and what is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umt.errors import InputError

__all__ = [
    "AVABoxes",
    "AlphActionClip",
    "FrameKey",
    "Keyframe",
    "alphaction_detection_clips",
    "alphaction_xywh_to_xyxy",
    "keyframes_from_boxes",
    "read_alphaction_annotations",
    "read_alphaction_person_boxes",
    "read_detections_csv",
    "read_exclusions",
    "read_groundtruth_csv",
    "read_keyframes",
    "read_label_map",
    "read_person_boxes_csv",
    "write_detections_csv",
]

PathLike = str | os.PathLike
#: A keyframe: ``(video_id, timestamp in seconds)``.
FrameKey = tuple[str, int]


# ----------------------------------------------------------------------------------------------
# Box tables
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AVABoxes:
    """Rows of the AVA CSV format, one (box, action) pair per row; N rows, columnar.

    Attributes:
        video_ids: [N] str, the YouTube id of the movie.
        timestamps: [N] int64, the keyframe's second.
        boxes: [N, 4] float64, ``x1, y1, x2, y2`` normalised to 0-1.
        action_ids: [N] int64, 1-based action id.
        scores: [N] float64, the detection score (1.0 for ground truth).
        person_ids: [N] int64, the person id of the CSV, -1 when absent.

    Any sequences are accepted and converted; lengths are checked.
    """

    video_ids: Any
    timestamps: Any
    boxes: Any
    action_ids: Any
    scores: Any = None
    person_ids: Any = None

    def __post_init__(self) -> None:
        video_ids = np.asarray([str(v) for v in np.asarray(self.video_ids).reshape(-1)], dtype=str)
        n = video_ids.shape[0]
        if n == 0:
            video_ids = np.zeros(0, dtype=str)
        timestamps = np.asarray(self.timestamps, dtype=np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        action_ids = np.asarray(self.action_ids, dtype=np.int64).reshape(-1)
        scores = (
            np.ones(n, dtype=np.float64)
            if self.scores is None
            else np.asarray(self.scores, dtype=np.float64).reshape(-1)
        )
        person_ids = (
            np.full(n, -1, dtype=np.int64)
            if self.person_ids is None
            else np.asarray(self.person_ids, dtype=np.int64).reshape(-1)
        )
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
        lengths = {
            "video_ids": n,
            "timestamps": timestamps.shape[0],
            "boxes": boxes.shape[0],
            "action_ids": action_ids.shape[0],
            "scores": scores.shape[0],
            "person_ids": person_ids.shape[0],
        }
        if len(set(lengths.values())) != 1:
            raise InputError(f"AVABoxes columns differ in length: {lengths}")
        for name, value in (
            ("video_ids", video_ids),
            ("timestamps", timestamps),
            ("boxes", boxes),
            ("action_ids", action_ids),
            ("scores", scores),
            ("person_ids", person_ids),
        ):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.video_ids.shape[0])

    @classmethod
    def concatenate(cls, parts: Iterable[AVABoxes]) -> AVABoxes:
        """All rows of ``parts`` in order (e.g. per-clip detections -> one table)."""
        parts = list(parts)
        if not parts:
            return cls([], [], np.zeros((0, 4)), [])
        return cls(
            np.concatenate([p.video_ids for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.action_ids for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.person_ids for p in parts]),
        )

    def frame_keys(self) -> list[FrameKey]:
        """[N] ``(video_id, timestamp)`` of every row."""
        return list(zip(self.video_ids.tolist(), self.timestamps.tolist()))


# ----------------------------------------------------------------------------------------------
# CSV readers / writer
# ----------------------------------------------------------------------------------------------


def _read_text(path: PathLike, newline: str | None = None) -> str:
    """:func:`umt.textfile.read_text`, imported on use: ``import umt`` loads torch, and this
    module stays numpy-only."""
    from umt.textfile import read_text as read

    return read(path, newline)


def _csv_rows(path: PathLike) -> Iterator[tuple[str, list[str]]]:
    """``(where, row)`` for every non-blank CSV row of ``path``; ``where`` is ``file:line``."""
    with io.StringIO(_read_text(path, newline=""), newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield f"{os.fspath(path)}:{reader.line_num}", row


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"{where}: {what} must be an integer, got {text!r}") from None


def _parse_float(text: str, what: str, where: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise InputError(f"{where}: {what} must be a number, got {text!r}") from None
    if math.isnan(value):
        raise InputError(f"{where}: {what} is NaN")
    return value


def _read_ava_csv(path: PathLike, groundtruth: bool) -> AVABoxes:
    video_ids: list[str] = []
    timestamps: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    action_ids: list[int] = []
    scores: list[float] = []
    person_ids: list[int] = []
    allowed = (7, 8) if groundtruth else (8, 9)
    layout = (
        "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]"
        if groundtruth
        else "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id],score"
    )
    for where, row in _csv_rows(path):
        if len(row) not in allowed:
            raise InputError(
                f"{where}: expected {' or '.join(map(str, allowed))} columns ({layout}), "
                f"got {len(row)}: {','.join(row)!r}"
            )
        video_id = row[0].strip()
        if not video_id:
            raise InputError(f"{where}: empty video_id")
        timestamp = _parse_int(row[1], "timestamp", where)
        x1, y1, x2, y2 = (
            _parse_float(row[2 + k], name, where) for k, name in enumerate(("x1", "y1", "x2", "y2"))
        )
        if groundtruth and (x1 > x2 or y1 > y2):
            raise InputError(
                f"{where}: ground-truth box has x1 > x2 or y1 > y2: {(x1, y1, x2, y2)}"
            )
        action_id = _parse_int(row[6], "action_id", where)
        person_id = -1
        score = 1.0
        if groundtruth:
            if len(row) == 8:
                person_id = _parse_int(row[7], "person_id", where)
        else:
            if len(row) == 9:
                person_id = _parse_int(row[7], "person_id", where)
            score = _parse_float(row[-1], "score", where)
        video_ids.append(video_id)
        timestamps.append(timestamp)
        boxes.append((x1, y1, x2, y2))
        action_ids.append(action_id)
        scores.append(score)
        person_ids.append(person_id)
    return AVABoxes(
        video_ids,
        timestamps,
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        action_ids,
        scores,
        person_ids,
    )


def read_groundtruth_csv(path: PathLike) -> AVABoxes:
    """Read an AVA ground-truth CSV (``ava_val_v2.2.csv``).

    Each line: ``video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]`` with integer
    seconds, boxes normalised to 0-1. Blank lines are skipped. Scores are 1.0; ``person_ids`` -1
    when the column is absent. Returns an :class:`AVABoxes` of N rows.
    """
    return _read_ava_csv(path, groundtruth=True)


def read_detections_csv(path: PathLike) -> AVABoxes:
    """Read AVA detections: ``video_id, timestamp, x1, y1, x2, y2, action_id, score``.

    This is the official result layout (``write_csv`` of ``data/ava_eval.py`` and the AVA
    challenge format). Nine columns are read as ``..., action_id, person_id, score``.
    Returns an :class:`AVABoxes` of N rows.
    """
    return _read_ava_csv(path, groundtruth=False)


def write_detections_csv(path: PathLike, detections: AVABoxes) -> None:
    """Write detections as the official ``write_csv`` does (read back by the official eval).

    ``video_id, %04d timestamp, x1, y1, x2, y2 (5 decimals), action_id, score (5 decimals)``.
    The official evaluates this rounded file, so ``frame_map(gt, read_detections_csv(path))``
    reproduces the official number exactly where ``frame_map(gt, detections)`` may differ in the
    last digits.
    """
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=",")
        for video_id, timestamp, box, action_id, score in zip(
            detections.video_ids.tolist(),
            detections.timestamps.tolist(),
            detections.boxes.tolist(),
            detections.action_ids.tolist(),
            detections.scores.tolist(),
        ):
            writer.writerow(
                [video_id, f"{int(timestamp):04d}"]
                + [f"{c:.5f}" for c in box]
                + [int(action_id), f"{score:.5f}"]
            )


def read_exclusions(path: PathLike) -> set[FrameKey]:
    """Read an excluded-timestamps CSV (``video_id,timestamp`` per line) -> set of keyframes.

    Blank lines are skipped; any other line must have exactly two columns (as the official).
    """
    excluded: set[FrameKey] = set()
    for where, row in _csv_rows(path):
        if len(row) != 2:
            raise InputError(
                f"{where}: expected 2 columns (video_id,timestamp), got {len(row)}: "
                f"{','.join(row)!r}"
            )
        video_id = row[0].strip()
        if not video_id:
            raise InputError(f"{where}: empty video_id")
        excluded.add((video_id, _parse_int(row[1], "timestamp", where)))
    return excluded


_PBTXT_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#.*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[{}:])
      | (?P<word>[^\s{}:"'\#]+)
    )""",
    re.VERBOSE,
)
_NAME_KEYS = ("name", "display_name")
_ID_KEYS = ("id", "label_id")


def _pbtxt_tokens(path: PathLike) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    with io.StringIO(_read_text(path)) as f:
        for lineno, line in enumerate(f, start=1):
            pos = 0
            text = line.rstrip("\n")
            while pos < len(text):
                if not text[pos:].strip():
                    break
                m = _PBTXT_TOKEN.match(text, pos)
                if m is None or m.end() == pos:
                    raise InputError(
                        f"{os.fspath(path)}:{lineno}: cannot parse label map text at "
                        f"{text[pos:].strip()!r}"
                    )
                pos = m.end()
                kind = m.lastgroup
                if kind == "comment":
                    break
                tokens.append((kind, m.group(kind), lineno))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def read_label_map(path: PathLike) -> dict[int, str]:
    """Read an AVA label map ``.pbtxt`` -> ``{action_id: name}`` in file order.

    ``item { name: "bend/bow (at the waist)" id: 1 }`` blocks, one field a line or all on one
    line; ``label_id`` is read as ``id`` and ``display_name`` as ``name`` (``name`` wins when
    both are given, as in the official line reader); other fields (``label_type: ...``) are
    ignored. For ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``: 60 classes, ids 1-80.
    """
    where_file = os.fspath(path)
    tokens = _pbtxt_tokens(path)
    label_map: dict[int, str] = {}
    i = 0

    def expect(kind: str, value: str | None, what: str) -> tuple[str, str, int]:
        nonlocal i
        if i >= len(tokens):
            last = tokens[-1][2] if tokens else 1
            raise InputError(f"{where_file}:{last}: unexpected end of file, expected {what}")
        tok = tokens[i]
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise InputError(f"{where_file}:{tok[2]}: expected {what}, got {tok[1]!r}")
        i += 1
        return tok

    while i < len(tokens):
        _, _, item_line = expect("word", "item", "'item'")
        if i < len(tokens) and tokens[i][:2] == ("punct", ":"):
            i += 1
        expect("punct", "{", "'{' after 'item'")
        fields: dict[str, tuple[str, str, int]] = {}
        while True:
            if i >= len(tokens):
                raise InputError(
                    f"{where_file}:{item_line}: item opened here is not closed with '}}'"
                )
            if tokens[i][:2] == ("punct", "}"):
                i += 1
                break
            key_tok = expect("word", None, "a field name or '}'")
            expect("punct", ":", f"':' after {key_tok[1]!r}")
            if i >= len(tokens) or tokens[i][0] not in ("string", "word"):
                line = tokens[i][2] if i < len(tokens) else key_tok[2]
                raise InputError(f"{where_file}:{line}: field {key_tok[1]!r} has no value")
            value_tok = tokens[i]
            i += 1
            if key_tok[1] in fields:
                raise InputError(
                    f"{where_file}:{key_tok[2]}: field {key_tok[1]!r} given twice in one item"
                )
            fields[key_tok[1]] = value_tok
        id_tok = next((fields[k] for k in _ID_KEYS if k in fields), None)
        if id_tok is None:
            raise InputError(f"{where_file}:{item_line}: item has no 'id' (or 'label_id')")
        if id_tok[0] != "word":
            raise InputError(f"{where_file}:{id_tok[2]}: id must be an integer, got {id_tok[1]}")
        class_id = _parse_int(id_tok[1], "id", f"{where_file}:{id_tok[2]}")
        if class_id < 1:
            raise InputError(f"{where_file}:{id_tok[2]}: ids must be 1-based, got {class_id}")
        name_tok = next((fields[k] for k in _NAME_KEYS if k in fields), None)
        if name_tok is None:
            raise InputError(f"{where_file}:{item_line}: item has no 'name' (or 'display_name')")
        name = _unquote(name_tok[1]) if name_tok[0] == "string" else name_tok[1]
        if class_id in label_map:
            raise InputError(f"{where_file}:{id_tok[2]}: id {class_id} appears twice")
        label_map[class_id] = name
    if not label_map:
        raise InputError(f"{where_file}: label map has no items")
    return label_map


# ----------------------------------------------------------------------------------------------
# AlphAction JSON layouts
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphActionClip:
    """One keyframe as the official ``AVAVideoDataset`` yields it (before transforms).

    Attributes:
        clip_id: the ``images[].id`` of the annotation JSON.
        movie, timestamp: the video id and the keyframe second.
        width, height: the movie's frame size in pixels (the first image of that movie).
        boxes: [N, 4] float32 pixel ``x1, y1, x2, y2`` (AlphAction's inclusive corners), after
            :func:`alphaction_xywh_to_xyxy` (clipped, empty boxes removed).
        labels: [N, num_classes] bool multi-hot (column k = action id k + 1) for ground-truth
            boxes, else None.
        scores: [N] float32 detector scores for detected person boxes, else None.
    """

    clip_id: int
    movie: str
    timestamp: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray | None = None
    scores: np.ndarray | None = field(default=None)


def alphaction_xywh_to_xyxy(
    boxes_xywh: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """AlphAction's ``BoxList(xywh).convert("xyxy").clip_to_image(remove_empty=True)``.

    ``x2 = x + max(w - 1, 0)``, ``y2 = y + max(h - 1, 0)`` in float32, then every coordinate
    clamped to ``[0, width - 1]`` / ``[0, height - 1]``; a box is kept iff ``x2 > x1`` and
    ``y2 > y1``.

    Args:
        boxes_xywh: [N, 4] pixel ``x, y, w, h``.
    Returns:
        ``(boxes [M, 4] float32 xyxy, keep [N] bool)`` with ``M = keep.sum()``.
    """
    b = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    one = np.float32(1)
    zero = np.float32(0)
    x1, y1 = b[:, 0], b[:, 1]
    x2 = x1 + np.maximum(b[:, 2] - one, zero)
    y2 = y1 + np.maximum(b[:, 3] - one, zero)
    xyxy = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], zero, np.float32(width - 1))
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], zero, np.float32(height - 1))
    keep = (xyxy[:, 3] > xyxy[:, 1]) & (xyxy[:, 2] > xyxy[:, 0])
    return xyxy[keep], keep


def _load_json(path: PathLike) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{os.fspath(path)}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def _json_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    if key not in obj:
        raise InputError(f"{where}: missing {key!r}")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def _json_box(obj: Mapping[str, Any], where: str) -> list[float]:
    if "bbox" not in obj:
        raise InputError(f"{where}: missing 'bbox'")
    box = obj["bbox"]
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in box)
    ):
        raise InputError(f"{where}.bbox: expected 4 numbers [x, y, w, h], got {box!r}")
    return [float(c) for c in box]


def read_alphaction_annotations(
    path: PathLike, *, num_classes: int = 80, drop_unannotated: bool = False
) -> list[AlphActionClip]:
    """Read AlphAction's ``ava_{train,val}_v2.2_min.json`` as the official dataset does.

    Layout (COCO-like; other keys are ignored)::

        {"images": [{"id": int, "movie": str, "timestamp": int, "width": int, "height": int}],
         "annotations": [{"image_id": int, "bbox": [x, y, w, h] (pixels),
                          "action_ids": [int, ...] (1-based)}]}

    Per clip: the boxes of its annotations in file order, converted by
    :func:`alphaction_xywh_to_xyxy` with the movie's size (that of the movie's first image, as
    ``movies_size`` in ``data/ava.py`` L43-49), and their multi-hot labels (``one_hot[action_ids]``
    over 81 slots minus slot 0, L34-41). Clips are sorted by id; ``drop_unannotated=True`` keeps
    only clips with at least one annotation (training: ``remove_clips_without_annotations``).
    Annotations of an image id not listed in ``images`` are ignored (as the official).
    Errors name the file and the element (``annotations[12].bbox``).
    """
    where_file = os.fspath(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{where_file}: top level must be an object with an 'images' list")
    movie_size: dict[str, tuple[int, int]] = {}
    clip_info: dict[int, tuple[str, int]] = {}
    for k, img in enumerate(data["images"]):
        where = f"{where_file}: images[{k}]"
        if not isinstance(img, dict):
            raise InputError(f"{where}: expected an object, got {type(img).__name__}")
        clip_id = _json_int(img, "id", where)
        movie = img.get("movie")
        if not isinstance(movie, str) or not movie:
            raise InputError(f"{where}.movie: expected a non-empty string, got {movie!r}")
        timestamp = _json_int(img, "timestamp", where)
        width = _json_int(img, "width", where)
        height = _json_int(img, "height", where)
        if width <= 0 or height <= 0:
            raise InputError(f"{where}: width and height must be positive, got {width}x{height}")
        if clip_id in clip_info:
            raise InputError(f"{where}.id: image id {clip_id} appears twice")
        movie_size.setdefault(movie, (width, height))
        clip_info[clip_id] = (movie, timestamp)

    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise InputError(f"{where_file}: 'annotations' must be a list")
    raw_boxes: dict[int, list[list[float]]] = {}
    raw_labels: dict[int, list[np.ndarray]] = {}
    for k, ann in enumerate(annotations):
        where = f"{where_file}: annotations[{k}]"
        if not isinstance(ann, dict):
            raise InputError(f"{where}: expected an object, got {type(ann).__name__}")
        image_id = _json_int(ann, "image_id", where)
        box = _json_box(ann, where)
        action_ids = ann.get("action_ids")
        if not isinstance(action_ids, list):
            raise InputError(f"{where}.action_ids: expected a list of ints, got {action_ids!r}")
        one_hot = np.zeros(num_classes, dtype=bool)
        for a in action_ids:
            if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= num_classes:
                raise InputError(
                    f"{where}.action_ids: expected action ids in 1..{num_classes}, got {a!r}"
                )
            one_hot[a - 1] = True
        raw_boxes.setdefault(image_id, []).append(box)
        raw_labels.setdefault(image_id, []).append(one_hot)

    clips: list[AlphActionClip] = []
    for clip_id in sorted(clip_info):
        if drop_unannotated and clip_id not in raw_boxes:
            continue
        movie, timestamp = clip_info[clip_id]
        width, height = movie_size[movie]
        boxes, keep = alphaction_xywh_to_xyxy(
            np.asarray(raw_boxes.get(clip_id, []), dtype=np.float32).reshape(-1, 4), width, height
        )
        labels = np.asarray(raw_labels.get(clip_id, []), dtype=bool).reshape(-1, num_classes)
        clips.append(AlphActionClip(clip_id, movie, timestamp, width, height, boxes, labels[keep]))
    return clips


def read_alphaction_person_boxes(
    path: PathLike, *, score_threshold: float = 0.0
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Read AlphAction's detected person boxes (``ava_val_det_person_bbox.json``).

    Layout: a list of ``{"image_id": int, "bbox": [x, y, w, h] (pixels), "score": float}``
    (other keys ignored). Boxes with ``score >= score_threshold`` are kept in file order
    (``load_box_file``; the official validation uses 0.8, :data:`umt.evaluate.detection.OFFICIAL_VAL_BOX_THRESHOLD`).

    Returns:
        ``{image_id: (boxes_xywh [N, 4] float32, scores [N] float32)}``, only ids with N >= 1.
    """
    where_file = os.fspath(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise InputError(f"{where_file}: top level must be a list of box objects")
    boxes: dict[int, list[list[float]]] = {}
    scores: dict[int, list[float]] = {}
    for k, det in enumerate(data):
        where = f"{where_file}: [{k}]"
        if not isinstance(det, dict):
            raise InputError(f"{where}: expected an object, got {type(det).__name__}")
        image_id = _json_int(det, "image_id", where)
        box = _json_box(det, where)
        score = det.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise InputError(f"{where}.score: expected a number, got {score!r}")
        if score >= score_threshold:
            boxes.setdefault(image_id, []).append(box)
            scores.setdefault(image_id, []).append(float(score))
    return {
        i: (np.asarray(boxes[i], dtype=np.float32), np.asarray(scores[i], dtype=np.float32))
        for i in boxes
    }


def alphaction_detection_clips(
    clips: Sequence[AlphActionClip], person_boxes: Mapping[int, tuple[np.ndarray, np.ndarray]]
) -> list[AlphActionClip]:
    """The validation clips of the official dataset: those with >= 1 detected person box.

    For each clip of ``clips`` (ground truth, sorted by id) that has boxes in ``person_boxes``
    (from :func:`read_alphaction_person_boxes` with the threshold applied), a clip whose
    ``boxes`` are the detected boxes converted by :func:`alphaction_xywh_to_xyxy`, ``scores``
    their detector scores and ``labels`` None (``data/ava.py`` L56-66, L109-117).
    """
    out: list[AlphActionClip] = []
    for clip in clips:
        det = person_boxes.get(clip.clip_id)
        if det is None or len(det[1]) == 0:
            continue
        boxes, keep = alphaction_xywh_to_xyxy(det[0], clip.width, clip.height)
        out.append(
            AlphActionClip(
                clip.clip_id,
                clip.movie,
                clip.timestamp,
                clip.width,
                clip.height,
                boxes,
                None,
                np.asarray(det[1], dtype=np.float32)[keep],
            )
        )
    return out


# ----------------------------------------------------------------------------------------------
# Keyframes (for the detection dataset) and detected person boxes
# ----------------------------------------------------------------------------------------------


@dataclass
class Keyframe:
    """One keyframe: its boxes (normalised ``x1, y1, x2, y2``), per-box action ids and scores."""

    video_id: str
    timestamp: int
    boxes: list[list[float]] = field(default_factory=list)
    actions: list[list[int]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def keyframes_from_boxes(
    table: AVABoxes, num_classes: int | None = None, source: str = "<table>"
) -> list[Keyframe]:
    """Ground-truth rows -> keyframes in order of first appearance, each with its people (the
    rows of one person: same person id and box) and their action ids (each once, in row order).
    Action ids must be in ``1..num_classes``; ``source`` names the table in errors."""
    frames: dict[FrameKey, Keyframe] = {}
    people: dict[tuple[str, int, int, tuple[float, ...]], int] = {}
    rows = zip(
        table.video_ids.tolist(),
        table.timestamps.tolist(),
        table.boxes.tolist(),
        table.action_ids.tolist(),
        table.person_ids.tolist(),
    )
    for k, (video_id, ts, box, action, person_id) in enumerate(rows):
        if num_classes is not None and not 1 <= action <= num_classes:
            raise InputError(
                f"{source}: row {k + 1}: action id {action} is outside 1..{num_classes}"
            )
        frame = frames.setdefault((video_id, ts), Keyframe(video_id, ts))
        person = (video_id, ts, person_id, tuple(box))
        if person not in people:
            people[person] = len(frame.boxes)
            frame.boxes.append(list(box))
            frame.actions.append([])
            frame.scores.append(1.0)
        acts = frame.actions[people[person]]
        if action not in acts:
            acts.append(action)
    return list(frames.values())


def read_keyframes(path: PathLike, num_classes: int | None = None) -> list[Keyframe]:
    """An AVA ground-truth CSV (:func:`read_groundtruth_csv`) as keyframes
    (:func:`keyframes_from_boxes`)."""
    return keyframes_from_boxes(read_groundtruth_csv(path), num_classes, os.fspath(path))


def read_person_boxes_csv(
    path: PathLike, threshold: float = 0.0
) -> dict[FrameKey, tuple[list[list[float]], list[float]]]:
    """Detected person boxes: CSV ``video_id,timestamp,x1,y1,x2,y2,score`` (normalised), or
    8 columns with an (ignored) action id before the score, as AVA's box files. Boxes with
    ``score >= threshold`` kept in file order: ``{(video_id, ts): (boxes, scores)}``."""
    out: dict[FrameKey, tuple[list[list[float]], list[float]]] = {}
    for where, raw in _csv_rows(path):
        row = [c.strip() for c in raw]
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
