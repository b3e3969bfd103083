"""Recognise checkpoints by their tensor names, convert them, load them safely, save umt's format.

Known layouts:

=====================  ==============================================================================
``umt-pretrain``       official stage-1 student: ``encoder.blocks.*``, ``clip_decoder.K.{head,norm}``
``umt-finetune``       official classifier: ``blocks.*``, ``fc_norm``, ``head``, maybe ``pos_embed``
``umt-multimodal``     official stage-2 model: ``vision_encoder.*`` (student), ``clip_teacher.*``
``clip-openai``        OpenAI CLIP: the ``visual`` tower alone (official UMT teacher files) or the
                       full model (``visual.*``); open_clip ``visual.*`` weights are the same layout
``clip-hf``            HuggingFace ``CLIPVisionModelWithProjection`` / ``CLIPModel`` (``vision_model.*``)
``umt``                this library's format: a folder (or file) with ``model.safetensors`` and
                       ``config.json``
=====================  ==============================================================================

Wrappers ``{"model": ...}``, ``{"module": ...}``, ``{"state_dict": ...}`` and ``encoder.``/``backbone.``
/``module.`` prefixes are unwrapped. Files are read with safetensors or
``torch.load(weights_only=True)``: nothing but tensors and plain containers is ever unpickled.

Sizes that tensor shapes cannot tell (attention heads, frames, resolution of a fixed position table)
come from keyword overrides, else the official defaults (head width 64, 8 frames, 224 px).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.models.clip_teacher import CLIPTeacher
from umt.models.layers import interpolate_grid_pos_embed, interpolate_pos_table
from umt.models.video_vit import VideoViT

__all__ = [
    "CheckpointInfo",
    "read_state_dict",
    "detect_checkpoint",
    "student_state_dict",
    "teacher_state_dict",
    "load_student",
    "load_teacher",
    "load_checkpoint",
    "save_pretrained",
    "convert_checkpoint",
]

_WRAPPERS = ("model", "module", "state_dict", "model_state", "student")
_PREFIXES = ("module.", "backbone.", "encoder.")


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, as recognised from its tensor names and shapes."""

    path: str
    kind: str
    parts: list[str] = field(default_factory=list)  # "student" and/or "teacher"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file, a torch file or a umt folder, without running code.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing or is not a
    checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: folder has no model.safetensors")
        path = weights
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix == ".safetensors" or _looks_like_safetensors(path, head):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path}: not a checkpoint that can be loaded safely (weights_only): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    return _unwrap(obj, path)


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    if len(head) < 8:
        return False
    n = int.from_bytes(head, "little")
    return 0 < n < path.stat().st_size and n < 100_000_000 and path.suffix not in (".pth", ".pt")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: no state dict found (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path}: holds no tensors; keys: {list(obj)[:8]}")
    return tensors


# --------------------------------------------------------------------------- detection
def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def detect_checkpoint(sd: dict[str, torch.Tensor], path: str = "<state dict>") -> CheckpointInfo:
    """Name the layout of a state dict (see the module docstring)."""
    keys = set(sd)
    if any(k.startswith("vision_encoder.") for k in keys):
        parts = ["student"] + (
            ["teacher"] if any(k.startswith("clip_teacher.") for k in keys) else []
        )
        return CheckpointInfo(path, "umt-multimodal", parts)
    if any(k.startswith("vision_model.") or ".vision_model." in k for k in keys):
        return CheckpointInfo(path, "clip-hf", ["teacher"])
    if "visual.conv1.weight" in keys or "conv1.weight" in keys:
        return CheckpointInfo(path, "clip-openai", ["teacher"])
    if "clip_teacher.conv1.weight" in keys:
        return CheckpointInfo(path, "umt-multimodal", ["teacher"])
    plain = _strip_prefixes(sd)
    if any(k.startswith("clip_decoder.") for k in plain):
        return CheckpointInfo(path, "umt-pretrain", ["student"])
    if "patch_embed.proj.weight" in plain and any(k.startswith("blocks.") for k in plain):
        return CheckpointInfo(path, "umt-finetune", ["student"])
    sample = ", ".join(sorted(keys)[:6])
    raise ValueError(f"{path}: not a known UMT or CLIP checkpoint (first keys: {sample})")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``backbone.`` / ``encoder.`` wrappers (also once nested)."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


