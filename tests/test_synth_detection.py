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


def _region_mask(frame, colour, region):
    """Pixels of ``colour`` inside ``region`` (x1, y1, x2, y2, inclusive): ``(ys, xs)``."""
    x1, y1, x2, y2 = (int(round(v)) for v in region)
    hit = (frame[y1 : y2 + 1, x1 : x2 + 1] == np.array(colour, dtype=np.uint8)).all(-1)
    ys, xs = np.nonzero(hit)
    return ys + y1, xs + x1


def _path(track, pad=1.0):
    """The rectangle an actor covers over the clip (the union of its boxes), grown by ``pad``."""
    t = np.asarray(track)
    return [t[:, 0].min() - pad, t[:, 1].min() - pad, t[:, 2].max() + pad, t[:, 3].max() + pad]


@pytest.mark.parametrize("seed", range(12))
def test_actors_boxes_and_actions_match_the_pixels(seed):
    from umt.data.synth_detection import _COLOURS

    frames, actors = render_detection_clip(16, 96, 128, np.random.default_rng(seed))
    assert frames.shape == (16, 96, 128, 3) and 2 <= len(actors) <= 3
    key = 8
    paths = [_path(a["track"]) for a in actors]
    for i, a in enumerate(paths):  # no two actors ever meet: their paths are apart
        for b in paths[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    for actor, path in zip(actors, paths):
        box, actions, track = actor["box"], actor["actions"], np.asarray(actor["track"])
        assert 1 <= actions[0] <= 5 and set(actions[1:]) <= {6}
        assert track.shape == (16, 4) and np.allclose(track[key], box)
        assert 0 <= min(track[:, :2].ravel()) and track[:, 2].max() <= 127
        assert track[:, 3].max() <= 95  # the whole path inside the frame
        colour = next(c for c in _COLOURS if _region_mask(frames[key], c, box)[0].size > 20)
        for t in range(16):  # every frame: the drawn extent is the track's box
            ys, xs = _region_mask(frames[t], colour, path)
            x1, y1, x2, y2 = track[t]
            assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() - x2) <= 1.5
            assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() - y2) <= 1.5
        # The motion class is what the object's centre does between the first and last frame,
        # over about 0.35-0.45 of the short side.
        y0, x0 = _region_mask(frames[0], colour, path)
        y1, x1 = _region_mask(frames[-1], colour, path)
        dx, dy = x1.mean() - x0.mean(), y1.mean() - y0.mean()
        expected = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1), 5: (0, 0)}[actions[0]]
        assert np.sign(round(dx / 3)) == expected[0] and np.sign(round(dy / 3)) == expected[1]
        if actions[0] != 5:
            assert 0.3 * 96 < abs(dx) + abs(dy) < 0.5 * 96
        areas = [_region_mask(f, colour, path)[0].size for f in frames]
        pulsing = (max(areas) - min(areas)) / max(areas) > 0.3
        assert pulsing == (6 in actions)


def test_tiny_frames_still_hold_two_actors():
    for seed in range(40):
        frames, actors = render_detection_clip(16, 48, 48, np.random.default_rng(seed))
        assert frames.shape == (16, 48, 48, 3) and len(actors) >= 2


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
