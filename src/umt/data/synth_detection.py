"""A synthetic stand-in for AVA: several actors per clip, each with a box and its actions.

Each clip shows 2 or 3 coloured shapes ("actors") on a textured background, ``num_frames``
frames; the keyframe is the middle frame (AVA labels one keyframe per second; here one per clip,
at ``timestamp`` 1). Every actor has one motion action and possibly a second, multi-label one,
as AVA actors have a pose and other actions:

====  ===============  =================================================================
 id   name             what the actor does over the clip
====  ===============  =================================================================
 1    move left        slides left
 2    move right       slides right
 3    move up          slides up
 4    move down        slides down
 5    stand still      stays where it is
 6    pulse            (any of the above, and) grows and shrinks twice
====  ===============  =================================================================

No single frame tells the motion classes apart, and the direction needs the order of frames.

Layout written by :func:`write_detection_dataset` (paths relative to the output folder)::

    videos/d00000.mp4 ...           H.264, frames of H x W (default 96 x 128)
    train.csv, val.csv              AVA ground truth: video_id,timestamp,x1,y1,x2,y2,action_id,
                                    person_id (coordinates normalised to [0, 1], one row per
                                    actor and action)
    val_boxes.csv                   "detected" person boxes at the val keyframes:
                                    video_id,timestamp,x1,y1,x2,y2,score (the true boxes,
                                    jittered, plus one false box per clip with a low score)
    excluded.csv                    keyframes excluded from the evaluation (empty here)
    label_map.pbtxt                 the 6 classes, AVA's ``item { name: ... id: ... }`` format
    .complete                       marker holding the generation parameters
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ACTIONS",
    "render_detection_clip",
    "write_detection_dataset",
    "ensure_detection_dataset",
]

ACTIONS = ["move left", "move right", "move up", "move down", "stand still", "pulse"]
_MOTIONS = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1), 5: (0, 0)}
_PULSE = 6
_COLOURS = [(220, 40, 40), (40, 80, 230), (40, 200, 60), (230, 200, 40)]


def _draw(frame: np.ndarray, shape: str, colour: tuple[int, int, int], box: np.ndarray) -> None:
    """Fill ``shape`` inside ``box`` (x1, y1, x2, y2 in pixels, inclusive) on ``frame`` [H, W, 3]."""
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x1, y1, x2, y2 = box
    if shape == "square":
        mask = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
    else:
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        mask = ((xx - cx) / max(rx, 0.5)) ** 2 + ((yy - cy) / max(ry, 0.5)) ** 2 <= 1.0
    frame[mask] = colour


def render_detection_clip(
    num_frames: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One clip: uint8 frames ``[F, H, W, 3]`` and its actors, each ``{"box": [x1, y1, x2, y2]``
    (pixels at the keyframe ``F // 2``, inclusive), ``"actions": [ids]}``."""
    base = rng.integers(30, 90, size=3)
    texture = rng.integers(-12, 13, size=(height // 8 + 1, width // 8 + 1, 1))
    texture = np.kron(texture, np.ones((8, 8, 1)))[:height, :width]
    background = np.clip(base + texture, 0, 255).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    key = num_frames // 2
    count = int(rng.integers(2, 4))
    # Actors live in separate vertical lanes, so their boxes never overlap at the keyframe.
    lanes = rng.permutation(3)[:count]
    lane_w = width / 3
    actors = []
    for i, lane in enumerate(lanes):
        half = float(rng.uniform(0.08, 0.11) * min(height, width))  # half side
        motion = int(rng.integers(1, 6))
        pulse = bool(rng.random() < 0.4)
        dx, dy = _MOTIONS[motion]
        travel = float(rng.uniform(0.15, 0.25) * min(height, width))
        # Keyframe centre such that the whole path stays inside the lane / the frame.
        margin = half * 1.3 + 1
        if dx:  # sideways: the path must fit in the lane
            travel = min(travel, lane_w - 2 * margin - 1)
        lo_x = lane * lane_w + margin + max(-dx, 0) * travel / 2
        hi_x = (lane + 1) * lane_w - margin - max(dx, 0) * travel / 2
        lo_y = margin + max(-dy, 0) * travel / 2
        hi_y = height - margin - max(dy, 0) * travel / 2
        cx_key = float(rng.uniform(lo_x, max(hi_x, lo_x)))
        cy_key = float(rng.uniform(lo_y, max(hi_y, lo_y)))
        shape = "square" if rng.random() < 0.5 else "circle"
        colour = _COLOURS[int(rng.integers(len(_COLOURS)))]
        key_box = None
        for t in range(num_frames):
            f = (t - key) / max(num_frames - 1, 1)  # -0.5 .. 0.5
            cx, cy = cx_key + dx * travel * f, cy_key + dy * travel * f
            size = (
                half * (1 + 0.3 * np.sin(4 * np.pi * t / max(num_frames - 1, 1))) if pulse else half
            )
            box = np.array([cx - size, cy - size, cx + size, cy + size], dtype=np.float32)
            _draw(frames[t], shape, colour, box)
            if t == key:
                key_box = box
        actions = [motion] + ([_PULSE] if pulse else [])
        x1, y1, x2, y2 = (float(v) for v in key_box)
        box = [max(x1, 0.0), max(y1, 0.0), min(x2, width - 1.0), min(y2, height - 1.0)]
        actors.append({"person_id": i, "box": box, "actions": actions})
    return frames, actors


def _norm(box: list[float], height: int, width: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def write_detection_dataset(
    out: str | os.PathLike,
    videos: int = 120,
    frames: int = 16,
    height: int = 96,
    width: int = 128,
    fps: int = 8,
    seed: int = 0,
) -> Path:
    """Write the set into ``out`` (every fifth clip to ``val``) and return it."""
    from umt.data.synth import write_video

    if videos < 2 or frames < 2 or min(height, width) < 48:
        raise ValueError(
            f"need videos >= 2, frames >= 2 and frames of at least 48 px; got {videos}, "
            f"{frames}, {height}x{width}"
        )
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"train": [], "val": []}
    det_rows: list[str] = []
    for i in range(videos):
        rng = np.random.default_rng([seed, i])
        clip, actors = render_detection_clip(frames, height, width, rng)
        vid = f"d{i:05d}"
        write_video(root / "videos" / f"{vid}.mp4", clip, fps=fps, gop=max(frames // 2, 1))
        split = "val" if i % 5 == 4 else "train"
        for actor in actors:
            x1, y1, x2, y2 = _norm(actor["box"], height, width)
            for action in actor["actions"]:
                rows[split].append(
                    f"{vid},1,{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},{action},{actor['person_id']}"
                )
            if split == "val":  # a person detector's box: the true box, a little off
                noise = rng.normal(0, 0.015, size=4)
                b = np.clip(np.array([x1, y1, x2, y2]) + noise, 0, 1)
                det_rows.append(
                    f"{vid},1,{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f},"
                    f"{rng.uniform(0.85, 1.0):.3f}"
                )
        if split == "val":  # one false detection on the background
            fx, fy = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
            det_rows.append(
                f"{vid},1,{fx:.4f},{fy:.4f},{fx + 0.15:.4f},{fy + 0.15:.4f},"
                f"{rng.uniform(0.3, 0.6):.3f}"
            )
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("".join(line + "\n" for line in lines))
    (root / "val_boxes.csv").write_text("".join(line + "\n" for line in det_rows))
    (root / "excluded.csv").write_text("")
    (root / "label_map.pbtxt").write_text(
        "".join(f'item {{\n  name: "{n}"\n  id: {i + 1}\n}}\n' for i, n in enumerate(ACTIONS))
    )
    return root


def ensure_detection_dataset(root: str | os.PathLike, **params: Any) -> Path:
    """``root`` holding the set made with ``params`` (made on first use, atomically: written to
    a temporary sibling and renamed; a ``root`` holding another set is an error)."""
    root = Path(root)
    full = {"videos": 120, "frames": 16, "height": 96, "width": 128, "fps": 8, "seed": 0}
    full.update(params)
    full["version"] = 1
    marker = root / ".complete"
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != full:
            raise ValueError(f"{root}: holds a detection set made with {found}, not {full}")
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root}: exists and is not a finished detection set (no .complete)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        kw = {k: v for k, v in full.items() if k != "version"}
        write_detection_dataset(tmp, **kw)
        (tmp / ".complete").write_text(json.dumps(full))
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    except OSError:
        if not marker.is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
