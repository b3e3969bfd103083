"""Frozen-feature probes (k-NN, linear) and the probe that ends a pretraining run."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import run_cli, tiny_args
from umt.evaluate.probe import clip_features, knn_accuracy, linear_probe_accuracy


def _clusters(n_per: int, classes: int, dim: int, spread: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(n_per)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


def test_knn_hand_case():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.05]])
    train_y = torch.tensor([0, 0, 1, 1, 2])
    test_x = torch.tensor([[0.95, 0.0], [0.05, 1.0], [-0.9, 0.0]])
    # k = 1: each test point takes its nearest neighbour's class (after standardisation).
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0, 1, 2]), k=1) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([1, 0, 2]), k=1) == pytest.approx(
        1 / 3
    )


def test_probes_separate_clusters_and_not_noise():
    x, y = _clusters(30, 4, 16, spread=0.5)
    xt, yt = _clusters(10, 4, 16, spread=0.5, seed=0)
    assert knn_accuracy(x, y, xt, yt, k=5) == 1.0
    assert linear_probe_accuracy(x, y, xt, yt, epochs=50) == 1.0
    # Labels unrelated to the features: both probes near chance (1/4).
    g = torch.Generator().manual_seed(1)
    noise_y = torch.randint(0, 4, (len(y),), generator=g)
    noise_yt = torch.randint(0, 4, (len(yt),), generator=g)
    assert linear_probe_accuracy(x, noise_y, xt, noise_yt, epochs=50) < 0.6
    assert knn_accuracy(x, noise_y, xt, noise_yt, k=5) < 0.6


def test_linear_probe_is_deterministic():
    x, y = _clusters(20, 3, 8, spread=2.0)
    xt, yt = _clusters(10, 3, 8, spread=2.0, seed=3)
    a = linear_probe_accuracy(x, y, xt, yt, epochs=30)
    assert a == linear_probe_accuracy(x, y, xt, yt, epochs=30)


def test_clip_features_are_per_time_step_means():
    from umt.models import create_model

    enc = create_model(
        "umt-b16", img_size=32, num_frames=4, embed_dim=24, depth=1, num_heads=2, align_layers=0
    )
    enc.eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        f = clip_features(enc, video)
        tokens = enc.forward_features(video)  # [2, 4*4, 24]
    assert f.shape == (2, 4 * 24)
    expected = torch.cat([tokens[:, 4 * t : 4 * (t + 1)].mean(1) for t in range(4)], dim=1)
    torch.testing.assert_close(f, expected)


def test_pretraining_ends_with_a_probe_and_a_json_line(synthetic, tmp_path):
    """The tiny stage 1 with the probe on: the trained and the random-init student are probed
    on the synthetic labels; probe.json is written and stdout's last line is the JSON summary."""
    out = tmp_path / "run"
    args = tiny_args(synthetic, out, "train.max_steps=3", "probe.enabled=true", "probe.epochs=20")
    res = run_cli(["pretrain", *args], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    keys = (
        "probe_acc",
        "probe_acc_random_init",
        "linear_probe_acc",
        "linear_probe_acc_random_init",
    )
    for key in (*keys, "chance"):
        assert 0.0 <= last[key] <= 1.0, key
    assert last["chance"] == pytest.approx(1 / 12)
    assert last["objective"] == "umt" and last["mask"] == "attention"
    assert "random-init student: k-NN" in res.stdout
    record = json.loads((out / "probe.json").read_text())
    assert record["summary"] == last
    assert record["trained"]["num_train"] == 120 and record["trained"]["num_val"] == 60
    res = run_cli(
        ["pretrain", *tiny_args(synthetic, tmp_path / "r2", "train.max_steps=1")], tmp_path
    )
    assert res.returncode == 0 and "probe" not in res.stdout  # probe.enabled=false


def test_probe_is_on_for_the_synthetic_set_only_by_default():
    from umt.config import load_config
    from umt.train.probe import probe_enabled

    assert probe_enabled(load_config("umt-tiny-synthetic"))
    assert probe_enabled(load_config("videomae-tiny-synthetic"))
    assert not probe_enabled(load_config("umt-tiny-synthetic", ["data.train_list=k400.csv"]))
    assert not probe_enabled(load_config("umt-b16-k710", ["data.train_list=k710.csv"]))
    assert probe_enabled(
        load_config("umt-b16-k710", ["data.train_list=x.csv", "probe.enabled=true"])
    )
