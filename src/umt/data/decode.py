"""Video decoding behind one small interface.

``read_frames(source, indices)`` returns the frames at the given *presentation-order* frame
indices as uint8 ``[T, H, W, 3]`` (or ``[T, 3, H, W]`` with ``layout="TCHW"``). ``source`` is a
path or the bytes of a file (e.g. a member of a tar shard).

Backends (``get_decoder(name)``):

* ``"pyav"`` (always available; the wheels bundle FFmpeg). Seeks to the keyframe before each
  wanted frame, decodes forward and stops after the last wanted one. Frames are mapped to
  indices by their pts, so variable-frame-rate files work. Frames that are not wanted and that
  no other frame references (non-reference B frames) are not decoded at all.
* ``"torchcodec"`` and ``"decord"`` (used only when installed).
* ``"auto"``: torchcodec when installed, else PyAV. decord is only used when asked for by name:
  it trusts the container index, which is wrong for some VFR and broken files.

``probe_video(source)`` counts frames by demuxing packets (no decoding), so a container that
lies about (or omits) its frame count still gives the true count. Results are cached per file
(path, size, mtime).

Indices past the end raise :class:`VideoDecodeError` naming the file; nothing is clamped.
"""

from __future__ import annotations

import bisect
import io
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

VideoSource = str | os.PathLike | bytes | bytearray | memoryview

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "VideoDecoder",
    "PyAVDecoder",
    "TorchCodecDecoder",
    "DecordDecoder",
    "available_backends",
    "get_decoder",
    "probe_video",
    "read_frames",
    "source_name",
]


class VideoDecodeError(RuntimeError):
    """A video could not be probed or decoded. The message names the file and the problem."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learned about the first video stream of a file.

    ``num_frames`` is counted from demuxed packets; ``header_frames`` is what the container
    claims (0 when it does not say). ``timestamps`` are presentation times in seconds, one per
    frame, in presentation order.
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    header_frames: int = 0
    codec: str = ""
    timestamps: tuple[float, ...] = ()
    # PyAV-internal seek index (presentation-order pts and keyframe positions).
    pts: tuple[int, ...] = field(default=(), repr=False)
    keyframes: tuple[int, ...] = field(default=(), repr=False)
    pts_reliable: bool = field(default=True, repr=False)

    @property
    def header_is_wrong(self) -> bool:
        """True when the container's own frame count is missing or disagrees with the count."""
        return self.header_frames != self.num_frames


def source_name(source: VideoSource, name: str | None = None) -> str:
    """A printable name for a source: the given name, the path, or ``<N bytes>``."""
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def _check_indices(indices: Sequence[int], num_frames: int, name: str) -> list[int]:
    out = [int(i) for i in indices]
    if not out:
        raise ValueError(f"{name}: no frame indices asked for")
    bad = [i for i in out if i < 0 or i >= num_frames]
    if bad:
        raise VideoDecodeError(
            name,
            f"frame index {bad[0]} out of range: the video has {num_frames} frames "
            f"(asked for {len(out)} indices, {len(bad)} out of range)",
        )
    return out


def _stack(frames: list[np.ndarray], layout: str) -> np.ndarray:
    arr = np.stack(frames, axis=0)  # [T, H, W, 3]
    if layout == "TCHW":
        arr = np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    elif layout != "THWC":
        raise ValueError(f"layout must be 'THWC' or 'TCHW', got {layout!r}")
    return arr


class VideoDecoder(Protocol):
    """The decoder interface: probe a file, read frames at indices."""

    name: str

    def probe(self, source: VideoSource, name: str | None = None) -> VideoInfo: ...

    def read(
        self,
        source: VideoSource,
        indices: Sequence[int],
        layout: str = "THWC",
        name: str | None = None,
    ) -> np.ndarray: ...


# --------------------------------------------------------------------------- probe cache
class _ProbeCache:
    """Small thread-safe LRU of ``VideoInfo`` keyed by (path, size, mtime_ns)."""

    def __init__(self, max_entries: int = 8192) -> None:
        self._data: OrderedDict[tuple, VideoInfo] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    @staticmethod
    def key(source: VideoSource, backend: str) -> tuple | None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return None
        try:
            st = os.stat(source)
        except OSError:
            return None
        return (backend, os.fspath(source), st.st_size, st.st_mtime_ns)

    def get(self, key: tuple | None) -> VideoInfo | None:
        if key is None:
            return None
        with self._lock:
            info = self._data.get(key)
            if info is not None:
                self._data.move_to_end(key)
            return info

    def put(self, key: tuple | None, info: VideoInfo) -> None:
        if key is None:
            return
        with self._lock:
            self._data[key] = info
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def probe(
        self, source: VideoSource, backend: str, compute: Callable[[], VideoInfo]
    ) -> VideoInfo:
        """The cached ``VideoInfo`` of ``source`` for ``backend``, or ``compute()`` stored."""
        key = self.key(source, backend)
        info = self.get(key)
        if info is None:
            info = compute()
            self.put(key, info)
        return info


