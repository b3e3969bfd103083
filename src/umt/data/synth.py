"""A built-in synthetic video dataset that needs both appearance and motion.

Each clip shows coloured shapes on a static textured background. The 12 classes:

* 0-7  ``a {colour} {shape} moves {left|right}`` for shape in (square, circle), colour in
  (red, blue); speed varies and is only mentioned in the caption. Left/right pairs differ only
  in motion direction: a time-reversed clip belongs to the other class.
* 8-9  ``a green square moves up {slowly|quickly}`` — differ only in speed.
* 10-11 ``a red square appears, then a blue circle appears`` and the reverse order — the two
  objects are never visible together, so only the order of events decides the class.

No single frame decides the label of classes 0-11, so a model that ignores time cannot solve
the task, while appearance (shape, colour) matters too.

Layout written by :func:`write_synthetic_dataset` (paths relative to the output folder)::

    videos/00000.mp4 ...          H.264, yuv420p, deterministic bytes for a given seed
    train.csv, val.csv            Kinetics style "videos/00000.mp4 3"
    train.json, val.json          video-text [{"video", "caption", "label"}]
    ssv2/train.json, ssv2/val.json, ssv2/labels.json   SSv2 style (use root=OUT/videos)
    classes.json                  class names, index = label
    .complete                     marker holding the generation parameters
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import InputError

__all__ = [
    "CLASSES",
    "render_clip",
    "frame_objects",
    "object_names",
    "write_video",
    "write_synthetic_dataset",
    "ensure_synthetic_dataset",
]

_COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "green": (40, 200, 60)}


def _class_table() -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for shape in ("square", "circle"):
        for colour in ("red", "blue"):
            for direction in ("left", "right"):
                table.append(
                    {
                        "kind": "move",
                        "shape": shape,
                        "colour": colour,
                        "direction": direction,
                        "speed": None,
                    }
                )
    for speed in ("slowly", "quickly"):
        table.append(
            {
                "kind": "move",
                "shape": "square",
                "colour": "green",
                "direction": "up",
                "speed": speed,
            }
        )
    first, second = ("red", "square"), ("blue", "circle")
    for order in ((first, second), (second, first)):
        table.append({"kind": "sequence", "order": order})
    for entry in table:
        if entry["kind"] == "move":
            speed = f" {entry['speed']}" if entry["speed"] else ""
            entry["name"] = f"{entry['colour']} {entry['shape']} moves {entry['direction']}{speed}"
        else:
            (c1, s1), (c2, s2) = entry["order"]
            entry["name"] = f"{c1} {s1} appears, then {c2} {s2} appears"
    return table


CLASSES: list[dict[str, Any]] = _class_table()


def frame_objects(label: int, num_frames: int) -> list[tuple[str, str]]:
    """The one object ``(colour, shape)`` visible in each of the ``num_frames`` frames of a clip
    of class ``label`` (as :func:`render_clip` draws it): what a single frame can tell."""
    spec = CLASSES[label]
    if spec["kind"] == "move":
        return [(spec["colour"], spec["shape"])] * num_frames
    first, second = spec["order"]
    half = num_frames // 2
    return [first if t < half else second for t in range(num_frames)]


def object_names() -> list[tuple[str, str]]:
    """Every ``(colour, shape)`` that appears in the synthetic clips, in a fixed order."""
    seen: list[tuple[str, str]] = []
    for label in range(len(CLASSES)):
        for obj in frame_objects(label, 2):
            if obj not in seen:
                seen.append(obj)
    return seen


def _draw(frame: np.ndarray, shape: str, colour: str, cx: float, cy: float, radius: float) -> None:
    size = frame.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "square":
        mask = (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)
    else:
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    frame[mask] = _COLOURS[colour]


def render_clip(
    label: int, num_frames: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """One clip of class ``label``: uint8 frames ``[F, S, S, 3]`` and its caption."""
    spec = CLASSES[label]
    # Static background: a dim base colour plus blocky low-contrast texture.
    base = rng.integers(30, 90, size=3)
    blocks = max(size // 8, 1)
    texture = rng.integers(-12, 13, size=(blocks, blocks, 1))
    texture = np.kron(texture, np.ones((size // blocks + 1, size // blocks + 1, 1)))[:size, :size]
    background = np.clip(base + texture, 0, 255).astype(np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    radius = size * rng.uniform(0.10, 0.14)
    steps = max(num_frames - 1, 1)
    if spec["kind"] == "move":
        if spec["speed"] == "slowly":
            travel, word = size * rng.uniform(0.15, 0.25), "slowly"
        elif spec["speed"] == "quickly":
            travel, word = size * rng.uniform(0.5, 0.6), "quickly"
        else:
            travel = size * rng.uniform(0.2, 0.6)
            word = "quickly" if travel > 0.4 * size else "slowly"
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1)}[spec["direction"]]
        lo, hi = radius + 1, size - radius - 1
        # Start so that the whole path stays inside the frame.
        sx = rng.uniform(lo + max(-dx, 0) * travel, hi - max(dx, 0) * travel)
        sy = rng.uniform(lo + max(-dy, 0) * travel, hi - max(dy, 0) * travel)
        for t in range(num_frames):
            f = t / steps
            _draw(
                frames[t],
                spec["shape"],
                spec["colour"],
                sx + dx * travel * f,
                sy + dy * travel * f,
                radius,
            )
        caption = f"a {spec['colour']} {spec['shape']} moves {spec['direction']} {word}"
    else:
        (c1, s1), (c2, s2) = spec["order"]
        half = num_frames // 2
        lo, hi = radius + 1, size - radius - 1
        p1, p2 = rng.uniform(lo, hi, size=2), rng.uniform(lo, hi, size=2)
        for t in range(num_frames):
            colour, shape, pos = (c1, s1, p1) if t < half else (c2, s2, p2)
            _draw(frames[t], shape, colour, pos[0], pos[1], radius)
        caption = f"a {c1} {s1} appears, then a {c2} {s2} appears"
    return frames, caption


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int = 8,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 18,
    options: Mapping[str, str] | None = None,
) -> None:
    """Encode uint8 ``[F, H, W, 3]`` to ``path`` (H.264 yuv420p by default), single-threaded so
    that the bytes are deterministic (for the synthetic clips; on large detailed frames x264's
    macroblock-tree lookahead was seen to vary between runs: ``"mbtree=0"`` in
    ``x264-params`` avoids it).

    ``frames`` may also be an iterable of ``[H, W, 3]`` frames, encoded as they come (a long
    clip need not be held in memory). ``options``: more encoder options, added to (and
    overriding) the defaults, e.g. ``{"x264-params": "bframes=3:scenecut=0"}``.
    """
    import av

    stream_of_frames = iter(frames)
    first = next(stream_of_frames, None)
    if first is None:
        raise InputError(f"{os.fspath(path)}: no frames to encode")
    height, width = first.shape[:2]
    with av.open(os.fspath(path), mode="w") as container:
        opts = {"threads": "1"}
        if codec == "libx264":
            opts.update({"crf": str(crf), "preset": "medium"})
        opts.update(options or {})
        stream = container.add_stream(codec, rate=Fraction(fps), options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if gop is not None:
            stream.codec_context.gop_size = gop
        for frame in itertools.chain([first], stream_of_frames):
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_one(job: tuple[str, int, int, int, int, int, int]) -> str:
    path, label, num_frames, size, fps, seed, index = job
    rng = np.random.default_rng([seed, index])
    frames, caption = render_clip(label, num_frames, size, rng)
    write_video(path, frames, fps=fps, gop=max(num_frames // 2, 1))
    return caption


def write_synthetic_dataset(
    out: str | os.PathLike,
    videos: int = 300,
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write the dataset into ``out`` (created; must not hold another dataset) and return it.

    Labels are balanced (``index % 12``); every fifth round of 12 clips goes to ``val``
    (240 train / 60 val with the defaults; the last round when there are fewer than 5 rounds).
    """
    if videos <= 0 or frames <= 0 or size < 16:
        raise InputError(
            f"need videos > 0, frames > 0 and size >= 16; got {videos}, {frames}, {size}"
        )
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "ssv2").mkdir(exist_ok=True)
    num_classes = len(CLASSES)
    labels = [i % num_classes for i in range(videos)]
    jobs = [
        (os.fspath(root / "videos" / f"{i:05d}.mp4"), labels[i], frames, size, fps, seed, i)
        for i in range(videos)
    ]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    if workers > 1 and videos >= 32:
        # Threads: the encoder and the numpy drawing release the GIL, so they scale like
        # processes without the start-up cost (seconds of imports per spawned process) and
        # without the ``if __name__ == "__main__"`` requirement on the caller's script.
        with ThreadPoolExecutor(workers) as pool:
            captions = list(pool.map(_write_one, jobs))
    else:
        captions = [_write_one(job) for job in jobs]
    splits: dict[str, list[int]] = {"train": [], "val": []}
    rounds = -(-videos // num_classes)
    val_rounds = {r for r in range(rounds) if r % 5 == 4} or (
        {rounds - 1} if rounds >= 2 else set()
    )
    for i in range(videos):
        splits["val" if i // num_classes in val_rounds else "train"].append(i)
    names = [c["name"] for c in CLASSES]
    for split, ids in splits.items():
        rel = [f"videos/{i:05d}.mp4" for i in ids]
        (root / f"{split}.csv").write_text("".join(f"{r} {labels[i]}\n" for r, i in zip(rel, ids)))
        items = [{"video": r, "caption": captions[i], "label": labels[i]} for r, i in zip(rel, ids)]
        (root / f"{split}.json").write_text(json.dumps(items, indent=1))
        ssv2 = [
            {
                "id": f"{i:05d}",
                "label": names[labels[i]],
                "template": names[labels[i]],
                "placeholders": [],
            }
            for i in ids
        ]
        (root / "ssv2" / f"{split}.json").write_text(json.dumps(ssv2, indent=1))
    (root / "ssv2" / "labels.json").write_text(
        json.dumps({n: str(i) for i, n in enumerate(names)}, indent=1)
    )
    (root / "classes.json").write_text(json.dumps(names, indent=1))
    return root


def ensure_synthetic_dataset(
    root: str | os.PathLike = "data/umt-synthetic",
    videos: int = 300,
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Return ``root`` holding the synthetic dataset, generating it on first use.

    Idempotent and atomic: it writes into a temporary sibling folder, adds a ``.complete``
    marker with the parameters and renames it into place; concurrent callers (e.g. several
    ranks) end up using whichever finished first. A ``root`` made with other parameters is an
    error (pick another ``root``).
    """
    root = Path(root)
    params = {
        "videos": videos,
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
        "version": 1,
    }
    marker = root / ".complete"
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != params:
            raise InputError(
                f"{root}: holds a synthetic dataset made with {found}, not {params}; use another root"
            )
        return root
    if root.exists() and any(root.iterdir()):
        raise InputError(
            f"{root}: exists and is not a finished synthetic dataset (no .complete marker)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write_synthetic_dataset(tmp, videos, frames, size, fps, seed, workers)
        (tmp / ".complete").write_text(json.dumps(params))
        if root.exists():
            root.rmdir()  # empty folder left by someone
        os.rename(tmp, root)
    except OSError:
        if not marker.is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ensure_synthetic_dataset(root, videos, frames, size, fps, seed, workers)
