"""VideoMAE (Tong et al., NeurIPS 2022): reconstruct the pixels of masked tubelets.

The encoder is a plain :class:`~umt.models.video_vit.VideoViT` (no alignment heads, no
classifier), so a VideoMAE checkpoint's encoder loads wherever a UMT student does (``umt finetune
--init``). It runs on the visible tokens only; a light decoder (the official
``PretrainVisionTransformerDecoder`` plus ``encoder_to_decoder`` and ``mask_token``) takes the
visible tokens and one learned mask token per dropped position, each with the fixed sin-cos
position of its token, and predicts the pixels of every masked tubelet-patch.

Token order is t, then h, then w; a mask is ``[B, N]`` bool, True = dropped (masked, predicted),
with the same count in every sample. Predictions and targets of the masked tokens come in token
order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from umt.errors import InputError
from umt.models._io import CheckpointInfo, strip_wrappers
from umt.models.hub import load_native
from umt.models.layers import sincos_table, trunc_normal_
from umt.models.registry import Family, register_family, register_model
from umt.models.video_vit import Block, VideoViT

__all__ = ["VideoMAE", "VideoMAEDecoder", "patch_targets", "recognise_videomae"]

# What the encoder of a VideoMAE is, whatever its sizes: no alignment heads, no classifier,
# a final norm, xavier-uniform Linears (the official pretraining encoder).
_ENCODER_DEFAULTS: dict[str, Any] = {
    "align_layers": 0,
    "num_classes": 0,
    "final_norm": True,
    "weight_init": "xavier",
}


class VideoMAEDecoder(nn.Module):
    """The pixel decoder: ``Linear(encoder width -> width)`` (no bias), a learned mask token,
    a fixed sin-cos table over all ``N`` tokens, ``depth`` pre-norm blocks, a final norm and a
    linear head to ``out_dim`` pixel values per token.

    Args:
        num_patches: ``N = T' * H' * W'``, the tokens of a whole clip.
        encoder_dim: the encoder's width.
        embed_dim, depth, num_heads, mlp_ratio: the decoder's transformer.
        out_dim: values predicted per token (``tubelet * patch * patch * 3``).
        layer_norm_eps: LayerNorm eps (1e-6, as the official model).
    """

    def __init__(
        self,
        num_patches: int,
        encoder_dim: int,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        out_dim: int = 1536,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.num_patches = num_patches
        self.embed_dim = embed_dim
        self.embed = nn.Linear(encoder_dim, embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", sincos_table(num_patches, embed_dim), persistent=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=layer_norm_eps)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.head = nn.Linear(embed_dim, out_dim)
        # The official init: xavier-uniform Linears in the blocks and the head, LayerNorms (1, 0);
        # encoder_to_decoder keeps torch's default (the official model never re-initialises it);
        # the mask token is N(0, 0.02) truncated at +-1 std.
        for m in (*self.blocks.modules(), self.norm, self.head):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)

    def forward(self, x_vis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x_vis`` [B, N_vis, C_enc] (encoder output at the kept positions, token order),
        ``mask`` [B, N] (True = masked) -> predictions at the masked positions, in token order:
        ``[B, N_masked, out_dim]``."""
        x = self.embed(x_vis)  # [B, N_vis, C]
        b, n_vis, c = x.shape
        if mask.shape != (b, self.num_patches):
            raise InputError(
                f"mask shape {tuple(mask.shape)} does not match ({b}, {self.num_patches})"
            )
        pos = self.pos_embed.to(x.dtype).expand(b, -1, -1)  # [B, N, C]
        pos_vis = pos[~mask].reshape(b, n_vis, c)  # [B, N_vis, C]
        pos_mask = pos[mask].reshape(b, -1, c)  # [B, N_masked, C]
        # Attention is permutation-equivariant and the positions ride on the tokens, so the
        # sequence is [visible; masked] rather than the clip's order (as the official model).
        x = torch.cat([x + pos_vis, self.mask_token.to(x.dtype) + pos_mask], dim=1)  # [B, N, C]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, n_vis:]))  # [B, N_masked, out_dim]

    def extra_repr(self) -> str:
        return f"num_patches={self.num_patches}"


