"""Building blocks shared by the student and the teacher: drop path, MLP, position tables."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import InputError

__all__ = [
    "DropPath",
    "Mlp",
    "QuickGELU",
    "trunc_normal_",
    "uniform_to_trunc_normal_",
    "sincos_table",
    "interpolate_pos_table",
    "interpolate_grid_pos_embed",
]


@torch.no_grad()
def trunc_normal_(
    tensor: torch.Tensor, std: float = 1.0, mean: float = 0.0, a: float = -2.0, b: float = 2.0
) -> torch.Tensor:
    """Fill ``tensor`` in place from N(mean, std) truncated to [a, b] (absolute bounds).

    Inverse-CDF sampling: one uniform draw per element in the CDF range of [a, b], mapped back
    through ``erfinv``. This is how timm (and hence the official UMT code) initialises its
    weights. ``torch.nn.init.trunc_normal_`` switched to rejection sampling in torch 2.13, which
    consumes the RNG differently; with this function a seeded model is initialised identically
    on every torch release (and golden-loss tests hold on all of them).

    Unlike timm's, it never returns a bound from an infinite ``erfinv``: with wide bounds
    (std 0.02 in [-2, 2]) the uniform range is [-1, 1], ``uniform_`` returns exactly -1 about
    once in 2^24 draws, and ``erfinv(-1) = -inf`` would be clamped to -2.0 (100 std)."""
    cdf_lo = 0.5 * (1.0 + math.erf((a - mean) / (std * math.sqrt(2.0))))
    cdf_hi = 0.5 * (1.0 + math.erf((b - mean) / (std * math.sqrt(2.0))))
    # erfinv maps (-1, 1) to the real line: draw u in [2*cdf_lo-1, 2*cdf_hi-1].
    tensor.uniform_(2.0 * cdf_lo - 1.0, 2.0 * cdf_hi - 1.0)
    return uniform_to_trunc_normal_(tensor, std, mean, a, b)


@torch.no_grad()
def uniform_to_trunc_normal_(
    u: torch.Tensor, std: float = 1.0, mean: float = 0.0, a: float = -2.0, b: float = 2.0
) -> torch.Tensor:
    """The inverse-CDF step of :func:`trunc_normal_`, in place: uniforms ``u`` in [-1, 1] ->
    ``mean + std * sqrt(2) * erfinv(u)`` within [a, b]. ``u = +-1`` (which ``uniform_`` can
    return at its bounds) is moved to the nearest representable value inside the open interval,
    so the result is the distribution's most extreme finite draw (about 5.4 std in float32),
    never an infinity clamped to a bound."""
    inside = 1.0 - torch.finfo(u.dtype).eps / 2  # the largest representable value below 1
    u.clamp_(min=-inside, max=inside)
    u.erfinv_()
    u.mul_(std * math.sqrt(2.0)).add_(mean)
    return u.clamp_(min=a, max=b)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, ...]; ``noise`` optional uniforms [B] in [0, 1): sample b keeps its branch
        when ``noise[b] < 1 - p`` (without it, the draw comes from the global RNG)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        if noise is None:
            return x * x.new_empty(shape).bernoulli_(keep).div_(keep)
        kept = (noise < keep).to(x.dtype).reshape(shape)  # [B, 1, ...]
        return x * kept.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x * torch.sigmoid(1.702 * x)
        # Inference (the frozen teacher): the same arithmetic in place, two fewer buffers.
        return torch.sigmoid_(x * 1.702).mul_(x)


class Mlp(nn.Module):
    """``fc1 -> act -> fc2`` (exact GELU by default)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def sincos_table(num_positions: int, dim: int) -> torch.Tensor:
    """The 1-D sinusoid table of "Attention is all you need" over ``num_positions``.

    Channel ``2i`` is ``sin(pos / 10000^(2i/dim))`` and ``2i+1`` the matching cosine, computed in
    float64 like the official numpy code, returned as float32 ``[1, num_positions, dim]``.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # [N, 1]
    pair = torch.arange(dim, dtype=torch.float64) // 2  # [C]
    angles = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2.0 * pair / dim)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float().unsqueeze(0)


def interpolate_pos_table(
    table: torch.Tensor,
    src_grid: tuple[int, int, int],
    dst_grid: tuple[int, int, int],
) -> torch.Tensor:
    """Resample a ``[1, T*H*W, C]`` position table from ``src_grid`` to ``dst_grid`` (T, H, W).

    As the official fine-tuning code: spatially first (bicubic, ``align_corners=False``, per frame),
    then temporally (linear over the frames). Token order is t, then h, then w.
    """
    t0, h0, w0 = src_grid
    t1, h1, w1 = dst_grid
    if table.shape[1] != t0 * h0 * w0:
        raise InputError(f"position table has {table.shape[1]} rows, not {t0}x{h0}x{w0}")
    c = table.shape[-1]
    dtype = table.dtype
    x = table.float().reshape(t0, h0, w0, c)
    if (h0, w0) != (h1, w1):
        x = x.permute(0, 3, 1, 2)  # [T, C, H, W]
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
        x = x.permute(0, 2, 3, 1)  # [T, H', W', C]
    if t0 != t1:
        x = x.permute(1, 2, 3, 0).reshape(h1 * w1, c, t0)  # [H'W', C, T]
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        x = x.reshape(h1, w1, c, t1).permute(3, 0, 1, 2)  # [T', H', W', C]
    return x.reshape(1, t1 * h1 * w1, c).to(dtype)


def interpolate_grid_pos_embed(
    pos: torch.Tensor, new_grid: tuple[int, int], num_prefix: int = 1
) -> torch.Tensor:
    """Resize an image ViT position embedding ``[P + G*G, C]`` to ``[P + H*W, C]`` (bicubic).

    ``P = num_prefix`` leading rows (the class token) are kept as they are.
    """
    prefix, grid = pos[:num_prefix], pos[num_prefix:]
    side = math.isqrt(grid.shape[0])
    if side * side != grid.shape[0]:
        raise InputError(f"position embedding of {grid.shape[0]} patches is not a square grid")
    if (side, side) == tuple(new_grid):
        return pos
    c = grid.shape[-1]
    x = grid.float().reshape(1, side, side, c).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=tuple(new_grid), mode="bicubic", align_corners=False)
    x = x.permute(0, 2, 3, 1).reshape(-1, c).to(pos.dtype)
    return torch.cat([prefix, x], dim=0)
