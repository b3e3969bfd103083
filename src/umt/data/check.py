"""``umt data check``: find the videos of an annotation file (or the videos named) that
training could not use.

Each video is probed (frame count), then decoded the way training reads it (one training draw
and the centred test view of the chosen sampling) and from its last :data:`TAIL_FRAMES`
frames to the end of the stream, which finds truncated files; ``thorough=True`` decodes every
frame instead of the tail. A folder of extracted frames (``img_00001.jpg`` ...) is read the
same way; a folder without frame images is reported as a directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TextIO

from umt.errors import InputError

__all__ = [
    "TAIL_FRAMES",
    "CheckReport",
    "CheckOptionError",
    "validate_check_options",
    "check_video",
    "check_annotations",
    "format_report",
]

TAIL_FRAMES = 8  # the last frames every check decodes (covers B-frames after the last P)


@dataclass
class CheckReport:
    """Result of a check: how many were tried, and ``(path, reason)`` for the bad ones."""

    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        return f"{self.checked} checked, {len(self.bad)} bad"


class CheckOptionError(InputError):
    """A check option that cannot work (a usage error, not a bad video). Names the option."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


def validate_check_options(
    num_frames: int = 8,
    sampling: str = "sparse",
    frame_stride: int = 4,
    min_frames: int | None = None,
    backend: str = "pyav",
    workers: int = 4,
) -> None:
    """Raise :class:`CheckOptionError` for the first option a check cannot run with (a
    non-positive count, an unknown sampling, an unknown or uninstalled backend)."""
    from umt.data.decode import available_backends, get_decoder
    from umt.data.sampling import SAMPLING_NAMES

    if num_frames < 1:
        raise CheckOptionError("num_frames", f"must be at least 1 frame per clip, got {num_frames}")
    if sampling not in SAMPLING_NAMES:
        raise CheckOptionError(
            "sampling", f"unknown sampling {sampling!r}; choose from {', '.join(SAMPLING_NAMES)}"
        )
    if frame_stride < 1:
        raise CheckOptionError("frame_stride", f"must be at least 1, got {frame_stride}")
    if min_frames is not None and min_frames < 1:
        raise CheckOptionError(
            "min_frames", f"must be at least 1, got {min_frames} (or leave it out)"
        )
    if workers < 1:
        raise CheckOptionError("workers", f"must be at least 1, got {workers}")
    try:
        get_decoder(backend)
    except ValueError as err:
        raise CheckOptionError("backend", str(err)) from None
    except ImportError as err:
        raise CheckOptionError(
            "backend",
            f"{backend!r} cannot be used here: {err}; "
            f"use one of: {', '.join(available_backends())}",
        ) from None


def _check_frame_folder(path: str, loaders: Sequence, thorough: bool) -> None:
    """Read a frame folder's training and test views and its last (or every) frame image."""
    from umt.data.decode import frame_files, read_image
    from umt.data.sampling import make_generator

    for loader in loaders:  # also reports an empty folder and a too-short one
        loader.frames(path, path, make_generator(0), None)
    files = frame_files(path)
    first = 0 if thorough else max(0, len(files) - TAIL_FRAMES)
    for file in files[first:]:
        read_image(os.path.join(path, file), path)


