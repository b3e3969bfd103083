"""AVA v2.2 frame-mAP (``umt.evaluate.detection``): a hand-computed case, the official
protocol's corner rules, every reader (with malformed input), and a brute-force reference on
random data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import umt.evaluate.detection as det_mod
from umt.data.formats.ava import (
    AVABoxes,
    alphaction_detection_clips,
    alphaction_xywh_to_xyxy,
    read_alphaction_annotations,
    read_alphaction_person_boxes,
    read_detections_csv,
    read_exclusions,
    read_groundtruth_csv,
    read_label_map,
    write_detections_csv,
)
from umt.evaluate.detection import (
    OFFICIAL_MAP_KEY,
    detections_from_scores,
    frame_map,
    frame_map_from_files,
    pixel_boxes_to_normalised,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the hand case
# Keyframes: A902 = (vidA, 902), A903 = (vidA, 903), B1000 = (vidB, 1000); (vidB, 1001) is
# excluded; (vidC, 5) has no ground truth at all. Label map: 1 stand, 2 sit, 3 walk.
HAND_GT = """\
vidA,0902,0.1,0.1,0.4,0.6,1,0
vidA,0902,0.5,0.2,0.9,0.9,1,1
vidA,0902,0.5,0.2,0.9,0.9,2,1
vidA,0903,0.2,0.2,0.5,0.8,1,0
vidB,1000,0.3,0.3,0.6,0.9,2,0
vidB,1000,0.3,0.3,0.6,0.9,4,0
vidB,1001,0.1,0.1,0.5,0.5,1,0
vidB,1001,0.1,0.1,0.5,0.5,3,0
"""
# g1 = A902 (0.1,0.1,0.4,0.6) class 1, g2 = A902 (0.5,0.2,0.9,0.9) class 1,
# g3 = A903 (0.2,0.2,0.5,0.8) class 1, h1 = A902 class 2 (= g2's box), h2 = B1000 class 2.
# Class 4 is not in the label map (ignored); (vidB, 1001) is excluded, so class 3's only GT
# goes and class 3 has no GT (skipped).
HAND_DET = """\
vidA,0902,0.5,0.5,0.5,0.8,1,0.99
vidB,1001,0.1,0.1,0.5,0.5,1,0.95
vidA,0902,0.1,0.1,0.4,0.6,1,0.90
vidA,0902,0.1,0.1,0.4,0.55,1,0.80
vidA,0903,0.35,0.2,0.65,0.8,1,0.70
vidA,0902,0.5,0.2,0.9,0.9,1,0.60
vidB,1000,0.3,0.3,0.6,0.9,1,0.50
vidC,0005,0.2,0.2,0.4,0.4,1,0.35
vidA,0903,0.2,0.2,0.5,0.8,1,0.30
vidA,0902,0.5,0.2,0.9,0.9,2,0.85
vidB,1000,0.45,0.3,0.75,0.9,2,0.75
vidB,1000,0.3,0.3,0.6,0.85,2,0.65
vidA,0902,0.1,0.1,0.4,0.6,3,0.99
vidB,1000,0.3,0.3,0.6,0.9,4,0.90
"""
# Class 1 (3 GT: g1, g2, g3):
#   0.99 zero-width box (x1 = x2)             -> dropped (invalid box), not counted
#   0.95 on the excluded keyframe             -> ignored
#   0.90 = g1                                 -> TP
#   0.80 IoU(g1) = 0.135/0.15 = 0.9, g1 taken -> FP (duplicate)
#   0.70 IoU(g3) = 0.09/0.27 = 1/3            -> FP (low IoU)
#   0.60 = g2                                 -> TP
#   0.50 B1000, no class-1 GT in that frame   -> FP
#   0.35 vidC,5, a frame without any GT        -> FP
#   0.30 = g3                                 -> TP
#   rank       1    2    3    4    5    6    7
#   TP/FP      T    F    F    T    F    F    T
#   precision  1   1/2  1/3  1/2  2/5  1/3  3/7
#   recall    1/3  1/3  1/3  2/3  2/3  2/3   1
#   monotone   1   1/2  1/2  1/2  3/7  3/7  3/7
#   AP = 1/3 * 1 + 1/3 * 1/2 + 1/3 * 3/7 = 1/3 + 1/6 + 1/7 = 9/14
# Class 2 (2 GT: h1, h2):
#   0.85 = h1 -> TP; 0.75 IoU(h2) = 0.09/0.27 = 1/3 -> FP; 0.65 IoU(h2) = 0.165/0.18 -> TP
#   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; monotone 1, 2/3, 2/3
#   AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
# Class 3: one detection, no GT -> skipped. Class 4: not in the label map -> dropped.
# mAP = (9/14 + 5/6) / 2 = 31/42.
HAND_LABEL_MAP = """\
item {
  name: "stand"
  id: 1
}
item {
  name: "sit"
  id: 2
}
item {
  name: "walk"
  id: 3
}
"""
HAND_EXCLUDED = "vidB,1001\n"


@pytest.fixture
def hand_files(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    return (
        _write(tmp_path / "gt.csv", HAND_GT),
        _write(tmp_path / "det.csv", HAND_DET),
        _write(tmp_path / "labels.pbtxt", HAND_LABEL_MAP),
        _write(tmp_path / "excluded.csv", HAND_EXCLUDED),
    )


def _check_hand_result(result) -> None:
    assert math.isclose(result.average_precision[1], 9 / 14, rel_tol=0, abs_tol=1e-12)
    assert math.isclose(result.average_precision[2], 5 / 6, rel_tol=0, abs_tol=1e-12)
    assert set(result.average_precision) == {1, 2}
    assert math.isclose(result.mean_ap, 31 / 42, rel_tol=0, abs_tol=1e-12)
    assert result.ap_by_name == {
        "stand": result.average_precision[1],
        "sit": result.average_precision[2],
    }
    assert result.classes_without_groundtruth == [3]
    assert result.num_groundtruth_per_class == {1: 3, 2: 2, 3: 0}
    assert result.num_groundtruth_boxes == 5
    assert result.num_groundtruth_frames == 3
    assert result.num_detections == 11  # 7 of class 1, 3 of class 2, 1 of class 3


def test_hand_case_from_files(hand_files) -> None:
    result = frame_map_from_files(*hand_files)
    _check_hand_result(result)
    metrics = result.to_official_metrics()
    assert metrics[OFFICIAL_MAP_KEY] == result.mean_ap
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/stand"] == pytest.approx(9 / 14)
    assert math.isnan(metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/walk"])
    assert len(metrics) == 4


def test_hand_case_in_memory_and_shuffled(hand_files) -> None:
    gt_path, det_path, lm_path, ex_path = hand_files
    gt, det = read_groundtruth_csv(gt_path), read_detections_csv(det_path)
    labels, excluded = read_label_map(lm_path), read_exclusions(ex_path)
    _check_hand_result(frame_map(gt, det, labels, excluded))
    perm = np.random.default_rng(0).permutation(len(det))
    shuffled = AVABoxes(
        det.video_ids[perm], det.timestamps[perm], det.boxes[perm], det.action_ids[perm],
        det.scores[perm],
    )  # fmt: skip
    _check_hand_result(frame_map(gt, shuffled, labels, excluded))
    # Without the exclusion the excluded frame counts: class 3 gets its GT (and its 0.99
    # detection in A902 misses it), class 1 gets a 4th GT and the 0.95 detection hits it.
    no_exclusion = frame_map(gt, det, labels)
    assert no_exclusion.num_groundtruth_per_class == {1: 4, 2: 2, 3: 1}
    assert no_exclusion.average_precision[3] == 0.0


# --------------------------------------------------------------------------- protocol rules
def _frame(rows: list[tuple]) -> AVABoxes:
    """rows of (video, t, x1, y1, x2, y2, action[, score])."""
    return AVABoxes(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2:6] for r in rows],
        [r[6] for r in rows],
        [r[7] if len(r) > 7 else 1.0 for r in rows],
    )


def test_detection_takes_its_best_gt_even_if_taken() -> None:
    # Two GT boxes a, b. The 0.8 detection has IoU 2/3 with a (taken by the 0.9 one) and
    # 0.538 with b: the official matches only the best-IoU box, so it is a FP (not re-matched
    # to b). precision 1, 1/2; recall 1/2, 1/2 -> AP = 1/2.
    gt = _frame([("v", 1, 0.0, 0.0, 0.5, 0.5, 1), ("v", 1, 0.25, 0.0, 0.75, 0.5, 1)])
    det = _frame([("v", 1, 0.0, 0.0, 0.5, 0.5, 1, 0.9), ("v", 1, 0.1, 0.0, 0.6, 0.5, 1, 0.8)])
    assert frame_map(gt, det).average_precision[1] == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_and_has_no_plus_one() -> None:
    # Intersection 0.125, union 0.25 -> IoU exactly 0.5 (dyadic numbers, no "+1").
    gt = _frame([("v", 1, 0.0, 0.0, 0.5, 0.5, 1)])
    det = _frame([("v", 1, 0.0, 0.0, 0.5, 0.25, 1, 0.7)])
    assert frame_map(gt, det, iou=0.5).average_precision[1] == 1.0
    assert frame_map(gt, det, iou=0.5 + 1e-9).average_precision[1] == 0.0


def test_class_with_gt_and_no_detection_counts_zero() -> None:
    gt = _frame([("v", 1, 0.1, 0.1, 0.4, 0.4, 1), ("v", 1, 0.1, 0.1, 0.4, 0.4, 2)])
    det = _frame([("v", 1, 0.1, 0.1, 0.4, 0.4, 1, 0.5)])
    result = frame_map(gt, det, {1: "a", 2: "b", 7: "c"})
    assert result.average_precision == {1: 1.0, 2: 0.0}
    assert result.mean_ap == 0.5


def test_no_groundtruth_gives_nan_and_empty_detections_work() -> None:
    gt = _frame([("v", 1, 0.1, 0.1, 0.4, 0.4, 5)])
    empty = AVABoxes([], [], np.zeros((0, 4)), [], [])
    result = frame_map(gt, empty, {1: "a"})
    assert math.isnan(result.mean_ap) and result.average_precision == {}
    result = frame_map(gt, empty)  # label map from the GT classes
    assert result.average_precision == {5: 0.0} and result.num_detections == 0


def test_per_frame_class_cap(monkeypatch) -> None:
    # The evaluator keeps at most N detections per keyframe and class (10000; 2 here).
    monkeypatch.setattr(det_mod, "_MAX_DETECTIONS_PER_FRAME_CLASS", 2)
    gt = _frame([("v", 1, 0.1, 0.1, 0.4, 0.4, 1), ("v", 1, 0.6, 0.6, 0.9, 0.9, 1)])
    det = _frame(
        [
            ("v", 1, 0.0, 0.0, 0.05, 0.05, 1, 0.9),  # FP
            ("v", 1, 0.6, 0.6, 0.9, 0.9, 1, 0.3),  # TP, but third in its frame -> cut
            ("v", 1, 0.1, 0.1, 0.4, 0.4, 1, 0.8),  # TP
        ]
    )
    # kept: FP, TP -> precision 0, 1/2; recall 0, 1/2 -> AP = 1/2 * 1/2
    assert frame_map(gt, det).average_precision[1] == pytest.approx(0.25)


def test_invalid_groundtruth_box_is_an_error() -> None:
    gt = _frame([("v", 1, 0.5, 0.1, 0.4, 0.4, 1)])
    with pytest.raises(ValueError, match="x1 > x2"):
        frame_map(gt, _frame([]))


# --------------------------------------------------------------------------- brute force
def _reference_map(gt_rows, det_rows, classes, excluded, thr):
    """Independent pure-Python AVA frame-mAP (unique scores): global greedy by score, each
    detection judged against the best-IoU GT of its class and frame; AP as the sum over true
    positives of (best precision at this rank or later) / #GT."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    gts = [g for g in gt_rows if g[2] in classes and g[0] not in excluded]
    dets = [
        d
        for d in det_rows
        if d[2] in classes and d[0] not in excluded and d[1][0] < d[1][2] and d[1][1] < d[1][3]
    ]
    aps = {}
    for c in sorted(classes):
        class_gt = [g for g in gts if g[2] == c]
        if not class_gt:
            continue
        taken: set[int] = set()
        flags = []
        for key, box, _, _score in sorted((d for d in dets if d[2] == c), key=lambda d: -d[3]):
            candidates = [(i, iou(box, g[1])) for i, g in enumerate(class_gt) if g[0] == key]
            if not candidates:
                flags.append(False)
                continue
            best_i, best_iou = max(candidates, key=lambda t: t[1])
            hit = best_iou >= thr and best_i not in taken
            if hit:
                taken.add(best_i)
            flags.append(hit)
        precisions, tp = [], 0
        for k, hit in enumerate(flags, start=1):
            tp += hit
            precisions.append(tp / k)
        aps[c] = sum(max(precisions[k:]) for k, hit in enumerate(flags) if hit) / len(class_gt)
    return aps


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = [(f"v{v}", 900 + t) for v in range(3) for t in range(int(rng.integers(2, 6)))]
    label_map = {1: "a", 2: "b", 3: "c", 6: "f"}
    excluded = {frames[int(rng.integers(len(frames)))]}

    def box():
        x, y = rng.uniform(0, 0.7, 2)
        w, h = rng.uniform(0.05, 0.3, 2)
        return [x, y, min(1.0, x + w), min(1.0, y + h)]

    gt_rows, det_rows, people = [], [], {}
    for key in frames:
        people[key] = [box() for _ in range(int(rng.integers(0, 4)))]
        for b in people[key]:
            for c in rng.choice([1, 2, 3, 4], int(rng.integers(1, 3)), replace=False):
                gt_rows.append((key, b, int(c)))
    for key in [*frames, ("v9", 1)]:
        for b in people.get(key, []) + [box() for _ in range(int(rng.integers(0, 3)))]:
            jittered = list(np.clip(np.array(b) + rng.normal(0, 0.05, 4), 0, 1))
            if rng.random() < 0.05:
                jittered[2] = jittered[0]  # invalid: dropped by both
            for c in rng.choice([1, 2, 3, 4, 6], int(rng.integers(1, 4)), replace=False):
                det_rows.append((key, jittered, int(c)))
    scores = rng.permutation(len(det_rows)) / len(det_rows) + 1e-3  # unique
    det_rows = [(k, b, c, float(s)) for (k, b, c), s in zip(det_rows, scores)]

    def table(rows, with_scores):
        return AVABoxes(
            [r[0][0] for r in rows],
            [r[0][1] for r in rows],
            np.array([r[1] for r in rows]).reshape(-1, 4),
            [r[2] for r in rows],
            [r[3] for r in rows] if with_scores else None,
        )

    for thr in (0.5, 0.3):
        result = frame_map(
            table(gt_rows, False), table(det_rows, True), label_map, excluded, iou=thr
        )
        expected = _reference_map(gt_rows, det_rows, set(label_map), excluded, thr)
        assert set(result.average_precision) == set(expected)
        for c, ap in expected.items():
            assert result.average_precision[c] == pytest.approx(ap, abs=1e-12)
        if expected:
            assert result.mean_ap == pytest.approx(np.mean(list(expected.values())), abs=1e-12)


