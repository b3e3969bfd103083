"""Token masks for the UMT student: semantic (teacher-attention), tube and random masking.

Every mask is a boolean ``[B, T*H*W]`` tensor, True = dropped, token order t, h, w (the official
convention). Images are videos with T = 1.

Randomness comes either from a ``torch.Generator`` or from pre-drawn uniforms ``[B, T, HW]``; the
latter, made by :func:`per_sample_uniform` from one integer seed per sample, gives the same mask for
a sample whatever the batch it sits in, the rank it runs on or the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "num_kept_per_frame",
    "per_sample_uniform",
    "semantic_mask",
    "tube_mask",
    "random_mask",
]


def num_kept_per_frame(tokens_per_frame: int, mask_ratio: float) -> int:
    """Tokens kept in each frame: ``HW - int(HW * ratio)`` (as the official code)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {mask_ratio}")
    return tokens_per_frame - int(tokens_per_frame * mask_ratio)


def per_sample_uniform(
    seeds: Sequence[int] | torch.Tensor,
    shape: Sequence[int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniforms in (0, 1), one independent stream per sample seed: ``[B] -> [B, *shape]``.

    Drawn on the CPU with a generator seeded by each sample's seed, so that a sample's mask depends
    only on its seed (not on the batch, the rank, the worker or the device).
    """
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.tolist()
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    g = torch.Generator()
    for i, s in enumerate(seeds):
        g.manual_seed(int(s) & 0xFFFF_FFFF_FFFF_FFFF)
        out[i].uniform_(generator=g)
    # Open interval: a draw of exactly 0 would make an infinite Gumbel key.
    out.clamp_(min=torch.finfo(torch.float32).tiny)
    return out.to(device) if device is not None else out


def _uniform(
    shape: tuple[int, ...],
    device: torch.device,
    generator: torch.Generator | None,
    uniform: torch.Tensor | None,
) -> torch.Tensor:
    if uniform is not None:
        if tuple(uniform.shape) != shape:
            raise ValueError(f"uniform has shape {tuple(uniform.shape)}, expected {shape}")
        return uniform.to(device)
    gen_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gen_device)
    return u.clamp_(min=torch.finfo(torch.float32).tiny).to(device)


def _keep_top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask (True = dropped) keeping the ``keep`` highest scores of each row: ``[..., M]``."""
    mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(-1, scores.topk(keep, dim=-1).indices, False)


def semantic_mask(
    cls_attn: torch.Tensor,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Semantic (attention-guided) masking.

    In each frame, keep ``HW - int(HW * ratio)`` tokens drawn without replacement with probability
    proportional to the teacher's class-token attention; drop the rest. Drawn exactly, vectorised,
    with the Gumbel-top-k trick: the k largest ``log p_i + Gumbel_i`` are a sample of k items
    without replacement from p (the distribution of ``torch.multinomial(p, k)`` that the official
    code uses).

    Args:
        cls_attn: ``[B, T, HW]`` attention (any non-negative weights; rows need not sum to 1).
        mask_ratio: fraction of tokens dropped per frame.
        generator / uniform: randomness, see the module docstring. ``uniform``: ``[B, T, HW]``.

    Returns:
        ``[B, T*HW]`` bool, True = dropped.
    """
    if cls_attn.ndim != 3:
        raise ValueError(f"cls_attn must be [B, T, HW], got shape {tuple(cls_attn.shape)}")
    b, t, hw = cls_attn.shape
    keep = num_kept_per_frame(hw, mask_ratio)
    u = _uniform((b, t, hw), cls_attn.device, generator, uniform)
    gumbel = -torch.log(-torch.log(u))  # [B, T, HW]
    keys = torch.log(cls_attn.float().clamp_min(0)) + gumbel  # -inf where the weight is 0
    return _keep_top(keys, keep).reshape(b, t * hw)  # [B, T*HW]


def tube_mask(
    batch: int,
    num_frames: int,
    tokens_per_frame: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Tube masking: the same ``int(HW * ratio)`` positions are dropped in every frame.

    ``uniform``: ``[B, 1, HW]``. Returns ``[B, T*HW]`` bool, True = dropped.
    """
    keep = num_kept_per_frame(tokens_per_frame, mask_ratio)
    u = _uniform((batch, 1, tokens_per_frame), torch.device(device), generator, uniform)
    frame = _keep_top(u, keep)  # [B, 1, HW]
    return frame.expand(batch, num_frames, tokens_per_frame).reshape(batch, -1)


def random_mask(
    batch: int,
    num_tokens: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    uniform: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random masking over all ``N`` tokens: drop ``int(N * ratio)`` per sample uniformly.

    ``uniform``: ``[B, 1, N]``. Returns ``[B, N]`` bool, True = dropped.
    """
    keep = num_kept_per_frame(num_tokens, mask_ratio)
    u = _uniform((batch, 1, num_tokens), torch.device(device), generator, uniform)
    return _keep_top(u, keep).reshape(batch, num_tokens)
