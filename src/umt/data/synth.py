"""The built-in synthetic world: small actors of four shape categories moving through clutter.

Each clip (8 frames, 112 px by default) shows one **actor** -- a ``ball``, ``ring``, ``cross`` or
``bar`` -- moving ``left``, ``right`` or ``up`` over a cluttered, textured background among 3 to 6
smaller **distractors** (squares, triangles, diamonds; half of them drift slowly). The 12
classes are ``"{category} moves {motion}"``: a class needs both what the actor is and how it
moves. Everything else is a nuisance drawn per clip: the actor's colour (6), size (small /
large), fill (plain / striped) and rotation (up to 26 degrees), the distractors' kinds, colours
(the same 6) and places, and the background.

Why semantic masking matters here by construction: the actor covers parts of about 2-4 of the 49
16-pixel patches of a frame; a student that keeps a random 20 % of the tokens sees it in a
frame only by luck, while a teacher that attends to the actor keeps it in every frame.

A frame shows what a caption can name without the motion: ``(colour, category)`` of its actor
(:func:`teacher_object`), what the built-in teacher learns from the training frames.

Layout written by :func:`write_synthetic_dataset` (paths relative to the output folder)::

    videos/00000.mp4 ...            H.264, yuv420p, deterministic bytes for a given seed
    train.csv, val.csv, test.csv    Kinetics style "videos/00000.mp4 3"
    train.json, val.json, test.json video-text [{"video", "caption", "label", "category",
                                    "motion", "colour", "fill", "size", "distractors"}]
    ssv2/{train,val,test}.json, ssv2/labels.json   SSv2 style (use root=OUT/videos)
    classes.json                    class names, index = label
    .complete                       marker holding the generation parameters

The splits are disjoint draws of the same world (clip ``i`` is drawn from the seed and ``i``
alone); labels are balanced within each split.
"""

from __future__ import annotations

import itertools
import json
import math
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
from umt.utils.cpu import usable_cores

__all__ = [
    "CATEGORIES",
    "MOTIONS",
    "COLOURS",
    "CLASSES",
    "SPLITS",
    "class_part_accuracy",
    "WORLD_VERSION",
    "render_clip",
    "teacher_object",
    "object_names",
    "caption",
    "set_params",
    "write_video",
    "write_synthetic_dataset",
    "ensure_synthetic_dataset",
]

WORLD_VERSION = 2
CATEGORIES = ("ball", "ring", "cross", "bar")
MOTIONS = ("left", "right", "up")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 40),
    "blue": (45, 90, 235),
    "green": (45, 195, 70),
    "yellow": (235, 215, 45),
    "purple": (160, 70, 210),
    "orange": (245, 145, 35),
}
DISTRACTOR_KINDS = ("square", "triangle", "diamond")
SPLITS = ("train", "val", "test")
DEFAULTS = {"train": 1200, "val": 600, "test": 600, "frames": 8, "size": 112, "fps": 8, "seed": 0}
"""The default set's generation parameters (the arguments of :func:`write_synthetic_dataset`)."""
MARKER = ".complete"

CLASSES: list[dict[str, str]] = [
    {"name": f"{category} moves {motion}", "category": category, "motion": motion}
    for category in CATEGORIES
    for motion in MOTIONS
]
"""The 12 classes, index = label: ``{"name", "category", "motion"}``."""

_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0)}


def class_part_accuracy(pairs: Iterable[tuple[int, int]]) -> dict[str, float]:
    """How often 12-class predictions get each half of the class right: ``pairs`` of (label,
    predicted label) -> ``{"category": share, "motion": share}`` (chance 1/4 and 1/3), the
    share of predictions whose class names the label's category, and its motion."""
    hits, n = {"category": 0, "motion": 0}, 0
    for label, pred in pairs:
        if not (0 <= label < len(CLASSES) and 0 <= pred < len(CLASSES)):
            raise InputError(f"class {label} or {pred} is not one of the {len(CLASSES)} classes")
        for part in hits:
            hits[part] += CLASSES[label][part] == CLASSES[pred][part]
        n += 1
    if n == 0:
        raise InputError("no predictions to score")
    return {part: h / n for part, h in hits.items()}


