"""The frozen CLIP image teacher of UMT.

Each frame of a video goes through CLIP's visual tower as an image. The teacher returns the
projected features of its last K blocks (class token dropped, ``ln_post`` and ``proj`` applied,
optionally l2-normalised) and the head-averaged attention of its last block's class token over the
patches, which drives semantic masking.

Parameter names follow the OpenAI CLIP ``visual`` state dict (``conv1``, ``class_embedding``,
``transformer.resblocks.N.attn.in_proj_weight``, ``ln_post``, ``proj``), so OpenAI and official
UMT teacher files load without renaming; other layouts (HuggingFace, open_clip, official stage-2 files) are converted here
(:func:`teacher_state_dict`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from umt.errors import InputError
from umt.models._io import (
    CheckpointInfo,
    build_checked,
    input_error,
    strip_prefix,
    weights_file,
)
from umt.models.layers import QuickGELU, interpolate_grid_pos_embed
from umt.models.registry import (
    Family,
    register_family,
    register_model,
)

__all__ = ["CLIPTeacher", "FP32LayerNorm", "recognise_clip", "teacher_state_dict"]


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


# --------------------------------------------------------------------------- checkpoint formats
# ``clip-openai``: OpenAI CLIP, the ``visual`` tower alone (official UMT teacher files) or the
# full model (``visual.*``); open_clip ``visual.*`` weights are the same layout. ``clip-hf``:
# HuggingFace ``CLIPVisionModelWithProjection`` / ``CLIPModel`` (``vision_model.*``). An official
# stage-2 file's teacher alone (``clip_teacher.*``) is ``umt-multimodal``.
def recognise_clip(sd: dict[str, torch.Tensor], path: str) -> CheckpointInfo | None:
    """The CLIP layout of ``sd`` (see above), or None."""
    keys = set(sd)
    if any(k.startswith("vision_model.") or ".vision_model." in k for k in keys):
        return CheckpointInfo(path, "clip-hf", ["teacher"])
    if "visual.conv1.weight" in keys or "conv1.weight" in keys:
        return CheckpointInfo(path, "clip-openai", ["teacher"])
    if "clip_teacher.conv1.weight" in keys:
        return CheckpointInfo(path, "umt-multimodal", ["teacher"])
    return None


def teacher_state_dict(
    sd: dict[str, torch.Tensor], kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert CLIP visual weights (OpenAI, open_clip, HuggingFace, UMT teacher) to ours.

    ``kind``: the layout :func:`umt.models.hub.detect_checkpoint` named (None: recognised here).
    Returns ``(state_dict, config)`` with the sizes the shapes tell (not heads, not K).
    """
    if kind is None:
        if any(k.startswith("vision_encoder.") for k in sd):  # a whole stage-2 model
            umt_names = "text_encoder.word_embed.weight" in sd
            kind = "umt-video-text" if umt_names else "umt-multimodal"
        else:
            info = recognise_clip(sd, "<state dict>")
            kind = info.kind if info is not None else "clip-openai"
    if kind == "umt-multimodal":
        sd = strip_prefix(sd, "clip_teacher.")
    elif kind == "umt-video-text":
        sd = strip_prefix(sd, "teacher.")
    elif kind == "clip-hf":
        sd = _hf_to_openai(sd)
    elif "visual.conv1.weight" in sd:
        sd = strip_prefix(sd, "visual.")
    sd = {k: v for k, v in sd.items() if not k.startswith(("attnpool", "text"))}
    unsupported = [k for k in sd if re.search(r"\.ls_\d|attn_pool|\.ln_attn|\.q_norm|\.k_norm", k)]
    if unsupported:
        raise input_error(
            f"CLIP variant with {unsupported[0]!r} is not supported by the UMT teacher"
        )
    needed = ("conv1.weight", "proj", "positional_embedding", "transformer.resblocks.0.ln_1.weight")
    absent = [k for k in needed if k not in sd]
    if absent:
        raise input_error(f"not a CLIP ViT visual tower (no {', '.join(absent)})")
    w = sd["conv1.weight"]
    if w.ndim == 5:
        if w.shape[2] != 1:
            raise input_error(
                f"teacher conv1 has a temporal kernel of {w.shape[2]}; only 1 is supported"
            )
        sd["conv1.weight"] = w = w.squeeze(2)
    width, patch = w.shape[0], w.shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
    grid = math.isqrt(sd["positional_embedding"].shape[0] - 1)
    cfg = dict(
        img_size=grid * patch,
        patch_size=patch,
        width=width,
        layers=layers,
        output_dim=sd["proj"].shape[1],
    )
    return sd, cfg


