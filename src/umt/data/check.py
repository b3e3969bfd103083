"""``umt data check``: find the unreadable or too-short videos of an annotation file."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["CheckReport", "check_video", "check_annotations", "format_report"]


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


def check_video(
    path: str,
    num_frames: int = 8,
    sampling: str = "sparse",
    frame_stride: int = 4,
    min_frames: int | None = None,
    backend: str = "pyav",
) -> str | None:
    """``None`` when the clip a test view would use decodes, else the reason it does not."""
    from umt.data.datasets import _ClipLoader
    from umt.data.faults import VideoFault
    from umt.data.sampling import make_generator

    loader = _ClipLoader(
        num_frames, sampling, frame_stride, False, min_frames, backend, lambda v, **k: v, 1
    )
    try:
        loader.frames(path, path, make_generator(0), None)
    except VideoFault as err:
        return err.reason
    except Exception as err:  # noqa: BLE001 - report, never crash the scan
        return f"{type(err).__name__}: {err}"
    return None


def _check_job(args: tuple) -> tuple[str, str | None]:
    path = args[0]
    return path, check_video(*args)


def check_annotations(
    annotations: str | os.PathLike,
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
) -> CheckReport:
    """Probe and decode every listed video (in parallel threads or processes)."""
    from umt.data.datasets import load_annotations

    records = load_annotations(annotations, format=format, root=root)
    paths: Sequence[str] = list(dict.fromkeys(r.path for r in records))
    jobs = [(p, num_frames, sampling, frame_stride, min_frames, backend) for p in paths]
    report = CheckReport()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="checking", unit="video", file=sys.stderr)
    pool_cls = ProcessPoolExecutor if processes else ThreadPoolExecutor
    results: dict[str, str | None] = {}
    with pool_cls(max(1, workers)) as pool:
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
