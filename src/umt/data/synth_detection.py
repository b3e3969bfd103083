"""A synthetic stand-in for AVA: several actors per clip, each with a box and its actions.

Each clip shows 2 or 3 coloured shapes ("actors") on a textured background, ``num_frames``
frames; the keyframe is the middle frame (AVA labels one keyframe per second; here one per clip,
at ``timestamp`` 1). Every actor has one motion action and possibly a second, multi-label one,
as AVA actors have a pose and other actions. Actors never touch: each one's path over the clip
is kept apart from the others'.

====  ===============  =================================================================
 id   name             what the actor does over the clip
====  ===============  =================================================================
 1    move left        slides left, 35-45 % of the frame's short side over the clip
 2    move right       slides right (as far)
 3    move up          slides up (as far)
 4    move down        slides down (as far)
 5    stand still      stays where it is
 6    pulse            (any of the above, and) shrinks to half its size, then grows to 1.5
                       times it (one sine cycle over the clip; its own size at the keyframe)
====  ===============  =================================================================

No single frame tells the classes apart (an actor's size at rest varies between actors), and
the direction needs the order of frames. The geometry (:data:`HALF_SIDE`, :data:`TRAVEL`,
:data:`PULSE_AMPLITUDE`) is what a tiny detector learns from in a few minutes: with smaller
actors or shorter paths (the first version: boxes of 0.16-0.22 and paths of 0.15-0.25 of the
short side, pulsing +-30 %, 120 clips) its fine-tune stayed near chance.

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

from umt.errors import InputError

__all__ = [
    "ACTIONS",
    "render_detection_clip",
    "write_detection_dataset",
    "ensure_detection_dataset",
]

ACTIONS = ["move left", "move right", "move up", "move down", "stand still", "pulse"]
_MOTIONS = {1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1), 5: (0, 0)}
_PULSE = 6
#: Actor geometry, as fractions of the frame's short side: half the box side at rest, and the
#: distance a moving actor travels over the whole clip (about 1.5 box sides: the 4 frames the
#: tiny recipe samples, 4 apart, see it move about two 16 px patches of its 96 px input).
HALF_SIDE = (0.11, 0.15)
TRAVEL = (0.35, 0.45)
#: A pulsing actor's size swings by this fraction over one sine cycle of the clip (smallest a
#: quarter of the clip before the keyframe, largest a quarter after it).
PULSE_AMPLITUDE = 0.5
PULSE_PROB = 0.4
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


def _swept(track: np.ndarray, gap: float) -> np.ndarray:
    """The rectangle ``[x1, y1, x2, y2]`` an actor covers over the clip, grown by ``gap``."""
    return np.array(
        [track[:, 0].min() - gap, track[:, 1].min() - gap, track[:, 2].max() + gap,
         track[:, 3].max() + gap]
    )  # fmt: skip


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])


def _actor_track(
    num_frames: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """One actor's boxes at every frame ``[F, 4]`` (x1, y1, x2, y2 in pixels, inclusive) and
    its actions, the whole path inside the frame."""
    side = min(height, width)
    key = num_frames // 2
    half = float(rng.uniform(*HALF_SIDE) * side)
    motion = int(rng.integers(1, 6))
    pulse = bool(rng.random() < PULSE_PROB)
    dx, dy = _MOTIONS[motion]
    travel = float(rng.uniform(*TRAVEL) * side) if motion != 5 else 0.0
    t = np.arange(num_frames)
    f = (t - key) / max(num_frames - 1, 1)  # the path's fraction at each frame, 0 at the key
    size = half * (1 + PULSE_AMPLITUDE * np.sin(2 * np.pi * (t - key) / num_frames) * pulse)
    reach = float(size.max()) + 1.0
    # Keyframe centre such that every frame's box stays inside the frame.
    centre = []
    for d, extent in ((dx, width), (dy, height)):
        lo_off, hi_off = min(d * f.min(), d * f.max()), max(d * f.min(), d * f.max())
        lo, hi = reach - travel * lo_off, extent - 1 - reach - travel * hi_off
        centre.append(float(rng.uniform(lo, max(hi, lo))))
    cx = centre[0] + dx * travel * f  # [F]
    cy = centre[1] + dy * travel * f
    track = np.stack([cx - size, cy - size, cx + size, cy + size], axis=1).astype(np.float32)
    return track, [motion] + ([_PULSE] if pulse else [])


def render_detection_clip(
    num_frames: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One clip: uint8 frames ``[F, H, W, 3]`` and its actors, each ``{"person_id": i, "box":
    [x1, y1, x2, y2]`` (pixels at the keyframe ``F // 2``, inclusive), ``"actions": [ids],
    "track": [F, 4]`` (its box at every frame)``}``."""
    base = rng.integers(30, 90, size=3)
    texture = rng.integers(-12, 13, size=(height // 8 + 1, width // 8 + 1, 1))
    texture = np.kron(texture, np.ones((8, 8, 1)))[:height, :width]
    background = np.clip(base + texture, 0, 255).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    key = num_frames // 2
    count = int(rng.integers(2, 4))
    # Actors never touch: each one's path (the union of its boxes over the clip) is kept apart
    # from the others' (an actor is drawn again until it fits; one that does not fit in 20 tries
    # is left out, and a layout without room for two actors is started over).
    for _ in range(100):
        placed: list[tuple[np.ndarray, list[int]]] = []
        paths: list[np.ndarray] = []
        for _ in range(count):
            for _ in range(20):
                track, actions = _actor_track(num_frames, height, width, rng)
                path = _swept(track, 2.0)
                if not any(_overlap(path, other) for other in paths):
                    placed.append((track, actions))
                    paths.append(path)
                    break
        if len(placed) >= 2:
            break
    else:
        raise RuntimeError(f"no room for two actors in {height}x{width} frames")
    actors: list[dict[str, Any]] = []
    for track, actions in placed:
        shape = "square" if rng.random() < 0.5 else "circle"
        colour = _COLOURS[int(rng.integers(len(_COLOURS)))]
        for t in range(num_frames):
            _draw(frames[t], shape, colour, track[t])
        x1, y1, x2, y2 = (float(v) for v in track[key])
        box = [max(x1, 0.0), max(y1, 0.0), min(x2, width - 1.0), min(y2, height - 1.0)]
        actors.append(
            {"person_id": len(actors), "box": box, "actions": actions, "track": track.tolist()}
        )
    return frames, actors


def _norm(box: list[float], height: int, width: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def write_detection_dataset(
    out: str | os.PathLike,
    videos: int = 1000,
    frames: int = 16,
    height: int = 96,
    width: int = 128,
    fps: int = 8,
    seed: int = 0,
) -> Path:
    """Write the set into ``out`` (every fifth clip to ``val``) and return it."""
    from umt.data.synth import write_video

    if videos < 2 or frames < 2 or min(height, width) < 48:
        raise InputError(
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
    full = {"videos": 1000, "frames": 16, "height": 96, "width": 128, "fps": 8, "seed": 0}
    full.update(params)
    full["version"] = 2  # 2: the larger, longer-moving actors (1: the first geometry)
    marker = root / ".complete"
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != full:
            raise InputError(f"{root}: holds a detection set made with {found}, not {full}")
        return root
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root}: exists and is not a finished detection set (no .complete)")
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
