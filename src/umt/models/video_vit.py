"""The UMT student: a video ViT that runs on the kept tokens only.

One class covers the three official uses of the same encoder:

- stage-1 pretraining (``PretrainVisionTransformer``): final norm, alignment heads on the last K
  blocks, no classifier;
- fine-tuning (``modeling_finetune.VisionTransformer``): no final norm, mean pooling, ``fc_norm``,
  dropout, linear head;
- the stage-2 vision encoder: final norm, per-frame pooling with ``pool_norm``, alignment heads.

Token order is t, then h, then w (``N = T' * H' * W'`` with ``T' = T / tubelet``). A mask is a
boolean ``[B, N]`` tensor, True = dropped, with the same number of kept tokens in every sample.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from umt.errors import InputError
from umt.models._io import (
    CheckpointInfo,
    build_checked,
    input_error,
    read_state_dict,
    strip_prefix,
    strip_wrappers,
    weights_file,
)
from umt.models.hub import detect_checkpoint
from umt.models.layers import DropPath, Mlp, interpolate_pos_table, sincos_table, trunc_normal_
from umt.models.registry import Family, register_family, register_model
from umt.models.released import checkpoint_path

__all__ = [
    "VideoViT",
    "PatchEmbed3d",
    "Attention",
    "Block",
    "AlignHead",
    "blocks_of",
    "clip_grid",
    "encoder_mismatch",
    "infer_layout",
    "read_student_weights",
    "recognise_student",
    "resize_learned_pos",
    "student_state_dict",
]


class PatchEmbed3d(nn.Module):
    """Tubelet embedding: Conv3d with kernel = stride = ``(tubelet, p, p)``.

    ``[B, 3, T, H, W] -> [B, T/tubelet * H/p * W/p, C]``.
    """

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, C, T', H', W']
        return x.flatten(2).transpose(1, 2)  # [B, N, C]


class Attention(nn.Module):
    """Multi-head self-attention with the official q/v-bias convention.

    ``qkv`` has no bias of its own; its bias is ``cat(q_bias, 0, v_bias)`` (the key bias would be
    cancelled by the softmax). Runs on torch's scaled-dot-product attention.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)  # [B, N, 3C]
        qkv = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, heads, N, D] each
        x = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, D]
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Block(nn.Module):
    """Pre-norm transformer block with optional layer scale (``gamma_1``/``gamma_2``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        init_values: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if init_values > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, drop_path_noise: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, N, C]; ``drop_path_noise`` optional uniforms [B, 2] deciding, per sample,
        whether the attention and the MLP branch are dropped (see :class:`DropPath`)."""
        n_attn = n_mlp = None
        if drop_path_noise is not None:
            n_attn, n_mlp = drop_path_noise[:, 0], drop_path_noise[:, 1]
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)), n_attn)
            return x + self.drop_path(self.mlp(self.norm2(x)), n_mlp)
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)), n_attn)
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)), n_mlp)


class AlignHead(nn.Module):
    """Projects one student layer onto the teacher's space: ``LayerNorm(Linear(x))`` [+ l2]."""

    def __init__(self, dim: int, out_dim: int, eps: float = 1e-6, l2: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, out_dim)
        self.norm = nn.LayerNorm(out_dim, eps=eps)
        self.l2 = l2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.linear(x))
        if self.l2:
            x = x / x.norm(dim=-1, keepdim=True)
        return x


def clip_grid(
    img_size: int, patch_size: int, num_frames: int, tubelet_size: int
) -> tuple[int, int, int]:
    """The token grid ``(T', h, w)`` of a clip of ``num_frames`` frames of ``img_size`` px;
    sizes that do not divide into patches and tubelets are refused."""
    if img_size % patch_size or num_frames % tubelet_size:
        raise InputError(
            f"img_size {img_size} / patch {patch_size} and num_frames {num_frames} / "
            f"tubelet {tubelet_size} must divide evenly"
        )
    return num_frames // tubelet_size, img_size // patch_size, img_size // patch_size