# --------------------------------------------------------------------------- CSV readers
def test_read_groundtruth_csv(tmp_path: Path) -> None:
    path = _write(tmp_path / "gt.csv", "vidA,0902,0.1,0.2,0.3,0.4,12,7\n\nvidB,3,0,0,1,1,5\n")
    gt = read_groundtruth_csv(path)
    assert gt.video_ids.tolist() == ["vidA", "vidB"]
    assert gt.timestamps.tolist() == [902, 3]
    np.testing.assert_array_equal(gt.boxes, [[0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]])
    assert gt.action_ids.tolist() == [12, 5]
    assert gt.person_ids.tolist() == [7, -1]
    assert gt.scores.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vidA,0902,0.1,0.2,0.3,0.4,12,7\nvidA,0902,0.1,0.2\n", r"gt\.csv:2: expected 7 or 8 col"),
        ("\nvidA,09x2,0.1,0.2,0.3,0.4,12\n", r"gt\.csv:2: timestamp must be an integer"),
        ("vidA,902,0.1,abc,0.3,0.4,12\n", r"gt\.csv:1: y1 must be a number"),
        ("vidA,902,0.5,0.2,0.3,0.4,12\n", r"gt\.csv:1: ground-truth box has x1 > x2"),
        ("vidA,902,0.1,0.2,0.3,0.4,run\n", r"gt\.csv:1: action_id must be an integer"),
        ("vidA,902,0.1,0.2,0.3,0.4,1,2,0.5,9\n", r"gt\.csv:1: expected 7 or 8 columns"),
    ],
)
def test_read_groundtruth_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_groundtruth_csv(_write(tmp_path / "gt.csv", text))