def teacher_object(entry: Mapping[str, Any]) -> tuple[str, str]:
    """What any single frame of a clip shows, as the built-in teacher's captions name it:
    ``(colour, category)`` of the actor (``entry``: a clip's ``*.json`` record)."""
    return str(entry["colour"]), str(entry["category"])


def object_names() -> list[tuple[str, str]]:
    """Every ``(colour, category)`` an actor can have, in a fixed order."""
    return [(c, k) for k in CATEGORIES for c in COLOURS]


def caption(category: str, motion: str, colour: str, fill: str, size: str) -> str:
    """A clip's caption: ``"a large striped red ring moves left"`` (``fill`` plain or striped,
    ``size`` small or large)."""
    stripes = "striped " if fill == "striped" else ""
    return f"a {size} {stripes}{colour} {category} moves {motion}"


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Pixels of a shape of radius ``r`` in its own (rotated) coordinates ``u, v``."""
    if kind == "ball":
        return u**2 + v**2 <= r**2
    if kind == "ring":
        d2 = u**2 + v**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if kind == "cross":
        arm = 0.32 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    if kind == "bar":
        return (np.abs(u) <= r) & (np.abs(v) <= 0.36 * r)
    if kind == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if kind == "triangle":
        return (v <= 0.8 * r) & (np.abs(u) <= (v + r) * 0.55)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= r
    raise ValueError(f"unknown shape {kind!r}")


def _draw(
    frame: np.ndarray,
    kind: str,
    rgb: tuple[int, int, int],
    cx: float,
    cy: float,
    r: float,
    angle: float = 0.0,
    striped: bool = False,
) -> None:
    """Draw a shape into ``frame`` ``[S, S, 3]`` uint8, in place (only its bounding box is
    touched)."""
    size = frame.shape[0]
    x0, x1 = max(int(cx - r - 2), 0), min(int(cx + r + 3), size)
    y0, y1 = max(int(cy - r - 2), 0), min(int(cy + r + 3), size)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = _shape_mask(kind, u, v, r)
    colour = np.array(rgb, dtype=np.float32)
    if striped:
        # Bands 4 px wide across the shape's own axis: every other one darker.
        dark = (np.floor((u + 64.0) / 4.0) % 2).astype(bool)
        shade = np.where(dark[..., None], colour * 0.6, colour)
        frame[y0:y1, x0:x1][mask] = shade[mask].astype(np.uint8)
    else:
        frame[y0:y1, x0:x1][mask] = colour.astype(np.uint8)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A static, cluttered background ``[S, S, 3]``: a dim base colour, a soft gradient,
    blocky texture at two scales and a few faint large blobs."""
    base = rng.integers(35, 100, size=3).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    gx, gy = rng.uniform(-14, 14, size=2)
    img = base + (gx * ramp[None, :] + gy * ramp[:, None])[..., None]
    for block, amp in ((8, 16), (2, 7)):
        n = -(-size // block)
        tex = rng.integers(-amp, amp + 1, size=(n, n, 3)).astype(np.float32)
        img = img + np.kron(tex, np.ones((block, block, 1), np.float32))[:size, :size]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, size, size=2)
        rad = size * rng.uniform(0.12, 0.3)
        tint = rng.integers(-22, 23, size=3).astype(np.float32)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 <= rad**2)[..., None]
        img = img + blob * tint
    return np.clip(img, 0, 255).astype(np.uint8)


