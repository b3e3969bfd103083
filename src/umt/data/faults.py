"""Counting and reporting videos that cannot be used.

A dataset keeps one :class:`FaultCounter` (per process: each DataLoader worker has its own
copy). Each skipped sample travels in the batch (``batch["skipped"]`` count and
``batch["faults"]`` list of ``(path, reason)``), so the trainer aggregates in the main process
with ``counter.add_batch(batch)`` and logs ``counter.summary(len(dataset))``, e.g.
``"3 of 240,000 videos skipped (2 too short, 1 cannot open)"``.

Each bad file is announced once per process, with one ``RuntimeWarning`` (``"skipping video
PATH: REASON"``; route it to logging with ``logging.captureWarnings(True)``), however many
datasets, counters, retries or epochs meet it; every failure is still counted.
"""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from umt.errors import MachineError

__all__ = ["PROGRAMMING_ERRORS", "VideoFault", "TooManyFaultsError", "FaultCounter", "fault_kind"]

_WARNED_PATHS: set[str] = set()  # files already announced in this process
_WARNED_LOCK = threading.Lock()


def _first_warning(path: str) -> bool:
    """True the first time ``path`` is announced in this process."""
    with _WARNED_LOCK:
        if path in _WARNED_PATHS:
            return False
        _WARNED_PATHS.add(path)
        return True


class VideoFault(Exception):
    """A sample that cannot be used (missing, unreadable, too short). Names file and reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class TooManyFaultsError(MachineError):
    """Too many samples failed: the data (or the ``root`` prefix) is probably wrong."""


def fault_kind(reason: str) -> str:
    """A short category for a reason string (for summaries)."""
    text = reason.lower()
    for key, kind in (
        ("not found", "missing"),
        ("0 bytes", "empty"),
        ("too short", "too short"),
        ("no video stream", "no video stream"),
        ("cannot open", "cannot open"),
        ("out of range", "too short"),
        ("could not be decoded", "truncated/corrupt"),
        ("decoding failed", "truncated/corrupt"),
    ):
        if key in text:
            return kind
    return "other"


class FaultCounter:
    """Thread-safe tally of faults: per-file reasons, attempts and failures.

    ``max_fail_ratio`` / ``min_attempts``: :meth:`check` raises :class:`TooManyFaultsError` when
    more than that share of at least ``min_attempts`` loads failed.
    """

    def __init__(self, max_fail_ratio: float = 0.5, min_attempts: int = 20) -> None:
        self.max_fail_ratio = max_fail_ratio
        self.min_attempts = min_attempts
        self.attempts = 0
        self.failures = 0
        self.by_path: dict[str, str] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def record_success(self) -> None:
        """Count one successful load."""
        with self._lock:
            self.attempts += 1

    def record(self, path: str, reason: str, warn: bool = True) -> None:
        """Count one failed load; the first failure of a file in this process also warns
        (one ``RuntimeWarning``)."""
        with self._lock:
            self.attempts += 1
            self.failures += 1
            self.by_path[path] = reason
        if warn and _first_warning(path):
            warnings.warn(f"skipping video {path}: {reason}", RuntimeWarning, stacklevel=3)

    def check(self) -> None:
        """Raise when the failure share is too high to be a few broken files."""
        with self._lock:
            attempts, failures = self.attempts, self.failures
            examples = list(self.by_path.items())[:5]
        if attempts >= self.min_attempts and failures > self.max_fail_ratio * attempts:
            listing = "; ".join(f"{p}: {r}" for p, r in examples)
            raise TooManyFaultsError(
                f"{failures} of the first {attempts} video loads failed "
                f"(more than {self.max_fail_ratio:.0%}); check the paths and the root prefix. "
                f"Examples: {listing}"
            )

    def add(self, faults: Iterable[tuple[str, str]] | Mapping[str, str]) -> None:
        """Merge ``(path, reason)`` pairs (e.g. from a batch or another worker)."""
        items = faults.items() if isinstance(faults, Mapping) else faults
        with self._lock:
            for path, reason in items:
                self.failures += 1
                self.attempts += 1
                self.by_path[str(path)] = str(reason)

    def add_batch(self, batch: Mapping[str, Any]) -> int:
        """Merge the faults a collated batch carries; returns how many it had."""
        faults = list(batch.get("faults", ()))
        self.add(faults)
        return len(faults)

    @property
    def num_skipped_files(self) -> int:
        """Distinct files that failed."""
        return len(self.by_path)

    def reasons(self) -> Counter:
        """Distinct failed files per fault kind."""
        return Counter(fault_kind(r) for r in self.by_path.values())

    def summary(self, total: int | None = None) -> str:
        """``"3 of 240,000 videos skipped (2 too short, 1 missing)"``."""
        n = self.num_skipped_files
        of = f" of {total:,}" if total is not None else ""
        if n == 0:
            return f"0{of} videos skipped"
        kinds = ", ".join(f"{c} {k}" for k, c in self.reasons().most_common())
        return f"{n:,}{of} videos skipped ({kinds})"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs / JSON."""
        return {
            "attempts": self.attempts,
            "failures": self.failures,
            "skipped_files": self.num_skipped_files,
            "by_path": dict(self.by_path),
        }


# Errors of the program or the environment (a missing decoder package, say), not of one file:
# they propagate instead of being counted against the video being read.
PROGRAMMING_ERRORS = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    TooManyFaultsError,
    KeyboardInterrupt,
)