def test_read_detections_csv_and_writer_round_trip(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "det.csv", "vidA,0902,0.1,0.2,0.3,0.4,12,0.25\nvidA,902,0,0,1,1,3,4,0.125\n"
    )
    det = read_detections_csv(path)
    assert det.scores.tolist() == [0.25, 0.125]
    assert det.person_ids.tolist() == [-1, 4]
    assert det.action_ids.tolist() == [12, 3]
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected 8 or 9 columns"):
        read_detections_csv(_write(tmp_path / "bad.csv", "v,1,0,0,1,1,2,0.5\nv,1,0,0,1,1,2\n"))
    with pytest.raises(ValueError, match=r"nan\.csv:1: score is NaN"):
        read_detections_csv(_write(tmp_path / "nan.csv", "v,1,0,0,1,1,2,nan\n"))

    out = tmp_path / "result.csv"
    write_detections_csv(
        out, AVABoxes(["vidA"], [7], [[0.123456789, 0.2, 0.3, 0.4]], [9], [0.987654321])
    )
    assert out.read_text().strip() == "vidA,0007,0.12346,0.20000,0.30000,0.40000,9,0.98765"
    back = read_detections_csv(out)
    assert back.boxes[0, 0] == 0.12346 and back.scores[0] == 0.98765


