"""Named model variants: ``create_model("umt-b16")``, ``list_models()``.

The sizes are the paper's: UMT-B/16 aligns 6 of its 12 blocks (768 wide) onto the 512-d output of
CLIP-B/16; UMT-L/16 aligns 6 of its 24 blocks (1024 wide) onto the 768-d output of CLIP-L/14.
The stage-2 video-text models (``umt-b16-vt``, ``umt-l16-vt``) add BERT-base (cross-attention from
layer 9, 512-d joint space) resp. BERT-large (from layer 19, 768-d) and the frozen CLIP teacher
(CLIP-L/14 at 196 px for L), at 4 frames; ``teacher=None`` leaves the teacher out.
The VideoMAE pretraining models (``videomae-b16``, ``videomae-l16``) are the official ViT-B / ViT-L
encoders (16 frames, tubelet 2) with their pixel decoders (384 wide, 6 heads / 512 wide, 8 heads;
4 blocks).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from umt.errors import InputError
from umt.models.clip_teacher import CLIPTeacher
from umt.models.detection import VideoDetector
from umt.models.video_text import UMTVideoText
from umt.models.video_vit import VideoViT
from umt.models.videomae import VideoMAE

__all__ = ["create_model", "list_models", "model_config", "register_model"]

_REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {}


def register_model(name: str, cls: type[nn.Module], description: str, **config: Any) -> None:
    """Add a named variant: ``cls(**config)`` (overridable at ``create_model`` time)."""
    if name in _REGISTRY:
        raise InputError(f"model {name!r} is already registered")
    _REGISTRY[name] = (cls, copy.deepcopy(config), description)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return sorted(_REGISTRY)


def model_config(name: str) -> dict[str, Any]:
    """The constructor arguments of a variant (a deep copy)."""
    return copy.deepcopy(_lookup(name)[1])


def _lookup(name: str) -> tuple[type[nn.Module], dict[str, Any], str]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant with random weights; keyword arguments override its config.

    Example: ``create_model("umt-b16", num_classes=400, align_layers=0, final_norm=False)`` is the
    K400 fine-tuning model; ``create_model("clip-l14", img_size=196)`` the UMT-L teacher.
    """
    cls, config, _ = _lookup(name)
    return cls(**{**copy.deepcopy(config), **overrides})


_STUDENT_B = dict(embed_dim=768, depth=12, num_heads=12, align_layers=6, align_dim=512)
_STUDENT_L = dict(embed_dim=1024, depth=24, num_heads=16, align_layers=6, align_dim=768)
_COMMON = dict(img_size=224, patch_size=16, num_frames=8, tubelet_size=1)

register_model(
    "umt-b16", VideoViT, "UMT-B/16 student, 8x224, aligned to CLIP-B/16", **_COMMON, **_STUDENT_B
)
register_model(
    "umt-l16", VideoViT, "UMT-L/16 student, 8x224, aligned to CLIP-L/14", **_COMMON, **_STUDENT_L
)
# AVA v2.2 action detection (official ``AD/``): the student's encoder (no alignment heads) with
# its final norm, RoIAlign on the time-averaged features and an 80-way head, 8 frames, tubelet 1.
_AVA = dict(_COMMON, num_classes=80)
register_model(
    "umt-b16-ava",
    VideoDetector,
    "UMT-B/16 AVA v2.2 action detector: 8x224 encoder + RoIAlign + 80-way head",
    **_AVA,
    embed_dim=768,
    depth=12,
    num_heads=12,
)
register_model(
    "umt-l16-ava",
    VideoDetector,
    "UMT-L/16 AVA v2.2 action detector: 8x224 encoder + RoIAlign + 80-way head",
    **_AVA,
    embed_dim=1024,
    depth=24,
    num_heads=16,
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


_BERT_BASE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    intermediate_size=3072,
    fusion_layer=9,
    encoder_width=768,
)
_BERT_LARGE = dict(
    vocab_size=30522,
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    intermediate_size=4096,
    fusion_layer=19,
    encoder_width=1024,
)
_STAGE2 = dict(_COMMON, num_frames=4)
register_model(
    "umt-b16-vt",
    UMTVideoText,
    "UMT-B/16 video-text (stage 2): UMT-B/16 4x224 + BERT-base (fusion from layer 9), 512-d, "
    "CLIP-B/16 teacher",
    vision=dict(_STAGE2, **_STUDENT_B),
    text=_BERT_BASE,
    embed_dim=512,
    temp=0.07,
    teacher=dict(model_config("clip-b16"), normalize=False),
)
register_model(
    "umt-l16-vt",
    UMTVideoText,
    "UMT-L/16 video-text (stage 2): UMT-L/16 4x224 + BERT-large (fusion from layer 19), 768-d, "
    "CLIP-L/14 teacher at 196px",
    vision=dict(_STAGE2, **_STUDENT_L),
    text=_BERT_LARGE,
    embed_dim=768,
    temp=0.07,
    teacher=dict(model_config("clip-l14"), img_size=196, normalize=False),
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
