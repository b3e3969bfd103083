"""Recognise checkpoints by their tensor names, convert them, load them safely, save umt's format.

Known layouts:

=====================  ==============================================================================
``umt-pretrain``       official stage-1 student: ``encoder.blocks.*``, ``clip_decoder.K.{head,norm}``
``umt-finetune``       official classifier: ``blocks.*``, ``fc_norm``, ``head``, maybe ``pos_embed``
``umt-multimodal``     official stage-2 model: ``vision_encoder.*`` (student), ``clip_teacher.*``
                       (teacher), ``text_encoder.*`` (BERT with cross-attention), ``vision_proj``,
                       ``text_proj``, ``itm_head``, ``temp``: loads whole as a ``UMTVideoText``
                       (part ``video-text``, the default) or as its student / teacher alone
``umt-video-text``     this library's own ``UMTVideoText`` weights without their ``config.json``
                       (refused for the whole model: its sizes need the config)
``clip-openai``        OpenAI CLIP: the ``visual`` tower alone (official UMT teacher files) or the
                       full model (``visual.*``); open_clip ``visual.*`` weights are the same layout
``clip-hf``            HuggingFace ``CLIPVisionModelWithProjection`` / ``CLIPModel`` (``vision_model.*``)
``umt-student``        this library's own ``VideoViT`` weights without their ``config.json``:
                       ``align_heads.*``, or ``blocks.*`` with no classifier, or any student weights in
                       a umt folder (``model.safetensors``); their sizes must be passed as arguments
``videomae``           a VideoMAE pretraining model: ``encoder.*`` (a video ViT) + ``decoder.*`` (umt's, or
                       the official one with ``encoder_to_decoder``, ``mask_token``): its encoder loads
                       as a student; the pixel decoder is not loaded
``umt``                this library's format: a folder (or file) with ``model.safetensors`` and
                       ``config.json`` (a ``VideoMAE``'s loads as its encoder, part ``student``)
=====================  ==============================================================================

Wrappers ``{"model": ...}``, ``{"module": ...}``, ``{"state_dict": ...}`` and ``encoder.``/``backbone.``
/``module.`` prefixes are unwrapped. Files are recognised by their content, not their extension, and
read with safetensors or ``torch.load(weights_only=True)`` (plus ``argparse.Namespace``, which the
official training scripts store under ``args``): nothing else is ever unpickled.

Sizes that tensor shapes cannot tell (attention heads, frames, resolution of a fixed position table)
come from keyword overrides, else, for official files, the official defaults (head width 64,
8 frames (4 for a stage-2 model), 224 px); each default used is reported with an
:class:`AssumedSizeWarning` (and in :func:`convert_checkpoint`'s report).

A whole stage-2 model (``UMTVideoText``) takes flat keyword overrides: ``VideoViT`` arguments as
they are (``num_heads``, ``num_frames``, ``img_size``, ``align_interval``, ``drop_path_rate``, ...),
``BertTextEncoder`` arguments prefixed ``text_`` (``text_num_heads``, ``text_dropout``,
``text_mlm_head``, ...), ``CLIPTeacher`` arguments prefixed ``teacher_`` (``teacher_heads``,
``teacher_img_size``, ``teacher_return_interval``, ...), and ``embed_dim`` / ``temp``. umt's own weights without ``config.json`` are refused unless
their sizes are passed. A ``config.json`` is checked against the weights' shapes before any memory is
allocated for the model.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import json
import math
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.models.clip_teacher import CLIPTeacher
from umt.models.layers import interpolate_grid_pos_embed, interpolate_pos_table
from umt.models.text_bert import BertTextEncoder, bert_state_dict
from umt.models.video_text import UMTVideoText, text_config, vision_config
from umt.models.video_vit import VideoViT

__all__ = [
    "AssumedSizeWarning",
    "warn_assumed",
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
_ST_MAX_HEADER = 100_000_000  # the safetensors format's own limit
_FIX = "re-download it or pick another checkpoint"


class AssumedSizeWarning(UserWarning):
    """A size the checkpoint does not store (heads, frames, resolution, ...) was assumed.

    Made by :func:`warn_assumed`, it carries ``path``, ``kind`` and ``assumed`` (the list of
    ``name=value (why)`` items), so a caller can re-state it for the parts it keeps."""

    path: str = ""
    kind: str = ""
    assumed: tuple[str, ...] = ()


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, as recognised from its tensor names and shapes."""

    path: str
    kind: str
    parts: list[str] = field(default_factory=list)  # "video-text", "student", "teacher"
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- messages
def _clean(text: str) -> str:
    """Escape control and other unprintable characters (ANSI escapes included) for display."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _error(message: str, cls: type[Exception] = InputError) -> Exception:
    """One printable line: what is raised for bad input (the CLI prints it without a traceback)."""
    return cls(_clean(message))


def _first_sentence(text: str, limit: int = 160) -> str:
    """The informative start of a library's error message, on one line."""
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    line = re.split(r"(?<=[a-z)\]])\. ", line)[0].rstrip(".")
    return line[:limit]


def _shape(t: torch.Tensor | torch.Size | tuple[int, ...]) -> str:
    return str(list(t.shape if isinstance(t, torch.Tensor) else t))


# --------------------------------------------------------------------------- reading
def _weights_file(path: Path) -> Path:
    """The weights file of a checkpoint path (``model.safetensors`` for a folder)."""
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            hint = ""
            if (path / "checkpoints").is_dir() or any(path.glob("step_*")):
                hint = " (a training run? pass one of its checkpoints/step_* folders)"
            raise _error(f"{path}: folder has no model.safetensors{hint}", FileNotFoundError)
        return weights
    if not path.is_file():
        raise _error(f"{path}: no such checkpoint file", FileNotFoundError)
    return path


