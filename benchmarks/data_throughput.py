"""Decoding throughput: clips/s per backend, seek-and-decode vs decode-everything, and decoding
at real resolution (Kinetics-like files) per core, beside the official decord pattern and a
GPU step's appetite.

Run: ``python benchmarks/data_throughput.py [--seconds 3] [--out DIR] [--workers N]
[--gpu-clips-per-s X] [--kinetics-only] [--kinetics-gop 250]``. Prints a table and a final
JSON line.

* Small inputs: the synthetic dataset and a 10 s, 30 fps, 320x240 H.264 clip (GOP 30 and 60,
  B-frames, like camera/web files); 8 frames per clip (training sparse sampling).
* Kinetics-like files (``--kinetics-files``, default 4, cached in ``--out``): 10 s, 454x340
  (short side 340), 30 fps, GOP 250 (no scene-cut keyframes), 3 B-frames, libx264 crf 23,
  textured panning background with moving textured objects and grain (about 0.5 Mbit/s).
  On ONE core (the process pinned to one CPU, torch threads 1, decoder threads 1), sparse
  sampling of 8 and 16 frames: clips/s of each backend and of the official decord pattern
  (``decord.VideoReader(path, num_threads=1, ctx=cpu(0))``, ``seek(0)``,
  ``get_batch(indices)``), decode only (frames at 454x340) and decode + the stage-1
  transform (multi-scale crop resized to 224, flip, normalise: ``[3, T, 224, 224]``); the
  ratio ours / official; the cores one GPU step needs (``--gpu-clips-per-s`` / clips/s per
  core); and a DataLoader over ``VideoDataset`` with ``--workers`` workers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from umt.data import (
    VideoDataset,
    collate_videos,
    ensure_synthetic_dataset,
    make_generator,
)
from umt.data.clip_spec import ClipSpec
from umt.data.datasets import ClipLoader
from umt.data.decode import PROBE_CACHE, available_backends, get_decoder
from umt.data.sampling import sparse_indices
from umt.data.synth import write_video
from umt.data.transforms.recipes import build_clip_transform
from umt.errors import InputError

# The Kinetics-like files: Kinetics clips are ~10 s YouTube cuts, commonly stored resized to a
# 340 px short side; YouTube-style H.264 uses a 250-frame keyframe interval and B-frames.
KINETICS_LIKE = {"seconds": 10.0, "width": 454, "height": 340, "fps": 30, "gop": 250, "crf": 23}
KINETICS_LIKE_VERSION = 1  # bump when the rendering changes (cached files are keyed by it)
# The clip the per-core "+224" figures and the DataLoader make: 8 frames (or 16), sparse
# sampling, the stage-1 transform at 224.
CLIP_SIZE = 224


def write_long_clip(
    path: Path, frames: int = 300, gop: int = 30, width: int = 320, height: int = 240
) -> Path:
    """Smooth moving gradients + texture + a moving object + sensor noise, libx264 crf 23."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.kron(rng.normal(0, 1, (height // 8 + 2, width // 8 + 2, 1)), np.ones((8, 8, 1)))

    def render() -> Iterator[np.ndarray]:
        for i in range(frames):
            img = 128 + 60 * np.sin((xx + 3 * i) / 37.0)[..., None] * np.array([1, 0.5, 0.2])
            img = img + 40 * np.cos((yy - 2 * i) / 23.0)[..., None]
            img = img + 20 * texture[:height, (i // 2) % 16 : (i // 2) % 16 + width]
            cx, cy = int(40 + i * 0.8) % width, int(120 + 60 * np.sin(i / 20))
            img[max(cy - 20, 0) : cy + 20, max(cx - 20, 0) : cx + 20] = (220, 30, 30)
            yield np.clip(img + rng.normal(0, 4, (height, width, 1)), 0, 255).astype(np.uint8)

    write_video(path, render(), fps=30, gop=gop, crf=23)
    return path


# --------------------------------------------------------------------------- Kinetics-like files
def fractal_noise(
    rng: np.random.Generator, height: int, width: int, octaves: int = 7, decay: float = 0.75
) -> np.ndarray:
    """float32 ``[H, W]`` 1/f-like noise (unit-ish scale): random grids of doubling resolution,
    each upsampled bicubically, weighted ``decay ** octave`` (fine detail like natural scenes)."""
    from PIL import Image

    out = np.zeros((height, width), np.float32)
    total = 0.0
    for octave in range(octaves):
        step = 2 ** (octaves - octave)
        grid = rng.standard_normal((max(2, height // step), max(2, width // step)))
        weight = decay**octave
        up = Image.fromarray(grid.astype(np.float32), "F").resize((width, height), Image.BICUBIC)
        out += weight * np.asarray(up)
        total += weight
    return out / total


def render_kinetics_like(
    seed: int, frames: int, width: int, height: int, fps: int
) -> Iterator[np.ndarray]:
    """uint8 ``[H, W, 3]`` frames: a textured background seen by a camera panning at sub-pixel
    speeds, three textured ellipses moving on their own paths, a slow brightness change and
    grain (std 2). Deterministic for a given ``seed``."""
    rng = np.random.default_rng([KINETICS_LIKE_VERSION, seed])
    margin_y, margin_x = height // 2, width // 2
    bg_h, bg_w = height + margin_y + 1, width + margin_x + 1
    lum = fractal_noise(rng, bg_h, bg_w)
    tint = [fractal_noise(rng, bg_h, bg_w, octaves=3) for _ in range(2)]
    base = rng.uniform(60, 180, 3)
    background = np.stack(
        [base[0] + 90 * lum - 35 * tint[0], base[1] + 90 * lum + 35 * tint[1], base[2] + 90 * lum],
        axis=-1,
    ).astype(np.float32)
    objects = []
    for _ in range(3):
        r = max(int(rng.uniform(0.12, 0.25) * height), 2)
        texture = 60 * fractal_noise(rng, 2 * r, 2 * r, octaves=4)[..., None]
        yy, xx = np.mgrid[-r:r, -r:r]
        inside = ((yy / r) ** 2 + (xx / (r * rng.uniform(0.6, 1.0))) ** 2 < 1)[..., None]
        objects.append(
            (
                r,
                rng.uniform(30, 230, 3) + texture,
                inside,
                rng.uniform(0, 2 * np.pi, 2),
                rng.uniform(0.3, 1.2, 2),
            )  # fmt: skip
        )
    phase = rng.uniform(0, 2 * np.pi, 4)
    for i in range(frames):
        t = i / fps
        # Camera: slow sweeps plus a faster wobble, at sub-pixel positions (bilinear).
        x = margin_x / 2 * (1 + 0.85 * np.sin(0.35 * t + phase[0])) + 3 * np.sin(1.3 * t + phase[1])
        y = margin_y / 2 * (1 + 0.85 * np.sin(0.27 * t + phase[2])) + 2 * np.sin(1.7 * t + phase[3])
        x, y = float(np.clip(x, 0, margin_x - 1)), float(np.clip(y, 0, margin_y - 1))
        x0, y0, fx, fy = int(x), int(y), x - int(x), y - int(y)
        a = background[y0 : y0 + height + 1, x0 : x0 + width + 1]
        img = (1 - fy) * ((1 - fx) * a[:-1, :-1] + fx * a[:-1, 1:]) + fy * (
            (1 - fx) * a[1:, :-1] + fx * a[1:, 1:]
        )
        for r, look, inside, start, speed in objects:
            cx = int(width / 2 + 0.35 * width * np.sin(speed[0] * t + start[0]))
            cy = int(height / 2 + 0.3 * height * np.sin(speed[1] * t + start[1]))
            top, left = max(cy - r, 0), max(cx - r, 0)
            bottom, right = min(cy + r, height), min(cx + r, width)
            if bottom <= top or right <= left:
                continue
            oy, ox = top - (cy - r), left - (cx - r)
            m = inside[oy : oy + bottom - top, ox : ox + right - left]
            pixels = look[oy : oy + bottom - top, ox : ox + right - left]
            img[top:bottom, left:right] = np.where(m, pixels, img[top:bottom, left:right])
        img = img * (1 + 0.06 * np.sin(0.5 * t + phase[0]))
        img = img + rng.normal(0, 2, (height, width, 1))
        yield np.clip(img, 0, 255).astype(np.uint8)


def write_kinetics_like(
    path: str | os.PathLike,
    seed: int = 0,
    seconds: float = 10.0,
    width: int = 454,
    height: int = 340,
    fps: int = 30,
    gop: int = 250,
    crf: int = 23,
) -> Path:
    """Write one Kinetics-like H.264 file (see :func:`render_kinetics_like`): keyframes every
    ``gop`` frames exactly (scene-cut keyframes off), 3 B-frames (b-pyramid), ``crf``, x264's
    other defaults (preset medium, macroblock tree). The pictures depend on ``seed`` only; the
    bytes may not (x264's macroblock-tree lookahead was seen to vary by a few hundred bytes
    between runs on the same frames), hence the cache."""
    frames = max(int(round(seconds * fps)), 1)
    params = f"keyint={gop}:min-keyint={min(25, gop)}:scenecut=0:bframes=3"
    write_video(
        path,
        render_kinetics_like(seed, frames, width, height, fps),
        fps=fps,
        gop=gop,
        crf=crf,
        options={"x264-params": params},
    )
    return Path(path)


def ensure_kinetics_like(folder: str | os.PathLike, count: int = 4, **params: float) -> list[Path]:
    """``count`` Kinetics-like files in ``folder`` (seeds 0..count-1), written on first use and
    reused after (the name holds every parameter and the rendering version); written under a
    temporary name and renamed, so an interrupted run leaves no partial file behind."""
    spec = {**KINETICS_LIKE, **params}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = (
        f"kinetics_like_v{KINETICS_LIKE_VERSION}_{spec['width']}x{spec['height']}_"
        f"{spec['fps']}fps_{spec['seconds']:g}s_g{spec['gop']}_crf{spec['crf']}"
    )
    paths = [folder / f"{stem}_{seed}.mp4" for seed in range(count)]

    def make(seed: int) -> None:
        path = paths[seed]
        if path.is_file() and path.stat().st_size > 0:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
        try:
            write_kinetics_like(tmp, seed=seed, **spec)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    with ThreadPoolExecutor(max(1, min(count, os.cpu_count() or 1))) as pool:
        list(pool.map(make, range(count)))  # x264 and numpy release the GIL
    return paths


# --------------------------------------------------------------------------- timing
def rate(one: Callable[[int], object], seconds: float) -> float:
    """Calls per second of ``one(i)`` over at least ``seconds``, after one untimed call."""
    one(0)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += 1
        one(done)
    return done / elapsed


@contextmanager
def one_core() -> Iterator[int | None]:
    """Run the block on one CPU: this thread (and the threads it starts: FFmpeg's, decord's)
    pinned to the first CPU it may use, torch limited to one thread. Yields the CPU (None
    where the OS cannot pin, e.g. macOS: then only the thread counts are limited)."""
    threads = torch.get_num_threads()
    can_pin = hasattr(os, "sched_setaffinity")
    allowed = os.sched_getaffinity(0) if can_pin else set()
    cpu = min(allowed) if allowed else None
    torch.set_num_threads(1)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        torch.set_num_threads(threads)
        if cpu is not None:
            os.sched_setaffinity(0, allowed)


def clips_per_second(backend: str, paths: list[Path], num_frames: int, seconds: float) -> float:
    decoder = get_decoder(backend)
    for p in paths[:4]:
        decoder.probe(p)  # probes are cached in real training too
    gen = make_generator(0)

    def one(i: int) -> None:
        path = paths[i % len(paths)]
        n = decoder.probe(path).num_frames
        decoder.read(path, sparse_indices(n, num_frames, True, gen))

    return rate(one, seconds)


def official_clips_per_second(path: Path, num_frames: int, seconds: float) -> float:
    """The official UMT/VideoMAE PyAV path: decode every frame, convert every frame to RGB,
    then keep the sampled ones."""
    import av

    n = get_decoder("pyav").probe(path).num_frames
    gen = make_generator(0)

    def one(i: int) -> None:
        with av.open(str(path)) as container:
            frames = [f.to_rgb().to_ndarray() for f in container.decode(video=0)]
        np.stack([frames[i] for i in sparse_indices(n, num_frames, True, gen)])

    return rate(one, seconds)


def official_decord_frames(path: Path, num_frames: int, gen: torch.Generator) -> np.ndarray:
    """The official loader's decoding (``kinetics_sparse.py`` ``loadvideo_decord``, ``mae.py``):
    a new ``VideoReader`` per clip with one thread at the file's resolution
    (``keep_aspect_ratio=True``), ``len``, ``seek(0)``, ``get_batch(sampled).asnumpy()``; the
    indices come from the same sparse sampling as ours. uint8 ``[T, H, W, 3]``."""
    from decord import VideoReader, cpu

    reader = VideoReader(str(path), num_threads=1, ctx=cpu(0))
    indices = sparse_indices(len(reader), num_frames, True, gen)
    reader.seek(0)
    return reader.get_batch(indices).asnumpy()


def reference_frames_bound(paths: list[Path], repeats: int = 3) -> dict[str, float]:
    """What exact decoding can save at most: every frame up to the last wanted one must be
    decoded unless no frame references it (umt's PyAV path skips those; the official decord
    pattern decodes them). Decodes each file whole, single-threaded, without colour conversion, once with
    every frame and once skipping non-reference frames (``skip_frame="NONREF"``); best of
    ``repeats``. Returns frame counts by type, both times (s per file) and their ratio."""
    import av
    from av.video.frame import PictureType

    counts = {"frames": 0, "I": 0, "P": 0, "B": 0, "reference": 0}
    all_s = refs_s = 0.0
    for path in paths:
        for skip in ("DEFAULT", "NONREF"):
            best = float("inf")
            for _ in range(repeats):
                with av.open(str(path)) as container:
                    stream = container.streams.video[0]
                    stream.thread_type, stream.thread_count = "NONE", 1
                    stream.codec_context.skip_frame = skip
                    start = time.perf_counter()
                    kinds = [PictureType(f.pict_type).name for f in container.decode(stream)]
                    best = min(best, time.perf_counter() - start)
            if skip == "DEFAULT":
                all_s += best / len(paths)
                counts["frames"] += len(kinds)
                for kind in ("I", "P", "B"):
                    counts[kind] += kinds.count(kind)
            else:
                refs_s += best / len(paths)
                counts["reference"] += len(kinds)
    n = len(paths)
    out: dict[str, float] = {k: v / n for k, v in counts.items()}
    out.update({"decode_all_s": all_s, "reference_only_s": refs_s, "bound": all_s / refs_s})
    return out


def stage1_clip(num_frames: int) -> ClipSpec:
    """The clip of the per-core "+224" figures and the DataLoader: ``num_frames`` sparse frames,
    the stage-1 transform (multi-scale crop to 224, flip, ImageNet normalisation)."""
    return ClipSpec(
        num_frames=num_frames, sampling="sparse", input_size=CLIP_SIZE, augment="pretrain"
    )


def clip_maker(loader: ClipLoader, paths: list[Path]) -> Callable[[int], torch.Tensor]:
    """``one(i)``: the transformed clip ``[3, T, S, S]`` of file ``i % len(paths)``."""
    gen = make_generator(1)

    def one(i: int) -> torch.Tensor:
        path = str(paths[i % len(paths)])
        return loader.clip(path, path, gen)

    return one


def per_core_rates(
    paths: list[Path], backends: list[str], num_frames: int, seconds: float
) -> dict[str, float]:
    """``{"<backend>": decode-only clips/s, "<backend>+224": with the stage-1 transform}`` for
    each backend and ``official-decord`` (when decord is installed), on the calling core."""
    out: dict[str, float] = {}
    spec = stage1_clip(num_frames)
    transform = build_clip_transform(spec)
    for backend in backends:
        out[backend] = clips_per_second(backend, paths, num_frames, seconds)
        out[f"{backend}+{CLIP_SIZE}"] = rate(
            clip_maker(ClipLoader(spec, backend, transform), paths), seconds
        )
    if "decord" in available_backends():
        gen = make_generator(0)
        out["official-decord"] = rate(
            lambda i: official_decord_frames(paths[i % len(paths)], num_frames, gen), seconds
        )

        def official_clip(i: int) -> torch.Tensor:
            frames = official_decord_frames(paths[i % len(paths)], num_frames, gen)
            video = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [T, 3, H, W]
            return transform(video, generator=gen)

        out[f"official-decord+{CLIP_SIZE}"] = rate(official_clip, seconds)
    return out


def loader_clips_per_second(
    folder: Path, paths: list[Path], workers: int, batch_size: int, backend: str, seconds: float
) -> float:
    """Clips/s out of a training ``DataLoader`` (the loop's :func:`umt.train.data.build_loader`)
    over ``VideoDataset`` of the files (8 sparse frames, stage-1 transform at 224, random
    order with replacement), after every worker's first two batches (start-up, prefetch)."""
    from torch.utils.data import RandomSampler

    from umt.train.data import build_loader

    listing = folder / "kinetics_like_train.csv"
    listing.write_text("".join(f"{p.name} 0\n" for p in paths))
    dataset = VideoDataset(listing, clip=stage1_clip(8), root=folder, backend=backend)
    sampler = RandomSampler(dataset, replacement=True, num_samples=1 << 30)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = build_loader(
        dataset, batch_size, collate_videos, workers, device, sampler=sampler, train=True
    )
    batches = iter(loader)
    for _ in range(2 * max(workers, 1)):
        next(batches)
    clips, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or clips == 0:
        clips += int(next(batches)["video"].shape[0])
    del batches, loader  # the (persistent) workers stop
    return clips / elapsed


# --------------------------------------------------------------------------- report
def kinetics_section(args: argparse.Namespace, work: Path) -> dict:
    """Generate (or reuse) the Kinetics-like files, measure, print; the JSON part."""
    t0 = time.perf_counter()
    gop = args.kinetics_gop
    paths = ensure_kinetics_like(work / "kinetics_like", args.kinetics_files, gop=gop)
    kbit = [p.stat().st_size * 8 / KINETICS_LIKE["seconds"] / 1000 for p in paths]
    info = get_decoder("pyav").probe(paths[0])
    print(
        f"\nKinetics-like files ready in {time.perf_counter() - t0:.1f} s: {len(paths)} x "
        f"{info.width}x{info.height}, {info.fps:g} fps, {info.num_frames} frames, GOP "
        f"{gop}, 3 B-frames, crf {KINETICS_LIKE['crf']}, "
        f"{np.mean(kbit):.0f} kbit/s mean ({min(kbit):.0f}-{max(kbit):.0f})"
    )
    backends = available_backends()
    for name in ("torchcodec", "decord"):
        if name not in backends:
            try:
                get_decoder(name)
            except ImportError as err:
                print(f"  {name}: skipped ({err})")
    if "decord" not in backends:
        print("  the official decord pattern is not measured (pip install decord2)")
    rates: dict[str, float] = {}
    with one_core() as cpu:
        where = f"CPU {cpu} only" if cpu is not None else "no pinning on this OS"
        print(
            f"one core ({where}; torch threads 1, decoder threads 1), sparse sampling; "
            f"'decode': uint8 frames at {info.width}x{info.height}; '+{CLIP_SIZE}': decode + "
            f"stage-1 transform to [3, T, {CLIP_SIZE}, {CLIP_SIZE}]"
        )
        bound = reference_frames_bound(paths)
        print(
            f"per file: {bound['I']:.0f} I, {bound['P']:.0f} P, {bound['B']:.0f} B frames, "
            f"{bound['frames'] - bound['reference']:.0f} of them referenced by no frame; "
            f"decoding every frame {1000 * bound['decode_all_s']:.0f} ms, the referenced ones "
            f"only {1000 * bound['reference_only_s']:.0f} ms: for a frame near a GOP's end, exact "
            f"decoding saves at most {bound['bound']:.2f}x over decoding every frame"
        )
        gpu = args.gpu_clips_per_s
        head = (
            f"{'frames':<7} {'backend':<16} {'decode':>8} {'vs off.':>8} {'+224':>8} {'vs off.':>8}"
        )
        print(head + (f" {'cores/GPU':>9}" if gpu else ""))
        for t in (8, 16):
            found = per_core_rates(paths, backends, t, args.seconds)
            rates.update({f"{t}f/{k}": v for k, v in found.items()})
            official = found.get("official-decord")
            official_clip = found.get(f"official-decord+{CLIP_SIZE}")
            for name in [*backends, "official-decord"]:
                if name not in found:
                    continue
                dec, clip = found[name], found[f"{name}+{CLIP_SIZE}"]
                vs = f"{dec / official:7.2f}x" if official else f"{'-':>8}"
                vs_clip = f"{clip / official_clip:7.2f}x" if official_clip else f"{'-':>8}"
                line = f"{t:<7} {name:<16} {dec:8.1f} {vs} {clip:8.1f} {vs_clip}"
                print(line + (f" {gpu / clip:9.1f}" if gpu else ""))
    ratios = {}
    for t in (8, 16):
        for suffix in ("", f"+{CLIP_SIZE}"):
            official = rates.get(f"{t}f/official-decord{suffix}")
            for name in backends:
                if official:
                    ratios[f"{t}f/{name}{suffix}"] = rates[f"{t}f/{name}{suffix}"] / official
    ours = get_decoder("auto").name  # what training uses by default
    cores = {
        name: args.gpu_clips_per_s / rates[f"8f/{name}+{CLIP_SIZE}"]
        for name in [*backends, "official-decord"]
        if args.gpu_clips_per_s and f"8f/{name}+{CLIP_SIZE}" in rates
    }
    if args.gpu_clips_per_s:
        print(
            f"cores one GPU step needs = {args.gpu_clips_per_s:g} clips/s (--gpu-clips-per-s) / "
            f"clips/s per core (8 frames, +{CLIP_SIZE}): {cores[ours]:.1f} with {ours} "
            "(the default backend here)"
            + (
                f", {cores['official-decord']:.1f} with the official decord pattern"
                if "official-decord" in cores
                else ""
            )
        )
    else:
        print(
            "cores one GPU step needs = (GPU step clips/s) / (clips/s per core, 8 frames, "
            f"+{CLIP_SIZE}); give --gpu-clips-per-s (the clips_per_s of "
            "`stage1_step.py --device cuda --preset umt-b16`) to have it computed"
        )
    loader_rate = loader_clips_per_second(
        work / "kinetics_like", paths, args.workers, args.batch_size, args.backend,
        args.seconds * 3,
    )  # fmt: skip
    loader_backend = get_decoder(args.backend).name
    print(
        f"DataLoader, {args.workers} workers, batch {args.batch_size}, backend {loader_backend}, "
        f"8 sparse frames + stage-1 transform at {CLIP_SIZE}: {loader_rate:.1f} clips/s "
        + (
            f"({loader_rate / args.workers:.1f} per worker; {os.cpu_count()} CPUs here)"
            if args.workers
            else "(in the main process)"
        )
    )
    data_bound = None
    if args.gpu_clips_per_s:
        data_bound = loader_rate < args.gpu_clips_per_s
        print(
            f"  GPU step appetite {args.gpu_clips_per_s:g} clips/s: the run is "
            + ("data-bound" if data_bound else "not data-bound")
            + f" with {args.workers} workers"
        )
    return {
        "kinetics_like": {
            "files": len(paths),
            **{k: KINETICS_LIKE[k] for k in ("width", "height", "fps", "seconds", "crf")},
            "gop": gop,
            "bframes": 3,
            "kbit_s_mean": round(float(np.mean(kbit)), 1),
        },
        "kinetics_reference_frames": {k: round(v, 4) for k, v in bound.items()},
        "kinetics_per_core_clips_per_s": {k: round(v, 2) for k, v in rates.items()},
        "kinetics_ratio_vs_official_decord": {k: round(v, 2) for k, v in ratios.items()},
        "default_backend": ours,
        "gpu_clips_per_s": args.gpu_clips_per_s,
        "cores_per_gpu_step": {k: round(v, 2) for k, v in cores.items()} or None,
        "loader": {
            "workers": args.workers,
            "batch_size": args.batch_size,
            "backend": loader_backend,
            "clips_per_s": round(loader_rate, 2),
        },
        "data_bound": data_bound,
    }


def small_inputs_section(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """The synthetic set and the 320x240 GOP 30 / 60 clips (all cores, as before)."""
    t0 = time.perf_counter()
    synth = ensure_synthetic_dataset(work / "synthetic")
    print(f"synthetic dataset ready in {time.perf_counter() - t0:.1f} s: {synth}")
    synth_paths = sorted((synth / "videos").glob("*.mp4"))
    long_clips = {gop: write_long_clip(work / f"long_gop{gop}.mp4", gop=gop) for gop in (30, 60)}
    PROBE_CACHE.clear()

    results: dict[str, float] = {}
    backends = [*available_backends(), "pyav-all"]
    print(f"{'input':<32} {'backend':<12} {'clips/s':>9}")
    for backend in backends:
        rate_ = clips_per_second(backend, synth_paths, 8, args.seconds)
        results[f"synthetic_8f_112px/{backend}"] = rate_
        print(f"{'synthetic 8f 112x112':<32} {backend:<12} {rate_:9.1f}")
    for gop, path in long_clips.items():
        for backend in backends:
            rate_ = clips_per_second(backend, [path], 8, args.seconds)
            results[f"long_300f_320x240_gop{gop}/{backend}"] = rate_
            print(f"{f'300f 320x240 GOP {gop}':<32} {backend:<12} {rate_:9.1f}")
        rate_ = official_clips_per_second(path, 8, args.seconds)
        results[f"long_300f_320x240_gop{gop}/official-pyav"] = rate_
        print(f"{f'300f 320x240 GOP {gop}':<32} {'official':<12} {rate_:9.1f}")
        seek = results[f"long_300f_320x240_gop{gop}/pyav"]
        speedup = seek / results[f"long_300f_320x240_gop{gop}/pyav-all"]
        results[f"speedup_seek_vs_all_gop{gop}"] = speedup
        print(
            f"  seek-and-decode / decode-everything, wanted frames converted (GOP {gop}): {speedup:.2f}x"
        )
        speedup = seek / rate_
        results[f"speedup_seek_vs_official_gop{gop}"] = speedup
        print(
            f"  seek-and-decode / official decode-and-convert-everything (GOP {gop}): {speedup:.2f}x"
        )
    rate_ = dataset_clips_per_second(synth, args.seconds)
    results["dataset_getitem_synthetic_8f_64px"] = rate_
    print(f"VideoDataset[i] (decode + pretrain aug, 8x64x64): {rate_:.1f} clips/s per process")
    return results


def dataset_clips_per_second(root: Path, seconds: float) -> float:
    ds = VideoDataset(
        root / "train.csv", clip=ClipSpec(num_frames=8, input_size=64), backend="pyav"
    )
    return rate(lambda i: ds[i % len(ds)], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument(
        "--out", default=None, help="folder for the test videos (default: temporary); "
        "the Kinetics-like files are kept there and reused",
    )  # fmt: skip
    parser.add_argument(
        "--kinetics-files", type=int, default=4, help="Kinetics-like files (default 4)"
    )
    parser.add_argument(
        "--kinetics-gop", type=int, default=KINETICS_LIKE["gop"],
        help="keyframe interval of the Kinetics-like files (default 250, as YouTube's H.264)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=min(16, os.cpu_count() or 1),
        help="DataLoader workers for the Kinetics-like DataLoader figure (default min(16, CPUs))",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, help="DataLoader batch (default 8)")
    parser.add_argument(
        "--backend", default="auto", help="the DataLoader's decoder (default auto, as training)"
    )
    parser.add_argument(
        "--gpu-clips-per-s", type=float, default=None,
        help="a GPU training step's clips/s (e.g. stage1_step.py --device cuda --preset "
        "umt-b16): prints the cores it needs and whether the DataLoader keeps up",
    )  # fmt: skip
    parser.add_argument(
        "--kinetics-only", action="store_true", help="skip the synthetic and 320x240 inputs"
    )
    args = parser.parse_args()
    if args.kinetics_files < 1 or args.kinetics_gop < 1 or args.batch_size < 1:
        parser.error("--kinetics-files, --kinetics-gop and --batch-size must be at least 1")
    if args.workers < 0 or args.seconds <= 0:
        parser.error("--workers must be >= 0 and --seconds > 0")
    try:
        get_decoder(args.backend)
    except (ImportError, InputError) as err:
        parser.error(f"--backend {args.backend}: {err}")
    work = Path(args.out or tempfile.mkdtemp(prefix="umt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {} if args.kinetics_only else small_inputs_section(args, work)
    extra = kinetics_section(args, work)
    print(
        json.dumps(
            {
                "benchmark": "data_throughput",
                "clips_per_s": {k: round(v, 2) for k, v in results.items()},
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