def test_read_exclusions(tmp_path: Path) -> None:
    assert read_exclusions(_write(tmp_path / "ex.csv", "vidA,0902\n\nvidB, 15\n")) == {
        ("vidA", 902),
        ("vidB", 15),
    }
    with pytest.raises(ValueError, match=r"ex2\.csv:2: expected 2 columns"):
        read_exclusions(_write(tmp_path / "ex2.csv", "vidA,0902\nvidA,0903,1\n"))
    with pytest.raises(ValueError, match=r"ex3\.csv:1: timestamp must be an integer"):
        read_exclusions(_write(tmp_path / "ex3.csv", "vidA,09:02\n"))


# --------------------------------------------------------------------------- label map
def test_read_label_map_formats(tmp_path: Path) -> None:
    assert read_label_map(_write(tmp_path / "a.pbtxt", HAND_LABEL_MAP)) == {
        1: "stand",
        2: "sit",
        3: "walk",
    }
    text = (
        "# AVA v2.2\n"
        'item { name: "bend/bow (at the waist)" id: 1 }\n'
        "item {\n"
        '  name: "crawl"\n'
        "  label_id: 3\n"
        "  label_type: PERSON_MOVEMENT\n"
        "}\n"
        'item { display_name: "fall \\"down\\"" id: 80 }\n'
        'item { name: "n" display_name: "d" id: 9 }\n'
    )
    assert read_label_map(_write(tmp_path / "b.pbtxt", text)) == {
        1: "bend/bow (at the waist)",
        3: "crawl",
        80: 'fall "down"',
        9: "n",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('item {\n  name: "a"\n  id: one\n}\n', r"lm\.pbtxt:3: id must be an integer"),
        ('item {\n  name: "a"\n}\n', r"lm\.pbtxt:1: item has no 'id'"),
        ('item {\n  name: "a"\n  id: 1\n', r"lm\.pbtxt:1: item opened here is not closed"),
        ('item { name: "a" id: 1 }\nitem { name: "b" id: 1 }\n', r"lm\.pbtxt:2: id 1 appears"),
        ('itm { name: "a" id: 1 }\n', r"lm\.pbtxt:1: expected 'item'"),
        ('item { name: "a" id: 0 }\n', r"lm\.pbtxt:1: ids must be 1-based"),
        ("\n", r"lm\.pbtxt: label map has no items"),
    ],
)
def test_read_label_map_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_label_map(_write(tmp_path / "lm.pbtxt", text))


