"""An official-style stage-1 step, for a same-machine "before" figure in ``stage1_step.py``.

It runs our modules with the computation patterns of the official UMT code swapped back in:

- student attention as explicit ``softmax(q k^T) v`` matrices (no fused attention kernel);
- teacher blocks through ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``), the last
  one asked for the full head-averaged attention matrix (``need_weights=True``) to read the class
  token's row;
- QuickGELU out of place, teacher features projected and l2-normalised for every token, then the
  kept ones gathered;
- the semantic mask from ``torch.multinomial`` over every frame's attention;
- AdamW with the for-loop update (torch's default on the CPU).

The numbers computed are the same as ours to float tolerance; only the way they are computed
differs. This is a benchmark aid, not a reference for parity (the fixtures are).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from umt.losses import uma_loss
from umt.masking import num_kept_per_frame
from umt.models import CLIPTeacher, VideoViT


def _explicit_attention(self, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
    qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    q = q * (c // self.num_heads) ** -0.5
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, heads, N, N]
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def make_official_student(student: VideoViT) -> VideoViT:
    for blk in student.blocks:
        blk.attn.forward = types.MethodType(_explicit_attention, blk.attn)
    return student


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _mha(attn: nn.Module, x: torch.Tensor, need_weights: bool):
    """``nn.MultiheadAttention`` on a sequence-first ``[L, B, C]`` input."""
    c = x.shape[-1]
    return F.multi_head_attention_forward(
        x, x, x, c, attn.heads, attn.in_proj_weight, attn.in_proj_bias, None, None, False, 0.0,
        attn.out_proj.weight, attn.out_proj.bias, training=False, need_weights=need_weights,
        average_attn_weights=True,
    )  # fmt: skip


def official_teacher_forward(teacher: CLIPTeacher, video: torch.Tensor):
    """Features ``[K, B, T*HW, C]`` (every token) and class-token attention ``[B*T, HW]``."""
    for blk in teacher.transformer.resblocks:
        blk.mlp.gelu = _QuickGELU()
    b, _, t, h, w = video.shape
    x = teacher.conv1(video.transpose(1, 2).reshape(b * t, 3, h, w)).flatten(2).transpose(1, 2)
    cls = teacher.class_embedding.expand(x.shape[0], 1, -1)
    x = teacher.ln_pre(torch.cat([cls, x], 1) + teacher.positional_embedding)
    x = x.transpose(0, 1)  # [L, BT, C]
    blocks = teacher.transformer.resblocks
    hidden, attn = [], None
    for i, blk in enumerate(blocks):
        y, weights = _mha(blk.attn, blk.ln_1(x), need_weights=i == len(blocks) - 1)
        x = x + y
        x = x + blk.mlp(blk.ln_2(x))
        if i in teacher.return_indices:
            hidden.append(x)
        if weights is not None:
            attn = weights[:, 0, 1:]  # [BT, HW]
    z = torch.stack(hidden)[:, 1:]  # [K, HW, BT, C]
    z = teacher.ln_post(z) @ teacher.proj  # every token
    k, hw = z.shape[0], z.shape[1]
    z = z.reshape(k, hw, b, t, -1).permute(0, 2, 3, 1, 4).reshape(k, b, t * hw, -1)
    return z / z.norm(dim=-1, keepdim=True), attn


def official_mask(attn: torch.Tensor, batch: int, ratio: float) -> torch.Tensor:
    bt, n = attn.shape
    keep = num_kept_per_frame(n, ratio)
    order = torch.multinomial(attn, n)  # a full permutation per frame
    mask = torch.ones(bt, n, device=attn.device)
    rows = torch.arange(bt, device=attn.device).view(-1, 1).expand(-1, keep)
    mask[rows, order[:, :keep]] = 0
    return mask.view(batch, -1).to(torch.bool)


def official_step(student, teacher, optimizer, video: torch.Tensor, ratio: float) -> float:
    with torch.no_grad():
        features, attn = official_teacher_forward(teacher, video)
        mask = official_mask(attn, video.shape[0], ratio)
        k, b, _, c = features.shape
        targets = features[:, ~mask].reshape(k, b, -1, c)
    loss = uma_loss(student.forward_aligned(video, mask), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())