PROBE_CACHE = _ProbeCache()


# --------------------------------------------------------------------------- sources
def _checked_source(source: VideoSource, name: str) -> bytes | str:
    """The bytes, or the path as a string, after the checks every backend needs (missing, a
    folder, empty); raises ``VideoDecodeError`` naming the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoDecodeError(name, "empty data (0 bytes)")
        return bytes(source)
    path = Path(source)
    if not path.exists():
        raise VideoDecodeError(name, "file not found")
    if path.is_dir():
        raise VideoDecodeError(name, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(name, "empty file (0 bytes)")
    return os.fspath(path)


# --------------------------------------------------------------------------- PyAV
def _open_av(source: VideoSource, name: str) -> Any:
    import av

    src = _checked_source(source, name)
    file: Any = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        container = av.open(file, mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(name, f"cannot open as a video container ({err})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(name, "no video stream (audio-only or not a video)")
    return container


_REFORMATTERS = threading.local()


def _to_rgb(frame: Any) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of a PyAV frame, reusing one swscale context per thread (about
    4x faster than ``frame.to_ndarray(format="rgb24")``, which builds a new one every call)."""
    cached = getattr(_REFORMATTERS, "rgb", None)
    if cached is None or cached[0] != os.getpid():  # never share one across a fork
        from av.video.reformatter import VideoReformatter

        cached = _REFORMATTERS.rgb = (os.getpid(), VideoReformatter())
    return cached[1].reformat(frame, format="rgb24", threads=1).to_ndarray()


