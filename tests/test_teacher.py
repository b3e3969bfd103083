"""The teacher's masked pass equals the full pass restricted to the kept tokens."""

from __future__ import annotations

import pytest
import torch

from umt.masking import random_mask, semantic_mask, tube_mask
from umt.models.clip_teacher import CLIPTeacher


def _teacher() -> CLIPTeacher:
    torch.manual_seed(0)
    teacher = CLIPTeacher(
        img_size=32, patch_size=8, width=48, layers=5, heads=4, output_dim=24,
        return_layers=3, return_interval=2,
    )  # fmt: skip
    with torch.no_grad():  # random LayerNorm affine parameters too
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return teacher


@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("kind", ["semantic", "tube", "random_per_frame"])
def test_forward_masked_equals_full_pass_at_kept_tokens(frames, kind):
    teacher = _teacher()
    video = torch.randn(2, 3, frames, 32, 32)
    if frames == 1:
        video = video[:, :, 0]  # images [B, 3, H, W]
    g = torch.Generator().manual_seed(1)

    def choose(attn):  # [B, T, HW] -> [B, T*HW]
        b, t, hw = attn.shape
        if kind == "semantic":
            return semantic_mask(attn, 0.75, generator=g)
        if kind == "tube":
            return tube_mask(b, t, hw, 0.5, generator=g)
        # Independent random masks per frame, same count in every frame.
        return random_mask(b * t, hw, 0.25, generator=g).reshape(b, t * hw)

    with torch.no_grad():
        hidden, attn = teacher.forward_hidden(video)  # [K, B, N, C], [B, T, HW]
        kept_hidden, kept_attn, mask = teacher.forward_masked(video, choose)
        full_targets = teacher.targets(hidden, mask)
        targets = teacher.project(kept_hidden)
    torch.testing.assert_close(kept_attn, attn, rtol=0, atol=1e-7)
    assert kept_hidden.shape == (3, 2, int((~mask[0]).sum()), 48)
    torch.testing.assert_close(kept_hidden, hidden[:, ~mask].reshape(kept_hidden.shape))
    torch.testing.assert_close(targets, full_targets)


def test_forward_masked_needs_equal_counts_per_frame():
    teacher = _teacher()

    def uneven(attn):
        mask = torch.zeros(attn.shape[0], attn.shape[1] * attn.shape[2], dtype=torch.bool)
        mask[:, 0] = True  # one token dropped in the first frame only
        return mask

    with pytest.raises(ValueError, match="same number of tokens"):
        teacher.forward_masked(torch.randn(1, 3, 2, 32, 32), uneven)


def test_class_token_attention_is_float32_under_autocast():
    """The mask sampler's input is computed in float32 even inside low-precision autocast (the
    official recipes run the teacher under fp16 autocast)."""
    from umt.models.clip_teacher import CLIPAttention

    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 50, 16), torch.randn(2, 4, 50, 16)
    exact = CLIPAttention._cls_attention(q, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = CLIPAttention._cls_attention(q.bfloat16(), k.bfloat16())
        exact_amp = CLIPAttention._cls_attention(q, k)
    assert under_amp.dtype == torch.float32
    torch.testing.assert_close(exact_amp, exact, rtol=0, atol=0)  # bf16 matmul: ~1e-3 off
    teacher = _teacher()
    video = torch.randn(2, 3, 2, 32, 32)
    _, attn32 = teacher.forward_hidden(video)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, attn_amp = teacher.forward_hidden(video)
    assert attn_amp.dtype == torch.float32