def render_clip(
    label: int, num_frames: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """One clip of class ``label``: uint8 frames ``[F, S, S, 3]`` and its record
    ``{"caption", "label", "category", "motion", "colour", "fill", "size", "distractors"}``."""
    spec = CLASSES[label]
    colour = str(rng.choice(list(COLOURS)))
    scale = rng.uniform(0.10, 0.13)
    size_word = "small" if scale < 0.115 else "large"
    radius = size * scale
    striped = bool(rng.integers(0, 2))
    angle = math.radians(rng.uniform(-26.0, 26.0))
    background = _background(size, rng)
    # Distractors: smaller shapes of other kinds, any colour; half drift slowly.
    distractors = []
    for _ in range(int(rng.integers(3, 7))):
        heading = rng.uniform(0, 2 * math.pi)
        drift = size * rng.uniform(0.04, 0.10) if rng.random() < 0.5 else 0.0
        distractors.append(
            {
                "kind": str(rng.choice(DISTRACTOR_KINDS)),
                "rgb": COLOURS[str(rng.choice(list(COLOURS)))],
                "r": size * rng.uniform(0.035, 0.055),
                "x": rng.uniform(0.05, 0.95) * size,
                "y": rng.uniform(0.05, 0.95) * size,
                "dx": drift * math.cos(heading),
                "dy": drift * math.sin(heading),
                "angle": rng.uniform(-0.5, 0.5),
            }
        )
    travel = size * rng.uniform(0.30, 0.50)
    dx, dy = _DIRECTIONS[spec["motion"]]
    lo, hi = radius + 1, size - radius - 1
    sx = rng.uniform(lo + max(-dx, 0) * travel, hi - max(dx, 0) * travel)
    sy = rng.uniform(lo + max(-dy, 0) * travel, hi - max(dy, 0) * travel)
    frames = np.repeat(background[None], num_frames, axis=0)
    steps = max(num_frames - 1, 1)
    for t in range(num_frames):
        f = t / steps
        for d in distractors:
            _draw(
                frames[t],
                d["kind"],
                d["rgb"],
                d["x"] + d["dx"] * f,
                d["y"] + d["dy"] * f,
                d["r"],
                d["angle"],
            )
        _draw(
            frames[t],
            spec["category"],
            COLOURS[colour],
            sx + dx * travel * f,
            sy + dy * travel * f,
            radius,
            angle,
            striped,
        )
    fill = "striped" if striped else "plain"
    record = {
        "caption": caption(spec["category"], spec["motion"], colour, fill, size_word),
        "label": int(label),
        "category": spec["category"],
        "motion": spec["motion"],
        "colour": colour,
        "fill": fill,
        "size": size_word,
        "distractors": len(distractors),
    }
    return frames, record


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int = 8,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 18,
    options: Mapping[str, str] | None = None,
) -> None:
    """Encode uint8 ``[F, H, W, 3]`` to ``path`` (H.264 yuv420p by default), deterministically:
    the same frames give the same bytes. For that the encoder runs on one thread and, for
    libx264, without its macroblock tree (``x264-params`` ``mbtree=0``): with it, the same
    frames were seen to encode to different bytes and different decoded pixels from one call to
    the next, whatever the frame size.

    ``frames`` may also be an iterable of ``[H, W, 3]`` frames, encoded as they come (a long
    clip need not be held in memory). ``options``: more encoder options, added to (and
    overriding) the defaults, e.g. ``{"x264-params": "bframes=3:scenecut=0"}`` (which replaces
    ``mbtree=0``: x264's own default, the macroblock tree, is then on).
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
            opts.update({"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"})
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


def _write_one(job: tuple[str, int, int, int, int, int, int]) -> dict[str, Any]:
    path, label, num_frames, size, fps, seed, index = job
    rng = np.random.default_rng([seed, index])
    frames, record = render_clip(label, num_frames, size, rng)
    write_video(path, frames, fps=fps, gop=max(num_frames // 2, 1))
    return record


def write_synthetic_dataset(
    out: str | os.PathLike,
    train: int = DEFAULTS["train"],
    val: int = DEFAULTS["val"],
    test: int = DEFAULTS["test"],
    frames: int = DEFAULTS["frames"],
    size: int = DEFAULTS["size"],
    fps: int = DEFAULTS["fps"],
    seed: int = DEFAULTS["seed"],
    workers: int | None = None,
) -> Path:
    """Write the dataset into ``out`` (created; must not hold another dataset) and return it:
    ``train`` / ``val`` / ``test`` clips (clips are numbered in that order; labels balanced,
    ``index % 12`` within each split)."""
    counts = {"train": train, "val": val, "test": test}
    if train <= 0 or min(val, test) < 0 or frames <= 0 or size < 32:
        raise InputError(
            f"need train > 0, val and test >= 0, frames > 0 and size >= 32; got {counts}, "
            f"frames {frames}, size {size}"
        )
    root = Path(out)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "ssv2").mkdir(exist_ok=True)
    num_classes = len(CLASSES)
    ids: dict[str, list[int]] = {}
    labels: list[int] = []
    for split in SPLITS:
        ids[split] = list(range(len(labels), len(labels) + counts[split]))
        labels += [i % num_classes for i in range(counts[split])]
    jobs = [
        (os.fspath(root / "videos" / f"{i:05d}.mp4"), labels[i], frames, size, fps, seed, i)
        for i in range(len(labels))
    ]
    workers = workers if workers is not None else min(usable_cores(), 4)
    if workers > 1 and len(jobs) >= 32:
        # Threads: the encoder and the numpy drawing release the GIL, so they scale like
        # processes without the start-up cost (seconds of imports per spawned process) and
        # without the ``if __name__ == "__main__"`` requirement on the caller's script.
        with ThreadPoolExecutor(workers) as pool:
            records = list(pool.map(_write_one, jobs))
    else:
        records = [_write_one(job) for job in jobs]
    names = [c["name"] for c in CLASSES]
    for split in SPLITS:
        rel = [f"videos/{i:05d}.mp4" for i in ids[split]]
        (root / f"{split}.csv").write_text(
            "".join(f"{r} {labels[i]}\n" for r, i in zip(rel, ids[split]))
        )
        items = [{"video": r, **records[i]} for r, i in zip(rel, ids[split])]
        (root / f"{split}.json").write_text(json.dumps(items, indent=1))
        ssv2 = [
            {
                "id": f"{i:05d}",
                "label": names[labels[i]],
                "template": names[labels[i]],
                "placeholders": [],
            }
            for i in ids[split]
        ]
        (root / "ssv2" / f"{split}.json").write_text(json.dumps(ssv2, indent=1))
    (root / "ssv2" / "labels.json").write_text(
        json.dumps({n: str(i) for i, n in enumerate(names)}, indent=1)
    )
    (root / "classes.json").write_text(json.dumps(names, indent=1))
    return root


def set_params(root: str | os.PathLike) -> dict[str, Any] | None:
    """The generation parameters (and ``"version"``) a finished set at ``root`` was made with,
    from its marker; ``None`` when there is no finished set there. An unreadable marker is an
    :class:`~umt.errors.InputError` naming it."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return None
    try:
        found = json.loads(marker.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{marker}: unreadable ({err}); delete {root} to remake the set") from None
    if not isinstance(found, dict):
        raise InputError(f"{marker}: not a synthetic set's marker; delete {root} to remake it")
    return found


def ensure_synthetic_dataset(
    root: str | os.PathLike = "data/umt-synthetic",
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
    frames: int | None = None,
    size: int | None = None,
    fps: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
) -> Path:
    """Return ``root`` holding the synthetic dataset, generating it on first use.

    Parameters left ``None`` take the defaults of :func:`write_synthetic_dataset` when the set
    is made, and accept whatever a finished set at ``root`` was made with (so ``umt data
    synthetic`` can make a smaller or larger set that the runs then use); given ones must
    match. Idempotent and atomic: it writes into a temporary sibling folder, adds a
    ``.complete`` marker with the parameters and renames it into place; concurrent callers
    (e.g. several ranks) end up using whichever finished first.
    """
    root = Path(root)
    asked = {
        "train": train,
        "val": val,
        "test": test,
        "frames": frames,
        "size": size,
        "fps": fps,
        "seed": seed,
    }
    params = {k: (DEFAULTS[k] if v is None else v) for k, v in asked.items()}
    params["version"] = WORLD_VERSION
    marker = root / MARKER
    found = set_params(root)
    if found is not None:
        wanted = {k: v for k, v in params.items() if k == "version" or asked.get(k) is not None}
        if any(found.get(k) != v for k, v in wanted.items()):
            raise InputError(
                f"{root}: holds a synthetic dataset made with {found}, not {wanted}; use "
                "another root (or delete this one to remake it)"
            )
        return root
    if root.exists() and any(root.iterdir()):
        raise InputError(
            f"{root}: exists and is not a finished synthetic dataset (no .complete marker)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        write_synthetic_dataset(
            tmp,
            params["train"],
            params["val"],
            params["test"],
            params["frames"],
            params["size"],
            params["fps"],
            params["seed"],
            workers,
        )
        (tmp / MARKER).write_text(json.dumps(params))
        if root.exists():
            root.rmdir()  # empty folder left by someone
        os.rename(tmp, root)
    except OSError:
        if not marker.is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ensure_synthetic_dataset(root, train, val, test, frames, size, fps, seed, workers)
