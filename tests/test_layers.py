"""Shared layers: the version-independent truncated-normal initialiser; the official inits."""

from __future__ import annotations

import math

import torch

from umt.models.layers import trunc_normal_, uniform_to_trunc_normal_
from umt.models.video_vit import VideoViT


def test_trunc_normal_matches_the_truncated_distribution():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(400_000), std=1.0, mean=0.5, a=-0.5, b=1.5)
    assert x.min() >= -0.5 and x.max() <= 1.5
    # N(0.5, 1) truncated to mean +- 1: mean 0.5, variance 1 - 2 phi(1) / (Phi(1) - Phi(-1)).
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    mass = math.erf(1 / math.sqrt(2))
    assert abs(float(x.mean()) - 0.5) < 3e-3
    assert abs(float(x.var()) - (1 - 2 * phi / mass)) < 3e-3
    # Wide bounds (the usual std=0.02 init): a plain normal with that std.
    y = trunc_normal_(torch.empty(400_000), std=0.02)
    assert abs(float(y.std()) - 0.02) < 1e-4 and abs(float(y.mean())) < 1e-4


def test_trunc_normal_is_inverse_cdf_of_one_uniform_draw_per_element():
    """The draws are a fixed function of the RNG stream (one uniform per element), so a seeded
    initialisation is the same on every torch release."""
    torch.manual_seed(3)
    x = trunc_normal_(torch.empty(1000), std=0.5, a=-1.0, b=1.0)
    torch.manual_seed(3)
    lo, hi = (0.5 * (1 + math.erf(v / (0.5 * math.sqrt(2)))) for v in (-1.0, 1.0))
    u = torch.empty(1000).uniform_(2 * lo - 1, 2 * hi - 1)
    torch.testing.assert_close(x, torch.erfinv(u) * 0.5 * math.sqrt(2), rtol=0, atol=1e-6)


def test_trunc_normal_never_maps_a_uniform_bound_to_a_truncation_bound():
    """``uniform_`` can return its lower bound exactly (about once in 2^24 draws); with wide
    bounds that is -1 and ``erfinv(-1) = -inf``, which a plain clamp turns into -2.0 (100 std at
    std 0.02). The edge values must map to the most extreme finite draw instead."""
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        u = torch.tensor([-1.0, 1.0, 0.0], dtype=dtype)
        x = uniform_to_trunc_normal_(u, std=0.02, a=-2.0, b=2.0).double()
        assert torch.isfinite(x).all()
        assert x[0] < -2.5 * 0.02 and x[1] > 2.5 * 0.02  # still the far tails ...
        assert x.abs().max() < 9 * 0.02  # ... never the +-2.0 bound
        assert x[2] == 0


def test_trunc_normal_1e8_draws_stay_in_the_normal_range():
    """10^8 float32 draws at std 0.02: the extreme is the float32 resolution of the uniform
    (about 5.4 std), never a truncation bound (100 std)."""
    torch.manual_seed(0)
    chunk = torch.empty(10_000_000)
    worst = 0.0
    for _ in range(10):
        trunc_normal_(chunk, std=0.02)
        worst = max(worst, float(chunk.abs().max()))
    assert worst < 6 * 0.02, worst


def test_stage1_student_uses_xavier_and_classifier_trunc_normal():
    """The official stage-1 model (and its alignment heads) starts every Linear from
    xavier-uniform; the official fine-tuning model from a truncated normal with std 0.02."""
    torch.manual_seed(0)
    student = VideoViT(
        img_size=32, num_frames=2, embed_dim=96, depth=2, num_heads=2, align_layers=2, align_dim=64
    )
    linears = {n: m for n, m in student.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"blocks.0.attn.qkv", "blocks.1.mlp.fc2", "align_heads.0.linear"} <= set(linears)
    for name, m in linears.items():
        fan_out, fan_in = m.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = m.weight.detach()
        assert float(w.abs().max()) <= bound, name
        assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.06 * bound, name
        if m.bias is not None:
            assert not m.bias.any(), name
    clf = VideoViT(img_size=32, num_frames=2, embed_dim=96, depth=2, num_heads=2, num_classes=7)
    for name, m in clf.named_modules():
        if isinstance(m, torch.nn.Linear):
            assert abs(float(m.weight.detach().std()) - 0.02) < 0.003, name
    forced = VideoViT(
        img_size=32,
        num_frames=2,
        embed_dim=96,
        depth=2,
        num_heads=2,
        num_classes=7,
        weight_init="xavier",
    )
    assert float(forced.blocks[0].mlp.fc1.weight.detach().std()) > 0.05  # xavier at width 96: ~0.07


def test_video_vit_refuses_sizes_that_cannot_make_a_model():
    """Refused at construction with the argument named (a width of 0 was a conv traceback
    at the first batch; a drop-path rate of 1.5 a NaN loss at step 1)."""
    import pytest

    from umt.errors import InputError

    tiny = dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2)
    VideoViT(**tiny)  # the base is fine
    for change, named in [
        ({"embed_dim": 0}, "embed_dim"),
        ({"depth": 0}, "depth"),
        ({"num_heads": 0}, "num_heads"),
        ({"num_heads": 3}, "not divisible by 3 heads"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"drop_path_rate": -0.1}, "drop_path_rate"),
        ({"tubelet_size": -1}, "tubelet_size"),
        ({"patch_size": 0}, "patch_size"),
        ({"head_drop_rate": -1.0, "num_classes": 3}, "head_drop_rate"),
    ]:
        with pytest.raises(InputError, match=named):
            VideoViT(**{**tiny, **change})