# --------------------------------------------------------------------------- AlphAction JSON
ANNOTATIONS = {
    "images": [
        {"id": 7, "movie": "m1", "timestamp": 903, "width": 640, "height": 480},
        {"id": 3, "movie": "m1", "timestamp": 902, "width": 320, "height": 240},  # size of m1
        {"id": 5, "movie": "m2", "timestamp": 1000, "width": 100, "height": 50},
    ],
    "annotations": [
        {"image_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0], "action_ids": [1, 80]},
        {"image_id": 3, "bbox": [600.0, 460.0, 100.0, 50.0], "action_ids": [12]},
        {"image_id": 3, "bbox": [5.0, 5.0, 0.5, 20.0], "action_ids": [2]},  # w-1 < 0 -> empty
        {"image_id": 99, "bbox": [1, 1, 2, 2], "action_ids": [2]},  # unknown image: ignored
        {"image_id": 5, "bbox": [0, 0, 101, 51], "action_ids": []},
    ],
}


def test_read_alphaction_annotations(tmp_path: Path) -> None:
    path = _write(tmp_path / "ann.json", json.dumps(ANNOTATIONS))
    clips = read_alphaction_annotations(path)
    assert [c.clip_id for c in clips] == [3, 5, 7]
    c3 = clips[0]
    assert (c3.movie, c3.timestamp, c3.width, c3.height) == ("m1", 902, 640, 480)
    # x2 = x + w - 1; the second box is clipped to (639, 479); the third is empty and goes.
    np.testing.assert_array_equal(c3.boxes, [[10, 20, 39, 59], [600, 460, 639, 479]])
    assert c3.boxes.dtype == np.float32
    assert c3.labels.shape == (2, 80)
    assert np.flatnonzero(c3.labels[0]).tolist() == [0, 79]
    assert np.flatnonzero(c3.labels[1]).tolist() == [11]
    np.testing.assert_array_equal(clips[1].boxes, [[0, 0, 99, 49]])
    assert clips[1].labels.sum() == 0
    assert clips[2].boxes.shape == (0, 4) and clips[2].labels.shape == (0, 80)
    train = read_alphaction_annotations(path, drop_unannotated=True)
    assert [c.clip_id for c in train] == [3, 5]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["annotations"][1].update(action_ids=[81]), r"annotations\[1\]\.action_ids"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotations\[0\]\.bbox"),
        (lambda d: d["images"][2].pop("timestamp"), r"images\[2\]: missing 'timestamp'"),
        (lambda d: d["images"][1].update(id=7), r"images\[1\]\.id: image id 7 appears twice"),
        (lambda d: d["images"][0].update(width="640"), r"images\[0\]\.width: expected an int"),
        (lambda d: d.pop("images"), r"top level must be an object with an 'images' list"),
    ],
)
def test_read_alphaction_annotations_errors(tmp_path: Path, mutate, message: str) -> None:
    data = json.loads(json.dumps(ANNOTATIONS))
    mutate(data)
    path = _write(tmp_path / "ann.json", json.dumps(data))
    with pytest.raises(ValueError, match=r"ann\.json.*" + message):
        read_alphaction_annotations(path)


