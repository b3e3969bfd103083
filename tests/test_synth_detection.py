"""The synthetic AVA stand-in: actors, boxes at the keyframe, actions that the frames show."""

from __future__ import annotations

import numpy as np
import pytest

from umt.data.synth_detection import (
    ACTIONS,
    ensure_detection_dataset,
    render_detection_clip,
    write_detection_dataset,
)


def _lane_mask(frame, colour, box, width):
    """Pixels of ``colour`` in the actor's lane (a third of the width around its box)."""
    lane = int(((box[0] + box[2]) / 2) // (width / 3))
    cols = slice(int(lane * width / 3), int((lane + 1) * width / 3))
    hit = (frame[:, cols] == np.array(colour, dtype=np.uint8)).all(-1)
    ys, xs = np.nonzero(hit)
    return ys, xs + cols.start


@pytest.mark.parametrize("seed", range(12))
def test_actors_boxes_and_actions_match_the_pixels(seed):
    from umt.data.synth_detection import _COLOURS

    frames, actors = render_detection_clip(16, 96, 128, np.random.default_rng(seed))
    assert frames.shape == (16, 96, 128, 3) and 2 <= len(actors) <= 3
    key = 8
    boxes = [a["box"] for a in actors]
    for i, a in enumerate(boxes):  # no two boxes overlap
        for b in boxes[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    for actor in actors:
        box, actions = actor["box"], actor["actions"]
        assert 1 <= actions[0] <= 5 and set(actions[1:]) <= {6}
        colour = next(
            c
            for c in _COLOURS
            if _lane_mask(frames[key], c, box, 128)[0].size
            and np.allclose(
                [
                    _lane_mask(frames[key], c, box, 128)[1].min(),
                    _lane_mask(frames[key], c, box, 128)[0].min(),
                ],
                box[:2],
                atol=1.5,
            )
        )
        ys, xs = _lane_mask(frames[key], colour, box, 128)
        # The box is the drawn extent at the keyframe.
        assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() - box[2]) <= 1.5
        assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() - box[3]) <= 1.5
        # The motion class is what the object's centre does between the first and last frame.
        y0, x0 = _lane_mask(frames[0], colour, box, 128)
        y1, x1 = _lane_mask(frames[-1], colour, box, 128)
        dx, dy = x1.mean() - x0.mean(), y1.mean() - y0.mean()
        expected = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1), 5: (0, 0)}[actions[0]]
        assert np.sign(round(dx / 3)) == expected[0] and np.sign(round(dy / 3)) == expected[1]
        areas = [_lane_mask(f, colour, box, 128)[0].size for f in frames]
        pulsing = (max(areas) - min(areas)) / max(areas) > 0.3
        assert pulsing == (6 in actions)


def test_written_set_is_ava_format(tmp_path):
    root = write_detection_dataset(tmp_path / "det", videos=10)
    assert sorted(p.name for p in (root / "videos").iterdir())[:2] == ["d00000.mp4", "d00001.mp4"]
    rows = [line.split(",") for line in (root / "train.csv").read_text().splitlines()]
    assert all(len(r) == 8 for r in rows)
    assert all(0 <= float(v) <= 1 for r in rows for v in r[2:6])
    assert {int(r[6]) for r in rows} <= set(range(1, 7))
    val_videos = {r.split(",")[0] for r in (root / "val.csv").read_text().splitlines()}
    assert val_videos == {"d00004", "d00009"}
    dets = [line.split(",") for line in (root / "val_boxes.csv").read_text().splitlines()]
    gt_people = {
        (r.split(",")[0], r.split(",")[7]) for r in (root / "val.csv").read_text().splitlines()
    }
    assert len(dets) == len(gt_people) + 2  # one false box per val clip
    label_map = (root / "label_map.pbtxt").read_text()
    assert label_map.count("item {") == len(ACTIONS) and 'name: "pulse"' in label_map


def test_ensure_is_idempotent_and_refuses_another_set(tmp_path):
    root = ensure_detection_dataset(tmp_path / "d", videos=5)
    mtime = (root / "train.csv").stat().st_mtime
    assert ensure_detection_dataset(tmp_path / "d", videos=5) == root
    assert (root / "train.csv").stat().st_mtime == mtime
    with pytest.raises(ValueError, match="made with"):
        ensure_detection_dataset(tmp_path / "d", videos=6)
