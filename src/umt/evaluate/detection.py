"""AVA v2.2 action detection: the frame-mAP of the official evaluation.

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
writes them with five decimals (:func:`umt.data.formats.ava.write_detections_csv`) and evaluates what it reads back.

The AVA files (CSV, label map, exclusions, AlphAction JSON) are read by
:mod:`umt.data.formats.ava`; :func:`frame_map_from_files` reads them and scores.

Only numpy and the standard library are imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from umt.data.formats.ava import (
    AVABoxes,
    FrameKey,
    PathLike,
    read_detections_csv,
    read_exclusions,
    read_groundtruth_csv,
    read_label_map,
)
from umt.errors import InputError

__all__ = [
    "OFFICIAL_MAP_KEY",
    "OFFICIAL_VAL_BOX_THRESHOLD",
    "DetectionResult",
    "frame_map",
    "frame_map_from_files",
    "batch_detections",
    "chance_frame_map",
    "pixel_boxes_to_normalised",
    "detections_from_scores",
]

#: The key under which the official evaluation reports the frame-mAP.
OFFICIAL_MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
#: Detected person boxes below this score are not used at validation (``AD/datasets.py`` L36).
OFFICIAL_VAL_BOX_THRESHOLD = 0.8

# The evaluator's disabled NMS (``ObjectDetectionEvaluation``: nms_iou_threshold=1.0,
# nms_max_output_boxes=10000; ``non_max_suppression``: score_threshold=-10.0).
_MAX_DETECTIONS_PER_FRAME_CLASS = 10000
_MIN_SCORE_EXCLUSIVE = -10.0


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
