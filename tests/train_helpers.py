"""Shared helpers of the training tests: a tiny config and a synthetic clip set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from umt.config import load_config
from umt.config.stage1 import Stage1Config
from umt.train.data import SYNTHETIC_DIR
from umt.utils.cpu import usable_cores


def threads_per_worker(most: int = 2) -> int:
    """Threads for a test's runs: its share of the usable cores (all of them without
    pytest-xdist; with it, the cores over its workers), at least 1 and at most ``most``."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(usable_cores() // workers, most))


def home_with_set(home: Path, synthetic: Path) -> Path:
    """A UMT_HOME at ``home`` (made if absent) whose default synthetic set is ``synthetic`` (a
    link) and whose teacher cache is empty."""
    home.mkdir(parents=True, exist_ok=True)
    (home / SYNTHETIC_DIR).symlink_to(synthetic, target_is_directory=True)
    return home


# A tiny classifier on the synthetic set (12 classes), fast on 2 cores: the fine-tuning tests'
# sizes, each test adding its schedule and evaluation.
TINY_FT = [
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=2",
    "data.num_frames=2",
    "data.input_size=48",
    "data.short_side=48",
    "train.batch_size=4",
    "eval.every_epochs=1",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
]


def tiny_video_text(seed: int = 0) -> Any:
    """A tiny random UMTVideoText (bert-base-uncased vocabulary, no MLM head) in eval mode."""
    import torch

    from umt.models import UMTVideoText

    torch.manual_seed(seed)
    return UMTVideoText(
        vision=dict(img_size=48, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2),
        text=dict(
            vocab_size=30522,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
            fusion_layer=1,
            mlm_head=False,
        ),  # fmt: skip
        embed_dim=16,
    ).eval()


# Small enough for a step in well under a second on 2 CPU cores.
TINY = [
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=2",
    "model.drop_path_rate=0.0",
    "teacher.width=64",
    "teacher.layers=2",
    "teacher.heads=2",
    "teacher.output_dim=32",
    "teacher.return_layers=2",
    "data.num_frames=2",
    "data.input_size=48",
    "train.batch_size=4",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
    "optim.scale_lr=false",
    "optim.lr=1e-3",
    "optim.warmup_lr=1e-4",
    "optim.min_lr=1e-4",
    "schedule.epochs=4",
    "schedule.warmup_epochs=1",
]


# Two local processes (gloo on CPU), as a user would launch them.
TORCHRUN_2 = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
    "-m",
    "umt",
]


# Stage-1 tests distil the random tiny teacher (no built-in teacher to train) and skip the
# end-of-run probe, unless a test asks for them.
STAGE1 = ["teacher.weights=null", "probe.enabled=false"]


def tiny_config(synthetic_root: Path, out: Path, *extra: str) -> Stage1Config:
    return load_config(
        None,
        [
            *TINY,
            *STAGE1,
            f"data.synthetic_root={synthetic_root}",
            f"train.output_dir={out}",
            *extra,
        ],
    )


def tiny_args(synthetic_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        *STAGE1,
        f"data.synthetic_root={synthetic_root}",
        f"train.output_dir={out}",
        *extra,
    ]


def run_cli(args: list[str], cwd: Path, timeout: float = 240, launcher: list[str] | None = None):
    """Run ``python -m umt ARGS`` (or ``launcher + ARGS``) in a fresh process."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = (launcher or [sys.executable, "-m", "umt"]) + args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def spawn_cli(args: list[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen:
    """``python -m umt ARGS`` in its own process group (one thread unless ``env`` says), stdout
    to ``log``, stderr beside it (``log`` with the suffix ``.err``): a run to send signals to."""
    environ = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.Popen(
        [sys.executable, "-m", "umt", *args],
        cwd=cwd,
        env=environ,
        stdout=open(log, "w"),  # noqa: SIM115 (the child holds it)
        stderr=open(log.with_suffix(".err"), "w"),  # noqa: SIM115
        start_new_session=True,
    )


def wait_for_output(log: Path, text: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Wait until ``text`` is in ``log`` (a :func:`spawn_cli` run's output); fail if the run
    ends or ``timeout`` seconds pass first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.is_file() and text in log.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {log} (exit {proc.poll()})")


def end_of(proc: subprocess.Popen, log: Path) -> tuple[int, str, str]:
    """Wait for a :func:`spawn_cli` run: ``(returncode, stdout, stderr)``."""
    rc = proc.wait(timeout=240)
    return rc, log.read_text(), log.with_suffix(".err").read_text()


def run_cli_together(
    commands: list[list[str]], cwd: Path, timeout: float = 900
) -> list[tuple[int, str, str]]:
    """:func:`run_cli` for each of ``commands`` at once, one thread each (on 2 cores two tiny
    runs side by side take about as long as one alone on both):
    ``[(returncode, stdout, stderr)]``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "umt", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        results.append((proc.returncode, stdout, stderr))
    return results


def loop_step(task: Any, model: Any, optimizer: Any, batch: dict, epoch: int, clip_grad: Any):
    """One optimizer step on ``batch`` as the training loop takes it (``train_step`` around
    ``task.loss`` under the task's autocast, one micro-batch, no grad scaler): its
    ``{"loss", "grad_norm"}``."""
    from umt.train.distributed import all_reduce_mean
    from umt.train.step import train_step

    return train_step(
        model,
        optimizer,
        [task.to_device(batch)],
        lambda m, mb, _e=epoch: task.loss(m, mb, _e),
        clip_grad,
        None,
        all_reduce_mean,
        amp_dtype=task.ctx.amp_dtype,
    )


def eager_grad_scaler(monkeypatch: Any, init_scale: float) -> None:
    """Make the training loop's fp16 ``GradScaler`` start at ``init_scale`` and double after
    every step without an overflow (``growth_interval=1``): a run of a few tiny steps then
    overflows, skips steps and changes its scale, so an exact resume needs the saved scaler."""
    import torch

    class EagerScaler(torch.amp.GradScaler):
        def __init__(self, device: str = "cuda", **_: Any) -> None:
            super().__init__(device, init_scale=init_scale, growth_interval=1)

    monkeypatch.setattr(torch.amp, "GradScaler", EagerScaler)


def amp_trace(out: Path) -> list[tuple[float, int, float]]:
    """``(amp_scale, skipped_step, loss)`` of every step in ``out/metrics.jsonl``."""
    import json

    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["amp_scale"], r["skipped_step"], r["loss"]) for r in recs if "amp_scale" in r]