def _sniff(path: Path) -> tuple[str, bytes]:
    """``("safetensors" | "torch-zip" | "pickle" | "unknown", first bytes)``, from the content."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) >= 9 and head[8:9] == b"{":
        if 2 <= int.from_bytes(head[:8], "little") <= _ST_MAX_HEADER:
            return "safetensors", head
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip", head
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle", head
    return "unknown", head


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, ``__metadata__``)."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
    try:
        if len(raw) < n:
            raise InputError("the header is cut short")
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise InputError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        reason = _first_sentence(str(err))
        raise _error(f"{path}: corrupt or truncated safetensors file ({reason}); {_FIX}") from None
    return header


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types
        reason = _first_sentence(str(err))
        raise _error(f"{path}: corrupt or truncated safetensors file ({reason}); {_FIX}") from None


@contextlib.contextmanager
def _allow_namespace() -> Iterator[None]:
    """Let the weights-only unpickler build ``argparse.Namespace`` (the official ``args``)."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):
        with serialization.safe_globals([argparse.Namespace]):
            yield
    else:  # older torch: the process-wide allow list
        serialization.add_safe_globals([argparse.Namespace])
        yield


def _read_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that never suggest unsafe loading."""
    try:
        with warnings.catch_warnings(), _allow_namespace():
            warnings.filterwarnings("ignore", message=".*pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        detail = text.split("WeightsUnpickler error:", 1)[-1]
        found = re.search(r"GLOBAL ([\w.]+)", detail)
        if found:
            raise _error(
                f"{path}: refused: the file holds a pickled {found.group(1)}, not only tensors "
                "and plain containers, and unpickling it could run code (umt reads only tensors, "
                "plain containers and argparse.Namespace); get the weights as a .safetensors "
                "file or as a file holding only the state dict"
            ) from None
        reason = _first_sentence(detail)
        reason = "" if "weights_only" in reason else f" ({reason})"
        raise _error(
            f"{path}: refused: the file holds pickled data that is not plain tensors and "
            f"containers{reason}: not a weights-only PyTorch checkpoint, or corrupt; {_FIX}"
        ) from None
    except Exception as err:
        reason = _first_sentence(str(err)) or type(err).__name__
        reason = type(err).__name__ if "weights_only" in reason else reason
        raise _error(
            f"{path}: unreadable PyTorch file, corrupt or truncated ({reason}); {_FIX}"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a safetensors file, a torch file or a umt folder, without running code.

    The format is recognised from the content (a safetensors file named ``.pth`` loads). Raises
    ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, corrupt, truncated
    or not a checkpoint.
    """
    path = _weights_file(Path(path))
    if path.stat().st_size == 0:
        raise _error(f"{path}: empty file, not a checkpoint")
    fmt, head = _sniff(path)
    if fmt == "safetensors":
        return _read_safetensors(path)
    if fmt != "unknown":
        return _unwrap(_read_torch(path), path)
    if path.suffix == ".safetensors":
        raise _error(
            f"{path}: corrupt or truncated safetensors file (no valid header; starts with bytes "
            f"{head[:16]!r}); {_FIX}"
        )
    if head.startswith(b"version https://git-lfs"):
        what = "a Git LFS pointer file, not the weights (fetch them with `git lfs pull`)"
    elif head.lstrip().startswith(b"<"):
        what = "it looks like a web page, perhaps a failed download"
    else:
        what = f"neither a safetensors file nor a PyTorch file (starts with bytes {head[:16]!r})"
    raise _error(f"{path}: not a checkpoint: {what}")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise _error(f"{path}: no state dict found (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and isinstance(k, str)}
    if not tensors:
        raise _error(f"{path}: holds no tensors; keys: {', '.join(map(str, list(obj)[:8]))}")
    return tensors


# --------------------------------------------------------------------------- detection
def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def detect_checkpoint(sd: dict[str, torch.Tensor], path: str = "<state dict>") -> CheckpointInfo:
    """Name the layout of a state dict from its tensor names (see the module docstring)."""
    keys = set(sd)
    if any(k.startswith("vision_encoder.") for k in keys):
        if any(k.startswith("text_decoder.") for k in keys):  # a QA model: an answer decoder
            return CheckpointInfo(path, "umt-qa", ["video-qa", "student"], ["a video QA model"])
        if "text_encoder.word_embed.weight" in keys:  # umt's own UMTVideoText names
            teacher = any(k.startswith("teacher.") for k in keys)
            parts = ["video-text", "student"] + (["teacher"] if teacher else [])
            return CheckpointInfo(path, "umt-video-text", parts, ["umt's own video-text weights"])
        text = any(k.startswith("text_encoder.") for k in keys)
        parts = (["video-text"] if text else []) + ["student"]
        if any(k.startswith("clip_teacher.") for k in keys):
            parts.append("teacher")
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
    if "patch_embed.proj.weight" in plain and any(k.startswith("decoder.") for k in plain):
        note = "a VideoMAE encoder (its pixel decoder is not loaded)"
        return CheckpointInfo(path, "videomae", ["student"], [note])
    if any(k.startswith("align_heads.") for k in plain):
        return CheckpointInfo(path, "umt-student", ["student"], ["umt's own alignment heads"])
    if "patch_embed.proj.weight" in plain and any(k.startswith("blocks.") for k in plain):
        if "head.weight" in plain:
            return CheckpointInfo(path, "umt-finetune", ["student"])
        if any(k.startswith("encoder.") for k in keys):  # an official stage-1 encoder alone
            return CheckpointInfo(path, "umt-pretrain", ["student"])
        return CheckpointInfo(path, "umt-student", ["student"], ["an encoder without classifier"])
    sample = ", ".join(sorted(keys)[:6])
    raise _error(f"{path}: not a known UMT or CLIP checkpoint (first keys: {sample})")


def _detect(path: Path, sd: dict[str, torch.Tensor]) -> CheckpointInfo:
    """:func:`detect_checkpoint`, plus: student weights in umt's folder layout are umt's own."""
    info = detect_checkpoint(sd, str(path))
    if info.kind == "umt-finetune" and (path.is_dir() or path.name == "model.safetensors"):
        return CheckpointInfo(str(path), "umt-student", ["student"], ["umt folder layout"])
    return info


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
    """Convert an official (or umt) student state dict to ours and infer the constructor arguments.

    Returns ``(state_dict, config)``; the config lacks what shapes cannot tell (heads, frames, size).
    """
    kind = kind or detect_checkpoint(sd).kind
    if kind in ("umt-multimodal", "umt-video-text"):
        sd = _strip(sd, "vision_encoder.")
    sd = _strip_prefixes(sd)
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
        raise _error("no patch_embed.proj.weight: not a UMT student")
    if "blocks.0.mlp.fc1.weight" not in out:
        raise _error("no blocks.0.mlp.fc1.weight: not a UMT student")
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
    raise _error(
        f"cannot tell the frames and resolution of a {n}-position table; pass num_frames and img_size"
    )


def load_student(path: str | Path, strict: bool = True, **overrides: Any) -> VideoViT:
    """Load a student from any known layout (official files, multimodal files, umt format).

    ``overrides`` are ``VideoViT`` arguments (e.g. ``num_heads``, ``num_frames``, ``img_size``,
    ``drop_path_rate``). A learned ``pos_embed`` of another layout is interpolated to the model's.
    Sizes taken from official defaults are reported with an :class:`AssumedSizeWarning`.
    """
    model, _, kind, assumed = _load_any(path, "student", strict, overrides)
    warn_assumed(path, kind, assumed)
    return model


def _student_from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[VideoViT, dict[str, Any]]:
    config, where = native
    cfg = {**config, **overrides}
    resized = "num_frames" in overrides or "img_size" in overrides
    model = _build_checked(
        VideoViT,
        cfg,
        sd,
        strict,
        skip=("pos_embed",) if resized else (),
        context=f"{where} does not match the weights in {_weights_file(path)}",
    )
    _resize_learned_pos(sd, model, config.get("num_frames"), config.get("img_size"))
    model.load_state_dict(sd, strict=strict)
    return model, cfg


def _student_from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[VideoViT, dict[str, Any], list[str]]:
    try:
        sd, cfg = student_state_dict(sd, kind)
    except ValueError as err:
        raise _error(f"{path}: {err}") from None
    learned = "pos_embed" in sd
    if kind in ("umt-student", "umt-video-text"):
        _require_sizes(path, learned, overrides)
    assumed: list[str] = []
    frames, img = 8, 224
    if learned:
        n = sd["pos_embed"].shape[1]
        try:
            frames, img = _infer_layout(
                n,
                cfg["patch_size"],
                cfg["tubelet_size"],
                overrides.get("img_size"),
                overrides.get("num_frames"),
            )
        except ValueError as err:
            raise _error(f"{path}: {err}") from None
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
    model = _build_checked(
        VideoViT,
        cfg,
        sd,
        strict,
        skip=("pos_embed",),
        context=f"{path}: the weights do not fit the {kind} model with the given and assumed sizes",
    )
    _resize_learned_pos(sd, model, frames, img)
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
    raise _error(
        f"{path}: umt student weights {where}, and the weights alone do not tell "
        f"{', '.join(missing)}: {fix}: load_checkpoint(path, "
        f"{', '.join(k + '=...' for k in missing)}) or umt convert IN OUT {flags}"
    )


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
    elif kind == "umt-video-text":
        sd = _strip(sd, "teacher.")
    elif kind == "clip-hf":
        sd = _hf_to_openai(sd)
    elif "visual.conv1.weight" in sd:
        sd = _strip(sd, "visual.")
    sd = {k: v for k, v in sd.items() if not k.startswith(("attnpool", "text"))}
    unsupported = [k for k in sd if re.search(r"\.ls_\d|attn_pool|\.ln_attn|\.q_norm|\.k_norm", k)]
    if unsupported:
        raise _error(f"CLIP variant with {unsupported[0]!r} is not supported by the UMT teacher")
    needed = ("conv1.weight", "proj", "positional_embedding", "transformer.resblocks.0.ln_1.weight")
    absent = [k for k in needed if k not in sd]
    if absent:
        raise _error(f"not a CLIP ViT visual tower (no {', '.join(absent)})")
    w = sd["conv1.weight"]
    if w.ndim == 5:
        if w.shape[2] != 1:
            raise _error(
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
    proj = sd.get(prefix + "visual_projection.weight")
    if proj is None:
        raise _error("HuggingFace CLIP weights without visual_projection (use *WithProjection)")
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
        raise _error(
            f"HuggingFace CLIP weights without {prefix}vision_model.{err.args[0]}"
        ) from None
    return out


def load_teacher(path: str | Path, strict: bool = True, **overrides: Any) -> CLIPTeacher:
    """Load a CLIP teacher from any known layout.

    ``overrides`` are ``CLIPTeacher`` arguments: ``heads`` (default width / 64), ``return_layers``
    (default 6, at most the depth), ``normalize``, ``act`` (default ``quick_gelu``, OpenAI CLIP's;
    most open_clip models trained from scratch use ``gelu``) and ``img_size`` (the position table is
    interpolated bicubically to it, e.g. CLIP-L/14 at 196 px for UMT-L). Defaults used for heads
    and return_layers are reported with an :class:`AssumedSizeWarning`.
    """
    model, _, kind, assumed = _load_any(path, "teacher", strict, overrides)
    warn_assumed(path, kind, assumed)
    return model


def _teacher_from_config(
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
        raise _error(
            f"{where} describes a CLIP teacher, but {_weights_file(path)}: {err}"
        ) from None
    cfg = {**config, **overrides}
    model = _build_checked(
        CLIPTeacher,
        cfg,
        sd,
        strict,
        skip=("positional_embedding",) if "img_size" in overrides else (),
        context=f"{where} does not match the weights in {_weights_file(path)}",
    )
    _load_teacher_weights(model, sd, strict)
    return model, cfg


def _teacher_from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[CLIPTeacher, dict[str, Any], list[str]]:
    try:
        sd, cfg = teacher_state_dict(sd, kind)
    except ValueError as err:
        raise _error(f"{path}: {err}") from None
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
    model = _build_checked(
        CLIPTeacher,
        cfg,
        sd,
        strict,
        skip=("positional_embedding",),
        context=f"{path}: the weights do not fit the {kind} teacher with the given and assumed sizes",
    )
    _load_teacher_weights(model, sd, False)  # what does not fit was refused above
    return model, cfg, assumed


def _load_teacher_weights(model: CLIPTeacher, sd: dict[str, torch.Tensor], strict: bool) -> None:
    if "positional_embedding" in sd:
        sd["positional_embedding"] = interpolate_grid_pos_embed(
            sd["positional_embedding"], (model.grid, model.grid)
        )
    model.load_state_dict(sd, strict=strict)


# --------------------------------------------------------------------------- video-text
_VT_TOP = ("embed_dim", "temp")


def _init_args(cls: type[nn.Module]) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _split_vt_overrides(
    overrides: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Flat overrides of a whole video-text model -> (vision, text, teacher, top-level).

    ``VideoViT`` arguments as they are, ``text_<BertTextEncoder argument>``,
    ``teacher_<CLIPTeacher argument>``, ``embed_dim`` and ``temp``; anything else is refused
    with a ``TypeError`` suggesting the closest name."""
    vision_args, text_args = _init_args(VideoViT), _init_args(BertTextEncoder)
    teacher_args = _init_args(CLIPTeacher)
    vision: dict[str, Any] = {}
    text: dict[str, Any] = {}
    teacher: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in _VT_TOP:
            top[key] = value
        elif key.startswith("text_") and key[5:] in text_args:
            text[key[5:]] = value
        elif key.startswith("teacher_") and key[8:] in teacher_args:
            teacher[key[8:]] = value
        elif key in vision_args and key != "pool_norm":
            vision[key] = value
        else:
            known = (
                [a for a in vision_args if a != "pool_norm"]
                + [f"text_{a}" for a in text_args]
                + [f"teacher_{a}" for a in teacher_args]
                + list(_VT_TOP)
            )
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "give VideoViT arguments as they are, text_<BertTextEncoder argument>, "
                "teacher_<CLIPTeacher argument>, embed_dim or temp"
            )
            raise _error(f"overrides: unknown key {key!r} for a UMTVideoText ({hint})", TypeError)
    return vision, text, teacher, top


def _video_text_from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[UMTVideoText, dict[str, Any]]:
    config, where = native
    vision, text, teacher, top = _split_vt_overrides(overrides)
    for name, part in (("vision", config.get("vision")), ("text", config.get("text"))):
        if not isinstance(part, dict):
            raise _error(f"{where}: {name!r} must be a JSON object of model arguments")
    if teacher and not config.get("teacher"):
        raise _error(f"{where} describes a video-text model without a teacher; drop teacher_*")
    stored = (
        ("num_heads", vision, config["vision"]),
        ("text_num_heads", text, config["text"]),
        ("teacher_heads", teacher, config.get("teacher") or {}),
    )
    for flag, given, saved in stored:  # the weights cannot tell a wrong head count
        key = flag.split("_", 1)[1] if flag != "num_heads" else flag
        if key in given and key in saved and int(given[key]) != int(saved[key]):
            raise _error(
                f"{where} stores {flag}={saved[key]}; a umt checkpoint keeps its sizes "
                f"({flag}={given[key]} is for official files that do not store them)"
            )
    cfg = {
        **config,
        **top,
        "vision": {**config["vision"], **vision},
        "text": {**config["text"], **text},
    }
    if config.get("teacher"):
        cfg["teacher"] = {**config["teacher"], **teacher}
    for name, cls in (("vision", VideoViT), ("text", BertTextEncoder)):
        _check_args(cls, list(config[name]), f"{where} ({name})", ValueError)
    if config.get("teacher"):
        _check_args(CLIPTeacher, list(config["teacher"]), f"{where} (teacher)", ValueError)
    skip = []
    if "num_frames" in vision or "img_size" in vision:
        skip.append("vision_encoder.pos_embed")
    if "img_size" in teacher:
        skip.append("teacher.positional_embedding")
    model = _build_checked(
        UMTVideoText,
        cfg,
        sd,
        strict,
        skip=tuple(skip),
        context=f"{where} does not match the weights in {_weights_file(path)}",
    )
    sub = _strip(sd, "vision_encoder.")
    if "pos_embed" in sub:
        v = config["vision"]
        _resize_learned_pos(sub, model.vision_encoder, v.get("num_frames"), v.get("img_size"))
        sd["vision_encoder.pos_embed"] = sub["pos_embed"]
    if model.teacher is not None and "teacher.positional_embedding" in sd:
        sd["teacher.positional_embedding"] = interpolate_grid_pos_embed(
            sd["teacher.positional_embedding"], (model.teacher.grid, model.teacher.grid)
        )
    model.load_state_dict(sd, strict=strict)
    return model, model.model_config


def _video_text_from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[UMTVideoText, dict[str, Any], list[str]]:
    """A whole official stage-2 model: sizes from the shapes, the rest from the overrides or the
    official defaults (head width 64 for video, text and teacher; 4 frames; 224 px)."""
    if kind != "umt-multimodal":
        raise _error(
            f"{path}: umt video-text weights without their config.json: put the config.json "
            "saved with them beside the weights (the sizes of a whole video-text model are "
            "not guessed)"
        )
    vision_o, text_o, teacher_o, top = _split_vt_overrides(overrides)
    assumed: list[str] = []
    try:
        vsd, vcfg = student_state_dict(sd, kind)
        tsd, tcfg = bert_state_dict({k: v for k, v in sd.items() if k.startswith("text_encoder.")})
    except ValueError as err:
        raise _error(f"{path}: {err}") from None

    # vision
    if "num_heads" not in vision_o:
        vcfg["num_heads"] = max(1, vcfg["embed_dim"] // 64)
        assumed.append(f"num_heads={vcfg['num_heads']} (video head width 64)")
    frames, img = vision_o.get("num_frames"), vision_o.get("img_size")
    if "pos_embed" in vsd:
        try:
            f0, i0 = _infer_layout(
                vsd["pos_embed"].shape[1], vcfg["patch_size"], vcfg["tubelet_size"], img, frames
            )
        except ValueError as err:
            raise _error(f"{path}: {err}") from None
        if frames is None and img is None:
            assumed.append(f"img_size=224 (official default; num_frames={f0} from the table)")
        vcfg.update(num_frames=f0, img_size=i0)
    else:
        if frames is None:
            assumed.append("num_frames=4 (official stage-2 default)")
        if img is None:
            assumed.append("img_size=224 (official default)")
        vcfg.update(num_frames=4, img_size=224)
    learned_frames, learned_img = vcfg["num_frames"], vcfg["img_size"]
    vcfg.update(vision_o)
    vcfg = vision_config(vcfg)

    # text
    if "num_heads" not in text_o:
        tcfg["num_heads"] = max(1, tcfg["hidden_size"] // 64)
        assumed.append(f"text_num_heads={tcfg['num_heads']} (text head width 64)")
    tcfg.update(text_o)
    if not tcfg.get("mlm_head", True):
        tsd = {k: v for k, v in tsd.items() if not k.startswith("mlm_head.")}
    tcfg = text_config(tcfg, vcfg["embed_dim"])

    # teacher
    teacher_cfg = None
    teacher_sd: dict[str, torch.Tensor] = {}
    if any(k.startswith("clip_teacher.") for k in sd):
        try:
            teacher_sd, teacher_cfg = teacher_state_dict(sd, kind)
        except ValueError as err:
            raise _error(f"{path}: {err}") from None
        if "heads" not in teacher_o:
            teacher_cfg["heads"] = max(1, teacher_cfg["width"] // 64)
            assumed.append(f"teacher_heads={teacher_cfg['heads']} (head width 64)")
        # The official model returns as many teacher layers as the student aligns.
        k = vcfg.get("align_layers", 0) or min(6, teacher_cfg["layers"])
        teacher_cfg.update(return_layers=k, normalize=False)
        teacher_cfg["return_interval"] = vcfg.get("align_interval", 1)
        teacher_cfg.update(teacher_o)

    # joint heads
    if "vision_proj.weight" not in sd or "text_proj.weight" not in sd:
        raise _error(f"{path}: a stage-2 checkpoint without vision_proj / text_proj")
    cfg: dict[str, Any] = {
        "vision": vcfg,
        "text": tcfg,
        "embed_dim": sd["vision_proj.weight"].shape[0],
        "temp": 0.07,
        "teacher": teacher_cfg,
    }
    cfg.update(top)
    whole = {f"vision_encoder.{k}": v for k, v in vsd.items()}
    whole.update({f"text_encoder.{k}": v for k, v in tsd.items()})
    whole.update({f"teacher.{k}": v for k, v in teacher_sd.items()})
    for name in ("vision_proj", "text_proj", "itm_head"):
        for t in ("weight", "bias"):
            if f"{name}.{t}" in sd:
                whole[f"{name}.{t}"] = sd[f"{name}.{t}"]
    if "temp" in sd:
        whole["temp"] = sd["temp"].reshape(())
    model = _build_checked(
        UMTVideoText,
        cfg,
        whole,
        strict,
        skip=("vision_encoder.pos_embed", "teacher.positional_embedding"),
        context=f"{path}: the weights do not fit the {kind} video-text model with the given "
        "and assumed sizes",
    )
    if "pos_embed" in vsd:
        _resize_learned_pos(vsd, model.vision_encoder, learned_frames, learned_img)
        whole["vision_encoder.pos_embed"] = vsd["pos_embed"]
    if model.teacher is not None:
        whole["teacher.positional_embedding"] = interpolate_grid_pos_embed(
            whole["teacher.positional_embedding"], (model.teacher.grid, model.teacher.grid)
        )
    model.load_state_dict(whole, strict=False)  # what does not fit was refused above
    return model, model.model_config, assumed


# --------------------------------------------------------------------------- checks
def _build_checked(
    cls: type[nn.Module],
    cfg: dict[str, Any],
    sd: dict[str, torch.Tensor],
    strict: bool,
    skip: tuple[str, ...],
    context: str,
) -> Any:
    """Build ``cls(**cfg)`` after checking, on the meta device (no memory), that the weights fit.

    Every parameter / buffer shape is compared with ``sd`` (``skip``: tables resized later); with
    ``strict`` the names must match too. Raises ``ValueError`` starting with ``context``.
    """
    try:
        with torch.device("meta"):
            probe = cls(**cfg)
    except (TypeError, ValueError) as err:
        raise _error(f"{context}: cannot build a {cls.__name__} from it ({err})") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    del probe
    wrong = [
        f"{k} is {_shape(sd[k])} in the weights but {_shape(shape)} by the config"
        for k, shape in expected.items()
        if k in sd and k not in skip and tuple(sd[k].shape) != shape
    ]
    missing = [k for k in expected if k not in sd] if strict else []
    extra = [k for k in sd if k not in expected] if strict else []
    if wrong or missing or extra:
        problems = []
        if wrong:
            problems.append(f"{len(wrong)} tensor(s) differ in shape: {_few(wrong)}")
        if missing:
            problems.append(f"{len(missing)} missing from the weights: {_few(missing)}")
        if extra:
            problems.append(f"{len(extra)} in the weights but not in the model: {_few(extra)}")
        raise _error(f"{context}{_holds(sd)}: {'; '.join(problems)}")
    return cls(**cfg)


def _few(items: list[str], n: int = 2) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _holds(sd: dict[str, torch.Tensor]) -> str:
    """What the weights hold, in the words of the constructor arguments."""
    w = sd.get("patch_embed.proj.weight", sd.get("conv1.weight"))
    if w is None:
        return ""
    prefix = "blocks." if "patch_embed.proj.weight" in sd else "transformer.resblocks."
    idx = {int(k.split(".")[len(prefix.split(".")) - 1]) for k in sd if k.startswith(prefix)}
    depth = 1 + max(idx) if idx else 0
    what = ("embed_dim", "depth") if prefix == "blocks." else ("width", "layers")
    return f" (the weights hold {what[0]} {w.shape[0]}, {what[1]} {depth})"


def _check_args(cls: type[nn.Module], keys: list[str], where: str, exc: type[Exception]) -> None:
    """Refuse argument names ``cls`` does not take, suggesting the closest one."""
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(known)}"
            raise _error(f"{where}: unknown key {key!r} for a {cls.__name__} ({hint})", exc)


# --------------------------------------------------------------------------- umt format
def _read_config_json(cfg_file: Path) -> dict[str, Any] | None:
    """A umt ``config.json``; None for another library's (e.g. a transformers model folder)."""
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _error(f"{cfg_file}: invalid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise _error(
            f"{cfg_file}: must hold a JSON object of model arguments, not {type(cfg).__name__}"
        )
    if {"model_type", "architectures", "transformers_version"} & set(cfg):
        return None
    return cfg


def _native_config(path: str | Path) -> tuple[dict[str, Any], str] | None:
    """``(config, where it came from)`` of a checkpoint in umt's format, or None for foreign files."""
    path = Path(path)
    cfg_file = path / "config.json" if path.is_dir() else path.with_name("config.json")
    if path.is_dir() or (path.suffix == ".safetensors" and cfg_file.is_file()):
        if not cfg_file.is_file():
            return None
        cfg = _read_config_json(cfg_file)
        return None if cfg is None else (cfg, str(cfg_file))
    if path.suffix == ".safetensors" and path.is_file() and path.stat().st_size:
        if _sniff(path)[0] != "safetensors":
            return None
        meta = _safetensors_header(path).get("__metadata__") or {}
        if isinstance(meta, dict) and "umt_config" in meta:
            try:
                cfg = json.loads(meta["umt_config"])
            except (json.JSONDecodeError, TypeError) as err:
                raise _error(f"{path}: invalid JSON in the umt_config metadata ({err})") from None
            if not isinstance(cfg, dict):
                raise _error(f"{path}: the umt_config metadata is not a JSON object")
            return cfg, f"{path} (umt_config metadata)"
    return None


def _native_kind(cfg: dict[str, Any]) -> str:
    if "vision" in cfg and "text" in cfg and "decoder_layers" in cfg:
        return "video-qa"
    if "vision" in cfg and "text" in cfg:
        return "video-text"
    if "encoder" in cfg and "decoder_embed_dim" in cfg:
        return "videomae"
    return "teacher" if "width" in cfg else "student"


_NATIVE_CLASSES: dict[str, type[nn.Module]] = {
    "video-text": UMTVideoText,
    "student": VideoViT,
    "teacher": CLIPTeacher,
}
_PARTS = ("auto", "video-text", "video-qa", "student", "teacher")


def save_pretrained(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (huggingface_hub's mixin layout).

    The folder reloads with :func:`load_checkpoint` (or ``VideoViT.from_pretrained``) alone.
    """
    from umt.models.video_qa import UMTVideoQA

    if not isinstance(model, (VideoViT, CLIPTeacher, UMTVideoText, UMTVideoQA)):
        raise TypeError(f"cannot save a {type(model).__name__}")
    out_dir = Path(out_dir)
    if isinstance(model, (UMTVideoText, UMTVideoQA)):
        model.save_pretrained(out_dir, config=model.model_config)
    else:
        model.save_pretrained(out_dir)
    return out_dir


def load_checkpoint(
    path: str | Path, part: str = "auto", strict: bool = True, **overrides: Any
) -> nn.Module:
    """Load a model from any known layout (``part``: auto, video-text, video-qa, student or
    teacher).

    ``auto`` picks the whole video QA model (:class:`umt.models.video_qa.UMTVideoQA`, through
    :func:`umt.models.video_qa.load_video_qa`) when the file holds an answer decoder, the whole
    video-text model (``UMTVideoText``) when it holds one (an
    official stage-2 file with ``text_encoder.*``, or umt's own saved one), else the student when
    it holds one, else the teacher; ``student`` / ``teacher`` take that part alone. ``overrides``
    are the model's constructor arguments (for a video-text model: flat names, see the module
    docstring: ``num_heads``, ``num_frames``, ``img_size``, ``text_num_heads``, ``teacher_heads``,
    ``teacher_img_size``, ``embed_dim``, ...). umt's own weights without ``config.json`` need
    ``num_heads``, ``num_frames`` and ``img_size``; sizes assumed for official files are reported
    with an :class:`AssumedSizeWarning`.
    """
    model, _, kind, assumed = _load_any(path, part, strict, overrides)
    warn_assumed(path, kind, assumed)
    return model


def warn_assumed(
    path: str | os.PathLike, kind: str, assumed: Sequence[str], stacklevel: int = 3
) -> None:
    """Say (an :class:`AssumedSizeWarning`) which sizes of the ``kind`` checkpoint at ``path``
    were assumed, and how to give them; nothing when none were."""
    if not assumed:
        return
    warning = AssumedSizeWarning(
        _clean(
            f"{path}: {kind} checkpoint: sizes it does not store were assumed: "
            f"{'; '.join(assumed)}; give them if they differ (keyword arguments; on the "
            "command line --num-heads, --text-num-heads, --num-frames, --img-size)"
        )
    )
    warning.path, warning.kind, warning.assumed = os.fspath(path), kind, tuple(assumed)
    warnings.warn(warning, stacklevel=stacklevel)


@dataclass
class _Source:
    """A checkpoint opened once: its tensors, its umt config (if any), what it is."""

    path: Path
    sd: dict[str, torch.Tensor]
    native: tuple[dict[str, Any], str] | None
    kind: str
    which: str
    pick: str | None = None  # "student" / "teacher": taken out of a whole umt video-text model


def _open(path: str | Path, part: str) -> _Source:
    if part not in _PARTS:
        raise InputError(f"part must be one of {', '.join(_PARTS)}, not {part!r}")
    path = Path(path)
    native = _native_config(path)
    sd = read_state_dict(path)
    if native is not None:
        config, where = native
        which = _native_kind(config)
        if which == "videomae":  # umt's VideoMAE: only its encoder, a plain VideoViT, loads
            if part not in ("auto", "student"):
                raise _error(f"{where} describes a VideoMAE model: only its encoder loads")
            encoder = config["encoder"]
            if not isinstance(encoder, dict):
                raise _error(f"{where}: 'encoder' must be a JSON object of VideoViT arguments")
            _check_args(VideoViT, list(encoder), f"{where} (encoder)", ValueError)
            sd = _strip(sd, "encoder.")
            return _Source(path, sd, (encoder, f"{where} (encoder)"), "umt", "student")
        if which == "video-qa":
            if part not in ("auto", "video-qa", "student"):
                raise _error(f"{where} describes a video QA model, not a {part}")
            pick = "student" if part == "student" else None
            return _Source(path, sd, native, "umt", which, pick=pick)
        _check_args(_NATIVE_CLASSES[which], list(config), where, ValueError)
        if which == "video-text" and part in ("student", "teacher"):
            if part == "teacher" and not config.get("teacher"):
                raise _error(f"{where} describes a video-text model without a teacher")
            return _Source(path, sd, native, "umt", which, pick=part)
        if part not in ("auto", which):
            raise _error(f"{where} describes a {which}, not a {part}")
        return _Source(path, sd, native, "umt", which)
    info = _detect(path, sd)
    which = info.parts[0] if part == "auto" else part
    if which == "student" and "video-qa" in info.parts:  # the QA model's own video encoder
        return _Source(path, sd, None, info.kind, "video-qa", pick="student")
    if which not in info.parts:
        what = {"teacher": "no CLIP teacher", "student": "no student"}.get(
            which, "no text encoder (not a whole video-text model)"
        )
        raise _error(f"{path}: a {info.kind} checkpoint holds {what}")
    return _Source(path, sd, None, info.kind, which)


def _load_source(
    src: _Source, strict: bool, overrides: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    if src.which == "video-qa":
        from umt.models.video_qa import read_video_qa

        model, _, assumed = read_video_qa(src.path, **overrides)
        if src.pick == "student":
            return model.vision_encoder, model.model_config["vision"], assumed
        return model, model.model_config, assumed
    if src.which == "video-text":
        _split_vt_overrides(overrides)  # refuses unknown names before any work
        if src.native is not None:
            model, cfg = _video_text_from_config(src.path, src.sd, src.native, strict, overrides)
            assumed: list[str] = []
        else:
            model, cfg, assumed = _video_text_from_weights(
                src.path, src.sd, src.kind, strict, overrides
            )
        if src.pick == "student":
            return model.vision_encoder, cfg["vision"], assumed
        if src.pick == "teacher":
            return model.teacher, cfg["teacher"], assumed
        return model, cfg, assumed
    teacher = src.which == "teacher"
    _check_args(CLIPTeacher if teacher else VideoViT, list(overrides), "overrides", TypeError)
    if src.native is not None:
        build = _teacher_from_config if teacher else _student_from_config
        model, cfg = build(src.path, src.sd, src.native, strict, overrides)
        return model, cfg, []
    build = _teacher_from_weights if teacher else _student_from_weights
    return build(src.path, src.sd, src.kind, strict, overrides)


def _load_any(
    path: str | Path, part: str, strict: bool, overrides: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], str, list[str]]:
    src = _open(path, part)
    model, cfg, assumed = _load_source(src, strict, overrides)
    return model, cfg, src.kind, assumed


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

    ``num_frames`` applies to a student (or the video encoder of a video-text model) only;
    ``num_heads`` and ``img_size`` set the student's / video encoder's ``num_heads`` and
    ``img_size``, or the teacher's ``heads`` and ``img_size``. Sizes not stored in ``src`` and not
    given are listed on an ``assumed:`` line of the report (they are written into
    ``out_dir/config.json``). A whole video-text model takes the flat overrides of
    :func:`load_checkpoint` (``text_num_heads``, ``teacher_heads``, ...).
    """
    source = _open(src, part)
    target = source.pick or source.which
    prefix = "teacher_" if target == "teacher" and source.which == "video-text" else ""
    if img_size is not None:
        overrides[prefix + "img_size"] = img_size
    if num_frames is not None and target in ("student", "video-text", "video-qa"):
        overrides["num_frames"] = num_frames
    if num_heads is not None:
        overrides[prefix + "heads" if target == "teacher" else "num_heads"] = num_heads
    model, cfg, assumed = _load_source(source, True, overrides)
    kind = source.kind
    save_pretrained(model, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"source: {src}", f"format: {kind}"]
    if isinstance(model, UMTVideoText):
        lines += _video_text_report(model)
        flags = "--num-heads / --num-frames / --img-size (video), --text-num-heads, --teacher-heads"
    elif target == "video-qa":
        lines += _video_qa_report(model)
        flags = "--num-heads / --num-frames / --img-size (video), --text-num-heads"
    elif isinstance(model, VideoViT):
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
        flags = "--num-heads / --num-frames / --img-size"
    else:
        lines += [
            "model: CLIP visual teacher",
            f"sizes: width {model.width}, depth {len(model.transformer.resblocks)}, heads "
            f"{model.transformer.resblocks[0].attn.heads}, patch {model.patch_size}, "
            f"output {model.output_dim}",
            f"input: {model.img_size}px; returns the last {model.return_layers} layers (K)",
        ]
        flags = "--num-heads / --img-size, return_layers= in Python"
        if source.which == "video-text":
            flags = "teacher_heads= / teacher_img_size= in Python"
    if assumed:
        lines.append(
            f"assumed: {'; '.join(assumed)} - not stored in the checkpoint; set them with {flags} "
            "if they differ"
        )
    lines += [f"parameters: {n_params:,}", f"written: {Path(out_dir) / 'model.safetensors'}"]
    return "\n".join(_clean(line) for line in lines)


def _video_qa_report(model: nn.Module) -> list[str]:
    v, t, d = model.vision_encoder, model.text_encoder, model.text_decoder
    return [
        "model: UMT video QA: video ViT + BERT question encoder + answer decoder",
        f"video: width {v.embed_dim}, depth {len(v.blocks)}, heads {v.blocks[0].attn.num_heads}, "
        f"patch {v.patch_size}, tubelet {v.tubelet_size}; {v.num_frames} frames of {v.img_size}px",
        f"question encoder: width {t.hidden_size}, layers {t.num_layers}, heads "
        f"{t.layers[0].self_attn.num_heads}, cross-attention to the video from layer "
        f"{t.fusion_layer}, vocab {t.vocab_size}",
        f"answer decoder: {d.num_layers} layers (causal, cross-attending to the question)",
        "texts: " + ("[CLS] X [SEP]" if t.sep_after_text else "[CLS] X (the official tokenizer)"),
    ]


def _video_text_report(model: UMTVideoText) -> list[str]:
    v, t = model.vision_encoder, model.text_encoder
    k = len(v.align_indices)
    lines = [
        "model: UMT video-text (stage 2): video ViT + BERT with cross-attention",
        f"video: width {v.embed_dim}, depth {len(v.blocks)}, heads {v.blocks[0].attn.num_heads}, "
        f"patch {v.patch_size}, tubelet {v.tubelet_size}; {v.num_frames} frames of "
        f"{v.img_size}px; aligned layers (K): {k}",
        f"text: width {t.hidden_size}, layers {t.num_layers}, heads "
        f"{t.layers[0].self_attn.num_heads}, cross-attention from layer {t.fusion_layer}, "
        f"vocab {t.vocab_size}, masked-LM head: {'yes' if t.mlm_head is not None else 'no'}",
        f"joint space: {model.embed_dim}-d, temperature {model.temp.detach().item():.4g}",
        "texts: " + ("[CLS] X [SEP]" if t.sep_after_text else "[CLS] X (the official tokenizer)"),
    ]
    if model.teacher is None:
        lines.append("teacher: none")
    else:
        c = model.teacher
        lines.append(
            f"teacher: CLIP width {c.width}, depth {len(c.transformer.resblocks)}, heads "
            f"{c.transformer.resblocks[0].attn.heads}, patch {c.patch_size}, {c.img_size}px, "
            f"output {c.output_dim}, returns {c.return_layers} layers (frozen)"
        )
    return lines
