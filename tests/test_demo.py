"""`umt demo` end to end (heavy: left out of the default suite, run it with ``pytest -m heavy``),
its options, claims and tables."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from train_helpers import (
    end_of,
    home_with_set,
    run_cli,
    spawn_cli,
    threads_per_worker,
    wait_for_output,
)


@pytest.fixture(scope="module")
def small_home(synthetic, tmp_path_factory):
    """A UMT_HOME holding the default suite's small synthetic set (120 / 60 / 60 clips): the
    demo's machinery at a fraction of its cost (its teacher is another, short one)."""
    return home_with_set(tmp_path_factory.mktemp("small-home"), synthetic)


def _demo_worker(parent: int, timeout: float = 120) -> int:
    """The pid of a worker process of the ``umt demo`` process ``parent`` (not its
    multiprocessing resource tracker)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and "spawn_main" in cmd and "resource_tracker" not in cmd:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no worker process of {parent} within {timeout}s")


@pytest.mark.slow
@pytest.mark.heavy
def test_quick_demo_stopped_and_killed_continues_and_compares_four_pretrainings(
    small_home, tmp_path, monkeypatch
):
    """`umt demo --quick`, shortened, on the small set, stopped twice and continued by the same
    command: SIGTERM inside the first pretraining (one line, exit 143, nothing recorded), then a
    run's worker process killed outright as by the out-of-memory killer (one line, exit 1, the
    progress kept). The continued demo has the four pretrainings at equal FLOPs (UMT and
    VideoMAE also at half of it), the same fine-tuning, tables, judged claims, JSON and a plot.
    The claims themselves are measured on the full set by the tests above and by the demo
    itself (README)."""
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--budget-steps", "6", "--finetune-epochs", "1"]
    args += ["--teacher-steps", "20", "--output-dir", str(out)]
    log = tmp_path / "demo.log"
    proc = spawn_cli(args, tmp_path, log, UMT_HOME=str(small_home))
    wait_for_output(log, "pretraining budget:", proc, timeout=600)
    metrics = out / "umt-attention-seed0" / "pretrain" / "metrics.jsonl"
    deadline = time.time() + 300
    while not metrics.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # inside the first pretraining
    rc, stdout, stderr = end_of(proc, log)
    assert rc == 143, stderr[-3000:]
    (line,) = stderr.strip().splitlines()
    assert line.startswith("umt demo: stopped by SIGTERM ") and "Traceback" not in stderr
    assert line.endswith(f"--output-dir {out}) to continue")
    assert json.loads((out / "progress.json").read_text())["runs"] == []
    # A run's process killed outright: one line, exit 1, the progress kept.
    proc = spawn_cli([*args, "--jobs", "2"], tmp_path, log, UMT_HOME=str(small_home))
    wait_for_output(log, "pretraining budget:", proc, timeout=600)
    worker = _demo_worker(proc.pid)
    time.sleep(2)
    os.kill(worker, signal.SIGKILL)
    rc, stdout, stderr = end_of(proc, log)
    assert rc == 1, stderr[-3000:]
    (line,) = stderr.strip().splitlines()
    assert "a process running a demo run ended abruptly" in line and "Traceback" not in stderr
    assert line.startswith(f"umt demo: error: {out}: ")
    assert json.loads((out / "progress.json").read_text())["settings"]["seeds"] == [0]

    # The same command continues, at its default runs at a time.
    monkeypatch.setenv("UMT_HOME", str(small_home))
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads_per_worker()))
    res = run_cli(args, tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in (out / "umt-attention-seed0" / "pretrain.log").read_text()
    # two runs at a time on two cores or more, each in its own process (the same numbers as
    # one after the other with the same threads per run: measured, README)
    from umt.train.demo import default_jobs

    assert f"seeds [0], {default_jobs()} run(s) at a time" in res.stdout
    assert "teacher: built-in synthetic-world CLIP" in res.stdout
    for name in ("demo.md", "demo.json", "demo.png"):
        assert (out / name).is_file(), name
    result = json.loads((out / "demo.json").read_text())
    full = {r["variant"]: r for r in result["runs"] if r["budget"] == 1.0}
    assert set(full) == {"umt-attention", "umt-random", "videomae", "none"}
    budget = result["settings"]["budget_flops"]
    for key in ("umt-attention", "umt-random", "videomae"):
        per_step = result["step_flops"][key]
        assert abs(full[key]["pretrain_flops"] - budget) <= per_step / 2 + 1, key  # equal compute
        assert 0.0 <= full[key]["probe_acc"] <= 1.0
    assert full["umt-attention"]["pretrain_steps"] == 6
    assert full["none"]["pretrain_flops"] == 0 and full["none"]["probe_acc"] is not None
    for r in full.values():
        assert 0.0 <= r["finetune_top1"] <= 1.0
    # the curve: UMT and VideoMAE also at half the budget (quick), probed, not fine-tuned
    half = [r for r in result["runs"] if r["budget"] == 0.5]
    assert {r["variant"] for r in half} == {"umt-attention", "videomae"}
    assert all(r["finetune_top1"] is None and r["probe_acc"] is not None for r in half)
    assert [p["budget"] for p in result["curve"]["umt-attention"]] == [0.5, 1.0]
    assert (out / "umt-attention-b50-seed0" / "pretrain.log").is_file()
    # every claim judged, none "shown" on one seed
    assert {c["claim"] for c in result["claims"]} == {"a", "b", "c", "d"}
    assert not any(c["shown"] for c in result["claims"])
    table = (out / "demo.md").read_text()
    for label in ("UMT, attention masking", "UMT, random masking", "VideoMAE", "no pretraining"):
        assert label in table and label in res.stdout
    assert "What this does not show" in table
    # the runs' own output goes to their logs
    assert "umt pretrain: recipe" not in res.stdout and "umt finetune: recipe" not in res.stdout
    assert "umt pretrain: recipe" in (out / "umt-attention-seed0" / "pretrain.log").read_text()


def test_demo_refuses_bad_options_before_work(tmp_path):
    res = run_cli(["demo", "--seeds", "0"], tmp_path, timeout=60)
    assert res.returncode == 2 and "--seeds: must be at least 1" in res.stderr
    res = run_cli(["demo", "--jobs", "0"], tmp_path, timeout=60)
    assert res.returncode == 2 and "--jobs: must be at least 1" in res.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    res = run_cli(["demo", "--output-dir", str(tmp_path / "busy")], tmp_path, timeout=60)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_demo_defaults_are_the_default_recipes_budgets():
    """The full demo pretrains for the default `umt pretrain`'s steps and fine-tunes for the
    default `umt finetune`'s epochs (both of 30 steps): its runs are the default commands'; the
    quick demo halves both."""
    from umt.config import DEFAULT_FINETUNE_RECIPE, DEFAULT_RECIPE, load_config
    from umt.train.demo import STEPS_PER_EPOCH, DemoSettings

    pretrain, finetune = load_config(DEFAULT_RECIPE), load_config(DEFAULT_FINETUNE_RECIPE)
    for cfg in (pretrain, finetune):
        assert cfg.schedule.steps_per_epoch == STEPS_PER_EPOCH
    full, quick = DemoSettings(), DemoSettings.quick()
    assert full.budget_steps == pretrain.schedule.epochs * STEPS_PER_EPOCH == 360
    assert full.finetune_epochs == finetune.schedule.epochs == 16
    assert (quick.budget_steps, quick.finetune_epochs) == (180, 8)


def _result(values: dict[tuple[str, float], list[tuple[float, float, float | None]]], rand):
    """A DemoResult from ``{(variant, budget): [(knn, linear, finetune) per seed]}``."""
    from umt.train.demo import DemoResult, DemoSettings, RunRecord

    settings = DemoSettings(seeds=(0, 1, 2), budgets=(1 / 3, 1.0))
    runs = []
    for (variant, budget), per_seed in values.items():
        for seed, (knn, lin, ft) in enumerate(per_seed):
            rec = RunRecord(variant, seed, budget=budget, probe_acc=knn, linear_probe_acc=lin)
            rec.finetune_top1 = ft
            if variant == "umt-attention" and budget == 1.0:
                rec.probe_acc_random_init, rec.linear_probe_acc_random_init = rand[seed]
            runs.append(rec)
    return DemoResult(
        settings={"seeds": [0, 1, 2], "budgets": list(settings.budgets), "budget_steps": 360,
                  "budget_flops": 1e12, "finetune_epochs": 8, "test_views": "1x1"},
        teacher="t", teacher_zero_shot={}, step_flops={}, runs=runs,
    )  # fmt: skip


def test_claims_are_judged_against_twice_the_larger_std():
    from umt.train.demo import claims, findings

    res = _result(
        {
            ("umt-attention", 1.0): [(0.40, 0.50, 0.60), (0.42, 0.52, 0.62), (0.44, 0.54, 0.64)],
            ("umt-attention", 1 / 3): [(0.30, 0.40, None), (0.31, 0.41, None), (0.32, 0.42, None)],
            # random masking: 2 points behind with a 2-point std -> not shown
            ("umt-random", 1.0): [(0.36, 0.48, 0.58), (0.40, 0.50, 0.60), (0.44, 0.52, 0.62)],
            ("videomae", 1.0): [(0.20, 0.30, 0.40), (0.21, 0.31, 0.41), (0.22, 0.32, 0.42)],
            ("videomae", 1 / 3): [(0.10, 0.20, None), (0.11, 0.21, None), (0.12, 0.22, None)],
            ("none", 1.0): [(None, None, 0.50), (None, None, 0.70), (None, None, 0.30)],
        },
        rand=[(0.35, 0.48), (0.36, 0.49), (0.37, 0.50)],
    )
    judged = {(c["claim"], c["metric"], c["a"]): c for c in claims(res)}
    a_knn = judged[("a", "probe_acc", "UMT, attention")]
    assert a_knn["difference"] == pytest.approx(0.02) and not a_knn["shown"]
    assert "2x the larger std" in a_knn["why"]
    assert judged[("b", "finetune_top1", "UMT, attention")]["shown"]  # +20 points, std 2
    assert judged[("b", "probe_acc", "UMT, attention, 0.33x")]["shown"]  # 31 vs 21
    c = judged[("c", "finetune_top1", "UMT, attention")]
    assert not c["shown"] and c["b_std"] == pytest.approx(0.2)  # none's spread is 20 points
    d_knn, d_lin = (judged[("d", m, "UMT, attention")] for m in ("probe_acc", "linear_probe_acc"))
    assert d_knn["shown"] is False and "10 points" in d_knn["why"]  # +6: within 2 std, < 10
    assert d_lin["difference"] == pytest.approx(0.03) and not d_lin["shown"]
    lines = "\n".join(findings(res))
    assert "NOT SHOWN" in lines and "SHOWN (" in lines


def test_class_part_accuracy_scores_each_half_of_the_class():
    from umt.data.synth import CLASSES, class_part_accuracy
    from umt.errors import InputError

    index = {c["name"]: i for i, c in enumerate(CLASSES)}
    pairs = [
        (index["ball moves left"], index["ball moves left"]),  # both right
        (index["ball moves left"], index["ball moves right"]),  # category only
        (index["ring moves up"], index["bar moves up"]),  # motion only
        (index["cross moves right"], index["bar moves left"]),  # neither
    ]
    assert class_part_accuracy(pairs) == {"category": 0.5, "motion": 0.5}
    assert class_part_accuracy(pairs[:2]) == {"category": 1.0, "motion": 0.5}
    with pytest.raises(InputError, match="not one of the 12 classes"):
        class_part_accuracy([(0, 12)])
    with pytest.raises(InputError, match="no predictions"):
        class_part_accuracy([])


def test_demo_reports_what_fine_tuning_learned_per_half_of_the_class(tmp_path):
    """The fine-tuned runs' category and motion accuracy, read from their test predictions,
    go to the table and to a finding (reported, not judged as a claim)."""
    from umt.train.demo import _class_parts, claims, findings, format_table

    preds = tmp_path / "predictions.jsonl"
    preds.write_text(
        "\n".join(
            json.dumps({"path": f"v{i}.mp4", "label": label, "prediction": pred})
            for i, (label, pred) in enumerate([(0, 0), (0, 1), (5, 11), (7, 9)])
        )
        + "\n"
    )
    assert _class_parts(preds) == {"category": 0.5, "motion": 0.5}
    res = _result(
        {
            ("umt-attention", 1.0): [(0.40, 0.50, 0.20), (0.42, 0.52, 0.22), (0.44, 0.54, 0.24)],
            ("umt-random", 1.0): [(0.36, 0.48, 0.14), (0.40, 0.50, 0.15), (0.44, 0.52, 0.16)],
        },
        rand=[(0.35, 0.48), (0.36, 0.49), (0.37, 0.50)],
    )
    for rec in res.runs:  # category 0.6 / 0.45, motion at chance, the same each seed
        rec.finetune_category_acc = 0.6 if rec.variant == "umt-attention" else 0.45
        rec.finetune_motion_acc = 1 / 3
    table = format_table(res)
    assert "| fine-tune category | fine-tune motion |" in table
    assert "| 22.0 ± 2.0 | 60.0 ± 0.0 | 33.3 ± 0.0 |" in table
    assert "| 15.0 ± 1.0 | 45.0 ± 0.0 | 33.3 ± 0.0 |" in table
    learned = [line for line in findings(res) if line.startswith("- What fine-tuning learned")]
    assert learned == [
        "- What fine-tuning learned: the share of test clips whose predicted class has the right "
        "category / the right motion (chance 25.0 / 33.3), mean over seeds: UMT, attention "
        "masking 60.0 / 33.3; UMT, random masking 45.0 / 33.3."
    ]
    assert not {c["metric"] for c in claims(res)} & {
        "finetune_category_acc",
        "finetune_motion_acc",
    }
