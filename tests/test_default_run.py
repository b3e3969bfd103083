"""The default `umt pretrain` end to end (the built-in teacher trained, then a probe that shows
what the student learnt), and the runs that start from it or compare with it: the default
`umt finetune` against scratch, random masking and VideoMAE at the same FLOPs. The tests use
the run of the first, in this order: ``pytest -n`` takes them whole to one worker
(``--dist loadfile``). Heavy (minutes: they train a teacher and several tiny models): left out
of the default suite, run them with ``pytest -m heavy``."""

from __future__ import annotations

import json

import pytest

from train_helpers import home_with_set, run_cli, run_cli_together, threads_per_worker


@pytest.fixture(scope="module")
def umt_home(synthetic_full, tmp_path_factory):
    """A UMT_HOME holding the full default synthetic set (the teacher cache starts empty)."""
    home = home_with_set(tmp_path_factory.mktemp("home"), synthetic_full)
    # Alone, the runs use both cores (run_cli's default is one thread); beside another
    # pytest-xdist worker, their share.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UMT_HOME", str(home))
        mp.setenv("OMP_NUM_THREADS", str(threads_per_worker()))
        yield home


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The folder the default commands run in: `umt finetune` finds `umt pretrain`'s run there."""
    return tmp_path_factory.mktemp("work")


def _summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.heavy
def test_default_run_distils_the_builtin_teacher_and_learns(umt_home, workdir):
    """`umt pretrain` with the default recipe: it trains the built-in teacher (none is cached;
    the recipe's 1000 steps), distils it, and its probes beat the same student at random init
    (claim (d) of the built-in world, at a single run's margin)."""
    res = run_cli(["pretrain"], workdir, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "built-in teacher: none cached for this recipe; training it" in out
    assert "teacher: built-in synthetic-world CLIP (trained now" in out
    assert "zero-shot on 4800 val frames: colour" in out
    assert "RANDOMLY" not in out
    summary = _summary(out)
    assert summary["teacher"] == "builtin" and summary["chance"] == pytest.approx(1 / 12)
    # Measured (seed 0, two threads, 600 val clips: binomial sd ~2 points) on the set this test
    # makes (deterministic bytes): k-NN 35.5% vs 23.2% and linear 41.3% vs 27.8%; over the
    # README demo's 3 seeds +11.9 and +13.2, the seeds' std at most 0.7: claim (d). A single
    # run is held to 8 points on both.
    assert summary["probe_acc"] >= summary["probe_acc_random_init"] + 0.08, summary
    assert summary["linear_probe_acc"] >= summary["linear_probe_acc_random_init"] + 0.08, summary
    (teacher,) = (umt_home / "teachers").glob("synthetic-clip-*")
    zs = json.loads((teacher / "report.json").read_text())["zero_shot"]
    # measured on the set this test makes: 98.8% / 83.5% (two threads)
    assert zs["colour_acc"] >= 0.9 and zs["shape_acc"] >= 0.75, zs  # chance 1/6 and 1/4
    (run,) = (workdir / "runs").iterdir()
    assert json.loads((run / "probe.json").read_text())["summary"] == summary


@pytest.mark.slow
@pytest.mark.heavy
def test_default_finetune_from_the_default_pretraining_beats_scratch(umt_home, workdir):
    """`umt finetune` after the default `umt pretrain` (found in the same folder) against the
    same fine-tuning from scratch, both tested on the 600 test clips: claim (c), at half the
    recipe's 16 epochs (the schedule fitted to 8), where the margin is as large."""
    quick = ["eval.test_views=1x1", "eval.every_epochs=8", "schedule.epochs=8"]
    runs = run_cli_together(
        [
            ["finetune", *quick, "train.output_dir=ft-pretrained"],
            ["finetune", *quick, "model.init=scratch", "train.output_dir=ft-scratch"],
        ],
        workdir,
    )
    for rc, _, stderr in runs:
        assert rc == 0, stderr[-3000:]
    assert "from scratch" not in runs[0][1] and "from scratch" in runs[1][1]
    top1 = {}
    for name in ("ft-pretrained", "ft-scratch"):
        test = json.loads((workdir / name / "test" / "results.json").read_text())
        assert test["videos"] == 600 and test["views"] == 1
        top1[name] = test["top1"]
    # measured (seed 0, one thread each; chance 8.3%): at 8 epochs 18.5% vs 9.0% (2 min 4 s on
    # a slow 2-core machine), at the recipe's 16 epochs 21.2% vs 13.0% (about twice the time)
    assert top1["ft-pretrained"] >= top1["ft-scratch"] + 4.0, top1


@pytest.mark.slow
@pytest.mark.heavy
def test_attention_masking_beats_random_masking_and_videomae_at_equal_compute(umt_home, workdir):
    """Claims (a) and (b) on the probes at a single run's margin (a: the linear probe, where
    the demo shows it; b: both): the default pretraining (attention masking, from the test
    above) against the same run with random masking and against VideoMAE at the same FLOPs
    (422 of its steps: ``umt demo``'s count), side by side."""
    (default_run,) = (workdir / "runs").glob("umt-tiny-synthetic-*")
    umt = json.loads((default_run / "probe.json").read_text())["summary"]
    probe = ["probe.enabled=true", "probe.random_init=false"]
    runs = run_cli_together(
        [
            ["pretrain", "mask.kind=random", *probe, "train.output_dir=pt-random"],
            [
                "pretrain",
                "--config",
                "videomae-tiny-synthetic",
                "schedule.epochs=15",
                "train.max_steps=422",
                *probe,
                "train.output_dir=pt-videomae",
            ],
        ],
        workdir,
    )
    for rc, _, stderr in runs:
        assert rc == 0, stderr[-3000:]
    other = {
        name: json.loads((workdir / name / "probe.json").read_text())["summary"]
        for name in ("pt-random", "pt-videomae")
    }
    # Measured (seed 0) on the set these tests make: k-NN / linear 35.5 / 41.3 for UMT with
    # attention masking (two threads, the test above), 35.2 / 35.3 with random masking, 31.3 /
    # 32.3 for VideoMAE (one thread each). The README's demo, over 3 seeds: against random
    # masking +0.6 (k-NN: not a claim shown) / +5.1; against VideoMAE +5.2 / +10.9.
    rand, mae = other["pt-random"], other["pt-videomae"]
    assert umt["linear_probe_acc"] >= rand["linear_probe_acc"] + 0.02, (umt, rand)
    assert umt["probe_acc"] >= mae["probe_acc"] + 0.02, (umt, mae)
    assert umt["linear_probe_acc"] >= mae["linear_probe_acc"] + 0.04, (umt, mae)