def check_video(
    path: str,
    num_frames: int = 8,
    sampling: str = "sparse",
    frame_stride: int = 4,
    min_frames: int | None = None,
    backend: str = "pyav",
    thorough: bool = False,
) -> str | None:
    """``None`` when training could read ``path``, else the reason it could not.

    Probes the video, decodes a training view and the centred test view, then every frame
    from the last :data:`TAIL_FRAMES` to the end (``thorough``: every frame of the stream).
    """
    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import ClipLoader
    from umt.data.decode import VideoDecodeError, decode_to_end
    from umt.data.faults import VideoFault
    from umt.data.sampling import make_generator

    def keep(video, **_):
        return video

    clip = ClipSpec(
        num_frames=num_frames, sampling=sampling, frame_stride=frame_stride, min_frames=min_frames
    )
    loaders = [ClipLoader(replace(clip, train=train), backend, keep) for train in (True, False)]
    try:
        if os.path.isdir(path):
            _check_frame_folder(path, loaders, thorough)
            return None
        info = loaders[0].decoder.probe(path, name=path)
        if info.truncated:
            listed = f" of the {info.header_frames} listed" if info.header_frames else ""
            return (
                f"truncated: the file ends before its last frames "
                f"({info.num_frames}{listed} frames readable)"
            )
        for loader in loaders:
            loader.frames(path, path, make_generator(0), None)
        start = 0 if thorough else max(0, info.num_frames - TAIL_FRAMES)
        decode_to_end(path, start, backend=backend, name=path)
    except VideoFault as err:
        return err.reason
    except VideoDecodeError as err:
        return err.problem
    except Exception as err:  # noqa: BLE001 - report, never crash the scan
        return f"{type(err).__name__}: {err}"
    return None


def _check_job(args: tuple) -> tuple[str, str | None]:
    path = args[0]
    return path, check_video(*args)


def _listed_paths(
    annotations: str | os.PathLike | Sequence[str | os.PathLike],
    format: str,
    root: str | os.PathLike | None,
) -> list[str]:
    """The videos to check, in order, each once: an annotation file gives its entries (read
    with ``format`` and ``root``); a video file (by its extension) stands for itself."""
    from pathlib import Path

    from umt.data.formats.annotations import load_annotations
    from umt.data.formats.records import VIDEO_EXTENSIONS

    items = [annotations] if isinstance(annotations, (str, os.PathLike)) else list(annotations)
    if not items:
        raise InputError("nothing to check: give an annotation file or a video")
    paths: list[str] = []
    for item in items:
        if Path(item).suffix.lower() in VIDEO_EXTENSIONS and format == "auto":
            paths.append(str(item))
        else:
            paths.extend(r.path for r in load_annotations(item, format=format, root=root))
    return list(dict.fromkeys(paths))


def check_annotations(
    annotations: str | os.PathLike | Sequence[str | os.PathLike],
    format: str = "auto",
    root: str | os.PathLike | None = None,
    num_frames: int = 8,
    sampling: str = "sparse",
    frame_stride: int = 4,
    min_frames: int | None = None,
    backend: str = "pyav",
    workers: int = 4,
    processes: bool = False,
    progress: bool = True,
    thorough: bool = False,
) -> CheckReport:
    """Check every video that ``annotations`` lists (one annotation file, or several; a video
    file among them, known by its extension, is checked itself) with :func:`check_video`, in
    parallel threads or processes; the report lists the bad ones in the order given.

    Options are validated first (:class:`CheckOptionError`), before any file is read.
    """
    validate_check_options(num_frames, sampling, frame_stride, min_frames, backend, workers)
    paths = _listed_paths(annotations, format, root)
    jobs = [(p, num_frames, sampling, frame_stride, min_frames, backend, thorough) for p in paths]
    report = CheckReport()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="checking", unit="video", file=sys.stderr)
    pool_cls = ProcessPoolExecutor if processes else ThreadPoolExecutor
    results: dict[str, str | None] = {}
    with pool_cls(workers) as pool:
        for path, reason in pool.map(_check_job, jobs, chunksize=8 if processes else 1):
            results[path] = reason
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    report.checked = len(paths)
    report.bad = [(p, results[p]) for p in paths if results[p] is not None]  # type: ignore[misc]
    return report


def format_report(report: CheckReport, out: TextIO | None = None) -> str:
    """The bad-video table and the summary line."""
    lines = []
    if report.bad:
        width = min(max(len(p) for p, _ in report.bad), 80)
        lines.append(f"{'video':<{width}}  reason")
        lines.append(f"{'-' * width}  {'-' * 6}")
        lines += [f"{p:<{width}}  {r}" for p, r in report.bad]
    lines.append(report.summary())
    text = "\n".join(lines)
    if out is not None:
        print(text, file=out)
    return text
