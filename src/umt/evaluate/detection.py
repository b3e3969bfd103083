"""AVA v2.2 action detection: the frame-mAP of the official evaluation, and its file readers.

The official UMT code (``single_modality/action_detection``) scores AVA with the Pascal
evaluator bundled from the TF object-detection API (``alphaction/.../pascal_evaluation``),
driven by ``data/ava_eval.py`` ``evaluate_predictions_on_ava``; the number it reports is
``PascalBoxes_Precision/mAP@0.5IOU``. :func:`frame_map` computes the same number with numpy:

* the unit is the keyframe ``(video_id, timestamp)``; ground truth (GT) rows and detection rows
  of an action outside the label map are dropped, then every row of an excluded keyframe;
* each GT row (box, action) is one GT instance of its class: AVA has no difficult / group-of
  flags (the official passes ``difficult = False`` for every box and no group-of list);
* detections with ``x1 >= x2`` or ``y1 >= y2`` are dropped (``_remove_invalid_boxes``);
* per keyframe and class the detections are ordered by score (``np.argsort(s)[::-1]``, at most
  10000 kept, scores must exceed -10: the disabled NMS of the evaluator); each detection in turn
  takes the GT box of its class in that keyframe with the highest IoU (first one on ties); it is
  a true positive when that IoU is ``>= iou`` and that GT box is not yet taken, otherwise a
  false positive -- a detection whose best GT box is taken is *not* re-matched to another box;
  detections in keyframes without GT of their class are false positives;
* per class, all detections are ordered by score (``np.argsort(scores)[::-1]`` over the
  keyframes' lists concatenated in order of first appearance, so ties fall as in the official),
  precision = cumTP / rank, recall = cumTP / #GT, and AP is the VOC all-points area: precision
  made non-increasing from the right, summed over the recall steps (``compute_average_precision``);
  a class with GT but no detection has AP 0;
* IoU is on the normalised coordinates with no "+1" (``np_box_ops.iou``: area = (y2-y1)(x2-x1));
* a class with no GT (after the filters) gets no AP and does not enter the mean; mAP is
  ``np.nanmean`` over the classes ``1..max label id``.

The "+1" of AlphAction's pixel boxes lives only where detections are turned into normalised
boxes (:func:`pixel_boxes_to_normalised`, ``prepare_for_ava_detection``); the official then
writes them with five decimals (:func:`write_detections_csv`) and evaluates what it reads back.

Readers: the AVA CSV (:func:`read_groundtruth_csv`, :func:`read_detections_csv`), the label
map (:func:`read_label_map`), the excluded timestamps (:func:`read_exclusions`) and the AlphAction
JSON layouts (:func:`read_alphaction_annotations`, :func:`read_alphaction_person_boxes`). Each
raises ``ValueError`` naming the file, the line (JSON: the element) and what is wrong.

Only numpy and the standard library are imported.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umt.errors import InputError

__all__ = [
    "OFFICIAL_MAP_KEY",
    "OFFICIAL_VAL_BOX_THRESHOLD",
    "AVABoxes",
    "DetectionResult",
    "AlphActionClip",
    "frame_map",
    "frame_map_from_files",
    "batch_detections",
    "chance_frame_map",
    "read_groundtruth_csv",
    "read_detections_csv",
    "write_detections_csv",
    "read_label_map",
    "read_exclusions",
    "read_alphaction_annotations",
    "read_alphaction_person_boxes",
    "alphaction_detection_clips",
    "alphaction_xywh_to_xyxy",
    "pixel_boxes_to_normalised",
    "detections_from_scores",
]

PathLike = str | os.PathLike

#: The key under which the official evaluation reports the frame-mAP.
OFFICIAL_MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
#: Detected person boxes below this score are not used at validation (``AD/datasets.py`` L36).
OFFICIAL_VAL_BOX_THRESHOLD = 0.8

# The evaluator's disabled NMS (``ObjectDetectionEvaluation``: nms_iou_threshold=1.0,
# nms_max_output_boxes=10000; ``non_max_suppression``: score_threshold=-10.0).
_MAX_DETECTIONS_PER_FRAME_CLASS = 10000
_MIN_SCORE_EXCLUSIVE = -10.0

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
    with io.StringIO(_read_text(path, newline=""), newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            where = f"{os.fspath(path)}:{reader.line_num}"
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
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
                _parse_float(row[2 + k], name, where)
                for k, name in enumerate(("x1", "y1", "x2", "y2"))
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
    with io.StringIO(_read_text(path, newline=""), newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            where = f"{os.fspath(path)}:{reader.line_num}"
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
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
    (``load_box_file``; the official validation uses 0.8, :data:`OFFICIAL_VAL_BOX_THRESHOLD`).

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


def pixel_boxes_to_normalised(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """AlphAction pixel boxes -> normalised AVA boxes (``prepare_for_ava_detection`` L58-62).

    ``x2 += 1, y2 += 1`` (inclusive corners), divide by the frame size, clip to [0, 1], in
    float32. Args: boxes_xyxy [N, 4] pixels in the original frame. Returns [N, 4] float32.
    """
    b = np.array(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    b[:, [2, 3]] += np.float32(1.0)
    b[:, [0, 2]] /= np.float32(width)
    b[:, [1, 3]] /= np.float32(height)
    return np.clip(b, np.float32(0.0), np.float32(1.0))


def detections_from_scores(
    video_id: str,
    timestamp: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float = 0.0,
) -> AVABoxes:
    """One keyframe's model output -> AVA detection rows, as ``prepare_for_ava_detection``.

    Args:
        boxes: [M, 4] normalised ``x1, y1, x2, y2`` (see :func:`pixel_boxes_to_normalised`).
        scores: [M, C] per-action scores (column c = action id c + 1; the official uses
            ``sigmoid(logit) * person score``).
        threshold: rows with ``score >= threshold`` are kept (official ``action_thresh`` 0).
    Returns:
        :class:`AVABoxes` ordered box-major then action, as the official ``np.where``.
    """
    scores = np.asarray(scores)
    boxes = np.asarray(boxes).reshape(-1, 4)
    if scores.ndim != 2 or scores.shape[0] != boxes.shape[0]:
        raise InputError(
            f"scores must have shape [M, C] with M = {boxes.shape[0]} boxes, "
            f"got {tuple(scores.shape)}"
        )
    box_ids, action_cols = np.where(scores >= threshold)
    n = box_ids.shape[0]
    return AVABoxes(
        [video_id] * n,
        np.full(n, int(timestamp)),
        boxes[box_ids],
        action_cols + 1,
        scores[box_ids, action_cols],
    )


def batch_detections(batch: dict[str, Any], scores: Any) -> AVABoxes:
    """A validation batch's AVA rows: each clip's boxes (``batch["boxes"]``: [n_i, 4] pixels of
    the resized frame ``batch["image_size"]`` (h, w)) taken back to its original frame
    ``batch["orig_size"]``, normalised, and one row per box and class of ``scores``
    ([sum n_i, C], the clips' boxes in batch order), keyed by ``batch["video_id"]`` /
    ``batch["timestamp"]``; as the official ``prepare_for_ava_detection`` after its resize."""
    scores = np.asarray(scores)
    parts, start = [], 0
    for i, boxes in enumerate(batch["boxes"]):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        n = boxes.shape[0]
        if n == 0:
            continue
        (h, w), (h0, w0) = batch["image_size"][i], batch["orig_size"][i]
        orig = boxes * np.array([w0 / w, h0 / h, w0 / w, h0 / h])
        parts.append(
            detections_from_scores(
                batch["video_id"][i],
                batch["timestamp"][i],
                pixel_boxes_to_normalised(orig, w0, h0),
                scores[start : start + n],
            )
        )
        start += n
    if start != scores.shape[0]:
        raise InputError(f"{scores.shape[0]} rows of scores for {start} boxes")
    return AVABoxes.concatenate(parts)


# ----------------------------------------------------------------------------------------------
# The metric
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionResult:
    """The AVA frame-mAP and its parts.

    Attributes:
        mean_ap: mean AP over the classes with ground truth (NaN when none has).
        average_precision: ``{action_id: AP}`` for the classes with ground truth, by id.
        class_names: ``{action_id: name}`` of every evaluated class (the label map).
        num_groundtruth_per_class: ``{action_id: #GT instances}`` for every evaluated class.
        num_groundtruth_boxes: GT instances counted (rows: one per (person box, action)).
        num_groundtruth_frames: keyframes with at least one counted GT row.
        num_detections: detection rows evaluated (label map, exclusions, valid boxes applied).
        iou_threshold: the matching IoU.
    """

    mean_ap: float
    average_precision: dict[int, float]
    class_names: dict[int, str]
    num_groundtruth_per_class: dict[int, int]
    num_groundtruth_boxes: int
    num_groundtruth_frames: int
    num_detections: int
    iou_threshold: float = 0.5

    @property
    def ap_by_name(self) -> dict[str, float]:
        """``{class name: AP}`` for the classes with ground truth."""
        return {self.class_names[c]: ap for c, ap in self.average_precision.items()}

    @property
    def classes_without_groundtruth(self) -> list[int]:
        """Label-map ids with no ground truth (skipped, as the official)."""
        return [c for c, n in self.num_groundtruth_per_class.items() if n == 0]

    def to_official_metrics(self) -> dict[str, float]:
        """The dict of the official ``PascalDetectionEvaluator.evaluate`` (NaN for no-GT)."""
        prefix = "PascalBoxes_"
        out = {f"{prefix}Precision/mAP@{self.iou_threshold}IOU": self.mean_ap}
        for c in sorted(self.class_names):
            key = f"{prefix}PerformanceByCategory/AP@{self.iou_threshold}IOU/{self.class_names[c]}"
            out[key] = self.average_precision.get(c, float("nan"))
        return out


def _pairwise_iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU [D, G] of normalised ``x1, y1, x2, y2`` boxes, no "+1" (``np_box_ops.iou``)."""
    heights = np.maximum(
        0.0,
        np.minimum(det[:, None, 3], gt[None, :, 3]) - np.maximum(det[:, None, 1], gt[None, :, 1]),
    )
    widths = np.maximum(
        0.0,
        np.minimum(det[:, None, 2], gt[None, :, 2]) - np.maximum(det[:, None, 0], gt[None, :, 0]),
    )
    intersection = heights * widths
    det_area = (det[:, 3] - det[:, 1]) * (det[:, 2] - det[:, 0])
    gt_area = (gt[:, 3] - gt[:, 1]) * (gt[:, 2] - gt[:, 0])
    return intersection / (det_area[:, None] + gt_area[None, :] - intersection)


def _match_frame(det_boxes: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """TP flags [D] of score-ordered detections against one keyframe's GT boxes of a class."""
    tp = np.zeros(det_boxes.shape[0], dtype=bool)
    if gt_boxes.shape[0] == 0:
        return tp
    ious = _pairwise_iou(det_boxes, gt_boxes)
    best = ious.argmax(axis=1)
    taken = np.zeros(gt_boxes.shape[0], dtype=bool)
    for i, g in enumerate(best.tolist()):
        if ious[i, g] >= iou_threshold and not taken[g]:
            tp[i] = True
            taken[g] = True
    return tp


def _average_precision(tp_flags: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """VOC all-points AP of one class (``compute_precision_recall`` + ``compute_average_precision``)."""
    if scores.size == 0:
        return 0.0
    order = np.argsort(scores)[::-1]
    tp = tp_flags.astype(int)[order]
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp)
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_gt
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def _groups(cls: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids [N] and group starts [G] of rows sorted by (class, keyframe)."""
    new = np.ones(cls.shape[0], dtype=bool)
    new[1:] = (cls[1:] != cls[:-1]) | (frame[1:] != frame[:-1])
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _keep_mask(table: AVABoxes, classes: set[int], excluded: set[FrameKey]) -> np.ndarray:
    keep = np.isin(table.action_ids, np.fromiter(classes, dtype=np.int64, count=len(classes)))
    if excluded:
        keep &= np.fromiter(
            (key not in excluded for key in table.frame_keys()), dtype=bool, count=len(table)
        )
    return keep


def frame_map(
    groundtruth: AVABoxes,
    detections: AVABoxes,
    label_map: Mapping[int, str] | None = None,
    excluded: Iterable[tuple[str, int]] | None = None,
    iou: float = 0.5,
) -> DetectionResult:
    """AVA frame-mAP exactly as the official Pascal evaluation (see the module docstring).

    Args:
        groundtruth: N GT rows (normalised boxes); x1 <= x2 and y1 <= y2 required.
        detections: M scored detection rows (normalised boxes).
        label_map: ``{action_id: name}``; only these classes count (rows of other actions are
            dropped from both sides). None: the classes present in ``groundtruth``.
        excluded: keyframes ``(video_id, timestamp)`` removed from both sides.
        iou: the matching IoU threshold (``>=``).
    Returns:
        :class:`DetectionResult`.
    """
    if not 0.0 < iou <= 1.0:
        raise InputError(f"iou must be in (0, 1], got {iou}")
    excluded_keys = {(str(v), int(t)) for v, t in excluded} if excluded is not None else set()
    if label_map is None:
        class_names = {int(c): str(int(c)) for c in np.unique(groundtruth.action_ids).tolist()}
    else:
        class_names = {int(c): str(name) for c, name in label_map.items()}
    if not class_names:
        raise InputError("no classes to evaluate (empty label map and no ground truth)")
    if min(class_names) < 1:
        raise InputError(f"class ids must be 1-based, got {min(class_names)}")
    classes = set(class_names)

    # Ground truth: per (class, keyframe) the boxes in file order.
    gt_keep = _keep_mask(groundtruth, classes, excluded_keys)
    gt_boxes = groundtruth.boxes[gt_keep]
    bad = (gt_boxes[:, 0] > gt_boxes[:, 2]) | (gt_boxes[:, 1] > gt_boxes[:, 3])
    if bad.any():
        row = int(np.flatnonzero(gt_keep)[np.flatnonzero(bad)[0]])
        raise InputError(
            f"ground-truth row {row} has x1 > x2 or y1 > y2: {groundtruth.boxes[row].tolist()}"
        )
    gt_classes = groundtruth.action_ids[gt_keep].tolist()
    gt_keys = [k for k, keep in zip(groundtruth.frame_keys(), gt_keep.tolist()) if keep]
    gt_lists: dict[tuple[int, FrameKey], list[int]] = {}
    for r, (c, key) in enumerate(zip(gt_classes, gt_keys)):
        gt_lists.setdefault((c, key), []).append(r)
    gt_groups = {k: gt_boxes[rows] for k, rows in gt_lists.items()}
    num_gt = dict.fromkeys(sorted(classes), 0)
    for c in gt_classes:
        num_gt[c] += 1

    # Detections: keyframes numbered in order of first appearance (the official's dict order).
    det_keep = _keep_mask(detections, classes, excluded_keys)
    det_keys = [k for k, keep in zip(detections.frame_keys(), det_keep.tolist()) if keep]
    frame_order: dict[FrameKey, int] = {}
    det_frame = np.fromiter(
        (frame_order.setdefault(k, len(frame_order)) for k in det_keys),
        dtype=np.int64,
        count=len(det_keys),
    )
    det_boxes = detections.boxes[det_keep]
    det_scores = detections.scores[det_keep]
    det_classes = detections.action_ids[det_keep]
    valid = (
        (det_boxes[:, 1] < det_boxes[:, 3])
        & (det_boxes[:, 0] < det_boxes[:, 2])
        & (det_scores > _MIN_SCORE_EXCLUSIVE)
    )
    num_detections = int(valid.sum())
    # Classes without GT are computed by the official and then skipped: leave them out.
    with_gt = np.array([c for c in sorted(classes) if num_gt[c] > 0], dtype=np.int64)
    scored = valid & np.isin(det_classes, with_gt)
    boxes, scores = det_boxes[scored], det_scores[scored]
    cls, frame = det_classes[scored], det_frame[scored]

    # Group by (class, keyframe); lexsort is stable, so rows stay in file order in a group.
    order = np.lexsort((frame, cls))
    boxes, scores, cls, frame = boxes[order], scores[order], cls[order], frame[order]
    group, starts = _groups(cls, frame)
    # Inside a group: descending score. Without ties this is the official
    # ``np.argsort(s)[::-1]``; groups with tied scores are ordered by that very call.
    rank = np.lexsort((-scores, group))
    tied = (scores[rank][1:] == scores[rank][:-1]) & (group[1:] == group[:-1])
    if tied.any():
        ends = np.append(starts[1:], scores.shape[0])
        for g in np.unique(group[1:][tied]).tolist():
            s, e = int(starts[g]), int(ends[g])
            rank[s:e] = s + np.argsort(scores[s:e])[::-1]
    boxes, scores, cls, frame = boxes[rank], scores[rank], cls[rank], frame[rank]
    position = np.arange(scores.shape[0]) - starts[group]
    if (position >= _MAX_DETECTIONS_PER_FRAME_CLASS).any():
        top = position < _MAX_DETECTIONS_PER_FRAME_CLASS
        boxes, scores, cls, frame = boxes[top], scores[top], cls[top], frame[top]
        group, starts = _groups(cls, frame)

    # Greedy matching, only where the keyframe has GT of the class (elsewhere all FP).
    num_frames = max(len(frame_order), 1)
    gt_by_code: dict[int, np.ndarray] = {}
    for (c, key), gt_group_boxes in gt_groups.items():
        f = frame_order.get(key)
        if f is not None:
            gt_by_code[c * num_frames + f] = gt_group_boxes
    tp = np.zeros(scores.shape[0], dtype=bool)
    if gt_by_code and scores.shape[0]:
        ends = np.append(starts[1:], scores.shape[0])
        codes = cls[starts] * num_frames + frame[starts]
        gt_codes = np.fromiter(gt_by_code, dtype=np.int64, count=len(gt_by_code))
        for g in np.flatnonzero(np.isin(codes, gt_codes)).tolist():
            s, e = int(starts[g]), int(ends[g])
            tp[s:e] = _match_frame(boxes[s:e], gt_by_code[int(codes[g])], iou)

    # Per class: its keyframes' lists concatenated in order of first appearance.
    ap_table = np.full(max(classes), np.nan)
    average_precision: dict[int, float] = {}
    for c in with_gt.tolist():
        lo, hi = np.searchsorted(cls, c, side="left"), np.searchsorted(cls, c, side="right")
        ap = _average_precision(tp[lo:hi], scores[lo:hi], num_gt[c])
        ap_table[c - 1] = ap
        average_precision[c] = ap
    mean_ap = float(np.nanmean(ap_table)) if average_precision else float("nan")
    return DetectionResult(
        mean_ap=mean_ap,
        average_precision=average_precision,
        class_names={c: class_names[c] for c in sorted(classes)},
        num_groundtruth_per_class=num_gt,
        num_groundtruth_boxes=len(gt_classes),
        num_groundtruth_frames=len({key for key in gt_keys}),
        num_detections=num_detections,
        iou_threshold=iou,
    )


def chance_frame_map(
    groundtruth: AVABoxes,
    detections: AVABoxes,
    label_map: Mapping[int, str] | None = None,
    excluded: Iterable[tuple[str, int]] | None = None,
    iou: float = 0.5,
    seeds: int = 20,
) -> tuple[float, float]:
    """The chance level of ``detections``: :func:`frame_map` with every row's score replaced by
    a uniform random number (same boxes, same classes), mean and standard deviation over the
    draws of ``numpy.random.default_rng(s)``, ``s = 0 .. seeds - 1``. Returns ``(mean, std)``
    as fractions (NaN when no class has ground truth)."""
    if seeds < 1:
        raise InputError(f"seeds must be >= 1, got {seeds}")
    maps = []
    for s in range(seeds):
        scores = np.random.default_rng(s).random(len(detections))
        shuffled = AVABoxes(
            detections.video_ids,
            detections.timestamps,
            detections.boxes,
            detections.action_ids,
            scores,
            detections.person_ids,
        )
        maps.append(frame_map(groundtruth, shuffled, label_map, excluded, iou).mean_ap)
    return float(np.mean(maps)), float(np.std(maps))


def frame_map_from_files(
    groundtruth_csv: PathLike,
    detections_csv: PathLike,
    label_map_pbtxt: PathLike,
    exclusions_csv: PathLike | None = None,
    iou: float = 0.5,
) -> DetectionResult:
    """``evaluate_predictions_on_ava`` from files: GT CSV, result CSV, label map, exclusions."""
    return frame_map(
        read_groundtruth_csv(groundtruth_csv),
        read_detections_csv(detections_csv),
        read_label_map(label_map_pbtxt),
        read_exclusions(exclusions_csv) if exclusions_csv is not None else None,
        iou=iou,
    )