class PyAVDecoder:
    """PyAV decoder with keyframe seeking and pts-based frame mapping.

    Args:
        mode: ``"seek"`` (seek to the keyframe before each wanted frame, decode forward, skip
            unreferenced frames) or ``"all"`` (decode every frame from the start, keep the
            wanted ones: the slow, simple baseline).
        threads: decoder threads per call (1 suits DataLoader workers; 0 lets FFmpeg choose).
    """

    name = "pyav"

    def __init__(self, mode: str = "seek", threads: int = 1) -> None:
        if mode not in ("seek", "all"):
            raise ValueError(f"PyAV decode mode must be 'seek' or 'all', got {mode!r}")
        self.mode = mode
        self.threads = threads

    # ---------------------------------------------------------------- probe
    def probe(self, source: VideoSource, name: str | None = None) -> VideoInfo:
        """Count frames by demuxing packets (no decoding); cached per file."""
        label = source_name(source, name)

        def compute() -> VideoInfo:
            container = _open_av(source, label)
            try:
                return self._probe_open(container, label)
            finally:
                container.close()

        return PROBE_CACHE.probe(source, self.name, compute)

    def _probe_open(self, container: Any, name: str) -> VideoInfo:
        import av

        stream = container.streams.video[0]
        entries: list[tuple[int, bool]] = []
        pts_reliable = True
        reorders = False  # any packet with pts != dts: the container stores real pts
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                if getattr(packet, "is_discard", False):
                    continue
                ts = packet.pts
                if ts is not None and packet.dts is not None and ts != packet.dts:
                    reorders = True
                if ts is None:
                    pts_reliable = False
                    ts = packet.dts
                if ts is None:
                    ts = entries[-1][0] + 1 if entries else 0
                entries.append((int(ts), bool(packet.is_keyframe)))
        except av.FFmpegError:
            # A damaged tail: keep what could be read; decoding will report what is missing.
            pass
        if not entries:
            raise VideoDecodeError(name, "no video frames in the file")
        entries.sort(key=lambda e: e[0])
        pts = tuple(e[0] for e in entries)
        if len(set(pts)) != len(pts):
            pts_reliable = False
        fmt = str(getattr(container.format, "name", "") or "")
        codec_name = str(stream.codec_context.name or "")
        if (
            not reorders
            and fmt.split(",")[0] in _NO_PTS_FORMATS
            and codec_name in _REORDERING_CODECS
        ):
            # e.g. H.264 with B-frames in AVI: packets carry decode-order stamps only, so
            # decoded frames cannot be mapped by pts. Decode sequentially instead.
            pts_reliable = False
        keyframes = tuple(i for i, e in enumerate(entries) if e[1]) or (0,)
        time_base = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        start = pts[0]
        timestamps = tuple(float((p - start) * time_base) for p in pts)
        n = len(pts)
        if n > 1:
            step = timestamps[-1] / (n - 1)
            duration = timestamps[-1] + step
            fps = float(rate) if rate else (n - 1) / timestamps[-1] if timestamps[-1] > 0 else 0.0
        else:
            fps = float(rate) if rate else 0.0
            duration = 1.0 / fps if fps else 0.0
        ctx = stream.codec_context
        return VideoInfo(
            num_frames=n,
            fps=fps,
            duration=duration,
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            header_frames=int(stream.frames or 0),
            codec=str(ctx.name or ""),
            timestamps=timestamps,
            pts=pts,
            keyframes=keyframes,
            pts_reliable=pts_reliable,
        )

    # ---------------------------------------------------------------- read
    def read(
        self,
        source: VideoSource,
        indices: Sequence[int],
        layout: str = "THWC",
        name: str | None = None,
    ) -> np.ndarray:
        """Frames at ``indices`` (presentation order) as uint8 ``[T, H, W, 3]`` / ``[T, 3, H, W]``."""
        return self.read_sampled(source, lambda info: indices, layout=layout, name=name)

    def read_sampled(
        self,
        source: VideoSource,
        choose: Callable[[VideoInfo], Sequence[int]],
        layout: str = "THWC",
        name: str | None = None,
    ) -> np.ndarray:
        """Open once, probe (cached), let ``choose(info)`` pick the indices, read them."""
        import av

        label = source_name(source, name)
        key = PROBE_CACHE.key(source, self.name)
        info = PROBE_CACHE.get(key)
        container = _open_av(source, label)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE" if self.threads != 1 else "NONE"
            stream.thread_count = self.threads
            if info is None:
                try:
                    info = self._probe_open(container, label)
                finally:
                    container.seek(0, stream=stream, backward=True)
                PROBE_CACHE.put(key, info)
            wanted = _check_indices(choose(info), info.num_frames, label)
            if self.mode == "all":
                frames = self._read_all(container, stream, wanted, label, info, stop_early=False)
            else:
                try:
                    if not info.pts_reliable:
                        raise _NeedSequential
                    frames = self._read_seek(container, stream, wanted, info, label)
                except _NeedSequential:
                    stream.codec_context.skip_frame = "DEFAULT"
                    container.seek(0, stream=stream, backward=True)
                    frames = self._read_all(container, stream, wanted, label, info, True)
        except av.FFmpegError as err:
            raise VideoDecodeError(label, f"decoding failed ({err})") from None
        finally:
            container.close()
        return _stack(frames, layout)

    def _read_all(
        self,
        container: Any,
        stream: Any,
        indices: Sequence[int],
        name: str,
        info: VideoInfo | None,
        stop_early: bool,
    ) -> list[np.ndarray]:
        """Decode sequentially from the start, counting frames, keeping the wanted ones."""
        if info is not None:
            _check_indices(indices, info.num_frames, name)
        wanted = set(int(i) for i in indices)
        last = max(wanted)
        kept: dict[int, np.ndarray] = {}
        count = 0
        for frame in container.decode(stream):
            if count in wanted:
                kept[count] = _to_rgb(frame)
            count += 1
            if stop_early and count > last:
                break
        if stop_early and len(kept) == len(wanted):
            return [kept[int(i)] for i in indices]
        _check_indices(indices, count, name)
        return [kept[int(i)] for i in indices]

    def _read_seek(
        self,
        container: Any,
        stream: Any,
        wanted: list[int],
        info: VideoInfo,
        name: str,
    ) -> list[np.ndarray]:
        pts = info.pts
        index_of = {p: i for i, p in enumerate(pts)}
        keyframes = info.keyframes
        remaining = sorted(set(wanted))
        wanted_pts = {pts[i] for i in remaining}
        kept: dict[int, np.ndarray] = {}
        ctx = stream.codec_context

        def keyframe_before(i: int) -> int:
            return keyframes[max(bisect.bisect_right(keyframes, i) - 1, 0)]

        head = 0  # position in `remaining` of the first frame not yet decoded
        sent = -1  # highest frame index whose packet was sent to the decoder
        packets = None
        seek_key = -1
        seek_target = -1
        last_out = -1
        first_after_seek = False
        while head < len(remaining):
            target = remaining[head]
            key = keyframe_before(target)
            if packets is None or key > max(sent, seek_key):
                container.seek(pts[key], stream=stream, backward=True, any_frame=False)
                packets = container.demux(stream)
                seek_key, seek_target, first_after_seek = key, target, True
            packet = next(packets, None)
            if packet is None:
                break
            is_flush = packet.size == 0
            if not is_flush:
                if packet.pts is None:
                    raise _NeedSequential
                pos = index_of.get(packet.pts)
                if pos is not None:
                    sent = max(sent, pos)
                # Frames nobody asked for and nobody references need not be decoded at all.
                ctx.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
            else:
                ctx.skip_frame = "DEFAULT"
            for frame in ctx.decode(None if is_flush else packet):
                idx = index_of.get(frame.pts) if frame.pts is not None else None
                if idx is None:
                    raise _NeedSequential
                if first_after_seek and idx > seek_target:
                    raise _NeedSequential  # the seek overshot; be safe
                if not first_after_seek and idx <= last_out:
                    raise _NeedSequential  # output not in presentation order: pts are unusable
                first_after_seek = False
                last_out = idx
                if frame.pts in wanted_pts and idx not in kept:
                    kept[idx] = _to_rgb(frame)
            while head < len(remaining) and remaining[head] in kept:
                head += 1
            if is_flush:
                break
        ctx.skip_frame = "DEFAULT"
        missing = [i for i in remaining if i not in kept]
        if missing:
            raise VideoDecodeError(
                name,
                f"frame {missing[0]} could not be decoded (the file has {info.num_frames} frame "
                f"packets; {len(missing)} of the wanted frames are missing — truncated or corrupt?)",
            )
        return [kept[i] for i in wanted]