class VideoMAE(nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["video", "videomae"]):
    """VideoMAE pretraining model: a :class:`VideoViT` encoder + a :class:`VideoMAEDecoder`.

    Args:
        encoder: :class:`VideoViT` arguments (``model_config("umt-b16")`` plus overrides).
            Unless given, ``align_layers=0``, ``num_classes=0``, ``final_norm=True`` and
            ``weight_init="xavier"``; alignment heads or a classifier are refused.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder (official ViT-B:
            384, 4, 6; ViT-L: 512, 4, 8).
        decoder_mlp_ratio: MLP width of the decoder blocks, as a multiple of its width.

    ``forward(video, mask)`` returns the predicted pixels of the masked tokens; the encoder
    alone is ``model.encoder`` (what fine-tuning starts from).
    """

    def __init__(
        self,
        encoder: dict[str, Any],
        decoder_embed_dim: int = 384,
        decoder_depth: int = 4,
        decoder_num_heads: int = 6,
        decoder_mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        ecfg = {**_ENCODER_DEFAULTS, **dict(encoder)}
        if ecfg["align_layers"] or ecfg["num_classes"]:
            raise InputError(
                "a VideoMAE encoder has no alignment heads and no classifier "
                f"(got align_layers={ecfg['align_layers']}, num_classes={ecfg['num_classes']})"
            )
        self.encoder = VideoViT(**ecfg)
        enc = self.encoder
        self.patch_size = enc.patch_size
        self.tubelet_size = enc.tubelet_size
        in_chans = enc.patch_embed.proj.in_channels
        self.out_dim = enc.tubelet_size * enc.patch_size**2 * in_chans
        self.decoder = VideoMAEDecoder(
            num_patches=enc.num_patches,
            encoder_dim=enc.embed_dim,
            embed_dim=decoder_embed_dim,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            mlp_ratio=decoder_mlp_ratio,
            out_dim=self.out_dim,
            layer_norm_eps=float(ecfg.get("layer_norm_eps", 1e-6)),
        )
        self._config = {
            "encoder": ecfg,
            "decoder_embed_dim": decoder_embed_dim,
            "decoder_depth": decoder_depth,
            "decoder_num_heads": decoder_num_heads,
            "decoder_mlp_ratio": float(decoder_mlp_ratio),
        }
        # What save_pretrained / a training checkpoint writes into config.json.
        self._hub_mixin_config = self.model_config

    @property
    def model_config(self) -> dict[str, Any]:
        """The constructor arguments with every default filled in (what ``config.json`` holds)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._config.items()}

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay besides every 1-D parameter: the mask token and the
        encoder's own (as the official ``no_weight_decay``)."""
        return {"decoder.mask_token"} | {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def set_grad_checkpointing(self, num_blocks: int | bool = True) -> None:
        """Recompute the first ``num_blocks`` encoder blocks in the backward pass."""
        self.encoder.set_grad_checkpointing(num_blocks)

    def forward(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        drop_path_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``video`` [B, 3, T, H, W] (normalised), ``mask`` [B, N] bool (True = masked) ->
        predicted pixels of the masked tokens in token order ``[B, N_masked, out_dim]``.
        ``drop_path_noise``: optional per-sample encoder drop-path uniforms ``[B, depth, 2]``."""
        x_vis = self.encoder.forward_features(video, mask, drop_path_noise)  # [B, N_vis, C_enc]
        return self.decoder(x_vis, mask)  # [B, N_masked, out_dim]


def patch_targets(
    video: torch.Tensor, patch: int, tubelet: int, normalize: bool = True
) -> torch.Tensor:
    """The reconstruction targets: the pixels of each tubelet-patch, token order t, h, w.

    ``video`` [B, C, T, H, W] *un-normalised* (pixel values, e.g. in [0, 1]) ->
    ``[B, N, tubelet * patch * patch * C]``, each row flattened as (tubelet, row, column,
    channel), channel fastest. With ``normalize`` (VideoMAE's default), each channel of a
    patch is standardised over the patch's ``tubelet * patch * patch`` pixels:
    ``(x - mean) / (sqrt(var) + 1e-6)`` with the unbiased variance. Computed in float32.
    """
    b, c, t, h, w = video.shape
    if t % tubelet or h % patch or w % patch:
        raise InputError(
            f"video {tuple(video.shape)} does not split into tubelets of {tubelet}x{patch}x{patch}"
        )
    gt, gh, gw = t // tubelet, h // patch, w // patch
    x = video.float().reshape(b, c, gt, tubelet, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, T', H', W', tubelet, p, p, C]
    x = x.reshape(b, gt * gh * gw, tubelet * patch * patch, c)  # [B, N, P, C]
    if normalize:
        mean = x.mean(dim=-2, keepdim=True)  # [B, N, 1, C]
        std = x.var(dim=-2, unbiased=True, keepdim=True).sqrt()  # [B, N, 1, C]
        x = (x - mean) / (std + 1e-6)
    return x.reshape(b, gt * gh * gw, -1)  # [B, N, P * C]


# --------------------------------------------------------------------------- checkpoint formats
def recognise_videomae(sd: dict[str, torch.Tensor], path: str) -> CheckpointInfo | None:
    """``videomae``: a VideoMAE pretraining model without umt's ``config.json`` (``encoder.*``, a
    video ViT, + ``decoder.*``, umt's or the official one with ``encoder_to_decoder`` and
    ``mask_token``): its encoder loads as a student (the pixel decoder is not loaded); or None."""
    plain = strip_wrappers(sd)
    if "patch_embed.proj.weight" in plain and any(k.startswith("decoder.") for k in plain):
        note = "a VideoMAE encoder (its pixel decoder is not loaded)"
        return CheckpointInfo(path, "videomae", ["student"], [note])
    return None


def _from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[nn.Module, dict[str, Any]]:
    """A whole VideoMAE (encoder and decoder) from umt's format: the hub's generic loader, with
    the config every default filled in (``_describe`` reads the decoder's sizes)."""
    model, _ = load_native(VideoMAE, path, sd, native, strict, overrides)
    return model, model.model_config


def _describe(model: VideoMAE, cfg: dict[str, Any]) -> list[str]:
    e = model.encoder
    return [
        "model: VideoMAE: video ViT encoder + pixel decoder",
        f"encoder: width {e.embed_dim}, depth {len(e.blocks)}, heads {e.blocks[0].attn.num_heads}, "
        f"patch {e.patch_size}, tubelet {e.tubelet_size}; {e.num_frames} frames of {e.img_size}px",
        f"decoder: width {cfg['decoder_embed_dim']}, depth {cfg['decoder_depth']}, heads "
        f"{cfg['decoder_num_heads']}",
    ]


register_family(
    Family(
        VideoMAE,
        "videomae",
        _describe,
        recognise=recognise_videomae,
        order=80,
        from_config=_from_config,
        foreign_hint=": only umt's own VideoMAE folders load whole (other VideoMAE files load "
        "their encoder, part='student')",
    )
)

# VideoMAE (official ``pretrain_videomae_{base,large}_patch16_224``): 16 frames at 224 px in
# tubelets of 2, a plain ViT encoder (no alignment heads) and a 4-block pixel decoder.
_VIDEOMAE = dict(img_size=224, patch_size=16, num_frames=16, tubelet_size=2, align_layers=0)
register_model(
    "videomae-b16",
    VideoMAE,
    "VideoMAE ViT-B/16 pretraining model, 16x224, tubelet 2: encoder + 384-wide 4-block decoder",
    encoder=dict(_VIDEOMAE, embed_dim=768, depth=12, num_heads=12),
    decoder_embed_dim=384,
    decoder_depth=4,
    decoder_num_heads=6,
)
register_model(
    "videomae-l16",
    VideoMAE,
    "VideoMAE ViT-L/16 pretraining model, 16x224, tubelet 2: encoder + 512-wide 4-block decoder",
    encoder=dict(_VIDEOMAE, embed_dim=1024, depth=24, num_heads=16),
    decoder_embed_dim=512,
    decoder_depth=4,
    decoder_num_heads=8,
)
