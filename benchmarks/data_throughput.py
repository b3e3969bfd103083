"""Decoding throughput: clips/s per backend, and seek-and-decode vs decode-everything.

Run: ``python benchmarks/data_throughput.py [--seconds 3] [--out DIR]``. Writes the synthetic
dataset and a 10 s, 30 fps, 320x240 H.264 clip (GOP 30 and 60, B-frames, like camera/web
files) into a temporary folder, samples 8 frames per clip (training sparse sampling) and
prints a table plus a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from umt.data import VideoDataset, ensure_synthetic_dataset, make_generator, sample_seed
from umt.data.clip_spec import ClipSpec
from umt.data.decode import PROBE_CACHE, available_backends, get_decoder
from umt.data.sampling import sparse_indices


def write_long_clip(
    path: Path, frames: int = 300, gop: int = 30, width: int = 320, height: int = 240
) -> Path:
    """Smooth moving gradients + texture + a moving object + sensor noise, libx264 crf 23."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.kron(rng.normal(0, 1, (height // 8 + 2, width // 8 + 2, 1)), np.ones((8, 8, 1)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=30, options={"g": str(gop), "crf": "23", "preset": "medium"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = 128 + 60 * np.sin((xx + 3 * i) / 37.0)[..., None] * np.array([1, 0.5, 0.2])
            img = img + 40 * np.cos((yy - 2 * i) / 23.0)[..., None]
            img = img + 20 * texture[:height, (i // 2) % 16 : (i // 2) % 16 + width]
            cx, cy = int(40 + i * 0.8) % width, int(120 + 60 * np.sin(i / 20))
            img[max(cy - 20, 0) : cy + 20, max(cx - 20, 0) : cx + 20] = (220, 30, 30)
            img = np.clip(img + rng.normal(0, 4, (height, width, 1)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def clips_per_second(backend: str, paths: list[Path], num_frames: int, seconds: float) -> float:
    decoder = get_decoder(backend)
    for p in paths[:4]:
        decoder.probe(p)  # probes are cached in real training too
    gen = make_generator(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        path = paths[done % len(paths)]
        n = decoder.probe(path).num_frames
        decoder.read(path, sparse_indices(n, num_frames, True, gen))
        done += 1
    return done / (time.perf_counter() - start)


def official_clips_per_second(path: Path, num_frames: int, seconds: float) -> float:
    """The official UMT/VideoMAE PyAV path: decode every frame, convert every frame to RGB,
    then keep the sampled ones."""
    import av

    n = get_decoder("pyav").probe(path).num_frames
    gen = make_generator(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        with av.open(str(path)) as container:
            frames = [f.to_rgb().to_ndarray() for f in container.decode(video=0)]
        np.stack([frames[i] for i in sparse_indices(n, num_frames, True, gen)])
        done += 1
    return done / (time.perf_counter() - start)


def dataset_clips_per_second(root: Path, seconds: float) -> float:
    ds = VideoDataset(
        root / "train.csv", clip=ClipSpec(num_frames=8, input_size=64), backend="pyav"
    )
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ds[done % len(ds)]
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument(
        "--out", default=None, help="folder for the test videos (default: temporary)"
    )
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="umt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
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
        rate = clips_per_second(backend, synth_paths, 8, args.seconds)
        results[f"synthetic_16f_64px/{backend}"] = rate
        print(f"{'synthetic 16f 64x64':<32} {backend:<12} {rate:9.1f}")
    for gop, path in long_clips.items():
        for backend in backends:
            rate = clips_per_second(backend, [path], 8, args.seconds)
            results[f"long_300f_320x240_gop{gop}/{backend}"] = rate
            print(f"{f'300f 320x240 GOP {gop}':<32} {backend:<12} {rate:9.1f}")
        rate = official_clips_per_second(path, 8, args.seconds)
        results[f"long_300f_320x240_gop{gop}/official-pyav"] = rate
        print(f"{f'300f 320x240 GOP {gop}':<32} {'official':<12} {rate:9.1f}")
        seek = results[f"long_300f_320x240_gop{gop}/pyav"]
        speedup = seek / results[f"long_300f_320x240_gop{gop}/pyav-all"]
        results[f"speedup_seek_vs_all_gop{gop}"] = speedup
        print(
            f"  seek-and-decode / decode-everything, wanted frames converted (GOP {gop}): {speedup:.2f}x"
        )
        speedup = seek / rate
        results[f"speedup_seek_vs_official_gop{gop}"] = speedup
        print(
            f"  seek-and-decode / official decode-and-convert-everything (GOP {gop}): {speedup:.2f}x"
        )
    rate = dataset_clips_per_second(synth, args.seconds)
    results["dataset_getitem_synthetic_8f_64px"] = rate
    print(f"VideoDataset[i] (decode + pretrain aug, 8x64x64): {rate:.1f} clips/s per process")
    _ = sample_seed  # the dataset seeds each sample from (seed, epoch, index)
    print(
        json.dumps(
            {
                "benchmark": "data_throughput",
                "clips_per_s": {k: round(v, 2) for k, v in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
