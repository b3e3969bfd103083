"""Issue 18 (adversarial use) for the training loop's run folder: a REAL full disk (a small tmpfs
as the output folder) while writing a checkpoint, ``best/`` or the ``test/`` outputs; a resume
whose ``--init`` file is gone; a run that dies on its first batch (real missing videos)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from test_train_finetune import ft_args
from train_helpers import run_cli, tiny_args
from umt.train import checkpoint as ckpt

PAGE = 4096


def _pages(*paths: Path) -> int:
    """Bytes the files under ``paths`` take on a tmpfs (whole pages)."""
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        total += sum(math.ceil(f.stat().st_size / PAGE) * PAGE for f in files)
    return total


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size_bytes) -> folder``: a real tmpfs of that size, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        kib = math.ceil(size / 1024)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def calibration(synthetic, tmp_path_factory) -> Path:
    """A complete tiny fine-tuning run of 1 step on an ordinary disk: what each part takes."""
    out = tmp_path_factory.mktemp("calib") / "ft"
    res = run_cli(["finetune", *ft_args(synthetic, out, "model.init=scratch", "train.max_steps=1")],
                  out.parent)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _one_line_error(res: subprocess.CompletedProcess, command: str = "finetune") -> str:
    assert res.returncode == 1, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"umt {command}: error: "), res.stderr
    return lines[0]


def _no_staging_left(out: Path) -> None:
    left = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert not left, left


# --------------------------------------------------------------------------- 1. a full disk
def test_full_disk_while_checkpointing_names_the_file_and_the_last_checkpoint(
    synthetic, calibration, small_disk
):
    step1 = calibration / "checkpoints" / "step_000001"
    before = _pages(step1, calibration / "config.yaml", calibration / "metrics.jsonl")
    disk = small_disk(before + _pages(step1) // 2)  # step 1 fits, step 2 does not
    out = disk / "run"
    args = ft_args(synthetic, out, "model.init=scratch", "train.max_steps=2",
                   "train.checkpoint_every=1")  # fmt: skip
    line = _one_line_error(run_cli(["finetune", *args], disk.parent))
    assert "disk full" in line
    assert re.search(r"step_000002/\w+\.(safetensors|json|yaml)", line), line  # the file
    assert f"Last complete checkpoint: {out / 'checkpoints' / 'step_000001'}" in line, line
    _no_staging_left(out)
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_000001"]
    ckpt.read_checkpoint(out / "checkpoints" / "step_000001")  # intact
    # With room again, --resume auto continues from it.
    subprocess.run(["mount", "-o", f"remount,size={4 * before // 1024}k", str(disk)], check=True)
    res = run_cli(["finetune", *args, "train.resume=auto"], disk.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")][-1] == "step_000002"


def test_full_disk_while_exporting_best_names_the_file_and_the_last_checkpoint(
    synthetic, calibration, small_disk
):
    step1 = calibration / "checkpoints" / "step_000001"
    before = _pages(step1, calibration / "config.yaml", calibration / "metrics.jsonl")
    disk = small_disk(before + _pages(calibration / "best") // 2)  # best/ does not fit
    out = disk / "run"
    args = ft_args(synthetic, out, "model.init=scratch", "train.max_steps=1")
    line = _one_line_error(run_cli(["finetune", *args], disk.parent))
    assert "disk full" in line and str(out / "best" / "model.safetensors") in line, line
    assert f"Last complete checkpoint: {out / 'checkpoints' / 'step_000001'}" in line, line
    assert not (out / "best").exists() and not (out / "test").exists()
    _no_staging_left(out)
    ckpt.read_checkpoint(out / "checkpoints" / "step_000001")


def test_full_disk_while_writing_test_outputs_leaves_no_torn_file(
    synthetic, calibration, small_disk
):
    test = calibration / "test"
    assert _pages(test / "predictions.jsonl") > 4 * PAGE  # the case below is a real one
    rest = [p for p in calibration.iterdir() if p.name != "test"]
    disk = small_disk(_pages(*rest) + 2 * PAGE)  # results.json fits, predictions.jsonl not
    out = disk / "run"
    args = ft_args(synthetic, out, "model.init=scratch", "train.max_steps=1")
    line = _one_line_error(run_cli(["finetune", *args], disk.parent))
    assert "disk full" in line and re.search(rf"{re.escape(str(out / 'test'))}/\S+", line), line
    assert f"Last complete checkpoint: {out / 'checkpoints' / 'step_000001'}" in line, line
    # Never a torn predictions.jsonl beside a complete results.json: no test/ at all.
    assert not (out / "test").exists()
    _no_staging_left(out)
    assert json.loads((out / "best" / "info.json").read_text())["step"] == 1


# --------------------------------------------------------------------------- 5. resume, no init
def test_resume_auto_needs_no_init_file_and_names_none(synthetic, calibration, tmp_path):
    init = tmp_path / "init"
    init.mkdir()
    for f in (calibration / "best").iterdir():  # a real small classifier checkpoint
        (init / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "run"
    args = ft_args(synthetic, out, f"model.init={init}", "eval.test_views=1x1")
    first = run_cli(["finetune", *args, "train.max_steps=1"], tmp_path)
    assert first.returncode == 0 and f"weights from {init}" in first.stdout, first.stderr[-2000:]
    init.rename(tmp_path / "moved")  # a requeue on a node without the init file
    res = run_cli(["finetune", *args, "train.max_steps=2", "train.resume=auto"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from {out / 'checkpoints' / 'step_000001'} (step 1)" in res.stdout
    assert str(init) not in res.stdout and "scratch" not in res.stdout, res.stdout
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == [
        "step_000001",
        "step_000002",
    ]


# --------------------------------------------------------------------------- 6. failed first batch
def _missing_videos(tmp_path: Path) -> Path:
    lines = [f"videos/missing_{i}.mp4 {i % 3}" for i in range(24)]  # not one of them exists
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.txt"


def test_data_error_on_the_first_batch_leaves_nothing_that_blocks_a_rerun(synthetic, tmp_path):
    train_list = _missing_videos(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()  # a folder made ready beforehand: emptied again, kept
    for out in (tmp_path / "new", empty):
        args = [
            "pretrain",
            *tiny_args(synthetic, out),
            f"data.train_list={train_list}",
            f"data.root={tmp_path}",
        ]
        for _ in range(2):  # the same command again fails the same way, not on the folder
            res = run_cli(args, tmp_path, timeout=120)
            assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
            line = res.stderr.strip().splitlines()[-1]  # after a warning per skipped video
            assert line.startswith("umt pretrain: error: ") and "missing_" in line, line
            assert "already holds a run" not in res.stderr
        assert not (tmp_path / "new").exists()
        assert empty.is_dir() and not any(empty.iterdir())


def test_overwrite_replaces_a_finished_run_with_its_best_and_test_folders(tmp_path):
    """A finished fine-tuning run holds best/, test/ (and maybe a staged write's leftovers):
    --overwrite replaces them all, and still refuses what is not a run's."""
    from umt.train import runs

    run = tmp_path / "run"
    for name in ("checkpoints/step_000001", "best", "test", "best.old"):
        (run / name).mkdir(parents=True)
    for name in ("metrics.jsonl", "config.yaml", "best/model.safetensors", "test/results.json"):
        (run / name).write_text("x")
    with pytest.raises(runs.RunFolderError, match="already holds a run"):
        runs.prepare_run_dir(run, resuming=False, overwrite=False)
    assert runs.prepare_run_dir(run, resuming=False, overwrite=True) is False
    assert list(run.iterdir()) == []
    (run / "notes.txt").write_text("mine")
    with pytest.raises(runs.RunFolderError, match="not a run's.*notes.txt"):
        runs.prepare_run_dir(run, resuming=False, overwrite=True)