# --------------------------------------------------------------------------- student
def student_state_dict(
    sd: dict[str, torch.Tensor], kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert an official student state dict to ours and infer the constructor arguments.

    Returns ``(state_dict, config)``; the config lacks what shapes cannot tell (heads, frames, size).
    """
    kind = kind or detect_checkpoint(sd).kind
    if kind == "umt-multimodal":
        sd = _strip(sd, "vision_encoder.")
    sd = _strip_prefixes(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"clip_decoder\.(\d+)\.(head|norm)\.(weight|bias)$", k)
        if m:
            part = "linear" if m.group(2) == "head" else "norm"
            out[f"align_heads.{m.group(1)}.{part}.{m.group(3)}"] = v
        elif k in ("clip_pos_embed", "pos_embed_clip") or k.startswith(
            ("clip_teacher.", "decoder")
        ):
            continue
        else:
            out[k] = v
    if "patch_embed.proj.weight" not in out:
        raise ValueError("no patch_embed.proj.weight: not a UMT student")
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
    if heads:
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


def _infer_layout(
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
    raise ValueError(
        f"cannot tell the frames and resolution of a {n}-position table; pass num_frames and img_size"
    )


def load_student(path: str | Path, strict: bool = True, **overrides: Any) -> VideoViT:
    """Load a student from any known layout (official files, multimodal files, umt format).

    ``overrides`` are ``VideoViT`` arguments (e.g. ``num_heads``, ``num_frames``, ``img_size``,
    ``drop_path_rate``). A learned ``pos_embed`` of another layout is interpolated to the model's.
    """
    model, _ = _load_student(path, strict, overrides)
    return model


def _load_student(
    path: str | Path, strict: bool, overrides: dict[str, Any]
) -> tuple[VideoViT, dict[str, Any]]:
    native = _native_config(path)
    sd = read_state_dict(path)
    if native is not None:
        cfg = {**native, **overrides}
        model = VideoViT(**cfg)
        _resize_learned_pos(sd, model, native.get("num_frames"), native.get("img_size"))
        model.load_state_dict(sd, strict=strict)
        return model, cfg
    info = detect_checkpoint(sd, str(path))
    if "student" not in info.parts:
        raise ValueError(f"{path}: a {info.kind} checkpoint holds no student")
    sd, cfg = student_state_dict(sd, info.kind)
    ckpt_frames, ckpt_img = 8, 224
    if "pos_embed" in sd:
        ckpt_frames, ckpt_img = _infer_layout(
            sd["pos_embed"].shape[1],
            cfg["patch_size"],
            cfg["tubelet_size"],
            overrides.get("img_size"),
            overrides.get("num_frames"),
        )
    cfg.setdefault("num_heads", max(1, cfg["embed_dim"] // 64))
    cfg.update(num_frames=ckpt_frames, img_size=ckpt_img)
    cfg.update(overrides)
    model = VideoViT(**cfg)
    _resize_learned_pos(sd, model, ckpt_frames, ckpt_img)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{path}: weights do not fit: missing {missing}, unexpected {unexpected}")
    return model, cfg


def _resize_learned_pos(
    sd: dict[str, torch.Tensor], model: VideoViT, frames: int | None, img: int | None
) -> None:
    pos = sd.get("pos_embed")
    if pos is None or not isinstance(model.pos_embed, nn.Parameter):
        return
    if pos.shape == model.pos_embed.shape:
        return
    p, tub = model.patch_size, model.tubelet_size
    frames, img = _infer_layout(pos.shape[1], p, tub, img, frames)
    src = (frames // tub, img // p, img // p)
    sd["pos_embed"] = interpolate_pos_table(pos, src, model.grid)


# --------------------------------------------------------------------------- teacher
def teacher_state_dict(
    sd: dict[str, torch.Tensor], kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert CLIP visual weights (OpenAI, open_clip, HuggingFace, UMT teacher) to ours.

    Returns ``(state_dict, config)`` with the sizes the shapes tell (not heads, not K).
    """
    kind = kind or detect_checkpoint(sd).kind
    if kind == "umt-multimodal":
        sd = _strip(sd, "clip_teacher.")
    elif kind == "clip-hf":
        sd = _hf_to_openai(sd)
    elif "visual.conv1.weight" in sd:
        sd = _strip(sd, "visual.")
    sd = {k: v for k, v in sd.items() if not k.startswith(("attnpool", "text"))}
    unsupported = [k for k in sd if re.search(r"\.ls_\d|attn_pool|\.ln_attn|\.q_norm|\.k_norm", k)]
    if unsupported:
        raise ValueError(
            f"CLIP variant with {unsupported[0]!r} is not supported by the UMT teacher"
        )
    if "conv1.weight" not in sd or "proj" not in sd:
        raise ValueError("not a CLIP ViT visual tower (needs conv1.weight and proj)")
    w = sd["conv1.weight"]
    if w.ndim == 5:
        if w.shape[2] != 1:
            raise ValueError(
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
    v = _strip(sd, prefix + "vision_model.")
    out = {
        "class_embedding": v["embeddings.class_embedding"],
        "conv1.weight": v["embeddings.patch_embedding.weight"],
        "positional_embedding": v["embeddings.position_embedding.weight"],
        "ln_pre.weight": v["pre_layrnorm.weight"],
        "ln_pre.bias": v["pre_layrnorm.bias"],
        "ln_post.weight": v["post_layernorm.weight"],
        "ln_post.bias": v["post_layernorm.bias"],
    }
    proj = sd.get(prefix + "visual_projection.weight")
    if proj is None:
        raise ValueError("HuggingFace CLIP weights without visual_projection (use *WithProjection)")
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
    return out


def load_teacher(path: str | Path, strict: bool = True, **overrides: Any) -> CLIPTeacher:
    """Load a CLIP teacher from any known layout.

    ``overrides`` are ``CLIPTeacher`` arguments: ``heads`` (default width / 64), ``return_layers``
    (default 6, at most the depth), ``normalize``, ``act`` (default ``quick_gelu``, OpenAI CLIP's;
    most open_clip models trained from scratch use ``gelu``) and ``img_size`` (the position table is
    interpolated bicubically to it, e.g. CLIP-L/14 at 196 px for UMT-L).
    """
    model, _ = _load_teacher(path, strict, overrides)
    return model


def _load_teacher(
    path: str | Path, strict: bool, overrides: dict[str, Any]
) -> tuple[CLIPTeacher, dict[str, Any]]:
    native = _native_config(path)
    sd = read_state_dict(path)
    if native is not None:
        sd, cfg = teacher_state_dict(sd, "clip-openai")
        cfg = {**native, **overrides}
    else:
        info = detect_checkpoint(sd, str(path))
        if "teacher" not in info.parts:
            raise ValueError(f"{path}: a {info.kind} checkpoint holds no CLIP teacher")
        sd, cfg = teacher_state_dict(sd, info.kind)
        cfg.setdefault("heads", max(1, cfg["width"] // 64))
        cfg.setdefault("return_layers", min(6, cfg["layers"]))
        if info.kind == "umt-multimodal":
            cfg["normalize"] = False
        cfg.update(overrides)
    model = CLIPTeacher(**cfg)
    sd["positional_embedding"] = interpolate_grid_pos_embed(
        sd["positional_embedding"], (model.grid, model.grid)
    )
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{path}: weights do not fit: missing {missing}, unexpected {unexpected}")
    return model, cfg


# --------------------------------------------------------------------------- umt format
def _native_config(path: str | Path) -> dict[str, Any] | None:
    """The config of a checkpoint in umt's format, or None for foreign files."""
    path = Path(path)
    cfg_file = path / "config.json" if path.is_dir() else path.with_name("config.json")
    if path.is_dir() or (path.suffix == ".safetensors" and cfg_file.is_file()):
        if not cfg_file.is_file():
            return None
        try:
            return json.loads(cfg_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{cfg_file}: invalid JSON ({err})") from None
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        if "umt_config" in meta:
            return json.loads(meta["umt_config"])
    return None


def _native_kind(cfg: dict[str, Any]) -> str:
    return "teacher" if "width" in cfg else "student"


def save_pretrained(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (huggingface_hub's mixin layout).

    The folder reloads with :func:`load_checkpoint` (or ``VideoViT.from_pretrained``) alone.
    """
    if not isinstance(model, (VideoViT, CLIPTeacher)):
        raise TypeError(f"cannot save a {type(model).__name__}")
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def load_checkpoint(
    path: str | Path, part: str = "auto", strict: bool = True, **overrides: Any
) -> nn.Module:
    """Load a student or a teacher from any known layout (``part``: auto, student or teacher).

    ``auto`` picks the student when the file holds one, else the teacher.
    """
    return _load_any(path, part, strict, overrides)[0]


def _which_part(path: str | Path, part: str) -> str:
    if part not in ("auto", "student", "teacher"):
        raise ValueError(f"part must be auto, student or teacher, not {part!r}")
    if part != "auto":
        return part
    native = _native_config(path)
    if native is not None:
        return _native_kind(native)
    return detect_checkpoint(read_state_dict(path), str(path)).parts[0]


def _load_any(
    path: str | Path, part: str, strict: bool, overrides: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], str]:
    if part not in ("auto", "student", "teacher"):
        raise ValueError(f"part must be auto, student or teacher, not {part!r}")
    native = _native_config(path)
    if native is not None:
        kind = "umt"
        which = _native_kind(native) if part == "auto" else part
    else:
        info = detect_checkpoint(read_state_dict(path), str(path))
        kind = info.kind
        which = info.parts[0] if part == "auto" else part
    if which == "teacher":
        model, cfg = _load_teacher(path, strict, overrides)
    else:
        model, cfg = _load_student(path, strict, overrides)
    return model, cfg, kind


def convert_checkpoint(
    src: str | Path,
    out_dir: str | Path,
    part: str = "auto",
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    **overrides: Any,
) -> str:
    """Convert ``src`` into umt's format in ``out_dir``; returns a short report of what was found.

    ``num_frames`` applies to a student only; ``num_heads`` sets the student's ``num_heads`` or the
    teacher's ``heads``.
    """
    which = _which_part(src, part)
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_frames is not None and which == "student":
        overrides["num_frames"] = num_frames
    if num_heads is not None:
        overrides["heads" if which == "teacher" else "num_heads"] = num_heads
    model, cfg, kind = _load_any(src, which, True, overrides)
    save_pretrained(model, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"source: {src}", f"format: {kind}"]
    if isinstance(model, VideoViT):
        what = "classifier" if model.head is not None else "student encoder"
        lines += [
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
    else:
        lines += [
            "model: CLIP visual teacher",
            f"sizes: width {model.width}, depth {len(model.transformer.resblocks)}, heads "
            f"{model.transformer.resblocks[0].attn.heads}, patch {model.patch_size}, "
            f"output {model.output_dim}",
            f"input: {model.img_size}px; returns the last {model.return_layers} layers (K)",
        ]
    if num_heads is None and kind != "umt":
        lines.append(
            "note: attention heads assumed from head width 64 (pass --num-heads to change)"
        )
    lines += [f"parameters: {n_params:,}", f"written: {Path(out_dir) / 'model.safetensors'}"]
    return "\n".join(lines)
