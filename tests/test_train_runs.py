"""Run folders, resume and failure handling of the training loop (the audit's adversarial cases):
own checkpoints load back as the same model, runs never mix, resume finds the right run and
refuses a changed model, torn metrics and corrupt checkpoints are survived, errors are one line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import umt
from train_helpers import run_cli, tiny_args, tiny_config
from umt.config import ConfigError
from umt.train import checkpoint as ckpt
from umt.train import pretrain, runs
from umt.train.loop import RunError
from umt.train.tasks.stage1 import build_student


# --------------------------------------------------------------------------- own checkpoints
def test_trained_checkpoint_loads_back_as_the_same_student(synthetic, tmp_path):
    cfg = tiny_config(synthetic, tmp_path / "run", "train.max_steps=2", "model.pos_embed=sincos")
    res = pretrain(cfg)
    step = res.last_checkpoint
    assert (step / "config.json").is_file()
    # The student exactly as the trainer built it, with the trained weights.
    reference = build_student(cfg, cfg.teacher.output_dim)
    reference.load_state_dict(load_file(str(step / "model.safetensors")))
    reference.eval()
    video = torch.randn(2, 3, cfg.data.num_frames, cfg.data.input_size, cfg.data.input_size)
    loaded = umt.load_checkpoint(step).eval()
    assert (loaded.num_frames, loaded.img_size) == (cfg.data.num_frames, cfg.data.input_size)
    with torch.no_grad():
        want = reference.forward_features(video)
        torch.testing.assert_close(loaded.forward_features(video), want, rtol=0, atol=0)
        umt.models.convert_checkpoint(step, tmp_path / "converted")
        again = umt.load_checkpoint(tmp_path / "converted").eval()
        torch.testing.assert_close(again.forward_features(video), want, rtol=0, atol=0)


# --------------------------------------------------------------------------- run folders
def test_existing_run_folder_refused_unless_resume_or_overwrite(synthetic, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(synthetic, out, "train.max_steps=2"))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(runs.RunFolderError, match="--resume auto.*--overwrite"):
        pretrain(tiny_config(synthetic, out, "train.max_steps=1"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # untouched
    res = pretrain(tiny_config(synthetic, out, "train.max_steps=1", "train.overwrite=true"))
    assert res.first_step == 0
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_000001"]
    recs, _ = runs.read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(runs.RunFolderError, match="not a run's"):
        pretrain(tiny_config(synthetic, tmp_path / "other", "train.overwrite=true"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_default_run_names_are_unique_within_a_second(tmp_path):
    names = {runs.claim_new_run_dir("umt-tiny-synthetic", tmp_path).name for _ in range(3)}
    assert len(names) == 3
    assert all(runs.run_name_pattern("umt-tiny-synthetic").match(n) for n in names)
    assert not runs.run_name_pattern("umt-tiny").match(next(iter(names)))


def test_failed_start_leaves_no_run_folder(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    junk = tmp_path / "teacher.pth"
    junk.write_bytes(b"not a checkpoint at all")
    cfg = tiny_config(synthetic, tmp_path / "x", f"teacher.weights={junk}")
    cfg.train.output_dir = None  # a default runs/<recipe>-<time> folder
    with pytest.raises(ValueError, match="teacher.pth"):
        pretrain(cfg)
    assert not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- resume
def test_resume_auto_matches_the_recipe_exactly_and_picks_by_time(synthetic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run(recipe: str, *extra: str):
        cfg = tiny_config(synthetic, tmp_path / "unused", *extra)
        cfg.recipe, cfg.train.output_dir = recipe, None
        return pretrain(cfg)

    older = run("umt-tiny-synthetic", "train.max_steps=1")
    newer = run("umt-tiny-synthetic", "train.max_steps=2")
    time.sleep(0.05)
    other = run("umt-tiny-synthetic-lr2", "train.max_steps=3")  # newest, another recipe
    # An older run folder whose name sorts last must not win: time decides.
    renamed = older.output_dir.with_name("umt-tiny-synthetic-29991231-235959")
    older.output_dir.rename(renamed)
    os.utime(renamed / "checkpoints" / "step_000001" / ckpt.COMPLETE, (1, 1))
    lines: list[str] = []
    cfg = tiny_config(synthetic, tmp_path / "unused", "train.max_steps=3", "train.resume=auto")
    cfg.train.output_dir = None
    res = pretrain(cfg, echo=lines.append)
    assert res.output_dir == newer.output_dir and res.first_step == 2
    assert any("continuing" in ln and newer.output_dir.name in ln for ln in lines)
    assert other.output_dir != res.output_dir
    lines.clear()
    cfg.recipe = "umt-never-run"
    fresh = pretrain(cfg, echo=lines.append)
    assert fresh.first_step == 0 and any("no earlier run" in ln for ln in lines)


def test_resume_refuses_a_changed_model_or_data_config(synthetic, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(synthetic, out, "train.max_steps=1"))
    with pytest.raises(ConfigError, match=r"model.embed_dim: 64 -> 96"):
        pretrain(tiny_config(synthetic, out, "train.resume=auto", "model.embed_dim=96"))
    with pytest.raises(ConfigError, match=r"data.num_frames: 2 -> 4"):
        pretrain(tiny_config(synthetic, out, "train.resume=auto", "data.num_frames=4"))
    # Settings that do not change the model or the clips may change.
    res = pretrain(
        tiny_config(synthetic, out, "train.resume=auto", "train.max_steps=2", "data.num_workers=1")
    )
    assert res.first_step == 1 and res.steps == [2]


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(synthetic, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(synthetic, out, "train.max_steps=2", "train.checkpoint_every=1"))
    latest = out / "checkpoints" / "step_000002"
    data = (latest / "model.safetensors").read_bytes()
    (latest / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    lines: list[str] = []
    res = pretrain(
        tiny_config(synthetic, out, "train.resume=auto", "train.max_steps=2"), echo=lines.append
    )
    assert res.first_step == 1 and res.steps == [2]
    assert any("step_000002" in ln and "falling back to step_000001" in ln for ln in lines)
    # Named explicitly, a corrupt checkpoint is an error, not a silent substitute.
    (out / "checkpoints" / "step_000002" / "state.json").write_text("{torn")
    with pytest.raises(RunError, match="state.json: unreadable"):
        pretrain(
            tiny_config(
                synthetic, out, f"train.resume={out / 'checkpoints' / 'step_000002'}",
                "train.max_steps=3",
            )
        )  # fmt: skip


def test_prune_removes_the_complete_marker_first(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        d = tmp_path / f"step_{step:06d}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
        (d / ckpt.COMPLETE).write_text(str(step))

    def rmtree_cut_short(path, ignore_errors=False):
        raise KeyboardInterrupt  # killed in the middle of the deletion

    monkeypatch.setattr(shutil, "rmtree", rmtree_cut_short)
    with pytest.raises(KeyboardInterrupt):
        ckpt.prune(tmp_path, keep_last=2)
    # The half-deleted checkpoint is not "complete" any more.
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]


def test_killed_before_first_checkpoint_logs_each_step_once(synthetic, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # What a run killed at step 2, before any checkpoint, leaves behind (plus a torn line).
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n{"st')
    (out / "config.yaml").write_text("recipe: x\n")
    lines: list[str] = []
    pretrain(
        tiny_config(synthetic, out, "train.resume=auto", "train.max_steps=3"), echo=lines.append
    )
    recs, bad = runs.read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3] and bad == 0
    assert any("torn line" in ln for ln in lines)


# --------------------------------------------------------------------------- metrics
def test_torn_metrics_line_is_tolerated_and_reported(synthetic, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(synthetic, out, "train.max_steps=2", "train.plot=true"))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss": 1.')  # disk full while logging
    recs, bad = runs.read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2] and bad == 1
    runs.plot_losses(out / "metrics.jsonl", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
    res = pretrain(tiny_config(synthetic, out, "train.max_steps=3", "train.resume=auto"))
    assert res.steps == [3]
    recs, bad = runs.read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3] and bad == 0


def test_metrics_write_never_leaves_a_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    mf = runs.MetricsFile(path)
    mf.append({"step": 1, "loss": 1.0})
    real_write = os.write

    def short_write(fd, data):  # the disk fills half-way through the line
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "write", short_write)
    with pytest.warns(RuntimeWarning, match="disk full.*training goes on"):
        mf.append({"step": 2, "loss": 0.5})
    monkeypatch.setattr(runs.os, "write", real_write)
    mf.append({"step": 3, "loss": 0.25})
    mf.close()
    assert path.read_text().splitlines() == [
        json.dumps({"step": 1, "loss": 1.0}),
        json.dumps({"step": 3, "loss": 0.25}),
    ]


# --------------------------------------------------------------------------- errors
def test_cli_errors_are_one_line_with_exit_codes(synthetic, tmp_path):
    """Bad config -> 2; unusable environment or data -> 1; never a traceback."""
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [oops\n")
    cases = [
        (["pretrain", "--config", str(bad_yaml)], 2, "not valid YAML"),
        (["pretrain", "train.checkpoint_every=0"], 2, "train.checkpoint_every"),
        (["pretrain", "--config", "umt-b16-k710"], 2, "--teacher PATH"),
        # The output folder's parent is a file: the folder cannot be made.
        (["pretrain", *tiny_args(synthetic, tmp_path / "bad.yaml" / "run")], 1, "bad.yaml"),
    ]
    for args, code, words in cases:
        res = run_cli(args, tmp_path, timeout=120)
        assert res.returncode == code, (args, res.stderr[-2000:])
        assert "Traceback" not in res.stderr and words in res.stderr, res.stderr[-2000:]
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "runs").exists()


def test_all_videos_broken_is_a_data_error(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    lines = []
    for i in range(30):
        (videos / f"v{i}.mp4").write_bytes(b"\x00" * 64)
        lines.append(f"videos/v{i}.mp4 0")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    args = [
        "pretrain",
        *tiny_args(tmp_path, tmp_path / "run"),
        f"data.train_list={tmp_path / 'train.txt'}",
        f"data.root={tmp_path}",
    ]
    res = run_cli(args, tmp_path, timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("umt pretrain: error:") and "Traceback" not in res.stderr


def test_visualize_mask_of_a_corrupt_video_is_one_line(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    res = run_cli(["visualize-mask", str(bad), "-o", str(tmp_path / "m.png")], tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "clip.mp4" in res.stderr and len(res.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- signals
def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "umt", "pretrain", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as under SLURM or docker
    )


def _wait_for_steps(metrics: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} steps logged: {proc.poll()}")


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_saves_and_exits_nonzero(synthetic, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        synthetic, out, "train.max_steps=100000", "train.checkpoint_every=100000",
        "data.num_workers=2",
    )  # fmt: skip
    proc = _start(args, tmp_path)
    _wait_for_steps(out / "metrics.jsonl", 2, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and its DataLoader workers
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout and "Traceback" not in stderr
    last = ckpt.latest_checkpoint(out / "checkpoints")
    assert last is not None and f"last checkpoint: {last}" in stdout


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_says_so(synthetic, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(synthetic, out, "train.max_steps=100000", "train.checkpoint_every=100000")
    proc = _start(args, tmp_path)
    _wait_for_steps(out / "metrics.jsonl", 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    last = ckpt.latest_checkpoint(out / "checkpoints")
    assert last is not None and "stopped by SIGINT after step" in stdout
    assert f"last checkpoint: {last}" in stdout
