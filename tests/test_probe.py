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


def _tiny_encoder(num_frames: int, tubelet: int = 1):
    from umt.models import create_model

    enc = create_model(
        "umt-b16",
        img_size=48,
        num_frames=num_frames,
        tubelet_size=tubelet,
        embed_dim=24,
        depth=1,
        num_heads=2,
        align_layers=0,
    )
    return enc.eval()


def _cells(tokens: torch.Tensor, steps: int) -> torch.Tensor:
    """``[B, T'*9, C]`` tokens of 3 x 3 patch grids -> ``[B, T', 4C]``: the means of the four
    overlapping 2 x 2 windows (adaptive pooling of 3 to 2 cells: rows/columns 0-1 and 1-2),
    channel-major like ``adaptive_avg_pool2d(...).flatten(1)``."""
    b, _, c = tokens.shape
    grid = tokens.reshape(b, steps, 3, 3, c)
    wins = [grid[:, :, r : r + 2, q : q + 2].mean((2, 3)) for r in (0, 1) for q in (0, 1)]
    return torch.stack(wins, dim=-1).reshape(b, steps, 4 * c)  # [B, T', C, 4] -> [B, T', 4C]


def test_clip_features_are_appearance_and_displacement():
    """Appearance: the mean of every token; displacement: the 2 x 2 cell means of the later
    half of the time steps minus the earlier half's."""
    enc = _tiny_encoder(4)
    video = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        f = clip_features(enc, video)
        tokens = enc.forward_features(video)  # [2, 4*9, 24]
    assert f.shape == (2, 24 + 4 * 24)
    cells = _cells(tokens, 4)
    expected = torch.cat([tokens.mean(1), cells[:, 2:].mean(1) - cells[:, :2].mean(1)], dim=1)
    torch.testing.assert_close(f, expected)


def test_clip_features_of_odd_and_single_time_steps():
    """Three time steps: the middle one is in neither half. One (a tubelet spanning the
    clip): appearance alone."""
    enc = _tiny_encoder(3)
    video = torch.randn(2, 3, 3, 48, 48)
    with torch.no_grad():
        f = clip_features(enc, video)
        tokens = enc.forward_features(video)
    cells = _cells(tokens, 3)
    torch.testing.assert_close(f[:, 24:], cells[:, 2] - cells[:, 0])
    enc = _tiny_encoder(2, tubelet=2)
    video = torch.randn(2, 3, 2, 48, 48)
    with torch.no_grad():
        f = clip_features(enc, video)
        tokens = enc.forward_features(video)  # [2, 9, 24]
    torch.testing.assert_close(f, tokens.mean(1))


def test_clip_features_read_where_the_actor_goes():
    """Two classes that differ only in the direction a bright square moves: the appearance
    half cannot tell them apart (the same square, the same places visited), the displacement
    half can, even through a random-init encoder."""
    from umt.evaluate.probe import knn_accuracy

    enc = _tiny_encoder(4)
    g = torch.Generator().manual_seed(0)

    def clip(direction: int) -> torch.Tensor:
        video = 0.1 * torch.randn(3, 4, 48, 48, generator=g)
        row = int(torch.randint(0, 32, (1,), generator=g))
        for t in range(4):
            col = 4 + 10 * t if direction == 0 else 34 - 10 * t
            video[:, t, row : row + 12, col : col + 12] += 2.0
        return video

    labels = torch.tensor([i % 2 for i in range(40)])
    videos = torch.stack([clip(int(y)) for y in labels])
    with torch.no_grad():
        f = clip_features(enc, videos)
    train, test = slice(0, 20), slice(20, 40)
    both = knn_accuracy(f[train], labels[train], f[test], labels[test], k=3)
    appearance = knn_accuracy(f[train, :24], labels[train], f[test, :24], labels[test], k=3)
    assert both == 1.0
    assert appearance < 0.8


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
