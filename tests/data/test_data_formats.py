"""The torch-free format readers of umt.data.formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from umt.data.formats.ava import (
    AVABoxes,
    keyframes_from_boxes,
    read_keyframes,
    read_person_boxes_csv,
)


def test_formats_import_no_torch_beyond_umt_itself() -> None:
    """Importing the readers adds no torch / decoder module to what ``import umt`` loads."""
    code = (
        "import sys, umt.errors\n"
        "before = set(sys.modules)\n"
        "import umt.data.formats.annotations, umt.data.formats.ava, umt.data.formats.qa\n"
        "import umt.data.formats.labels, umt.data.formats.retrieval\n"
        "new = set(sys.modules) - before\n"
        "bad = sorted(m for m in new if m.split('.')[0] in ('torch', 'av', 'cv2', 'torchvision'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keyframes_group_people_and_actions(tmp_path: Path) -> None:
    csv_path = tmp_path / "gt.csv"
    csv_path.write_text(
        "v,1,0.1,0.1,0.5,0.5,3,0\n"
        "v,1,0.1,0.1,0.5,0.5,7,0\n"
        "v,1,0.1,0.1,0.5,0.5,3,0\n"
        "v,1,0.2,0.2,0.6,0.6,3,1\n"
        "w,2,0.0,0.0,1.0,1.0,5\n"
    )
    frames = read_keyframes(csv_path, num_classes=80)
    assert [(f.video_id, f.timestamp) for f in frames] == [("v", 1), ("w", 2)]
    assert frames[0].boxes == [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6]]
    assert frames[0].actions == [[3, 7], [3]]
    assert frames[0].scores == [1.0, 1.0]
    assert frames[1].actions == [[5]]
    with pytest.raises(ValueError, match="outside 1..4"):
        read_keyframes(csv_path, num_classes=4)
    table = AVABoxes(["a"], [3], [[0, 0, 1, 1]], [2])
    assert keyframes_from_boxes(table)[0].actions == [[2]]


def test_person_boxes_threshold_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text("v,1,0,0,1,1,0.9\nv,1,0,0,0.5,0.5,0.5\nv,2,0,0,1,1,12,0.95\n")
    boxes = read_person_boxes_csv(path, threshold=0.8)
    assert boxes == {("v", 1): ([[0.0, 0.0, 1.0, 1.0]], [0.9]), ("v", 2): ([[0, 0, 1, 1]], [0.95])}
    path.write_text("v,1,0,0,1\n")
    with pytest.raises(ValueError, match=r"boxes.csv:1: expected 7 columns"):
        read_person_boxes_csv(path)
