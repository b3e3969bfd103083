"""Run folders and their metrics: unique names, refusing to mix runs, finding the run to resume,
``metrics.jsonl`` written line by line and read back tolerantly, the loss-curve PNG."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from umt.errors import MachineError
from umt.train import checkpoint as ckpt

RUNS = Path("runs")
# What a run writes into its folder (removed by --overwrite; anything else there is refused).
RUN_FILES = (
    "checkpoints",
    "metrics.jsonl",
    "config.yaml",
    "loss_curve.png",
    "tensorboard",
    "wandb",
    "best",
    "test",
    "probe.json",
    # what an interrupted staged write of best/ or test/ can leave (train.checkpoint.staged_dir)
    "best.tmp",
    "best.old",
    "test.tmp",
    "test.old",
)
"""What a run writes in its folder: ``--overwrite`` removes these and refuses anything else."""


class RunFolderError(MachineError):
    """The run folder cannot be used (exists, not writable, full); the message says what to do."""


# --------------------------------------------------------------------------- naming and claiming
def run_name_pattern(recipe: str) -> re.Pattern[str]:
    """Default run folder names of ``recipe``: ``<recipe>-YYYYmmdd-HHMMSS[-N]``, nothing else."""
    return re.compile(rf"^{re.escape(recipe)}-\d{{8}}-\d{{6}}(-\d+)?$")


def claim_new_run_dir(recipe: str, runs: Path = RUNS) -> Path:
    """Create and return a new, unique ``runs/<recipe>-<time>[-N]`` folder. The creation is
    atomic, so two runs started in the same second get two folders."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = runs / (f"{recipe}-{stamp}" if n == 1 else f"{recipe}-{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunFolderError(f"{runs}: no free run folder name for {recipe}-{stamp}")


def prepare_run_dir(path: Path, resuming: bool, overwrite: bool) -> bool:
    """Make ``path`` ready for a run; returns whether this call created it.

    An existing folder with anything in it is refused unless the run resumes (``--resume``) or
    ``overwrite`` (``--overwrite``) removes the previous run's files first."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"output folder {path} is a file; choose another --output-dir")
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries and not resuming:
            if not overwrite:
                raise RunFolderError(
                    f"output folder {path} already holds a run ({', '.join(entries[:4])}"
                    f"{', ...' if len(entries) > 4 else ''}); continue it with --resume auto, "
                    "replace it with --overwrite, or choose another --output-dir"
                )
            foreign = [e for e in entries if e not in RUN_FILES]
            if foreign:
                raise RunFolderError(
                    f"--overwrite: {path} holds files that are not a run's "
                    f"({', '.join(foreign[:4])}); choose another --output-dir"
                )
            for name in entries:
                target = path / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        return False
    path.mkdir(parents=True)
    return True


def latest_run_dir(recipe: str, runs: Path = RUNS) -> tuple[Path, Path] | None:
    """The run of exactly ``recipe`` (by folder name) whose newest complete checkpoint is the
    most recent in time, with that checkpoint; ``None`` when there is none."""
    if not runs.is_dir():
        return None
    pattern = run_name_pattern(recipe)
    best: tuple[float, Path, Path] | None = None
    for run in runs.iterdir():
        if not (run.is_dir() and pattern.match(run.name)):
            continue
        last = ckpt.latest_checkpoint(run / "checkpoints")
        if last is None:
            continue
        when = (last / ckpt.COMPLETE).stat().st_mtime
        if best is None or when > best[0]:
            best = (when, run, last)
    return (best[1], best[2]) if best else None


def describe_os_error(err: OSError, what: str) -> str:
    """One line for a file-system failure: what failed, why, what to do."""
    where = f"{what} ({err.filename})" if err.filename else what
    if err.errno == errno.ENOSPC:
        return f"disk full while writing {where}: free some space"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: {err.strerror}; choose a writable --output-dir"
    return f"{where}: {err.strerror or err}"


# --------------------------------------------------------------------------- metrics.jsonl
def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of ``metrics.jsonl`` and how many lines were unreadable (a line torn by a
    full disk or a kill); unreadable lines are skipped, never fatal."""
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
            else:
                bad += 1
    return records, bad


def trim_metrics(path: Path, upto_step: int) -> int:
    """Keep the metric lines of steps ``<= upto_step`` (what the resumed checkpoint has seen),
    each step once, dropping torn lines; returns the number of torn lines dropped."""
    records, bad = read_metrics(path)
    if not path.is_file():
        return 0
    # One record of each kind (training step, validation, ...) per step: a step logged twice
    # (killed before a checkpoint, then run again) keeps its last record.
    seen: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
    for rec in records:
        if rec["step"] <= upto_step:
            seen[(rec["step"], tuple(sorted(rec)))] = rec
    tmp = path.with_name(path.name + ".tmp")
    ordered = sorted(seen.items(), key=lambda item: item[0][0])  # stable: kinds keep their order
    tmp.write_text("".join(json.dumps(rec) + "\n" for _, rec in ordered))
    os.replace(tmp, path)
    return bad


class MetricsFile:
    """Appends one JSON line per record with a single ``write`` of the whole line. A failed
    write (disk full) is cut back to the last whole line, so the file never holds a torn
    line; the run goes on and says once that metrics are not being written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.failed = False

    def append(self, rec: dict[str, Any]) -> None:
        data = (json.dumps(rec) + "\n").encode()
        size = os.fstat(self.fd).st_size
        try:
            written = os.write(self.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        except OSError as err:
            try:
                os.ftruncate(self.fd, size)
            except OSError:
                pass
            if not self.failed:
                warnings.warn(
                    f"{describe_os_error(err, str(self.path))}; training goes on, metrics "
                    "are not logged until it can write again",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self.failed = True
            return
        self.failed = False

    def close(self) -> None:
        os.close(self.fd)


def plot_losses(metrics: Path, png: Path, ylabel: str = "loss", title: str = "") -> None:
    """Loss curve PNG from ``metrics.jsonl`` (matplotlib, Agg); torn lines are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in read_metrics(metrics)[0] if isinstance(r.get("loss"), (int, float))]
    if not recs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
