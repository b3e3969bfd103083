"""The default `umt pretrain` (built-in teacher, then a probe that shows what the student learnt)
and `umt demo` end to end. Heavy (minutes: they train a teacher and several tiny models): left out
of the default suite, run them with ``pytest -m heavy``."""

from __future__ import annotations

import json
import os

import pytest

from train_helpers import run_cli

# Fewer teacher steps than the recipe's 1000 (which take about 3.5 minutes on 2 cores): colour is
# learnt by then, which is what the probe below needs to see.
TEACHER_STEPS = 200


@pytest.fixture(scope="module")
def umt_home(synthetic, tmp_path_factory):
    """A UMT_HOME holding the session's synthetic set (the teacher cache starts empty)."""
    home = tmp_path_factory.mktemp("home")
    (home / "synthetic").symlink_to(synthetic, target_is_directory=True)
    # The runs are the only work at that moment: let them use both cores (run_cli's default
    # is one thread).
    saved = {k: os.environ.get(k) for k in ("UMT_HOME", "OMP_NUM_THREADS")}
    os.environ.update(UMT_HOME=str(home), OMP_NUM_THREADS="2")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.slow
@pytest.mark.heavy
def test_default_run_distils_the_builtin_teacher_and_learns(umt_home, tmp_path):
    """`umt pretrain` with the default recipe: it trains the built-in teacher (none is cached),
    distils it, and its k-NN probe beats the same student at random init by a clear margin."""
    res = run_cli(["pretrain", f"teacher.builtin_steps={TEACHER_STEPS}"], tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "built-in teacher: none cached for this recipe; training it" in out
    assert "teacher: built-in synthetic-world CLIP (trained now" in out
    assert "zero-shot on 960 val frames: colour" in out
    assert "RANDOMLY" not in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["teacher"] == "builtin" and summary["chance"] == pytest.approx(1 / 12)
    assert summary["probe_acc"] >= summary["probe_acc_random_init"] + 0.10, summary
    assert summary["probe_acc"] >= 2 * summary["chance"], summary
    (teacher,) = (umt_home / "teachers").glob("synthetic-clip-*")
    report = json.loads((teacher / "report.json").read_text())
    assert report["zero_shot"]["colour_acc"] >= 0.9, report  # chance 1/3
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "probe.json").read_text())["summary"] == summary


@pytest.mark.slow
@pytest.mark.heavy
def test_demo_quick_compares_four_pretrainings(umt_home, tmp_path):
    """`umt demo --quick`, shortened: the four pretrainings at equal FLOPs, the same fine-tuning,
    a table, findings, JSON and a plot. Reuses the teacher the default run cached."""
    out = tmp_path / "demo"
    args = ["--budget-steps", "12", "--finetune-epochs", "1", "--teacher-steps", str(TEACHER_STEPS)]
    res = run_cli(["demo", "--quick", *args, "--output-dir", str(out)], tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(cached)" in res.stdout.splitlines()[1]  # the teacher trained above
    for name in ("demo.md", "demo.json", "demo.png"):
        assert (out / name).is_file(), name
    result = json.loads((out / "demo.json").read_text())
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"umt-attention", "umt-random", "videomae", "none"}
    budget = result["settings"]["budget_flops"]
    for key in ("umt-attention", "umt-random", "videomae"):
        per_step = result["step_flops"][key]
        assert abs(runs[key]["pretrain_flops"] - budget) <= per_step / 2 + 1, key  # equal compute
        assert 0.0 <= runs[key]["probe_acc"] <= 1.0
    assert runs["umt-attention"]["pretrain_steps"] == 12
    assert runs["none"]["pretrain_flops"] == 0 and runs["none"]["probe_acc"] is not None
    for r in runs.values():
        assert 0.0 <= r["finetune_top1"] <= 1.0
    table = (out / "demo.md").read_text()
    for label in ("UMT, attention masking", "UMT, random masking", "VideoMAE", "no pretraining"):
        assert label in table and label in res.stdout
    assert "What this does not show" in table
    assert "epoch" not in res.stdout  # the runs' own output goes to their logs
    assert (out / "umt-attention-seed0" / "pretrain.log").is_file()


def test_demo_refuses_bad_options_before_work(tmp_path):
    res = run_cli(["demo", "--seeds", "0"], tmp_path, timeout=60)
    assert res.returncode == 2 and "--seeds: must be at least 1" in res.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    res = run_cli(["demo", "--output-dir", str(tmp_path / "busy")], tmp_path, timeout=60)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert not (tmp_path / "runs").exists()
