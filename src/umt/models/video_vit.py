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
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from umt.errors import InputError
from umt.models.layers import DropPath, Mlp, interpolate_pos_table, sincos_table, trunc_normal_

__all__ = ["VideoViT", "PatchEmbed3d", "Attention", "Block", "AlignHead"]


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
        if img_size % patch_size or num_frames % tubelet_size:
            raise InputError(
                f"img_size {img_size} / patch {patch_size} and num_frames {num_frames} / "
                f"tubelet {tubelet_size} must divide evenly"
            )
        if align_layers and (align_layers - 1) * align_interval >= depth:
            raise InputError(
                f"{align_layers} aligned layers every {align_interval} need > depth {depth}"
            )
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.embed_dim = embed_dim
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
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
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, rates[i], init_values, layer_norm_eps)
            for i in range(depth)
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
