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

``probe_video(source)`` counts frames without decoding. An MP4/MOV whose sample table checks out
(one entry per frame, constant frame duration, agreeing with duration x rate, every sample inside
the file) is counted from that table, reading only the header and a few packets at both ends;
any other file is counted by demuxing every packet, so a container that lies about (or omits)
its frame count, or a truncated file, still gives the true count. Results are cached per file
(path, size, mtime) in an LRU bounded by bytes (``PROBE_CACHE.max_bytes``, 32 MiB per process).

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

from umt.data.faults import VideoFault
from umt.data.formats.records import IMAGE_EXTENSIONS
from umt.errors import InputError, MachineError

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
    "decode_to_end",
    "frame_files",
    "read_image",
    "source_name",
]


class VideoDecodeError(MachineError):
    """A video could not be probed or decoded. The message names the file and the problem."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learned about the first video stream of a file.

    ``num_frames`` is counted from demuxed packets, or taken from an MP4/MOV sample table that
    checks out (``from_index``); ``header_frames`` is what the container claims (0 when it does
    not say). ``truncated``: the container's index points past the end of the file.
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    header_frames: int = 0
    codec: str = ""
    # PyAV-internal seek index: presentation-order pts (a ``range`` for a constant frame rate
    # read from the sample table) and keyframe positions, in units of ``time_base``.
    pts: Sequence[int] = field(default=(), repr=False)
    keyframes: tuple[int, ...] = field(default=(), repr=False)
    pts_reliable: bool = field(default=True, repr=False)
    time_base: Fraction = field(default=Fraction(0), repr=False)
    from_index: bool = False
    truncated: bool = False

    @property
    def header_is_wrong(self) -> bool:
        """True when the container's own frame count is missing or disagrees with the count."""
        return self.header_frames != self.num_frames

    @property
    def timestamps(self) -> tuple[float, ...]:
        """Presentation times in seconds from the first frame, one per frame (``()`` when the
        backend gives no per-frame times)."""
        if not self.pts:
            return ()
        start, base = self.pts[0], self.time_base
        return tuple(float((p - start) * base) for p in self.pts)

    def nbytes(self) -> int:
        """Estimated memory held by this object, its per-frame arrays included."""
        size = 1024  # the object, its strings and its cache-key tuple
        for seq in (self.pts, self.keyframes):
            if isinstance(seq, range):
                size += sys.getsizeof(seq)
            else:  # a tuple of pointers plus one int object (<= 32 bytes) per element
                size += sys.getsizeof(seq) + 32 * len(seq)
        return size


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
        raise InputError(f"{name}: no frame indices asked for")
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
        raise InputError(f"layout must be 'THWC' or 'TCHW', got {layout!r}")
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
PROBE_CACHE_BYTES = 32 * 2**20