_NO_PTS_FORMATS = {"avi", "h264", "hevc", "m4v", "mpegvideo", "flv"}
_REORDERING_CODECS = {
    "h264",
    "hevc",
    "mpeg4",
    "mpeg2video",
    "mpeg1video",
    "vc1",
    "msmpeg4v3",
    "wmv3",
}


class _NeedSequential(Exception):
    """Internal: the pts index cannot be trusted for seeking; decode sequentially instead."""


# --------------------------------------------------------------------------- torchcodec
def _torchcodec_problem() -> str | None:
    """Why torchcodec cannot decode video here, or None when it can."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as err:  # noqa: BLE001 - missing package or (older releases) missing FFmpeg
        return (
            f"torchcodec cannot be imported ({type(err).__name__}: {err}); pip install torchcodec"
        )
    # Newer releases import without FFmpeg (for their image decoders) and only fail when a video
    # is opened: ask whether their FFmpeg-based ops loaded.
    ops = sys.modules.get("torchcodec._core.ops")
    if ops is not None and getattr(ops, "_FFMPEG_AVAILABLE", True) is False:
        return (
            "torchcodec is installed but cannot load the FFmpeg libraries it needs (install "
            "FFmpeg 4-8 shared libraries, e.g. apt install ffmpeg)"
        )
    return None


def _torchcodec_available() -> bool:
    return _torchcodec_problem() is None


class TorchCodecDecoder:
    """torchcodec's ``VideoDecoder`` with exact seeking (scans the file once per open)."""

    name = "torchcodec"

    def __init__(self, threads: int = 1) -> None:
        problem = _torchcodec_problem()
        if problem is not None:
            raise ImportError(problem)
        self.threads = threads

    def _open(self, source: VideoSource, name: str) -> Any:
        from torchcodec.decoders import VideoDecoder as _TCDecoder

        src = _checked_source(source, name)
        try:
            return _TCDecoder(
                src, dimension_order="NHWC", seek_mode="exact", num_ffmpeg_threads=self.threads
            )
        except TypeError:
            return _TCDecoder(src, dimension_order="NHWC")
        except Exception as err:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError
            raise VideoDecodeError(name, f"cannot open as a video ({err})") from None

    def probe(self, source: VideoSource, name: str | None = None) -> VideoInfo:
        label = source_name(source, name)
        return PROBE_CACHE.probe(
            source, self.name, lambda: self._info(self._open(source, label), label)
        )

    @staticmethod
    def _info(decoder: Any, name: str) -> VideoInfo:
        meta = decoder.metadata
        n = int(getattr(meta, "num_frames_from_content", None) or meta.num_frames or 0)
        if n <= 0:
            n = len(decoder)
        if n <= 0:
            raise VideoDecodeError(name, "no video frames in the file")
        fps = float(meta.average_fps or 0.0)
        return VideoInfo(
            num_frames=n,
            fps=fps,
            duration=float(meta.duration_seconds or (n / fps if fps else 0.0)),
            width=int(meta.width or 0),
            height=int(meta.height or 0),
            header_frames=int(getattr(meta, "num_frames_from_header", None) or 0),
            codec=str(getattr(meta, "codec", "") or ""),
        )

    def read(
        self,
        source: VideoSource,
        indices: Sequence[int],
        layout: str = "THWC",
        name: str | None = None,
    ) -> np.ndarray:
        label = source_name(source, name)
        decoder = self._open(source, label)
        wanted = _check_indices(indices, self._info(decoder, label).num_frames, label)
        try:
            batch = decoder.get_frames_at(indices=wanted)
        except TypeError:
            batch = decoder.get_frames_at(wanted)
        except Exception as err:  # noqa: BLE001
            raise VideoDecodeError(label, f"decoding failed ({err})") from None
        data = batch.data if hasattr(batch, "data") else batch
        arr = data.numpy()  # [T, H, W, 3]
        return _stack(list(arr), layout)


