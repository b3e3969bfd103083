"""Data parallelism: 2 gloo processes train the same model as 1 process with twice the batch."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import TORCHRUN_2, run_cli, tiny_args
from umt.train.distributed import ResumableSampler

# Stochastic depth on (the tiny test config turns it off).
DROP_PATH = "model.drop_path_rate=0.3"


def test_sampler_ranks_partition_the_single_process_batches():
    n, b, world = 37, 3, 2
    single = list(ResumableSampler(n, b * world, 1, 0, seed=4))
    ranks = [list(ResumableSampler(n, b, world, r, seed=4)) for r in range(world)]
    assert len(single) == sum(len(r) for r in ranks) == (n // (b * world)) * b * world
    for k in range(len(single) // (b * world)):
        union = sorted(x for r in ranks for x in r[k * b : (k + 1) * b])
        assert union == sorted(single[k * b * world : (k + 1) * b * world])
    # Different epochs shuffle differently; a resumed position skips whole batches.
    s = ResumableSampler(n, b, world, 1, seed=4)
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != ranks[1]
    s.set_position(1, 2)
    assert list(s) == e1[2 * b :]


def _read(out):
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    return losses, load_file(str(out / "checkpoints" / "step_000003" / "model.safetensors"))


@pytest.fixture(scope="module")
def one_process_run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    args = ["pretrain", "train.max_steps=3", "train.device=cpu"]
    res = run_cli([*args, *tiny_args(synthetic, out / "run", "train.batch_size=4", DROP_PATH)], out)
    assert res.returncode == 0, res.stderr[-3000:]
    return _read(out / "run")


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy,compiled",
    [
        ("ddp", False),
        ("fsdp", False),
        # > 30 s on 2 cores with a cold inductor cache
        pytest.param("ddp", True, marks=pytest.mark.heavy),
        pytest.param("fsdp", True, marks=pytest.mark.heavy),
    ],
)
def test_two_gloo_processes_equal_one_with_double_batch(
    synthetic, one_process_run, tmp_path, strategy, compiled
):
    # Every random draw of a sample (crop, flip, mask, drop path) is seeded from (run seed,
    # epoch, sample index), so drop path is on here too. Compiled: the blocks are compiled
    # before DDP / FSDP2 wrap them; the one eager process is the reference all the same.
    from umt.train.distributed import fsdp_available

    if strategy == "fsdp" and not fsdp_available():
        pytest.skip("FSDP2 (fully_shard) not in this torch")
    if compiled and shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler for inductor")
    launcher = TORCHRUN_2
    args = [
        "pretrain",
        "train.max_steps=3",
        "dist.backend=gloo",
        "train.device=cpu",
        f"dist.strategy={strategy}",
        f"train.compile={str(compiled).lower()}",
    ]
    two = run_cli(
        [*args, *tiny_args(synthetic, tmp_path / "two", "train.batch_size=2", DROP_PATH)],
        tmp_path,
        launcher=launcher,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es) x batch 2" in two.stdout
    l1, w1 = one_process_run
    l2, w2 = _read(tmp_path / "two")
    assert len(l1) == len(l2) == 3
    assert ("torch.compile: 4 blocks" in two.stdout) == compiled
    assert l2 == pytest.approx(l1, rel=1e-4 if compiled else 1e-5, abs=1e-6)
    assert w1.keys() == w2.keys()
    # Adam's update is ~lr * sign(grad) early on: allow float noise on near-zero gradients.
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=5e-5)


@pytest.mark.slow
def test_torchrun_with_one_process_wraps_the_model(synthetic, one_process_run, tmp_path):
    """``torchrun --nproc_per_node 1`` with ``dist.strategy=fsdp`` joins a process group of one
    and shards the model (what the GPU suite runs with NCCL): the one process's numbers."""
    from umt.train.distributed import fsdp_available

    if not fsdp_available():
        pytest.skip("FSDP2 (fully_shard) not in this torch")
    launcher = [*TORCHRUN_2[:5], "1", *TORCHRUN_2[6:]]
    args = ["pretrain", "train.max_steps=3", "dist.backend=gloo", "train.device=cpu",
            "dist.strategy=fsdp"]  # fmt: skip
    one = run_cli(
        [*args, *tiny_args(synthetic, tmp_path / "one", "train.batch_size=4", DROP_PATH)],
        tmp_path,
        launcher=launcher,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert "1 process(es) x batch 4" in one.stdout and "; dist: fsdp (gloo)" in one.stdout
    l1, _ = one_process_run
    assert _read(tmp_path / "one")[0] == pytest.approx(l1, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_two_process_resume_with_accumulation_and_clipping(synthetic, tmp_path):
    """3 + 2 steps (resumed) equal 5 straight steps under 2 processes (FSDP2 where available)."""
    from umt.train.distributed import fsdp_available

    strategy = "fsdp" if fsdp_available() else "ddp"
    launcher = TORCHRUN_2
    common = [
        "pretrain",
        "dist.backend=gloo",
        "train.device=cpu",
        f"dist.strategy={strategy}",
        "optim.clip_grad=0.5",
        "train.accum_steps=2",
    ]

    def run(out, *extra):
        res = run_cli(
            [*common, *tiny_args(synthetic, out, "train.batch_size=2", *extra)],
            tmp_path,
            launcher=launcher,
        )
        assert res.returncode == 0, res.stderr[-3000:]

    run(tmp_path / "straight", "train.max_steps=5")
    run(tmp_path / "parts", "train.max_steps=3")
    run(tmp_path / "parts", "train.max_steps=5", "train.resume=auto")

    def losses(out):
        return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    assert len(losses(tmp_path / "straight")) == 5
    assert losses(tmp_path / "parts") == pytest.approx(losses(tmp_path / "straight"), rel=1e-6)


@pytest.mark.slow
def test_two_processes_stream_uneven_tar_shards(synthetic, tmp_path):
    """5 shards over 2 processes (3 and 2): each process cycles over its own, so both take the
    same number of batches per epoch and neither waits forever on the other."""
    from umt.data import load_annotations, shard_pattern, write_shards

    records = load_annotations(synthetic / "train.csv")[:40]
    pattern = shard_pattern(write_shards(records, tmp_path / "s", per_shard=8))
    args = [
        "pretrain",
        "train.max_steps=5",
        "dist.backend=gloo",
        "train.device=cpu",
        "dist.strategy=ddp",
        f"data.train_list={pattern}",
        "data.num_samples=16",
        "schedule.steps_per_epoch=null",  # the stream's epoch, not the tiny recipe's
    ]
    res = run_cli(
        [*args, *tiny_args(synthetic, tmp_path / "run", "train.batch_size=2")],
        tmp_path,
        launcher=TORCHRUN_2,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "16 clips per epoch, streamed from tar shards; 2 process(es) x batch 2" in res.stdout
    epochs = [
        json.loads(x)["epoch"]
        for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 0, 0, 0, 1]