def _hf_to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HuggingFace CLIP vision names -> OpenAI names (q/k/v fused into ``in_proj``)."""
    prefix = next(k[: k.index("vision_model.")] for k in sd if "vision_model." in k)
    v = strip_prefix(sd, prefix + "vision_model.")
    proj = sd.get(prefix + "visual_projection.weight")
    if proj is None:
        raise input_error(
            "HuggingFace CLIP weights without visual_projection (use *WithProjection)"
        )
    try:
        out = {
            "class_embedding": v["embeddings.class_embedding"],
            "conv1.weight": v["embeddings.patch_embedding.weight"],
            "positional_embedding": v["embeddings.position_embedding.weight"],
            "ln_pre.weight": v["pre_layrnorm.weight"],
            "ln_pre.bias": v["pre_layrnorm.bias"],
            "ln_post.weight": v["post_layernorm.weight"],
            "ln_post.bias": v["post_layernorm.bias"],
        }
        out["proj"] = proj.t().contiguous()
        names = {
            "layer_norm1": "ln_1",
            "layer_norm2": "ln_2",
            "mlp.fc1": "mlp.c_fc",
            "mlp.fc2": "mlp.c_proj",
        }
        n_layers = 1 + max(int(k.split(".")[2]) for k in v if k.startswith("encoder.layers."))
        for i in range(n_layers):
            src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
            for t in ("weight", "bias"):
                qkv = [v[f"{src}self_attn.{n}_proj.{t}"] for n in "qkv"]
                out[f"{dst}attn.in_proj_{t}"] = torch.cat(qkv, 0)
                out[f"{dst}attn.out_proj.{t}"] = v[f"{src}self_attn.out_proj.{t}"]
                for a, b in names.items():
                    out[f"{dst}{b}.{t}"] = v[f"{src}{a}.{t}"]
    except KeyError as err:
        raise input_error(
            f"HuggingFace CLIP weights without {prefix}vision_model.{err.args[0]}"
        ) from None
    return out


def _from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[CLIPTeacher, dict[str, Any]]:
    config, where = native
    try:
        sd, _ = teacher_state_dict(sd, "clip-openai")
    except ValueError as err:
        raise input_error(
            f"{where} describes a CLIP teacher, but {weights_file(path)}: {err}"
        ) from None
    cfg = {**config, **overrides}
    model = build_checked(
        CLIPTeacher,
        cfg,
        sd,
        strict,
        skip=("positional_embedding",) if "img_size" in overrides else (),
        context=f"{where} does not match the weights in {weights_file(path)}",
    )
    _load_weights(model, sd, strict)
    return model, cfg


def _from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[CLIPTeacher, dict[str, Any], list[str]]:
    try:
        sd, cfg = teacher_state_dict(sd, kind)
    except ValueError as err:
        raise input_error(f"{path}: {err}") from None
    assumed = []
    if "heads" not in overrides:
        cfg["heads"] = max(1, cfg["width"] // 64)
        assumed.append(f"heads={cfg['heads']} (head width 64)")
    if "return_layers" not in overrides:
        cfg["return_layers"] = min(6, cfg["layers"])
        assumed.append(f"return_layers={cfg['return_layers']} (default: 6 at most)")
    if kind in ("umt-multimodal", "umt-video-text"):
        cfg["normalize"] = False
    cfg.update(overrides)
    model = build_checked(
        CLIPTeacher,
        cfg,
        sd,
        strict,
        skip=("positional_embedding",),
        context=f"{path}: the weights do not fit the {kind} teacher with the given and assumed sizes",
    )
    _load_weights(model, sd, False)  # what does not fit was refused above
    return model, cfg, assumed


def _load_weights(model: CLIPTeacher, sd: dict[str, torch.Tensor], strict: bool) -> None:
    if "positional_embedding" in sd:
        sd["positional_embedding"] = interpolate_grid_pos_embed(
            sd["positional_embedding"], (model.grid, model.grid)
        )
    model.load_state_dict(sd, strict=strict)


def _describe(model: CLIPTeacher, cfg: dict[str, Any]) -> list[str]:
    return [
        "model: CLIP visual teacher",
        f"sizes: width {model.width}, depth {len(model.transformer.resblocks)}, heads "
        f"{model.transformer.resblocks[0].attn.heads}, patch {model.patch_size}, "
        f"output {model.output_dim}",
        f"input: {model.img_size}px; returns the last {model.return_layers} layers (K)",
    ]


register_family(
    Family(
        CLIPTeacher,
        "teacher",
        _describe,
        recognise=recognise_clip,
        order=30,
        from_config=_from_config,
        from_weights=_from_weights,
    )
)

register_model(
    "clip-b16",
    CLIPTeacher,
    "OpenAI CLIP ViT-B/16 visual tower (512-d)",
    img_size=224,
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    output_dim=512,
    return_layers=6,
)
register_model(
    "clip-l14",
    CLIPTeacher,
    "OpenAI CLIP ViT-L/14 visual tower (768-d)",
    img_size=224,
    patch_size=14,
    width=1024,
    layers=24,
    heads=16,
    output_dim=768,
    return_layers=6,
)
register_model(
    "clip-l14-336",
    CLIPTeacher,
    "OpenAI CLIP ViT-L/14@336px visual tower (768-d)",
    img_size=336,
    patch_size=14,
    width=1024,
    layers=24,
    heads=16,
    output_dim=768,
    return_layers=6,
)
