"""Pretraining on WebDataset tar shards: fixed-length epochs over a stream, exact resume."""

from __future__ import annotations

import json

import pytest

from train_helpers import tiny_config
from umt.train import pretrain


@pytest.fixture(scope="module")
def shards(synthetic, tmp_path_factory):
    """Five shards of 8 synthetic clips each: ``(pattern, paths)``."""
    from umt.data import load_annotations, shard_pattern, write_shards

    records = load_annotations(synthetic / "train.csv")[:40]
    paths = write_shards(records, tmp_path_factory.mktemp("shards"), per_shard=8)
    assert len(paths) == 5
    return shard_pattern(paths), paths


def _config(pattern, out, *extra):
    return tiny_config(
        out.parent,  # unused: train_list is given
        out,
        f"data.train_list={pattern}",
        "data.num_samples=16",
        "schedule.steps_per_epoch=null",  # the stream's epoch, not the tiny recipe's 30 steps
        *extra,
    )


def _epochs(out):
    return [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_streamed_epochs_have_the_configured_length(shards, tmp_path, capsys):
    pattern, _ = shards
    res = pretrain(_config(pattern, tmp_path / "run", "train.max_steps=6"))
    assert len(res.losses) == 6 and all(0 < x < 4 for x in res.losses)
    # 16 clips per epoch / batch 4 = 4 steps per epoch.
    assert _epochs(tmp_path / "run") == [0, 0, 0, 0, 1, 1]
    assert "16 clips per epoch, streamed from tar shards" in capsys.readouterr().out


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_and_at_epoch_end_gives_same_losses(shards, tmp_path, workers):
    """10 straight steps equal 3 + 5 (resumed mid-epoch; stops at an epoch's end) + 2 (resumed
    there), with the skipped batches taken from the right DataLoader workers."""
    pattern, _ = shards
    w = f"data.num_workers={workers}"
    straight = pretrain(_config(pattern, tmp_path / "a", "train.max_steps=10", w))
    parts = [pretrain(_config(pattern, tmp_path / "b", "train.max_steps=3", w))]
    for stop in (8, 10):
        parts.append(
            pretrain(
                _config(pattern, tmp_path / "b", f"train.max_steps={stop}", "train.resume=auto", w)
            )
        )
    assert [p.first_step for p in parts] == [0, 3, 8]
    resumed = [x for p in parts for x in p.losses]
    assert resumed == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)
    assert _epochs(tmp_path / "b") == [0] * 4 + [1] * 4 + [2] * 2


def test_bad_shard_settings_refused_before_training(shards, tmp_path):
    pattern, paths = shards
    cfg = tiny_config(tmp_path, tmp_path / "x", f"data.train_list={pattern}")
    with pytest.raises(ValueError, match="set data.num_samples"):
        pretrain(cfg)
    missing = str(paths[0].parent / "shard-{000000..000006}.tar")
    with pytest.raises(FileNotFoundError, match=r"2 of 7 shard\(s\) not found: .*shard-000005"):
        pretrain(_config(missing, tmp_path / "y"))
    with pytest.raises(ValueError, match=r"5 shard\(s\) for 1 process\(es\) x 8 worker\(s\)"):
        pretrain(_config(pattern, tmp_path / "z", "data.num_workers=8"))
    # Refused before anything was built or written.
    assert not any((tmp_path / name).exists() for name in ("x", "y", "z"))
