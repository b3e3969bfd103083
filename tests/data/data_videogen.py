"""Helpers for the data tests: write small real videos whose frames encode their own index."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GRID = 4  # 4x4 blocks -> 16 bits of frame number


def pattern_frame(number: int, size: int = 64) -> np.ndarray:
    """uint8 [size, size, 3] whose 4x4 block grid spells ``number`` in binary."""
    block = size // GRID
    frame = np.full((size, size, 3), 16, np.uint8)
    for bit in range(GRID * GRID):
        if (number >> bit) & 1:
            r, c = divmod(bit, GRID)
            frame[r * block : (r + 1) * block, c * block : (c + 1) * block] = 235
    return frame


def read_number(frame: np.ndarray) -> int:
    """Inverse of :func:`pattern_frame` for a decoded [H, W, 3] frame."""
    size = frame.shape[0]
    block = size // GRID
    value = 0
    for bit in range(GRID * GRID):
        r, c = divmod(bit, GRID)
        centre = frame[
            r * block + block // 4 : (r + 1) * block - block // 4,
            c * block + block // 4 : (c + 1) * block - block // 4,
        ]
        if centre.mean() > 128:
            value |= 1 << bit
    return value


def write_pattern_video(
    path: Path,
    num_frames: int,
    codec: str = "libx264",
    fps: int = 25,
    size: int = 64,
    gop: int = 12,
    vfr: bool = False,
    faststart: bool = False,
    noise: bool = False,
) -> Path:
    """Encode frames 0..num_frames-1 (pattern frames) to ``path``."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(
            codec, rate=fps, options={"crf": "12"} if codec == "libx264" else {}
        )
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "mpeg4":
            stream.codec_context.bit_rate = 2_000_000
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        rng = np.random.default_rng(0)
        for i in range(num_frames):
            pixels = pattern_frame(i, size)
            if noise:  # incompressible texture: realistic packet sizes
                pixels = np.clip(
                    pixels.astype(int) + rng.integers(-20, 21, pixels.shape), 0, 255
                ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += 20 if i % 3 else 110  # irregular gaps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_lying_avi(src: Path, dst: Path, claimed: int = 1000) -> Path:
    """Copy an AVI, patching the header frame counts (avih + strh) to ``claimed``."""
    data = bytearray(src.read_bytes())
    strh = data.find(b"strh")
    avih = data.find(b"avih")
    data[strh + 8 + 32 : strh + 8 + 36] = struct.pack("<I", claimed)
    data[avih + 8 + 16 : avih + 8 + 20] = struct.pack("<I", claimed)
    dst.write_bytes(bytes(data))
    return dst


def make_fault_corpus(folder: Path) -> dict[str, Path]:
    """Broken inputs: truncated, zero-byte, text, audio-only, one-frame, missing."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_pattern_video(folder / "good_for_truncation.mp4", 24)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    audio = write_audio_only(folder / "audio_only.mp4")
    one = write_pattern_video(folder / "one_frame.mp4", 1)
    return {
        "truncated": truncated,
        "empty": empty,
        "text": text,
        "audio_only": audio,
        "one_frame": one,
        "missing": folder / "does_not_exist.mp4",
    }