def test_alphaction_json_syntax_error_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "boxes.json", '[\n  {"image_id": 1,\n   "bbox": [1, 2, 3 4]}\n]\n')
    with pytest.raises(ValueError, match=r"boxes\.json:3:\d+: invalid JSON"):
        read_alphaction_person_boxes(path)


def test_read_alphaction_person_boxes_and_eval_clips(tmp_path: Path) -> None:
    boxes = [
        {"image_id": 3, "bbox": [10, 20, 30, 40], "score": 0.9, "category_id": 1},
        {"image_id": 3, "bbox": [1, 1, 2, 2], "score": 0.5},
        {"image_id": 3, "bbox": [5, 5, 0.5, 20], "score": 0.95},  # empty after conversion
        {"image_id": 7, "bbox": [1, 1, 2, 2], "score": 0.79},
        {"image_id": 5, "bbox": [0, 0, 10, 10], "score": 0.8},
    ]
    path = _write(tmp_path / "det.json", json.dumps(boxes))
    person = read_alphaction_person_boxes(path, score_threshold=0.8)
    assert sorted(person) == [3, 5]
    np.testing.assert_array_equal(person[3][0], [[10, 20, 30, 40], [5, 5, 0.5, 20]])
    np.testing.assert_allclose(person[3][1], [0.9, 0.95])
    clips = read_alphaction_annotations(_write(tmp_path / "ann.json", json.dumps(ANNOTATIONS)))
    val = alphaction_detection_clips(clips, person)
    assert [c.clip_id for c in val] == [3, 5]
    np.testing.assert_array_equal(val[0].boxes, [[10, 20, 39, 59]])
    np.testing.assert_allclose(val[0].scores, [0.9])
    assert val[0].labels is None
    with pytest.raises(ValueError, match=r"det2\.json: \[0\]\.score: expected a number"):
        read_alphaction_person_boxes(
            _write(tmp_path / "det2.json", '[{"image_id": 1, "bbox": [0,0,1,1]}]')
        )


