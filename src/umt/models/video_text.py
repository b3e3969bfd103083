"""The stage-2 model: UMT video encoder + BERT text encoder (+ frozen CLIP teacher).

Mirrors the official ``multi_modality/models/umt.py`` class ``UMT``: a :class:`VideoViT` with
``pool_norm`` (per-frame pooled features for retrieval, one pooled feature over the kept tokens
when masked), a :class:`BertTextEncoder` whose upper layers cross-attend to the video tokens,
``vision_proj`` / ``text_proj`` to the joint space, the video-text matching head ``itm_head`` on the
fused ``[CLS]`` token, a learnable temperature, and optionally the frozen CLIP teacher for the
unmasked-token alignment. The losses live in :mod:`umt.losses`; this module computes features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from umt.errors import InputError
from umt.models.clip_teacher import CLIPTeacher
from umt.models.text_bert import BertTextEncoder
from umt.models.video_vit import VideoViT

__all__ = ["UMTVideoText", "vision_config", "text_config"]

# The official stage-2 alignment heads: LayerNorm eps 1e-5 (torch's default), no l2 step.
_VISION_DEFAULTS: dict[str, Any] = {"align_l2": False, "align_ln_eps": 1e-5}


def vision_config(vision: dict[str, Any]) -> dict[str, Any]:
    """The :class:`VideoViT` arguments of a stage-2 vision encoder: ``pool_norm`` on, and the
    official stage-2 alignment heads (``align_l2=False``, ``align_ln_eps=1e-5``) unless given."""
    return {**_VISION_DEFAULTS, **vision, "pool_norm": True}


def text_config(text: dict[str, Any], vision_width: int) -> dict[str, Any]:
    """The :class:`BertTextEncoder` arguments: ``encoder_width`` = the video width unless given."""
    return {"encoder_width": vision_width, **text}


class UMTVideoText(
    nn.Module, PyTorchModelHubMixin, library_name="umt", tags=["video", "text", "umt"]
):
    """UMT stage-2 video-text model.

    Args:
        vision: :class:`VideoViT` arguments (``pool_norm=True`` is forced; stage-2 alignment heads
            by default: ``align_l2=False``, ``align_ln_eps=1e-5``).
        text: :class:`BertTextEncoder` arguments (``encoder_width`` defaults to the video width).
        embed_dim: width of the joint video-text space (``vision_proj`` / ``text_proj``).
        temp: initial contrastive temperature.
        teacher: :class:`CLIPTeacher` arguments, or None for no teacher. The teacher is frozen
            (no gradients, always in eval mode).
        text_pool: the pooled text feature: ``"cls"`` (the ``[CLS]`` token, the official
            model) or ``"mean"`` (the mean over the caption's tokens, for text towers trained
            with mean pooling, such as the sentence-transformers MiniLM, whose ``[CLS]`` state
            is nearly the same for every sentence).
    """

    def __init__(
        self,
        vision: dict[str, Any],
        text: dict[str, Any],
        embed_dim: int = 512,
        temp: float = 0.07,
        teacher: dict[str, Any] | None = None,
        text_pool: str = "cls",
    ) -> None:
        super().__init__()
        if text_pool not in ("cls", "mean"):
            raise InputError(f"text_pool must be 'cls' or 'mean', not {text_pool!r}")
        self.text_pool = text_pool
        vcfg = vision_config(dict(vision))
        self.vision_encoder = VideoViT(**vcfg)
        vision_width = self.vision_encoder.embed_dim
        tcfg = text_config(dict(text), vision_width)
        if tcfg["encoder_width"] != vision_width:
            raise InputError(
                f"text encoder_width {tcfg['encoder_width']} differs from the video width "
                f"{vision_width}"
            )
        self.text_encoder = BertTextEncoder(**tcfg)
        tcfg["sep_after_text"] = self.text_encoder.sep_after_text  # recorded with the model
        text_width = self.text_encoder.hidden_size
        self.embed_dim = embed_dim
        self.vision_proj = nn.Linear(vision_width, embed_dim)
        self.text_proj = nn.Linear(text_width, embed_dim)
        self.itm_head = nn.Linear(text_width, 2)
        self.temp = nn.Parameter(torch.tensor(float(temp)))
        self.teacher: CLIPTeacher | None = None
        if teacher is not None:
            self.teacher = CLIPTeacher(**{**teacher, "frozen": True})
        self._config = {
            "vision": vcfg,
            "text": tcfg,
            "embed_dim": embed_dim,
            "temp": float(temp),
            "teacher": None if teacher is None else dict(teacher),
            "text_pool": text_pool,
        }
        # What save_pretrained writes into config.json: every default resolved.
        self._hub_mixin_config = self.model_config

    # ------------------------------------------------------------------ settings
    @property
    def model_config(self) -> dict[str, Any]:
        """The constructor arguments with every default filled in (what ``config.json`` holds)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._config.items()}

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay besides every 1-D parameter: ``temp`` and the
        encoders' own."""
        names = {"temp"}
        names |= {f"vision_encoder.{n}" for n in self.vision_encoder.no_weight_decay()}
        names |= {f"text_encoder.{n}" for n in self.text_encoder.no_weight_decay()}
        return names

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every video block and every text layer in the backward pass."""
        self.vision_encoder.set_grad_checkpointing(enable)
        self.text_encoder.set_grad_checkpointing(enable)

    def drop_pretraining_parts(self) -> None:
        """Remove what only stage 2 uses (the teacher, the alignment heads, the MLM head), as
        the official retrieval / QA fine-tuning builds its model; ``config.json`` follows."""
        self.teacher = None
        self._config["teacher"] = None
        enc = self.vision_encoder
        if enc.align_heads is not None:
            enc.align_heads = None
            enc.align_indices = []
            if hasattr(enc, "align_pos_embed"):
                del enc.align_pos_embed
            self._config["vision"]["align_layers"] = 0
        if getattr(self.text_encoder, "mlm_head", None) is not None:
            self.text_encoder.mlm_head = None
            self._config["text"]["mlm_head"] = False
        self._hub_mixin_config = self.model_config

    @torch.no_grad()
    def clamp_temp(self, min_val: float = 0.001, max_val: float = 0.5) -> None:
        """Clamp the temperature in place (the official step does it before every forward)."""
        self.temp.clamp_(min_val, max_val)

    # ------------------------------------------------------------------ vision
    def _pool(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        enc = self.vision_encoder
        if mask is None:
            return enc.pool_frames(features)  # [B, T, C]
        return enc.pool_norm(features.mean(1, keepdim=True))  # [B, 1, C]

    def encode_vision(
        self,
        video: torch.Tensor,
        mask: torch.Tensor | None = None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Video (or image) tokens and pooled features.

        Args:
            video: ``[B, 3, T, H, W]``; ``T = 1`` is an image (first H*W rows of the position
                table).
            mask: ``[B, N]`` bool, True = dropped, or None.
            drop_path_noise: optional per-sample drop-path uniforms ``[B, depth, 2]``.

        Returns:
            ``vision_embeds [B, N_vis, C]`` (after the final norm) and ``pooled``:
            ``[B, T, C]`` = ``pool_norm`` of each frame's mean without a mask, ``[B, 1, C]`` =
            ``pool_norm`` of the mean over all kept tokens with one (the official rule).
        """
        features = self.vision_encoder.forward_features(video, mask, drop_path_noise)
        return features, self._pool(features, mask)  # [B, N_vis, C], [B, T | 1, C]

    def encode_vision_aligned(
        self,
        video: torch.Tensor,
        mask: torch.Tensor | None,
        drop_path_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One encoder pass for the training step: ``(vision_embeds [B, N_vis, C], pooled
        [B, 1, C] (masked) or [B, T, C], aligned [K, B, N_vis, D_teacher])``.

        ``drop_path_noise``: optional per-sample drop-path uniforms ``[B, depth, 2]``."""
        enc = self.vision_encoder
        features, inter = enc.forward_intermediates(
            video, mask, norm=True, drop_path_noise=drop_path_noise
        )
        aligned = enc.align(torch.stack(inter), mask)  # [K, B, N_vis, D]
        return features, self._pool(features, mask), aligned

    def teacher_video(self, video: torch.Tensor) -> torch.Tensor:
        """The clip as the teacher sees it: resized (bicubic, as the official code) to the
        teacher's resolution when it differs (UMT-L: 224 -> 196). ``[B, 3, T, H, W]``."""
        if self.teacher is None:
            raise RuntimeError("this model has no teacher")
        size = self.teacher.img_size
        b, c, t, h, w = video.shape
        if (h, w) == (size, size):
            return video
        frames = video.reshape(b, c * t, h, w)
        frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        return frames.reshape(b, c, t, size, size)

    # ------------------------------------------------------------------ text
    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, L]`` token ids and mask -> ``(text_embeds [B, L, C], pooled [B, C])``: the
        text-only layers, pooled = the ``[CLS]`` token (or the mean, ``text_pool="mean"``)."""
        text_embeds = self.text_encoder.forward_text(input_ids, attention_mask)  # [B, L, C]
        if self.text_pool == "mean":  # over the real tokens (sentence-transformers towers)
            keep = attention_mask.to(text_embeds.dtype).unsqueeze(-1)  # [B, L, 1]
            pooled = (text_embeds * keep).sum(1) / keep.sum(1).clamp_min(1.0)
            return text_embeds, pooled
        return text_embeds, text_embeds[:, 0]

    # ------------------------------------------------------------------ heads
    def vision_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """``vision_proj``: ``[B, T, C] -> [B, T, D]`` (not normalised)."""
        return self.vision_proj(pooled)

    def text_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """``text_proj``: ``[B, C] -> [B, D]`` (not normalised)."""
        return self.text_proj(pooled)

    def itm_logits(
        self,
        text_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """Video-text matching: the fusion layers (every video token attended) and ``itm_head``
        on the first token. ``[B, L, C], [B, L], [B, N, C_v] -> [B, 2]`` (index 1 = match)."""
        fused = self.text_encoder.forward_fusion(text_embeds, attention_mask, vision_embeds)
        return self.itm_head(fused[:, 0])

    def mlm_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits conditioned on the video: text layers, fusion layers, MLM head.
        ``[B, L], [B, L], [B, N, C_v] -> [B, L, vocab]``; with ``positions`` (bool ``[B, L]``)
        only those tokens' logits, ``[M, vocab]`` (the loss needs only the masked tokens: the
        vocabulary-wide head then runs on a fraction of the positions)."""
        text = self.text_encoder.forward_text(input_ids, attention_mask)
        fused = self.text_encoder.forward_fusion(text, attention_mask, vision_embeds)
        if positions is not None:
            fused = fused[positions]  # [M, C]
        return self.text_encoder.mlm_logits(fused)

    def forward(
        self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieval features: ``(vision_proj(pooled) [B, T, D], text_proj([CLS]) [B, D])``."""
        _, pooled_v = self.encode_vision(video)
        _, pooled_t = self.encode_text(input_ids, attention_mask)
        return self.vision_features(pooled_v), self.text_features(pooled_t)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, teacher={self.teacher is not None}"
