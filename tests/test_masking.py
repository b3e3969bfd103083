"""Semantic, tube and random masks: shapes, counts and the semantic mask's distribution."""

from __future__ import annotations

import itertools

import pytest
import torch

from umt.masking import (
    num_kept_per_frame,
    per_sample_uniform,
    random_mask,
    semantic_mask,
    tube_mask,
)


def _attn(b: int, t: int, hw: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, hw, generator=g).pow(3).softmax(-1)


@pytest.mark.parametrize("t,hw,ratio", [(8, 196, 0.8), (1, 196, 0.5), (4, 49, 0.75), (2, 10, 0.0)])
def test_semantic_mask_shape_and_counts(t, hw, ratio):
    mask = semantic_mask(_attn(3, t, hw), ratio, torch.Generator().manual_seed(1))
    assert mask.shape == (3, t * hw) and mask.dtype == torch.bool
    kept = (~mask).reshape(3, t, hw).sum(-1)
    assert (kept == hw - int(hw * ratio)).all()


def test_kept_count_matches_official_rounding():
    assert num_kept_per_frame(196, 0.8) == 40  # 196 - int(156.8)
    assert num_kept_per_frame(49, 0.8) == 10
    assert num_kept_per_frame(16, 0.8) == 4
    with pytest.raises(ValueError):
        num_kept_per_frame(10, 1.0)


def _inclusion_exact(p: torch.Tensor, k: int) -> torch.Tensor:
    """P(token i is among k draws without replacement, each proportional to p), by enumeration."""
    n = len(p)
    prob = torch.zeros(n, dtype=torch.float64)
    for seq in itertools.permutations(range(n), k):
        pr, left = 1.0, 1.0
        for j in seq:
            pr *= p[j].item() / left
            left -= p[j].item()
        for j in seq:
            prob[j] += pr
    return prob


@pytest.mark.parametrize("k", [1, 2, 3])
def test_semantic_mask_follows_sequential_sampling(k):
    """Keep frequencies over many draws equal the exact inclusion probabilities of the official
    sampling (torch.multinomial without replacement), within 5 standard errors."""
    p = torch.tensor([0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02], dtype=torch.float64)
    hw, draws = len(p), 60_000
    ratio = (hw - k) / hw + 1e-9  # keeps exactly k of 8
    attn = p.float().expand(draws, 1, hw).contiguous()
    mask = semantic_mask(attn, ratio, torch.Generator().manual_seed(123))
    assert ((~mask).sum(1) == k).all()
    freq = (~mask).double().mean(0)
    exact = _inclusion_exact(p, k)
    se = (exact * (1 - exact) / draws).sqrt().clamp_min(1e-4)
    assert ((freq - exact).abs() <= 5 * se).all(), (freq, exact)
    # and the official sampler gives the same frequencies
    g = torch.Generator().manual_seed(7)
    ref = torch.zeros(hw, dtype=torch.float64)
    for _ in range(20_000):
        ref[torch.multinomial(p, k, replacement=False, generator=g)] += 1
    ref /= 20_000
    assert ((ref - exact).abs() <= 5 * (exact * (1 - exact) / 20_000).sqrt().clamp_min(1e-4)).all()


def test_semantic_mask_never_keeps_zero_attention_when_avoidable():
    attn = torch.zeros(64, 2, 10)
    attn[..., :5] = 0.2
    mask = semantic_mask(attn, 0.5, torch.Generator().manual_seed(0))
    assert (~mask.reshape(64, 2, 10)[..., 5:]).sum() == 0


def test_per_sample_uniform_is_per_sample():
    """A sample's mask depends only on its own seed: not on the batch or its position."""
    attn = _attn(4, 2, 16)
    u_all = per_sample_uniform([11, 12, 13, 14], (2, 16))
    u_two = per_sample_uniform([13, 11], (2, 16))
    m_all = semantic_mask(attn, 0.75, uniform=u_all)
    m_two = semantic_mask(attn[[2, 0]], 0.75, uniform=u_two)
    assert torch.equal(m_all[[2, 0]], m_two)
    assert not torch.equal(u_all[0], u_all[1])
    with pytest.raises(ValueError):
        semantic_mask(attn, 0.75, uniform=u_two)


def test_image_input_is_one_frame():
    mask = semantic_mask(_attn(2, 1, 196), 0.5, torch.Generator().manual_seed(0))
    assert mask.shape == (2, 196) and ((~mask).sum(1) == 98).all()


def test_tube_mask_repeats_over_frames():
    mask = tube_mask(3, 8, 49, 0.9, torch.Generator().manual_seed(0))
    frames = mask.reshape(3, 8, 49)
    assert (frames == frames[:, :1]).all()
    assert ((~frames).sum(-1) == 49 - int(49 * 0.9)).all()
    assert not torch.equal(frames[0, 0], frames[1, 0])


def test_random_mask_counts():
    mask = random_mask(5, 392, 0.8, torch.Generator().manual_seed(0))
    assert mask.shape == (5, 392)
    assert ((~mask).sum(1) == 392 - int(392 * 0.8)).all()
    assert not torch.equal(mask[0], mask[1])


def test_semantic_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="cls_attn"):
        semantic_mask(torch.rand(4, 16), 0.5)
