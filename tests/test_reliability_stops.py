"""A stop at any moment (issue 18): real SIGTERM / SIGINT sent to a real ``umt`` process while it
validates, while it runs the end-of-run test, while it trains the built-in teacher; each saves
what can be resumed, says where in one line, exits 143 / 130 without a traceback, and the resumed
run continues. And a process waiting for another to train the teacher says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_helpers import TINY_FT as TINY_FT_BASE
from train_helpers import end_of, home_with_set, run_cli, spawn_cli, wait_for_output
from umt.train import checkpoint as ckpt

# The tiny classifier validated after each of 2 epochs of 3 steps.
TINY_FT = [
    *TINY_FT_BASE,
    "schedule.epochs=2",
    "schedule.steps_per_epoch=3",
    "eval.every_epochs=1",
    "eval.test_views=2x2",
]


def _long_list(synthetic: Path, path: Path, repeats: int = 20) -> Path:
    """The synthetic val clips ``repeats`` times over: validation (~4 s) and the end-of-run test
    (~7 s) last long enough to be interrupted in the middle."""
    rows = [line.split() for line in (synthetic / "val.csv").read_text().splitlines() if line]
    path.write_text("".join(f"{synthetic / v} {c}\n" for _ in range(repeats) for v, c in rows))
    return path


def _state(step_dir: Path) -> dict:
    return json.loads((step_dir / "state.json").read_text())


@pytest.mark.slow
def test_stops_during_validation_and_the_final_test_save_and_resume(synthetic, tmp_path):
    out = tmp_path / "run"
    long = _long_list(synthetic, tmp_path / "long.csv")
    args = [
        "finetune",
        *TINY_FT,
        f"data.synthetic_root={synthetic}",
        f"data.val_list={long}",
        f"train.output_dir={out}",
    ]
    # 1. SIGTERM to the process group while epoch 0 is validated (after step 3, before any
    # periodic checkpoint): the step's state is saved and marked to validate again.
    log = tmp_path / "first.log"
    proc = spawn_cli(args, tmp_path, log)
    wait_for_output(out / "metrics.jsonl", '"step": 3,', proc)  # step 3 done: validation starts
    time.sleep(0.5)  # inside the validation loop (about 4 s)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, stdout, stderr = end_of(proc, log)
    assert rc == 143, stderr[-3000:]
    assert "Traceback" not in stderr and "epoch 0 (step 3): val_top1" not in stdout  # cut short
    step3 = out / "checkpoints" / "step_000003"
    assert ckpt.latest_checkpoint(out / "checkpoints") == step3
    assert _state(step3)["extra"]["pending_eval"] == 0
    stopped = [line for line in stdout.splitlines() if line.startswith("stopped by")]
    assert stopped == [
        f"stopped by SIGTERM during the validation of epoch 0 (a resumed run validates it first) "
        f"after step 3; last checkpoint: {step3}"
    ]
    # 2. Resumed, it validates epoch 0 first, trains on; Ctrl-C during the end-of-run test.
    log = tmp_path / "second.log"
    proc = spawn_cli([*args, "--resume", "auto"], tmp_path, log)
    wait_for_output(log, "checkpoint: ", proc)  # training done; the multi-view test starts
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    rc, stdout, stderr = end_of(proc, log)
    assert rc == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    lines = stdout.splitlines()
    assert "validating after epoch 0 (step 3)" in lines
    assert any(line.startswith("epoch 0 (step 3): val_top1") for line in lines)
    assert any(line.startswith("epoch 1 (step 6): val_top1") for line in lines)
    step6 = out / "checkpoints" / "step_000006"
    assert lines[-1] == (
        f"stopped by SIGINT during the end-of-run evaluation (test / probe) after step 6; "
        f"checkpoint {step6} holds the finished training; run the same command with --resume "
        "auto (train.resume=auto) to do the end-of-run evaluation again"
    )
    assert not (out / "test" / "results.json").exists()
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "val_top1" in r] == [3, 6]  # each validation once
    assert [r["step"] for r in recs if "loss" in r and "val_loss" not in r] == [1, 2, 3, 4, 5, 6]
    # 3. Resumed once more: nothing left to train, the test is done.
    res = run_cli([*args, "--resume", "auto"], tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "test" / "results.json").read_text())["videos"] == 1200


# --------------------------------------------------------------------------- the built-in teacher
TEACHER = [
    "teacher.width=32",
    "teacher.layers=2",
    "teacher.heads=2",
    "teacher.output_dim=16",
    "teacher.img_size=32",
    "teacher.builtin_steps=600",
]


@pytest.mark.slow
def test_sigterm_while_the_teacher_trains_keeps_its_progress_and_continues(
    synthetic, tmp_path, monkeypatch
):
    from umt.config import load_config
    from umt.train.builtin_teacher import partial_path, recipe_for_run, teacher_dir

    # Bit-identity holds at one thread count: the stopped run (_spawn: one thread), its
    # continuation and the uninterrupted run all use one, whatever the caller's environment.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    home = home_with_set(tmp_path / "home", synthetic)
    log = tmp_path / "teacher.log"
    proc = spawn_cli(["teacher", "train", *TEACHER], tmp_path, log, UMT_HOME=str(home))
    wait_for_output(log, "teacher step 1/600", proc)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, stdout, stderr = end_of(proc, log)
    assert rc == 143, stderr[-3000:]
    monkeypatch.setenv("UMT_HOME", str(home))  # the recipe follows the set found there
    folder = teacher_dir(recipe_for_run(load_config(None, TEACHER)), home / "teachers")
    assert "Traceback" not in stderr and not folder.exists()  # no half cache
    keep = partial_path(folder)
    (line,) = stderr.strip().splitlines()
    assert line.startswith(
        "umt teacher: stopped by SIGTERM while training the built-in teacher "
    ), line
    assert line.endswith(
        f"its progress is kept in {keep}: run the same command again to continue from there"
    )
    step = int(line.split("after step ")[1].split("/")[0])
    assert 0 < step < 600 and (keep / "checkpoints").is_dir()
    monkeypatch.setenv("UMT_HOME", str(home))
    res = run_cli(["teacher", "train", *TEACHER], tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"continuing an interrupted training from step {step} ({keep})" in res.stdout
    assert "teacher step 1/600" not in res.stdout and not keep.exists()
    # The continued teacher is the one an uninterrupted training makes, to the bit.
    other = home_with_set(tmp_path / "other", synthetic)
    monkeypatch.setenv("UMT_HOME", str(other))
    res = run_cli(["teacher", "train", *TEACHER], tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    again = other / "teachers" / folder.name
    assert (again / "checksum.sha256").read_text() == (folder / "checksum.sha256").read_text()


def _hold_lock(lock: Path, seconds: float, text: str) -> subprocess.Popen:
    """A helper process that holds the teacher's lock (as a training process does) and says so."""
    code = (
        "import fcntl, sys, time\n"
        f"fh = open({str(lock)!r}, 'a+')\n"
        "fcntl.flock(fh, fcntl.LOCK_EX)\n"
        f"fh.truncate(0); fh.write({text!r}); fh.flush()\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_waiting_for_another_process_s_teacher_is_said_and_not_training_time(
    synthetic, tmp_path, monkeypatch
):
    from train_helpers import TINY
    from umt.config import load_config
    from umt.train.builtin_teacher import recipe_for_run, teacher_dir

    home = home_with_set(tmp_path / "home", synthetic)
    monkeypatch.setenv("UMT_HOME", str(home))
    args = [
        *TINY,
        "teacher.weights=builtin",
        "teacher.builtin_steps=3",
        "probe.enabled=false",
        "train.max_steps=2",
        f"train.output_dir={tmp_path / 'run'}",
    ]
    folder = teacher_dir(recipe_for_run(load_config(None, args)))
    folder.parent.mkdir(parents=True)
    lock = folder.parent / f".{folder.name}.lock"
    holder = _hold_lock(lock, 6.0, "process 4242, step 300/1000")
    t0 = time.time()
    res = run_cli(["pretrain", *args], tmp_path, timeout=240)
    holder.wait(timeout=30)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert (
        f"built-in teacher: waiting for process 4242, step 300/1000 to finish training it (lock "
        f"{lock}); the wait is not training time"
    ) in lines
    assert any(line.startswith("built-in teacher: waited ") for line in lines)
    assert "teacher: built-in synthetic-world CLIP (trained now" in res.stdout  # then it trained
    # The run's training time starts after its set-up: the 6 s wait is not in it.
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert time.time() - t0 > 6 and recs[-1]["time"] < 6, recs


