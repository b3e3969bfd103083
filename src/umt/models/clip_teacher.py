"""The frozen CLIP image teacher of UMT.

Each frame of a video goes through CLIP's visual tower as an image. The teacher returns the
projected features of its last K blocks (class token dropped, ``ln_post`` and ``proj`` applied,
optionally l2-normalised) and the head-averaged attention of its last block's class token over the
patches, which drives semantic masking.

Parameter names follow the OpenAI CLIP ``visual`` state dict (``conv1``, ``class_embedding``,
``transformer.resblocks.N.attn.in_proj_weight``, ``ln_post``, ``proj``), so OpenAI and official
UMT teacher files load without renaming; other layouts are converted in ``checkpoints.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from umt.errors import InputError
from umt.models.layers import QuickGELU

__all__ = ["CLIPTeacher", "FP32LayerNorm"]


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, as OpenAI CLIP does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class CLIPAttention(nn.Module):
    """Multi-head attention with a fused ``in_proj`` (the ``nn.MultiheadAttention`` layout) on SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, L, C]`` -> q, k, v ``[B, heads, L, D]`` (one fused projection)."""
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # [B, L, 3C]
        qkv = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    @staticmethod
    def _cls_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The class token's attention probabilities, averaged over heads: ``[B, L]``, in
        float32 even under autocast (it drives the mask sampler; autocast would recompute the
        matmul in half precision despite the float32 inputs)."""
        scale = q.shape[-1] ** -0.5
        with torch.autocast(q.device.type, enabled=False):
            logits = (q[:, :, :1].float() * scale) @ k.float().transpose(-2, -1)  # [B,heads,1,L]
            return logits.softmax(dim=-1).mean(dim=1)[:, 0]

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q [B, heads, n, D]`` over all keys -> ``[B, n, C]`` after ``out_proj``."""
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, n, D]
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))

    def forward(
        self, x: torch.Tensor, return_cls_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, L, C] -> [B, L, C]``, and with ``return_cls_attn`` the class token's attention
        probabilities averaged over heads ``[B, L]`` (computed for that one row only)."""
        q, k, v = self._heads(x)  # [B, heads, L, D]
        cls_attn = self._cls_attention(q, k) if return_cls_attn else None
        return self._attend(q, k, v), cls_attn

    def forward_rows(
        self, x: torch.Tensor, select: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs of some rows only, chosen from the class token's attention.

        ``select`` maps ``cls_attn [B, L]`` to row indices ``[B, n]``; returns
        ``(out [B, n, C], cls_attn [B, L], rows [B, n])``. Keys and values still come from all
        ``L`` tokens, so each selected row equals its row of :meth:`forward`."""
        q, k, v = self._heads(x)  # [B, heads, L, D]
        cls_attn = self._cls_attention(q, k)
        rows = select(cls_attn)  # [B, n]
        d = q.shape[-1]
        q_rows = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, d))
        return self._attend(q_rows, k, v), cls_attn, rows


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-LN residual block: attention, then ``c_fc -> act -> c_proj``."""

    def __init__(self, width: int, heads: int, act: str = "quick_gelu") -> None:
        super().__init__()
        self.ln_1 = FP32LayerNorm(width, eps=1e-5)
        self.attn = CLIPAttention(width, heads)
        self.ln_2 = FP32LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("gelu", QuickGELU() if act == "quick_gelu" else nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))

    def forward(
        self, x: torch.Tensor, return_cls_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, cls_attn = self.attn(self.ln_1(x), return_cls_attn)
        x = x + y
        return x + self.mlp(self.ln_2(x)), cls_attn

    def forward_rows(
        self, x: torch.Tensor, select: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output at the rows ``select(cls_attn)`` only: ``[B, L, C] -> [B, n, C]``
        (plus ``cls_attn [B, L]`` and ``rows [B, n]``). Attention projection and MLP run on
        the selected rows alone."""
        y, cls_attn, rows = self.attn.forward_rows(self.ln_1(x), select)  # [B, n, C]
        x = x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1])) + y  # [B, n, C]
        return x + self.mlp(self.ln_2(x)), cls_attn, rows


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, act: str) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, act) for _ in range(layers)
        )


class CLIPTeacher(nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["clip", "umt"]):
    """Frozen CLIP visual tower applied frame by frame.

    Args:
        img_size: input resolution (the position table is sized for it).
        patch_size, width, layers, heads: CLIP ViT sizes.
        output_dim: width of ``proj`` (512 for CLIP-B/16, 768 for CLIP-L/14).
        return_layers: K, how many of the last blocks are returned.
        return_interval: spacing of the returned blocks, counted from the last one.
        normalize: l2-normalise the returned features (stage 1 does, stage 2 does not).
        act: ``"quick_gelu"`` (OpenAI CLIP) or ``"gelu"`` (most open_clip models).
        frozen: freeze the parameters and stay in eval mode.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        output_dim: int = 512,
        return_layers: int = 6,
        return_interval: int = 1,
        normalize: bool = True,
        act: str = "quick_gelu",
        frozen: bool = True,
    ) -> None:
        super().__init__()
        if act not in ("quick_gelu", "gelu"):
            raise InputError(f"act must be 'quick_gelu' or 'gelu', not {act!r}")
        if img_size % patch_size:
            raise InputError(f"img_size {img_size} is not a multiple of patch {patch_size}")
        if return_layers < 1 or (return_layers - 1) * return_interval >= layers:
            raise InputError(f"cannot return {return_layers} of {layers} blocks")
        self.img_size = img_size
        self.patch_size = patch_size
        self.width = width
        self.output_dim = output_dim
        self.normalize = normalize
        self.grid = img_size // patch_size
        self.return_indices = sorted(layers - 1 - i * return_interval for i in range(return_layers))

        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.ln_pre = FP32LayerNorm(width, eps=1e-5)
        self.transformer = Transformer(width, layers, heads, act)
        self.ln_post = FP32LayerNorm(width, eps=1e-5)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @property
    def return_layers(self) -> int:
        return len(self.return_indices)

    def train(self, mode: bool = True) -> CLIPTeacher:
        """A frozen teacher stays in eval mode."""
        return super().train(False if self.frozen else mode)

    def forward_hidden(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw block outputs and the class token's attention.

        Args:
            video: ``[B, 3, T, H, W]`` (or images ``[B, 3, H, W]``, taken as T = 1).

        Returns:
            hidden ``[K, B, T*HW, width]`` (class token dropped, before ``ln_post``) and
            cls_attn ``[B, T, HW]`` (last block, averaged over heads, patch columns).
        """
        x, b, t = self._embed(video)  # [BT, L, C]
        last = self.return_indices[-1]
        hidden, cls_attn = [], None
        for i, blk in enumerate(self.transformer.resblocks):
            x, attn = blk(x, return_cls_attn=(i == last))
            if i in self.return_indices:
                hidden.append(x[:, 1:])
            if i == last:
                cls_attn = attn
                break
        hw = x.shape[1] - 1
        hid = torch.stack(hidden)  # [K, BT, HW, C]
        hid = hid.reshape(len(hidden), b, t * hw, hid.shape[-1])  # [K, B, T*HW, C]
        return hid, cls_attn[:, 1:].reshape(b, t, hw)

    def _embed(self, video: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Frames as images: ``[B, 3, T, H, W]`` (or ``[B, 3, H, W]``) -> tokens ``[B*T, L, C]``
        after the class token, the position table and ``ln_pre``; also ``B`` and ``T``."""
        if video.ndim == 4:
            video = video.unsqueeze(2)
        b, _, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, 3, h, w)  # [BT, 3, H, W]
        x = self.conv1(frames)  # [BT, C, H/p, W/p]
        x = x.flatten(2).transpose(1, 2)  # [BT, HW, C]
        if x.shape[1] + 1 != self.positional_embedding.shape[0]:
            raise InputError(
                f"frames of {h}x{w} give {x.shape[1]} patches; this teacher is built for "
                f"{self.img_size}px ({self.positional_embedding.shape[0] - 1} patches)"
            )
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [BT, L, C]
        return self.ln_pre(x), b, t

    def forward_masked(
        self,
        video: torch.Tensor,
        choose_mask: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stage-1 teacher pass: raw block outputs at the kept tokens only.

        The last block's class-token attention ``cls_attn [B, T, HW]`` goes to ``choose_mask``,
        which returns the token mask ``[B, T*HW]`` (True = dropped; every frame must keep the
        same number of tokens, as semantic, tube and random masks do). The rest of the last
        block (the attention of the kept queries, its projection and the MLP) then runs on the
        kept tokens alone. Equals ``forward_hidden`` followed by keeping the kept tokens.

        Returns:
            hidden ``[K, B, N_vis, width]`` (before ``ln_post``; see :meth:`project`), cls_attn
            ``[B, T, HW]`` and mask ``[B, T*HW]``.
        """
        x, b, t = self._embed(video)  # [BT, L, C]
        hw = x.shape[1] - 1
        last = self.return_indices[-1]
        chosen: list[torch.Tensor] = []  # the mask choose_mask returned

        def select(cls_attn: torch.Tensor) -> torch.Tensor:  # [BT, L] -> rows [BT, n]
            mask = choose_mask(cls_attn[:, 1:].reshape(b, t, hw))  # [B, T*HW]
            keep = ~mask.reshape(b * t, hw)  # [BT, HW]
            counts = keep.sum(dim=1)
            if bool((counts != counts[0]).any()):
                raise InputError("forward_masked: every frame must keep the same number of tokens")
            chosen.append(mask)
            # Row-major nonzero: per frame, kept positions in increasing order; +1 skips cls.
            return keep.nonzero()[:, 1].reshape(b * t, -1) + 1

        blocks = self.transformer.resblocks
        hidden = []  # full-token outputs of the earlier returned blocks, [BT, L, C] each
        for i in range(last):
            x, _ = blocks[i](x)
            if i in self.return_indices:
                hidden.append(x)
        x_kept, cls_attn, rows = blocks[last].forward_rows(x, select)  # [BT, n, C]
        idx = rows[..., None].expand(-1, -1, x.shape[-1])  # [BT, n, C]
        kept = [h.gather(1, idx) for h in hidden] + [x_kept]  # K x [BT, n, C]
        hid = torch.stack(kept).reshape(len(kept), b, -1, x.shape[-1])  # [K, B, T*n, C]
        return hid, cls_attn[:, 1:].reshape(b, t, hw), chosen[0]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """``ln_post``, ``@ proj`` and the optional l2 step: ``[..., width] -> [..., output_dim]``."""
        x = self.ln_post(hidden) @ self.proj.to(hidden.dtype)
        if self.normalize:
            x = x / x.norm(dim=-1, keepdim=True)
        return x

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's image embedding: the class token after every block, ``ln_post`` and ``proj``
        (not normalised). ``[B, 3, H, W]`` (or ``[B, 3, T, H, W]``: per frame) ->
        ``[B, output_dim]`` (``[B, T, output_dim]``)."""
        x, b, t = self._embed(images)  # [BT, L, C]
        for blk in self.transformer.resblocks:
            x, _ = blk(x)
        emb = self.ln_post(x[:, 0]) @ self.proj.to(x.dtype)  # [BT, D]
        return emb if images.ndim == 4 else emb.reshape(b, t, -1)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, T, H, W] -> (features [K, B, T*HW, output_dim], cls_attn [B, T, HW])``."""
        hidden, cls_attn = self.forward_hidden(video)
        return self.project(hidden), cls_attn

    def targets(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Projected features at the kept positions only (cheaper than projecting all tokens).

        ``hidden [K, B, N, width]``, ``mask [B, N]`` (True = dropped) -> ``[K, B, N_vis, output_dim]``.
        """
        if mask is not None:
            k, b, _, c = hidden.shape
            hidden = hidden[:, ~mask].reshape(k, b, -1, c)
        return self.project(hidden)