def test_box_conversions_and_detection_rows() -> None:
    xyxy, keep = alphaction_xywh_to_xyxy(np.array([[0, 0, 10, 10], [3, 3, 1, 5]]), 8, 8)
    np.testing.assert_array_equal(xyxy, [[0, 0, 7, 7]])
    assert keep.tolist() == [True, False]
    norm = pixel_boxes_to_normalised(np.array([[0, 0, 39, 19], [10, 5, 99, 49]]), 100, 50)
    np.testing.assert_allclose(norm, [[0, 0, 0.4, 0.4], [0.1, 0.1, 1.0, 1.0]], rtol=1e-6)
    rows = detections_from_scores(
        "vid", 902, norm, np.array([[0.1, 0.0, 0.7], [0.2, 0.3, 0.0]]), threshold=0.1
    )
    assert rows.action_ids.tolist() == [1, 3, 1, 2]
    np.testing.assert_allclose(rows.scores, [0.1, 0.7, 0.2, 0.3])
    np.testing.assert_allclose(rows.boxes[2], norm[1])
    assert rows.timestamps.tolist() == [902] * 4
    with pytest.raises(ValueError, match="scores must have shape"):
        detections_from_scores("vid", 1, norm, np.zeros(2))


def test_avaboxes_checks_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        AVABoxes(["a", "b"], [1], [[0, 0, 1, 1], [0, 0, 1, 1]], [1, 2])
    both = AVABoxes.concatenate(
        [_frame([("v", 1, 0, 0, 1, 1, 2)]), _frame([("w", 2, 0, 0, 1, 1, 3)])]
    )
    assert both.frame_keys() == [("v", 1), ("w", 2)]


