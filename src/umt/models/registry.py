"""Named model variants: ``create_model("umt-b16")``, ``list_models()``.

The sizes are the paper's: UMT-B/16 aligns 6 of its 12 blocks (768 wide) onto the 512-d output of
CLIP-B/16; UMT-L/16 aligns 6 of its 24 blocks (1024 wide) onto the 768-d output of CLIP-L/14.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from umt.models.clip_teacher import CLIPTeacher
from umt.models.video_vit import VideoViT

__all__ = ["create_model", "list_models", "model_config", "register_model"]

_REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any], str]] = {}


def register_model(name: str, cls: type[nn.Module], description: str, **config: Any) -> None:
    """Add a named variant: ``cls(**config)`` (overridable at ``create_model`` time)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = (cls, dict(config), description)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return sorted(_REGISTRY)


def model_config(name: str) -> dict[str, Any]:
    """The constructor arguments of a variant (a copy)."""
    return dict(_lookup(name)[1])


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
    return cls(**{**config, **overrides})


_STUDENT_B = dict(embed_dim=768, depth=12, num_heads=12, align_layers=6, align_dim=512)
_STUDENT_L = dict(embed_dim=1024, depth=24, num_heads=16, align_layers=6, align_dim=768)
_COMMON = dict(img_size=224, patch_size=16, num_frames=8, tubelet_size=1)

register_model(
    "umt-b16", VideoViT, "UMT-B/16 student, 8x224, aligned to CLIP-B/16", **_COMMON, **_STUDENT_B
)
register_model(
    "umt-l16", VideoViT, "UMT-L/16 student, 8x224, aligned to CLIP-L/14", **_COMMON, **_STUDENT_L
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