# --------------------------------------------------------------------------- decord
def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


class DecordDecoder:
    """decord / decord2 ``VideoReader``. Trusts the container index (not for VFR/broken files)."""

    name = "decord"

    def __init__(self, threads: int = 1) -> None:
        if not _decord_available():
            raise ImportError("decord is not installed (pip install decord2 or decord)")
        self.threads = threads

    def _open(self, source: VideoSource, name: str) -> Any:
        import decord

        checked = _checked_source(source, name)
        src: Any = io.BytesIO(checked) if isinstance(checked, bytes) else checked
        try:
            return decord.VideoReader(src, ctx=decord.cpu(0), num_threads=self.threads)
        except Exception as err:  # noqa: BLE001 - decord raises DECORDError
            raise VideoDecodeError(name, f"cannot open as a video ({err})") from None

    def probe(self, source: VideoSource, name: str | None = None) -> VideoInfo:
        label = source_name(source, name)

        def compute() -> VideoInfo:
            reader = self._open(source, label)
            n = len(reader)
            if n <= 0:
                raise VideoDecodeError(label, "no video frames in the file")
            fps = float(reader.get_avg_fps() or 0.0)
            h, w = reader[0].shape[:2]
            return VideoInfo(n, fps, n / fps if fps else 0.0, int(w), int(h), header_frames=n)

        return PROBE_CACHE.probe(source, self.name, compute)

    def read(
        self,
        source: VideoSource,
        indices: Sequence[int],
        layout: str = "THWC",
        name: str | None = None,
    ) -> np.ndarray:
        label = source_name(source, name)
        reader = self._open(source, label)
        wanted = _check_indices(indices, len(reader), label)
        try:
            arr = reader.get_batch(wanted).asnumpy()
        except Exception as err:  # noqa: BLE001
            raise VideoDecodeError(label, f"decoding failed ({err})") from None
        return _stack(list(arr), layout)


# --------------------------------------------------------------------------- factory
def available_backends() -> list[str]:
    """Names of the backends that can be used here, best first."""
    names = []
    if _torchcodec_available():
        names.append("torchcodec")
    names.append("pyav")
    if _decord_available():
        names.append("decord")
    return names


def get_decoder(name: str = "auto", **kwargs: Any) -> VideoDecoder:
    """A decoder by name: ``"auto"``, ``"pyav"``, ``"pyav-all"``, ``"torchcodec"``, ``"decord"``.

    ``"auto"`` honours the ``UMT_VIDEO_BACKEND`` environment variable, else picks torchcodec
    when installed and PyAV otherwise.
    """
    key = name.lower()
    if key == "auto":
        key = os.environ.get("UMT_VIDEO_BACKEND", "").lower() or (
            "torchcodec" if _torchcodec_available() else "pyav"
        )
    if key == "pyav":
        return PyAVDecoder(**kwargs)
    if key in ("pyav-all", "pyav_all"):
        return PyAVDecoder(mode="all", **kwargs)
    if key == "torchcodec":
        return TorchCodecDecoder(**kwargs)
    if key in ("decord", "decord2"):
        return DecordDecoder(**kwargs)
    raise ValueError(
        f"unknown video backend {name!r}; choose from auto, pyav, pyav-all, torchcodec, decord"
    )


def probe_video(source: VideoSource, backend: str = "pyav", name: str | None = None) -> VideoInfo:
    """Frame count, fps, duration and size of a video (counted, not read from the header)."""
    return get_decoder(backend).probe(source, name=name)


def read_frames(
    source: VideoSource,
    indices: Sequence[int],
    backend: str = "auto",
    layout: str = "THWC",
    name: str | None = None,
) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` (``layout="TCHW"``: ``[T, 3, H, W]``) at ``indices``."""
    return get_decoder(backend).read(source, indices, layout=layout, name=name)