def test_module_imports_only_numpy_and_stdlib() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('det', {det_mod.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['det'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "bad = [m for m in ('torch', 'av', 'cv2', 'torchvision', 'decord') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- the CLI
def test_umt_evaluate_ava_on_the_synthetic_set(tmp_path):
    """`umt evaluate ava`: the ground truth scored as detections is a perfect 100%; a shuffled
    score order is less; a malformed file is one line and exit 2."""
    import json as _json
    import subprocess
    import sys

    from umt.data.synth_detection import write_detection_dataset

    root = write_detection_dataset(tmp_path / "det", videos=10)
    gt = (root / "val.csv").read_text().splitlines()
    perfect = tmp_path / "perfect.csv"
    perfect.write_text("".join(f"{line},0.9\n" for line in gt))

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "umt", "evaluate", "ava", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    lm = ["--label-map", str(root / "label_map.pbtxt"), "--exclusions", str(root / "excluded.csv")]
    res = run(str(root / "val.csv"), str(perfect), *lm)
    assert res.returncode == 0, res.stderr
    summary = _json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["map"] == 1.0 and summary["groundtruth_frames"] == 2
    assert "frame-mAP@0.5: 100.00%" in res.stdout
    # Every ground-truth box also gets a confident wrong class: precision drops.
    noisy = tmp_path / "noisy.csv"
    lines = [f"{line},0.5" for line in gt]
    for line in gt:
        parts = line.split(",")
        parts[6] = str(int(parts[6]) % 6 + 1)
        lines.append(",".join(parts) + ",0.99")
    noisy.write_text("\n".join(lines) + "\n")
    res = run(str(root / "val.csv"), str(noisy), *lm)
    assert res.returncode == 0 and _json.loads(res.stdout.strip().splitlines()[-1])["map"] < 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text("d00004,1,0.1,0.1\n")
    res = run(str(root / "val.csv"), str(bad), *lm)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "bad.csv:1" in res.stderr


def test_chance_frame_map_is_random_scores_on_the_same_rows():
    """Every row a true positive: any order scores 1. With a wrong-class row per GT row, the
    chance level is the mean of seeded random-score mAPs, reproducible, below the true order."""
    from umt.evaluate.detection import chance_frame_map

    gt = AVABoxes(
        ["a", "a", "b", "b"], [1, 1, 1, 1],
        [[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]],
        [1, 2, 2, 1],
    )  # fmt: skip
    assert chance_frame_map(gt, gt, seeds=5) == (1.0, 0.0)
    wrong = AVABoxes(gt.video_ids, gt.timestamps, gt.boxes, 3 - gt.action_ids, [0.1] * 4)
    both = AVABoxes.concatenate(
        [AVABoxes(gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids, [0.9] * 4), wrong]
    )
    mean, std = chance_frame_map(gt, both, seeds=8)
    assert (mean, std) == chance_frame_map(gt, both, seeds=8)
    draws = []
    for s in range(8):
        scores = np.random.default_rng(s).random(len(both))
        table = AVABoxes(both.video_ids, both.timestamps, both.boxes, both.action_ids, scores)
        draws.append(frame_map(gt, table).mean_ap)
    assert mean == pytest.approx(np.mean(draws)) and std == pytest.approx(np.std(draws))
    assert frame_map(gt, both).mean_ap > mean
