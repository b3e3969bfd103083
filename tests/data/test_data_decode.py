"""Decoding real encoded video: exact frame indices, containers, VFR, lying headers, bytes."""

from __future__ import annotations

import sys

import av
import numpy as np
import pytest
from data_videogen import make_lying_avi, read_number, write_pattern_video

from umt.data.decode import (
    PROBE_CACHE,
    VideoDecodeError,
    available_backends,
    get_decoder,
    probe_video,
    read_frames,
)

INDICES = [0, 7, 3, 3, 29, 15, 30, 12]


def numbers(frames: np.ndarray) -> list[int]:
    return [read_number(f) for f in frames]


@pytest.fixture(scope="module")
def h264(video_dir):
    return write_pattern_video(video_dir / "h264_31.mp4", 31, gop=8)


@pytest.mark.parametrize("backend", ["pyav", "pyav-all"])
def test_h264_exact_indices(h264, backend):
    frames = read_frames(h264, INDICES, backend=backend)
    assert frames.dtype == np.uint8 and frames.shape == (len(INDICES), 64, 64, 3)
    assert numbers(frames) == INDICES


def test_layout_tchw(h264):
    frames = read_frames(h264, [1, 2], backend="pyav", layout="TCHW")
    assert frames.shape == (2, 3, 64, 64)
    assert numbers(frames.transpose(0, 2, 3, 1)) == [1, 2]


def test_probe_counts(h264):
    info = probe_video(h264)
    assert info.num_frames == 31 and info.header_frames == 31
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(31 / 25, rel=1e-3)
    assert (info.width, info.height) == (64, 64)


@pytest.mark.parametrize(
    ("codec", "ext"),
    [("mpeg4", "avi"), ("libvpx-vp9", "webm"), ("libx264", "mkv"), ("libx264", "avi")],
)
def test_other_codecs_and_containers(video_dir, codec, ext):
    """libx264 in AVI has B-frames but no real pts in the container: must still be exact."""
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not in this PyAV build")
    path = write_pattern_video(video_dir / f"other_{codec}.{ext}", 33, codec=codec)
    info = probe_video(path)
    assert info.num_frames == 33
    if ext in ("webm", "mkv"):
        assert info.header_frames == 0  # Matroska has no frame count: the probe counted
    assert numbers(read_frames(path, [32, 0, 16, 9], backend="pyav")) == [32, 0, 16, 9]


def test_variable_frame_rate(video_dir):
    path = write_pattern_video(video_dir / "vfr.mp4", 30, vfr=True)
    info = probe_video(path)
    assert info.num_frames == 30
    gaps = np.diff(info.timestamps)
    assert gaps.max() > 3 * gaps.min()  # really variable
    idx = [0, 1, 2, 3, 13, 28, 29]
    assert numbers(read_frames(path, idx, backend="pyav")) == idx
    assert numbers(read_frames(path, idx, backend="pyav-all")) == idx


def test_header_frame_count_lies(video_dir):
    good = write_pattern_video(video_dir / "honest.avi", 20, codec="mpeg4")
    lying = make_lying_avi(good, video_dir / "lying.avi", claimed=1000)
    with av.open(str(lying)) as c:
        assert c.streams.video[0].frames == 1000  # the header really lies
    info = probe_video(lying)
    assert info.num_frames == 20 and info.header_frames == 1000 and info.header_is_wrong
    assert numbers(read_frames(lying, [19, 0, 10], backend="pyav")) == [19, 0, 10]
    with pytest.raises(VideoDecodeError, match=r"lying\.avi.*out of range.*20 frames"):
        read_frames(lying, [25], backend="pyav")


def test_truncated_faststart_mp4_counts_readable_frames(video_dir):
    full = write_pattern_video(video_dir / "faststart.mp4", 60, faststart=True, gop=10, noise=True)
    cut = video_dir / "faststart_cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    info = probe_video(cut)
    assert info.header_frames == 60
    assert 0 < info.num_frames < 60
    assert numbers(read_frames(cut, [0], backend="pyav")) == [0]
    with pytest.raises(VideoDecodeError, match="faststart_cut.mp4"):
        read_frames(cut, [59], backend="pyav")


def test_out_of_range_is_an_error_naming_the_file(h264):
    with pytest.raises(VideoDecodeError, match=r"h264_31\.mp4.*frame index 31 out of range"):
        read_frames(h264, [0, 31], backend="pyav")
    with pytest.raises(VideoDecodeError, match="out of range"):
        read_frames(h264, [-1], backend="pyav")


def test_decode_from_bytes(h264):
    data = h264.read_bytes()
    assert probe_video(data).num_frames == 31
    assert numbers(read_frames(data, [30, 2], backend="pyav")) == [30, 2]
    with pytest.raises(VideoDecodeError, match="empty"):
        read_frames(b"", [0], backend="pyav")


def test_probe_cache_is_per_file_version(video_dir):
    path = write_pattern_video(video_dir / "rewritten.mp4", 10)
    assert probe_video(path).num_frames == 10
    write_pattern_video(path, 14)  # new size/mtime -> new cache key
    assert probe_video(path).num_frames == 14
    PROBE_CACHE.clear()


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown video backend"):
        get_decoder("nope")


def test_auto_backend_works(h264):
    assert "pyav" in available_backends()
    assert numbers(read_frames(h264, [4, 8], backend="auto")) == [4, 8]


def test_torchcodec_without_ffmpeg_is_not_picked(h264, monkeypatch):
    """torchcodec releases import without FFmpeg and fail only on the first video: "auto" must
    then use PyAV, and asking for torchcodec by name must say what is missing."""
    import types

    fake_ops = types.ModuleType("torchcodec._core.ops")
    fake_ops._FFMPEG_AVAILABLE = False
    for name, module in {
        "torchcodec": types.ModuleType("torchcodec"),
        "torchcodec.decoders": types.ModuleType("torchcodec.decoders"),
        "torchcodec._core": types.ModuleType("torchcodec._core"),
        "torchcodec._core.ops": fake_ops,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delenv("UMT_VIDEO_BACKEND", raising=False)
    assert "torchcodec" not in available_backends()
    assert get_decoder("auto").name == "pyav"
    assert numbers(read_frames(h264, [4, 8], backend="auto")) == [4, 8]
    with pytest.raises(ImportError, match="cannot load the FFmpeg libraries"):
        get_decoder("torchcodec")


@pytest.mark.parametrize("backend", ["torchcodec", "decord"])
def test_optional_backends(h264, video_dir, backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed (or, for torchcodec, finds no FFmpeg libraries)")
    assert numbers(read_frames(h264, INDICES, backend=backend)) == INDICES
    assert probe_video(h264, backend=backend).num_frames == 31
    with pytest.raises(VideoDecodeError, match="out of range"):
        read_frames(h264, [31], backend=backend)