def test_a_long_wait_for_the_teacher_s_lock_is_reported_periodically(
    synthetic, tmp_path, monkeypatch
):
    from umt.config.teacher import TeacherRecipe
    from umt.train import builtin_teacher as bt

    recipe = TeacherRecipe(
        img_size=32, width=32, layers=2, heads=2, output_dim=16, steps=2, batch_size=8,
        warmup_steps=1,
    )  # fmt: skip
    folder = bt.teacher_dir(recipe, tmp_path)
    tmp_path.mkdir(exist_ok=True)
    lock = tmp_path / f".{folder.name}.lock"
    monkeypatch.setattr(bt, "WAIT_REPORT_S", 0.5)
    holder = _hold_lock(lock, 2.5, "process 4242, step 700/1000")
    lines: list[str] = []
    bt.ensure_builtin_teacher(recipe, synthetic, root=tmp_path, log=lines.append)
    holder.wait(timeout=30)
    assert lines[0].startswith("built-in teacher: waiting for process 4242, step 700/1000 ")
    still = [x for x in lines if x.startswith("  still waiting for process 4242, step 700/1000 (")]
    assert 2 <= len(still) <= 6, lines
    assert any(x.startswith("built-in teacher: waited ") for x in lines)
    assert bt.check_cached(folder, recipe) is None