class _ProbeCache:
    """Thread-safe LRU of ``VideoInfo`` keyed by (backend, path, size, mtime_ns), bounded by
    the estimated bytes of its entries (:meth:`VideoInfo.nbytes`), not by their number.

    The least recently used entries go first; an entry larger than the whole budget is not
    kept. Each process (each DataLoader worker) has its own cache.
    """

    def __init__(self, max_bytes: int = PROBE_CACHE_BYTES) -> None:
        self._data: OrderedDict[tuple, tuple[VideoInfo, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = int(max_bytes)
        self.nbytes = 0  # estimated bytes held now

    def __len__(self) -> int:
        return len(self._data)

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
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
            return entry[0]

    def put(self, key: tuple | None, info: VideoInfo) -> None:
        if key is None:
            return
        size = info.nbytes() + sys.getsizeof(key[1])
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return
            self._data[key] = (info, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self.nbytes -= freed

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0

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
def _source_size(source: VideoSource) -> int:
    """Bytes in the source (-1 when unknown)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    try:
        return os.path.getsize(source)
    except OSError:
        return -1


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
            raise InputError(f"PyAV decode mode must be 'seek' or 'all', got {mode!r}")
        self.mode = mode
        self.threads = threads

    # ---------------------------------------------------------------- probe
    def probe(self, source: VideoSource, name: str | None = None) -> VideoInfo:
        """Count frames by demuxing packets (no decoding); cached per file."""
        label = source_name(source, name)

        def compute() -> VideoInfo:
            container = _open_av(source, label)
            try:
                return self._probe_open(container, label, _source_size(source))
            finally:
                container.close()

        return PROBE_CACHE.probe(source, self.name, compute)

    def _probe_open(self, container: Any, name: str, size: int) -> VideoInfo:
        """The ``VideoInfo`` of an open container: from its sample table when that can be
        trusted (:meth:`_probe_by_index`), else by demuxing every packet."""
        info = self._probe_by_index(container, size)
        if info is None:
            info = self._probe_by_demux(container, name, size)
        return info

    def _probe_by_index(self, container: Any, size: int) -> VideoInfo | None:
        """Frame count and pts grid from an MP4/MOV sample table, or ``None`` when the table
        cannot be trusted.

        Trusted only when: the format is MP4/MOV; ``stream.frames`` > 0 equals the number of
        index entries; no entry is discarded (edit lists) and every sample lies inside the
        file (not truncated); decode timestamps are evenly spaced (constant frame rate); the
        frame count agrees with duration x rate within one frame; and the pts of the packets
        at both ends of the stream lie on that grid, the last at its end. Reads the header,
        the first packets and the last GOP's packets, never the whole file.
        """
        import av

        stream = container.streams.video[0]
        fmt = str(getattr(container.format, "name", "") or "")
        n = int(stream.frames or 0)
        if fmt.split(",")[0] != "mov" or n <= 0 or size <= 0:
            return None
        try:
            entries = stream.index_entries
        except AttributeError:  # PyAV < 17 does not expose the index
            return None
        if len(entries) != n:
            return None
        dts, keyframes = [], []
        for position, entry in enumerate(entries):
            if entry.is_discard or entry.pos < 0 or entry.pos + entry.size > size:
                return None
            dts.append(entry.timestamp)
            if entry.is_keyframe:
                keyframes.append(position)
        step = dts[1] - dts[0] if n > 1 else int(stream.duration or 0)
        if step <= 0 or any(b - a != step for a, b in zip(dts, dts[1:])):
            return None
        time_base = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or stream.duration is None:
            return None
        if abs(n - float(stream.duration * time_base * rate)) > 1.0:
            return None
        try:
            head = [p.pts for _, p in zip(range(min(n, 64)), _video_packets(container, stream))]
            container.seek(dts[keyframes[-1]] if keyframes else dts[-1], stream=stream)
            tail = [p.pts for p in _video_packets(container, stream)]
            container.seek(0, stream=stream, backward=True)  # the demux probe starts over
        except av.FFmpegError:
            return None
        if not head or not tail or None in head or None in tail:
            return None
        start = min(head)
        pts = range(start, start + n * step, step)
        if max(tail) != pts[-1] or any(p not in pts for p in head + tail):
            return None
        if len(set(head)) != len(head) or len(set(tail)) != len(tail):
            return None
        ctx = stream.codec_context
        return VideoInfo(
            num_frames=n,
            fps=float(rate),
            duration=float(n * step * time_base),
            width=int(ctx.width or 0),
            height=int(ctx.height or 0),
            header_frames=n,
            codec=str(ctx.name or ""),
            pts=pts,
            keyframes=tuple(keyframes) or (0,),
            time_base=time_base,
            from_index=True,
        )

    def _probe_by_demux(self, container: Any, name: str, size: int) -> VideoInfo:
        """Count frames by demuxing every packet of the stream (no decoding)."""
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
        n = len(pts)
        if n > 1:
            last = float((pts[-1] - pts[0]) * time_base)
            duration = last + last / (n - 1)
            fps = float(rate) if rate else (n - 1) / last if last > 0 else 0.0
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
            pts=pts,
            keyframes=keyframes,
            pts_reliable=pts_reliable,
            time_base=time_base,
            truncated=_index_past_end(stream, size),
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
                    info = self._probe_open(container, label, _source_size(source))
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

    def decode_to_end(self, source: VideoSource, start: int = 0, name: str | None = None) -> int:
        """Decode every frame from presentation index ``start`` to the end of the stream (no
        colour conversion, nothing kept); returns how many frames from ``start`` on decoded.

        Decoding begins at the keyframe before ``start`` (from the first frame when the pts
        cannot be trusted). Raises :class:`VideoDecodeError` when decoding fails or fewer
        frames come out than the probe counted (a truncated or corrupt stream).
        """
        import av

        label = source_name(source, name)
        info = self.probe(source, name=label)
        n = info.num_frames
        start = min(max(int(start), 0), n - 1)
        lookup = _pts_lookup(info.pts) if info.pts_reliable and info.pts else None
        if lookup is None:
            start = 0
        container = _open_av(source, label)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE" if self.threads != 1 else "NONE"
            stream.thread_count = self.threads
            decoded = self._count_decoded(container, stream, info, start, lookup)
            if decoded is None:  # a frame's pts is not in the index: count from the start
                container.seek(0, stream=stream, backward=True)
                start = 0
                decoded = self._count_decoded(container, stream, info, 0, None)
        except av.FFmpegError as err:
            raise VideoDecodeError(label, f"decoding failed ({err})") from None
        finally:
            container.close()
        expected = n - start
        if decoded is None or decoded < expected:
            raise VideoDecodeError(
                label,
                f"only {decoded or 0} of the {expected} frames from frame {start} on could be "
                f"decoded (the file has {n} frame packets — truncated or corrupt?)",
            )
        return decoded

    @staticmethod
    def _count_decoded(
        container: Any,
        stream: Any,
        info: VideoInfo,
        start: int,
        lookup: Callable[[int], int | None] | None,
    ) -> int | None:
        """Frames at or after ``start`` that decode; ``None`` when one cannot be placed."""
        if start > 0 and lookup is not None:
            keyframes = info.keyframes
            key = keyframes[max(bisect.bisect_right(keyframes, start) - 1, 0)]
            container.seek(info.pts[key], stream=stream, backward=True, any_frame=False)
        decoded = 0
        for frame in container.decode(stream):
            if start == 0:
                decoded += 1
                continue
            idx = lookup(frame.pts) if lookup is not None and frame.pts is not None else None
            if idx is None:
                return None
            decoded += idx >= start
        return decoded

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
        index_of = _pts_lookup(pts)
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
                pos = index_of(packet.pts)
                if pos is not None:
                    sent = max(sent, pos)
                # Frames nobody asked for and nobody references need not be decoded at all.
                ctx.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
            else:
                ctx.skip_frame = "DEFAULT"
            for frame in ctx.decode(None if is_flush else packet):
                idx = index_of(frame.pts) if frame.pts is not None else None
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


def _video_packets(container: Any, stream: Any) -> Any:
    """The non-empty packets of ``stream`` from the current position (flush packets dropped)."""
    return (p for p in container.demux(stream) if p.size > 0)


def _index_past_end(stream: Any, size: int) -> bool:
    """True when the container's index lists data beyond the file's ``size`` bytes."""
    if size <= 0:
        return False
    try:
        entries = stream.index_entries
        return any(e.pos + e.size > size for e in entries)
    except AttributeError:
        return False


def _pts_lookup(pts: Sequence[int]) -> Callable[[int], int | None]:
    """``pts -> presentation index`` (``None`` when not a frame's pts); O(1) for a range."""
    if isinstance(pts, range):
        return lambda p: pts.index(p) if p in pts else None
    index_of = {p: i for i, p in enumerate(pts)}
    return index_of.get


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
    raise InputError(
        f"unknown video backend {name!r}; choose from auto, pyav, pyav-all, torchcodec, decord"
    )


def probe_video(source: VideoSource, backend: str = "pyav", name: str | None = None) -> VideoInfo:
    """Frame count, fps, duration and size of a video (counted, not read from the header)."""
    return get_decoder(backend).probe(source, name=name)


def decode_to_end(
    source: VideoSource, start: int = 0, backend: str = "pyav", name: str | None = None
) -> int:
    """Decode every frame of ``source`` from frame ``start`` to the end of the stream.

    Returns how many frames from ``start`` on decoded; raises :class:`VideoDecodeError` naming
    the file when one does not (``umt data check`` uses it to find truncated files). PyAV
    decodes without colour conversion; other backends read the frames in chunks of 16.
    """
    decoder = get_decoder(backend)
    if hasattr(decoder, "decode_to_end"):
        return decoder.decode_to_end(source, start, name=name)
    label = source_name(source, name)
    n = decoder.probe(source, name=label).num_frames
    start = min(max(int(start), 0), n - 1)
    for low in range(start, n, 16):
        decoder.read(source, list(range(low, min(low + 16, n))), name=label)
    return n - start


def read_frames(
    source: VideoSource,
    indices: Sequence[int],
    backend: str = "auto",
    layout: str = "THWC",
    name: str | None = None,
) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` (``layout="TCHW"``: ``[T, 3, H, W]``) at ``indices``."""
    return get_decoder(backend).read(source, indices, layout=layout, name=name)


# --------------------------------------------------------------------------- images
_FRAME_FILE_CACHE: dict[str, list[str]] = {}


def frame_files(folder: str) -> list[str]:
    """The image files of an extracted-frame folder (``img_00001.jpg`` ...), sorted; cached."""
    files = _FRAME_FILE_CACHE.get(folder)
    if files is None:
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if len(_FRAME_FILE_CACHE) > 100_000:
            _FRAME_FILE_CACHE.clear()
        _FRAME_FILE_CACHE[folder] = files
    return files


def read_image(source: str | bytes, name: str) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise VideoFault(name, "file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise VideoFault(name, f"cannot read image ({err})") from None