def blocks_of(
    depth: int,
    embed_dim: int,
    num_heads: int,
    mlp_ratio: float,
    qkv_bias: bool,
    drop_path_rate: float,
    init_values: float,
    layer_norm_eps: float,
) -> nn.ModuleList:
    """``depth`` transformer blocks, their drop-path rate rising linearly from 0 in the first
    to ``drop_path_rate`` in the last (official)."""
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.ModuleList(
        Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], init_values, layer_norm_eps)
        for i in range(depth)
    )


class VideoViT(nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["video", "umt"]):
    """Video ViT student (UMT-B/16, UMT-L/16, ...).

    Args:
        img_size, patch_size, num_frames, tubelet_size: input layout; the token grid is
            ``(num_frames / tubelet, img_size / patch, img_size / patch)``.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias, layer_norm_eps: the encoder.
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        init_values: layer scale init (0 = no layer scale).
        pos_embed: ``"sincos"`` (fixed table) or ``"learned"`` (a ``pos_embed`` parameter).
        sincos_source_grid: when set (``[T, H, W]``), the fixed table is built for that layout and
            interpolated to the current one, as the official fine-tuning code does (it uses the
            pretraining layout ``[8, 14, 14]`` for patch 16). ``None`` builds it for the current
            layout directly, as the official pretraining code does.
        final_norm: LayerNorm after the last block (pretraining and stage 2; not fine-tuning).
        num_classes: classifier classes (0 = no classifier).
        head_drop_rate: dropout before the classifier.
        fc_norm: LayerNorm on the mean-pooled features (fine-tuning).
        pool_norm: LayerNorm on per-frame pooled features (stage 2).
        align_layers: K, the number of aligned blocks (0 = no alignment heads).
        align_interval: spacing of the aligned blocks, counted from the last one.
        align_dim: the teacher's feature width.
        align_l2: l2-normalise the aligned outputs (stage 1: yes; stage 2: no).
        align_ln_eps: LayerNorm eps of the alignment heads.
        weight_init: how the Linear weights start: ``"xavier"`` (uniform, the official stage-1
            model and its alignment heads), ``"trunc_normal"`` (std 0.02, the official
            fine-tuning model) or ``"auto"``: xavier without a classifier, trunc_normal with one.
            Biases start at 0, LayerNorms at (1, 0); the patch embedding keeps torch's Conv3d
            default, as in both official models.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_frames: int = 8,
        tubelet_size: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        init_values: float = 0.0,
        layer_norm_eps: float = 1e-6,
        pos_embed: str = "sincos",
        sincos_source_grid: Sequence[int] | None = None,
        final_norm: bool = True,
        num_classes: int = 0,
        head_drop_rate: float = 0.0,
        fc_norm: bool = True,
        pool_norm: bool = False,
        align_layers: int = 0,
        align_interval: int = 1,
        align_dim: int = 512,
        align_l2: bool = True,
        align_ln_eps: float = 1e-6,
        weight_init: str = "auto",
    ) -> None:
        super().__init__()
        if weight_init == "auto":
            weight_init = "trunc_normal" if num_classes > 0 else "xavier"
        if weight_init not in ("xavier", "trunc_normal"):
            raise InputError(
                f"weight_init must be 'auto', 'xavier' or 'trunc_normal', not {weight_init!r}"
            )
        if pos_embed not in ("sincos", "learned"):
            raise InputError(f"pos_embed must be 'sincos' or 'learned', not {pos_embed!r}")
        sizes = dict(
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            num_frames=num_frames,
        )
        for name, value in sizes.items():
            if value < 1:
                raise InputError(f"{name} must be >= 1, not {value}")
        if not 0.0 <= head_drop_rate < 1.0:
            raise InputError(f"head_drop_rate must be in [0, 1), not {head_drop_rate}")
        if not mlp_ratio > 0:
            raise InputError(f"mlp_ratio must be > 0, not {mlp_ratio}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise InputError(f"drop_path_rate must be in [0, 1), not {drop_path_rate}")
        grid = clip_grid(img_size, patch_size, num_frames, tubelet_size)
        if align_layers and (align_layers - 1) * align_interval >= depth:
            raise InputError(
                f"{align_layers} aligned layers every {align_interval} need > depth {depth}"
            )
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.embed_dim = embed_dim
        self.grid = grid
        self.num_patches_per_frame = self.grid[1] * self.grid[2]
        self.num_patches = self.grid[0] * self.num_patches_per_frame
        self.grad_checkpoint_blocks = 0

        self.patch_embed = PatchEmbed3d(patch_size, tubelet_size, in_chans, embed_dim)
        # A one-frame clip (an image) may use the first H*W rows of a plain (not interpolated)
        # sin-cos table: the official stage-2 image table, which equals them.
        self.image_positions = pos_embed == "sincos" and (
            sincos_source_grid is None or tuple(sincos_source_grid) == self.grid
        )
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
            # The official pretraining model truncates at +-1 std, the fine-tuning one at +-2.
            bound = 0.02 if weight_init == "xavier" else 2.0
            trunc_normal_(self.pos_embed, std=0.02, a=-bound, b=bound)
        else:
            self.register_buffer(
                "pos_embed", self._sincos(embed_dim, sincos_source_grid), persistent=False
            )
        self.blocks = blocks_of(
            depth,
            embed_dim,
            num_heads,
            mlp_ratio,
            qkv_bias,
            drop_path_rate,
            init_values,
            layer_norm_eps,
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps) if final_norm else nn.Identity()

        # Aligned blocks, ascending: depth-1, depth-1-interval, ... reversed.
        self.align_indices = sorted(depth - 1 - i * align_interval for i in range(align_layers))
        if align_layers:
            self.align_heads = nn.ModuleList(
                AlignHead(embed_dim, align_dim, align_ln_eps, align_l2) for _ in range(align_layers)
            )
            self.register_buffer(
                "align_pos_embed", sincos_table(self.num_patches, embed_dim), persistent=False
            )
        else:
            self.align_heads = None

        self.pool_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps) if pool_norm else None
        self.num_classes = num_classes
        if num_classes > 0:
            self.fc_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps) if fc_norm else nn.Identity()
            self.head_drop = nn.Dropout(head_drop_rate)
            self.head = nn.Linear(embed_dim, num_classes)
        else:
            self.fc_norm = self.head_drop = self.head = None
        self.apply(functools.partial(self._init_module, xavier=weight_init == "xavier"))

    # ------------------------------------------------------------------ setup
    def _sincos(self, dim: int, source_grid: Sequence[int] | None) -> torch.Tensor:
        if source_grid is None or tuple(source_grid) == self.grid:
            return sincos_table(self.num_patches, dim)
        t, h, w = (int(v) for v in source_grid)
        return interpolate_pos_table(sincos_table(t * h * w, dim), (t, h, w), self.grid)

    @staticmethod
    def _init_module(m: nn.Module, xavier: bool) -> None:
        """The official init: ``modeling_pretrain_umt._init_weights`` (xavier-uniform Linears)
        or ``modeling_finetune._init_weights`` (truncated normal, std 0.02)."""
        if isinstance(m, nn.Linear):
            if xavier:
                nn.init.xavier_uniform_(m.weight)
            else:
                trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that take no weight decay (besides every 1-D parameter)."""
        return {"pos_embed"} if isinstance(self.pos_embed, nn.Parameter) else set()

    def set_grad_checkpointing(self, num_blocks: int | bool = True) -> None:
        """Recompute the first ``num_blocks`` blocks in the backward pass (True = all)."""
        self.grad_checkpoint_blocks = len(self.blocks) if num_blocks is True else int(num_blocks)

    # ------------------------------------------------------------------ steps
    def _one_frame(self, n: int) -> bool:
        """Whether ``n`` tokens are one frame (an image) that takes the first H*W positions."""
        return self.image_positions and n == self.num_patches_per_frame != self.num_patches

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patchify and add positions: ``[B, 3, T, H, W] -> [B, N, C]``.

        A one-frame clip (``T = 1``, an image, as in stage 2) takes the first H*W rows of the
        fixed sin-cos table (the official image table); other layouts must match the model's."""
        if x.ndim != 5:
            raise InputError(f"expected video [B, 3, T, H, W], got shape {tuple(x.shape)}")
        tokens = self.patch_embed(x)  # [B, N, C]
        n = tokens.shape[1]
        if x.shape[2] == 1 and self._one_frame(n):
            return tokens + self.pos_embed[:, :n].to(tokens.dtype)
        if n != self.pos_embed.shape[1]:
            raise InputError(
                f"input {tuple(x.shape[2:])} gives {n} tokens but the model is built "
                f"for {self.num_frames} frames of {self.img_size}px ({self.pos_embed.shape[1]} tokens)"
            )
        return tokens + self.pos_embed.to(tokens.dtype)

    @staticmethod
    def keep_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Drop the masked tokens, keeping order: ``[B, N, C], [B, N] -> [B, N_vis, C]``."""
        b, n, c = x.shape
        if mask.shape != (b, n):
            raise InputError(f"mask shape {tuple(mask.shape)} does not match tokens {(b, n)}")
        kept = x[~mask]  # [B * N_vis, C]
        if kept.shape[0] % b:
            raise InputError("every sample of the mask must keep the same number of tokens")
        return kept.reshape(b, -1, c)

    def _run_block(
        self, i: int, x: torch.Tensor, drop_path_noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        blk = self.blocks[i]
        noise = drop_path_noise[:, i] if drop_path_noise is not None else None  # [B, 2]
        if i < self.grad_checkpoint_blocks and torch.is_grad_enabled():
            return checkpoint(blk, x, noise, use_reentrant=False)
        return blk(x, noise)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        indices: int | Sequence[int] | None = None,
        norm: bool = True,
        drop_path_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final features and the outputs of the chosen blocks.

        Args:
            x: video ``[B, 3, T, H, W]``.
            mask: ``[B, N]`` bool, True = dropped; None keeps every token.
            indices: block indices (ascending), or an int n for the last n blocks; default: the
                aligned blocks.
            norm: apply the final norm to the intermediates too (as the official alignment does).
            drop_path_noise: optional uniforms ``[B, depth, 2]`` for per-sample drop-path
                decisions in training (e.g. from per-sample seeds, so that they do not depend
                on how a batch is split over processes); default: the global RNG.

        Returns:
            ``([B, N_vis, C], [[B, N_vis, C], ...])``.
        """
        if indices is None:
            wanted = list(self.align_indices)
        elif isinstance(indices, int):
            wanted = list(range(len(self.blocks) - indices, len(self.blocks)))
        else:
            wanted = sorted(int(i) for i in indices)
        x = self.embed(x)  # [B, N, C]
        if mask is not None:
            x = self.keep_tokens(x, mask)  # [B, N_vis, C]
        inter = []
        for i in range(len(self.blocks)):
            x = self._run_block(i, x, drop_path_noise)
            if i in wanted:
                inter.append(self.norm(x) if norm else x)
        return self.norm(x), inter

    def forward_features(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder output on the kept tokens: ``[B, 3, T, H, W] -> [B, N_vis, C]``.
        ``drop_path_noise``: see :meth:`forward_intermediates`."""
        x = self.embed(x)
        if mask is not None:
            x = self.keep_tokens(x, mask)
        for i in range(len(self.blocks)):
            x = self._run_block(i, x, drop_path_noise)
        return self.norm(x)

    def align(self, intermediates: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Alignment heads: ``[K, B, N_vis, C] -> [K, B, N_vis, align_dim]``.

        Adds the fixed position table at the kept positions, then ``LayerNorm_k(Linear_k(.))``.
        A one-frame clip (mask ``[B, H*W]``) takes the table's first H*W rows.
        """
        if self.align_heads is None:
            raise RuntimeError("this model has no alignment heads (align_layers=0)")
        k, b, n_vis, c = intermediates.shape
        pos = self.align_pos_embed.to(intermediates.dtype)  # [1, N, C]
        n = mask.shape[1] if mask is not None else n_vis
        if n != pos.shape[1] and self._one_frame(n):
            pos = pos[:, :n]  # a one-frame clip (an image): the first H*W positions
        pos = pos.expand(b, -1, -1)  # [B, N, C]
        if mask is not None:
            pos = self.keep_tokens(pos, mask)  # [B, N_vis, C]
        x = intermediates + pos.unsqueeze(0)  # [K, B, N_vis, C]
        return torch.stack([head(x[i]) for i, head in enumerate(self.align_heads)])

    def forward_pretrain(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-1 forward: ``(encoder output [B, N_vis, C], aligned [K, B, N_vis, align_dim])``.
        ``drop_path_noise``: see :meth:`forward_intermediates`."""
        out, inter = self.forward_intermediates(x, mask, norm=True, drop_path_noise=drop_path_noise)
        return out, self.align(torch.stack(inter), mask)

    def forward_aligned(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Aligned outputs only: ``[K, B, N_vis, align_dim]``."""
        return self.forward_pretrain(x, mask, drop_path_noise)[1]

    def pool_frames(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame mean over tokens (+ ``pool_norm``): ``[B, T'*HW, C] -> [B, T', C]``."""
        b, n, c = features.shape
        x = features.reshape(b, n // self.num_patches_per_frame, self.num_patches_per_frame, c)
        x = x.mean(2)
        return self.pool_norm(x) if self.pool_norm is not None else x

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier: mean over tokens, ``fc_norm``, dropout, linear. ``[B, N, C] -> [B, classes]``."""
        if self.head is None:
            raise RuntimeError("this model has no classifier (num_classes=0)")
        x = self.fc_norm(features.mean(1))  # [B, C]
        if pre_logits:
            return x
        return self.head(self.head_drop(x))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, classes]`` when there is a classifier, else features ``[B, N_vis, C]``.
        ``drop_path_noise``: optional per-sample drop-path uniforms ``[B, depth, 2]``."""
        features = self.forward_features(x, mask, drop_path_noise)
        return self.forward_head(features) if self.head is not None else features

    def extra_repr(self) -> str:
        return f"grid={self.grid}, aligned={self.align_indices}"


def grid_size(num_tokens: int, num_frames: int) -> int:
    """Side of the square spatial grid of ``num_tokens`` tokens over ``num_frames`` frames."""
    side = math.isqrt(num_tokens // num_frames)
    if side * side * num_frames != num_tokens:
        raise InputError(f"{num_tokens} tokens are not {num_frames} square frames")
    return side


# --------------------------------------------------------------------------- checkpoint formats
# Official and umt layouts of a student (see :mod:`umt.models.hub`): ``umt-pretrain`` (stage 1:
# ``encoder.blocks.*``, ``clip_decoder.K.{head,norm}``), ``umt-finetune`` (``blocks.*``,
# ``fc_norm``, ``head``, maybe ``pos_embed``), ``umt-student`` (this library's weights without
# their ``config.json``: ``align_heads.*``, or ``blocks.*`` without a classifier).
def recognise_student(sd: dict[str, torch.Tensor], path: str) -> CheckpointInfo | None:
    """The student layout of ``sd`` (see above), or None."""
    plain = strip_wrappers(sd)
    if any(k.startswith("clip_decoder.") for k in plain):
        return CheckpointInfo(path, "umt-pretrain", ["student"])
    if any(k.startswith("align_heads.") for k in plain):
        return CheckpointInfo(path, "umt-student", ["student"], ["umt's own alignment heads"])
    if "patch_embed.proj.weight" in plain and any(k.startswith("blocks.") for k in plain):
        if "head.weight" in plain:
            return CheckpointInfo(path, "umt-finetune", ["student"])
        if any(k.startswith("encoder.") for k in sd):  # an official stage-1 encoder alone
            return CheckpointInfo(path, "umt-pretrain", ["student"])
        return CheckpointInfo(path, "umt-student", ["student"], ["an encoder without classifier"])
    return None


def student_state_dict(
    sd: dict[str, torch.Tensor], kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert an official (or umt) student state dict to ours and infer the constructor arguments.

    ``kind``: the layout :func:`umt.models.hub.detect_checkpoint` named (None: recognised here).
    Returns ``(state_dict, config)``; the config lacks what shapes cannot tell (heads, frames,
    size).
    """
    if kind is None:
        if any(k.startswith("vision_encoder.") for k in sd):
            kind = "umt-multimodal"
        else:
            info = recognise_student(sd, "<state dict>")
            kind = info.kind if info is not None else "umt-student"
    if kind in ("umt-multimodal", "umt-video-text"):
        sd = strip_prefix(sd, "vision_encoder.")
    sd = strip_wrappers(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"clip_decoder\.(\d+)\.(head|norm)\.(weight|bias)$", k)
        if m:
            part = "linear" if m.group(2) == "head" else "norm"
            out[f"align_heads.{m.group(1)}.{part}.{m.group(3)}"] = v
        elif k in ("clip_pos_embed", "pos_embed_clip") or k.startswith(
            ("clip_teacher.", "decoder", "encoder_to_decoder.", "mask_token")
        ):
            continue
        else:
            out[k] = v
    if "patch_embed.proj.weight" not in out:
        raise input_error("no patch_embed.proj.weight: not a UMT student")
    if "blocks.0.mlp.fc1.weight" not in out:
        raise input_error("no blocks.0.mlp.fc1.weight: not a UMT student")
    w = out["patch_embed.proj.weight"]
    if w.ndim == 4:  # an image checkpoint: a tubelet of one frame
        w = out["patch_embed.proj.weight"] = w.unsqueeze(2)
    depth = 1 + max(int(k.split(".")[1]) for k in out if k.startswith("blocks."))
    embed_dim = w.shape[0]
    cfg: dict[str, Any] = dict(
        patch_size=w.shape[-1],
        tubelet_size=w.shape[2],
        in_chans=w.shape[1],
        embed_dim=embed_dim,
        depth=depth,
        mlp_ratio=out["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        qkv_bias="blocks.0.attn.q_bias" in out,
        init_values=1.0 if "blocks.0.gamma_1" in out else 0.0,
        final_norm="norm.weight" in out,
        pool_norm="pool_norm.weight" in out,
        pos_embed="learned" if "pos_embed" in out else "sincos",
    )
    if "head.weight" in out:
        cfg.update(num_classes=out["head.weight"].shape[0], fc_norm="fc_norm.weight" in out)
    heads = sorted({int(k.split(".")[1]) for k in out if k.startswith("align_heads.")})
    if heads and "align_heads.0.linear.weight" in out:
        cfg.update(align_layers=len(heads), align_dim=out["align_heads.0.linear.weight"].shape[0])
        if kind == "umt-multimodal":  # stage 2: LayerNorm eps 1e-5, no l2 step
            cfg.update(align_l2=False, align_ln_eps=1e-5)
    else:
        cfg["align_layers"] = 0
    if kind == "umt-finetune" and cfg["pos_embed"] == "sincos":
        # The official fine-tuning model builds the table for the pretraining layout and
        # interpolates it: 8 frames of 14x14 (patch 16) or 16x16 (patch 14).
        side = 16 if cfg["patch_size"] == 14 else 14
        cfg["sincos_source_grid"] = [8, side, side]
    return out, cfg


def read_student_weights(
    source: str | Path | Mapping[str, torch.Tensor], encoder_only: bool = True
) -> tuple[dict[str, torch.Tensor], str]:
    """The video encoder (and head) of any known checkpoint (a path, a released name or a
    state dict) in this library's names, and the checkpoint's kind: what a new model's encoder
    starts from (fine-tuning ``--init``, a detector's backbone, stage 2's video encoder).
    Refuses a file that holds no video encoder. ``encoder_only=False`` keeps the pretraining
    parts too (alignment heads, final and pooling norms)."""
    from_path = isinstance(source, (str, Path))
    where = str(source) if from_path else "<state dict>"
    sd = read_state_dict(checkpoint_path(source)) if from_path else dict(source)
    info = detect_checkpoint(sd, where)
    if "student" not in info.parts:
        raise InputError(f"{where}: a {info.kind} checkpoint holds no video encoder")
    try:
        weights, _ = student_state_dict(sd, info.kind)
    except ValueError as err:
        what = f" ({', '.join(info.notes)})" if info.notes else ""
        raise InputError(
            f"{where}: a {info.kind} checkpoint{what}, not one to start from ({err}); give "
            "--init a stage-1 / stage-2 pretraining or a fine-tuned classification checkpoint"
        ) from None
    if not encoder_only:
        return weights, info.kind
    for k in [k for k in weights if k.startswith(("align_heads.", "pool_norm.", "norm."))]:
        del weights[k]  # stage-1 / stage-2 parts a classifier has no use for
    return weights, info.kind


def encoder_mismatch(weights: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Where the video encoder in ``weights`` (this library's names) does not fit ``model`` (a
    :class:`VideoViT` or a detector): ``"embed_dim 768 (here 384)"`` items; empty when it fits."""
    p = weights["patch_embed.proj.weight"]  # [C, in, tubelet, p, p]
    found = {
        "embed_dim": p.shape[0],
        "depth": 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks.")),
        "patch_size": p.shape[-1],
        "tubelet_size": p.shape[2],
    }
    want = {
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "patch_size": model.patch_size,
        "tubelet_size": model.tubelet_size,
    }
    return [f"{k} {found[k]} (here {v})" for k, v in want.items() if found[k] != v]


def infer_layout(
    n: int, patch: int, tubelet: int, img_size: int | None, num_frames: int | None
) -> tuple[int, int]:
    """(frames, img_size) of a learned position table of ``n`` rows.

    Tries, in order: the given resolution (a temporal resize), the given frame count (a spatial
    resize, the official fine-tuning case), then the official 224 px.
    """
    if img_size and n % (img_size // patch) ** 2 == 0:
        return n // (img_size // patch) ** 2 * tubelet, img_size
    if num_frames and n % (num_frames // tubelet) == 0:
        side = math.isqrt(n // (num_frames // tubelet))
        if side * side * (num_frames // tubelet) == n:
            return num_frames, side * patch
    if n % (224 // patch) ** 2 == 0:
        return n // (224 // patch) ** 2 * tubelet, 224
    raise input_error(
        f"cannot tell the frames and resolution of a {n}-position table; pass num_frames and img_size"
    )


def resize_learned_pos(
    sd: dict[str, torch.Tensor], model: VideoViT, frames: int | None, img: int | None
) -> None:
    """Interpolate ``sd["pos_embed"]`` (a learned table made for ``frames`` x ``img`` px, as
    far as known) to ``model``'s token grid, in place; nothing for a fixed table."""
    pos = sd.get("pos_embed")
    if pos is None or not isinstance(model.pos_embed, nn.Parameter):
        return
    if pos.shape == model.pos_embed.shape:
        return
    p, tub = model.patch_size, model.tubelet_size
    frames, img = infer_layout(pos.shape[1], p, tub, img, frames)
    src = (frames // tub, img // p, img // p)
    sd["pos_embed"] = interpolate_pos_table(pos, src, model.grid)


def _from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[VideoViT, dict[str, Any]]:
    config, where = native
    cfg = {**config, **overrides}
    resized = "num_frames" in overrides or "img_size" in overrides
    model = build_checked(
        VideoViT,
        cfg,
        sd,
        strict,
        skip=("pos_embed",) if resized else (),
        context=f"{where} does not match the weights in {weights_file(path)}",
    )
    resize_learned_pos(sd, model, config.get("num_frames"), config.get("img_size"))
    model.load_state_dict(sd, strict=strict)
    return model, cfg


def _from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[VideoViT, dict[str, Any], list[str]]:
    try:
        sd, cfg = student_state_dict(sd, kind)
    except ValueError as err:
        raise input_error(f"{path}: {err}") from None
    learned = "pos_embed" in sd
    if kind in ("umt-student", "umt-video-text"):
        _require_sizes(path, learned, overrides)
    assumed: list[str] = []
    frames, img = 8, 224
    if learned:
        n = sd["pos_embed"].shape[1]
        try:
            frames, img = infer_layout(
                n,
                cfg["patch_size"],
                cfg["tubelet_size"],
                overrides.get("img_size"),
                overrides.get("num_frames"),
            )
        except ValueError as err:
            raise input_error(f"{path}: {err}") from None
        if "img_size" not in overrides and "num_frames" not in overrides:
            assumed.append(
                f"img_size=224 (official default; num_frames={frames} follows from the table)"
            )
    else:
        if "num_frames" not in overrides:
            assumed.append("num_frames=8 (official default)")
        if "img_size" not in overrides:
            assumed.append("img_size=224 (official default)")
    if "num_heads" not in overrides:
        cfg["num_heads"] = max(1, cfg["embed_dim"] // 64)
        assumed.insert(0, f"num_heads={cfg['num_heads']} (head width 64)")
    cfg.update(num_frames=frames, img_size=img)
    cfg.update(overrides)
    model = build_checked(
        VideoViT,
        cfg,
        sd,
        strict,
        skip=("pos_embed",),
        context=f"{path}: the weights do not fit the {kind} model with the given and assumed sizes",
    )
    resize_learned_pos(sd, model, frames, img)
    model.load_state_dict(sd, strict=False)  # what does not fit was refused above
    return model, cfg, assumed


def _require_sizes(path: Path, learned: bool, overrides: dict[str, Any]) -> None:
    """umt's own weights without config.json load only with the sizes given, never guessed."""
    missing = [k for k in ("num_heads", "num_frames", "img_size") if k not in overrides]
    if learned and ("num_frames" in overrides or "img_size" in overrides):
        # the learned table's length gives the other one
        missing = [k for k in missing if k == "num_heads"]
    if not missing:
        return
    if path.is_dir() or path.name == "model.safetensors":
        folder = path if path.is_dir() else path.parent
        where = f"without their config.json ({folder / 'config.json'} is missing)"
        fix = "put the config.json saved with the weights beside them, or pass the sizes"
    else:
        where = "without a config"
        fix = "pass the sizes"
    flags = " ".join("--" + k.replace("_", "-") + " N" for k in missing)
    raise input_error(
        f"{path}: umt student weights {where}, and the weights alone do not tell "
        f"{', '.join(missing)}: {fix}: load_checkpoint(path, "
        f"{', '.join(k + '=...' for k in missing)}) or umt convert IN OUT {flags}"
    )


def _describe(model: VideoViT, cfg: dict[str, Any]) -> list[str]:
    what = "classifier" if model.head is not None else "student encoder"
    lines = [
        f"model: video ViT {what}",
        f"sizes: width {model.embed_dim}, depth {len(model.blocks)}, heads "
        f"{model.blocks[0].attn.num_heads}, patch {model.patch_size}, tubelet {model.tubelet_size}",
        f"input: {model.num_frames} frames of {model.img_size}px ({model.num_patches} tokens)",
        f"position: {'learned' if cfg.get('pos_embed') == 'learned' else 'fixed sin-cos'}",
        f"aligned layers (K): {len(model.align_indices)}"
        + (f" -> {cfg.get('align_dim')}-d" if model.align_indices else ""),
    ]
    if model.head is not None:
        lines.append(f"classes: {model.num_classes}")
    return lines


register_family(
    Family(
        VideoViT,
        "student",
        _describe,
        recognise=recognise_student,
        order=90,
        from_config=_from_config,
        from_weights=_from_weights,
    )
)

_B16 = dict(embed_dim=768, depth=12, num_heads=12, align_layers=6, align_dim=512)
_L16 = dict(embed_dim=1024, depth=24, num_heads=16, align_layers=6, align_dim=768)
_8X224 = dict(img_size=224, patch_size=16, num_frames=8, tubelet_size=1)
register_model(
    "umt-b16",
    VideoViT,
    "UMT-B/16 student, 8x224, aligned to CLIP-B/16",
    **_8X224,
    **_B16,
)
register_model(
    "umt-l16",
    VideoViT,
    "UMT-L/16 student, 8x224, aligned to CLIP-L/14",
    **_8X224,
    **_L16,
)
