"""One way to load, save and convert every model: :func:`load_checkpoint`,
:func:`save_pretrained`, :func:`convert_checkpoint`.

umt's own format is a folder (or file) with ``model.safetensors`` and ``config.json``: the
constructor arguments and ``"architecture"``, the class name, which picks the model family
(:mod:`umt.models.registry`). A folder written before that field existed is recognised from its
config's keys (``vision`` + ``text`` + ``decoder_layers``: a QA model; ``vision`` + ``text``: a
video-text model; ``encoder`` + ``decoder_embed_dim``: a VideoMAE; ``pooler_resolution``: a
detector; ``fusion_layer``: a text tower; ``width``: a CLIP teacher; else a student). A config.json is checked against the weights' shapes before any memory is
allocated for the model.

Wherever a path is taken, the name of a released checkpoint (``umt-b16-k400``; the table and the
download through huggingface_hub's cache are :mod:`umt.models.released`) may stand for it: the
sizes its file does not store come from the table, beneath the caller's overrides. An existing
path is always a path.

A foreign file is recognised by asking each family (in their order) whether its tensor names
are one of the layouts it reads:

=====================  ==============================================================================
``umt-qa``             an official (or umt) video QA model (:mod:`umt.models.video_qa`)
``umt-multimodal``     official stage-2 model (:mod:`umt.models.video_text`): loads whole as a
                       ``UMTVideoText`` (part ``video-text``, the default) or as its student / teacher
``umt-video-text``     this library's own ``UMTVideoText`` weights without their ``config.json``
                       (refused for the whole model: its sizes need the config)
``clip-openai``        OpenAI / open_clip CLIP visual weights (:mod:`umt.models.clip_teacher`)
``clip-hf``            HuggingFace ``CLIPVisionModelWithProjection`` / ``CLIPModel``
``videomae``           a VideoMAE pretraining model (:mod:`umt.models.videomae`): its encoder loads
                       as a student; the pixel decoder is not loaded
``umt-pretrain``       official stage-1 student (:mod:`umt.models.video_vit`)
``umt-finetune``       official classifier
``umt-student``        this library's own ``VideoViT`` weights without their ``config.json``: their
                       sizes must be passed as arguments
=====================  ==============================================================================

Sizes that tensor shapes cannot tell (attention heads, frames, resolution of a fixed position table)
come from keyword overrides, else, for official files, the official defaults (head width 64,
8 frames (4 for a stage-2 model), 224 px); each default used is reported with an
:class:`AssumedSizeWarning` (and in :func:`convert_checkpoint`'s report). A whole stage-2 model
takes flat overrides (``num_heads``, ``text_num_heads``, ``teacher_heads``, ...; see
:mod:`umt.models.video_text`).

This module imports no model family: the families register themselves.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.models._io import (
    ARCHITECTURE,
    CheckpointInfo,
    build_checked,
    check_args,
    input_error,
    printable,
    read_config,
    read_state_dict,
    strip_prefix,
    warn_assumed,
    weights_file,
)
from umt.models.registry import (
    Family,
    OpenedCheckpoint,
    build_model,
    families,
    family_for_part,
    family_of,
    model_class,
    model_config,
)
from umt.models.released import DEFAULT_RELEASES, checkpoint_path, find_release

__all__ = [
    "convert_checkpoint",
    "create_model",
    "detect_checkpoint",
    "load_checkpoint",
    "load_native",
    "load_student",
    "load_teacher",
    "model_config_of",
    "save_pretrained",
]

PARTS = (
    "auto",
    "video-text",
    "video-qa",
    "student",
    "teacher",
    "text-encoder",
    "videomae",
    "detector",
)
"""What :func:`load_checkpoint` may take out of a checkpoint (``auto``: the whole model)."""


# --------------------------------------------------------------------------- recognising
def detect_checkpoint(sd: dict[str, torch.Tensor], path: str = "<state dict>") -> CheckpointInfo:
    """Name the layout of a state dict from its tensor names (see the module docstring)."""
    for fam in families():
        if fam.recognise is not None:
            info = fam.recognise(sd, path)
            if info is not None:
                return info
    sample = ", ".join(sorted(sd)[:6])
    raise input_error(f"{path}: not a known UMT or CLIP checkpoint (first keys: {sample})")


def _detect(path: Path, sd: dict[str, torch.Tensor]) -> CheckpointInfo:
    """:func:`detect_checkpoint`, plus: student weights in umt's folder layout are umt's own."""
    info = detect_checkpoint(sd, str(path))
    if info.kind == "umt-finetune" and (path.is_dir() or path.name == "model.safetensors"):
        return CheckpointInfo(str(path), "umt-student", ["student"], ["umt folder layout"])
    return info


def _legacy_architecture(config: dict[str, Any]) -> str:
    """The class of a config.json written before it named its ``"architecture"``."""
    if "vision" in config and "text" in config and "decoder_layers" in config:
        return "UMTVideoQA"
    if "vision" in config and "text" in config:
        return "UMTVideoText"
    if "encoder" in config and "decoder_embed_dim" in config:
        return "VideoMAE"
    if "pooler_resolution" in config:  # a detector's training checkpoint
        return "VideoDetector"
    if "fusion_layer" in config:
        return "BertTextEncoder"
    return "CLIPTeacher" if "width" in config else "VideoViT"


def _native_family(config: dict[str, Any], where: str) -> tuple[Family, dict[str, Any]]:
    """The family of a umt config and the config without its ``"architecture"``."""
    config = dict(config)
    arch = config.pop(ARCHITECTURE, None)
    if arch is None:
        arch = _legacy_architecture(config)
    fam = family_of(arch) if isinstance(arch, str) else None
    if fam is None:
        known = ", ".join(f.architecture for f in families())
        raise input_error(f"{where}: unknown architecture {arch!r} (known: {known})")
    return fam, config


# --------------------------------------------------------------------------- opening
def _open(source: str | Path, part: str) -> OpenedCheckpoint:
    """Open a path or a released name (downloaded or taken from the cache); a release's sizes
    become the opened checkpoint's ``defaults`` for the part that loads it."""
    if part not in PARTS:
        raise InputError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    rel = find_release(source)
    src = _open_path(checkpoint_path(source), part)
    if rel is not None:
        src.defaults = rel.overrides_for(src.which)
    return src


def _open_path(path: Path, part: str) -> OpenedCheckpoint:
    native = read_config(path)
    sd = read_state_dict(path)
    if native is not None:
        fam, config = _native_family(*native)
        where = native[1]
        native = (config, where)
        which = fam.part
        if which == "videomae" and part in ("auto", "student"):
            # umt's VideoMAE loads as its encoder, a plain VideoViT (part videomae: whole)
            encoder = config.get("encoder")
            if not isinstance(encoder, dict):
                raise input_error(f"{where}: 'encoder' must be a JSON object of VideoViT arguments")
            student = family_for_part("student")
            check_args(student.cls, list(encoder), f"{where} (encoder)", InputError)
            sd = strip_prefix(sd, "encoder.")
            return OpenedCheckpoint(path, sd, (encoder, f"{where} (encoder)"), "umt", "student")
        if which == "video-qa":
            if part not in ("auto", "video-qa", "student"):
                raise input_error(f"{where} describes a video QA model, not a {part}")
            pick = "student" if part == "student" else None
            return OpenedCheckpoint(path, sd, native, "umt", which, pick=pick)
        check_args(fam.cls, list(config), where, InputError)
        if which == "video-text" and part in ("student", "teacher"):
            if part == "teacher" and not config.get("teacher"):
                raise input_error(f"{where} describes a video-text model without a teacher")
            return OpenedCheckpoint(path, sd, native, "umt", which, pick=part)
        if part not in ("auto", which):
            raise input_error(f"{where} describes a {which}, not a {part}")
        return OpenedCheckpoint(path, sd, native, "umt", which)
    info = _detect(path, sd)
    which = info.parts[0] if part == "auto" else part
    if which == "student" and "video-qa" in info.parts:  # the QA model's own video encoder
        return OpenedCheckpoint(path, sd, None, info.kind, "video-qa", pick="student")
    if which not in info.parts:
        what = {
            "teacher": "no CLIP teacher",
            "student": "no student",
            "text-encoder": "no text tower of umt's own (load_bert reads a HuggingFace BERT)",
            "videomae": "no whole VideoMAE (only umt's own VideoMAE folders hold one)",
            "detector": "no saved detector (VideoDetector.load_backbone starts one from it)",
        }.get(which, "no text encoder (not a whole video-text model)")
        raise input_error(f"{path}: a {info.kind} checkpoint holds {what}")
    return OpenedCheckpoint(path, sd, None, info.kind, which)


def _load_source(
    src: OpenedCheckpoint, strict: bool, overrides: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    fam = family_for_part(src.which)
    overrides = {**src.defaults, **overrides}
    if fam.load is not None:  # a family that loads its own way (and checks its overrides)
        model, cfg, assumed = fam.load(src, strict, overrides)
    else:
        model, cfg, assumed = _load_family(fam, src, strict, overrides)
    if src.pick == "student":
        return model.vision_encoder, cfg["vision"], assumed
    if src.pick == "teacher":
        return model.teacher, cfg["teacher"], assumed
    return model, cfg, assumed


def _load_family(
    fam: Family, src: OpenedCheckpoint, strict: bool, overrides: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """The one dispatch of :class:`Family`: overrides checked, then umt's format through
    ``from_config`` (or :func:`load_native`), a foreign layout through ``from_weights`` (or
    refused with the family's ``foreign_hint``)."""
    if fam.check_overrides is None:
        check_args(fam.cls, list(overrides), "overrides", TypeError)
    else:
        fam.check_overrides(overrides)
    if src.native is not None:
        load = fam.from_config or functools.partial(load_native, fam.cls)
        model, cfg = load(src.path, src.sd, src.native, strict, overrides)
        return model, cfg, []
    if fam.from_weights is None:
        raise input_error(f"{src.path}: a {src.kind} checkpoint{fam.foreign_hint}")
    return fam.from_weights(src.path, src.sd, src.kind, strict, overrides)


def load_native(
    cls: type[nn.Module],
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[nn.Module, dict[str, Any]]:
    """The generic loader of umt's format: ``cls`` built from the saved config (``native``:
    ``(config, where it came from)``, ``overrides`` on top), checked against the weights ``sd``
    read from ``path``, then loaded with them. Returns ``(model, config)``."""
    config, where = native
    cfg = {**config, **overrides}
    model = build_checked(
        cls,
        cfg,
        sd,
        strict,
        skip=(),
        context=f"{where} does not match the weights in {weights_file(path)}",
    )
    model.load_state_dict(sd, strict=strict)
    return model, cfg


# --------------------------------------------------------------------------- the public way
def load_checkpoint(
    path: str | Path, part: str = "auto", strict: bool = True, **overrides: Any
) -> nn.Module:
    """Load a model from umt's format or any known foreign layout, by path or by the name of a
    released checkpoint (``load_checkpoint("umt-b16-k400")``; ``umt models`` lists them).

    ``part``: ``auto`` (the whole model the file holds: a video QA model, a video-text model,
    else the student, else the teacher; umt's own text towers, VideoMAE encoders and detectors
    as saved, except that a VideoMAE loads as its encoder), ``video-text``, ``video-qa``,
    ``student`` / ``teacher`` (that part alone, also out of a whole model), ``text-encoder``,
    ``videomae`` (a whole VideoMAE, decoder included), ``detector``. ``overrides`` are the
    model's constructor arguments (for a video-text model: flat names, see
    :mod:`umt.models.video_text`: ``num_heads``, ``num_frames``, ``img_size``,
    ``text_num_heads``, ``teacher_heads``, ``teacher_img_size``, ``embed_dim``, ...). umt's own
    weights without ``config.json`` need ``num_heads``, ``num_frames`` and ``img_size``; sizes
    assumed for official files are reported with an :class:`AssumedSizeWarning` (a released
    name brings its file's sizes: nothing is assumed).
    """
    src = _open(path, part)
    model, _, assumed = _load_source(src, strict, overrides)
    warn_assumed(path, src.kind, assumed)
    return model


def load_student(path: str | Path, strict: bool = True, **overrides: Any) -> nn.Module:
    """``load_checkpoint(path, part="student", ...)``: the student of any checkpoint.

    ``overrides`` are ``VideoViT`` arguments (e.g. ``num_heads``, ``num_frames``, ``img_size``,
    ``drop_path_rate``). A learned ``pos_embed`` of another layout is interpolated to the model's.
    """
    src = _open(path, "student")
    model, _, assumed = _load_source(src, strict, overrides)
    warn_assumed(path, src.kind, assumed)
    return model


def load_teacher(path: str | Path, strict: bool = True, **overrides: Any) -> nn.Module:
    """``load_checkpoint(path, part="teacher", ...)``: the CLIP teacher of any checkpoint.

    ``overrides`` are ``CLIPTeacher`` arguments: ``heads`` (default width / 64), ``return_layers``
    (default 6, at most the depth), ``normalize``, ``act`` (default ``quick_gelu``, OpenAI CLIP's;
    most open_clip models trained from scratch use ``gelu``) and ``img_size`` (the position table is
    interpolated bicubically to it, e.g. CLIP-L/14 at 196 px for UMT-L).
    """
    src = _open(path, "teacher")
    model, _, assumed = _load_source(src, strict, overrides)
    warn_assumed(path, src.kind, assumed)
    return model


_SHAPE_KEYS = ("embed_dim", "depth", "patch_size", "width", "layers", "hidden_size", "num_layers")


def _misfit(want: dict[str, Any], got: dict[str, Any], where: str = "") -> list[str]:
    """The shape sizes of a variant's config ``want`` that a loaded model's ``got`` differs in."""
    out = []
    for key, value in want.items():
        found = got.get(key)
        if isinstance(value, dict) and isinstance(found, dict):
            out += _misfit(value, found, f"{where}{key}.")
        elif key in _SHAPE_KEYS and found is not None and found != value:
            out.append(f"{where}{key} {found} (the variant's {value})")
    return out


def create_model(
    name: str, pretrained: bool | str | os.PathLike = False, **overrides: Any
) -> nn.Module:
    """Build the registered variant ``name`` (``umt.list_models()``) with random weights, or
    with ``pretrained`` weights: ``True`` (the variant's default release:
    :data:`umt.models.released.DEFAULT_RELEASES`), a released name (``"umt-b16-k400"``) or a
    path. Keyword arguments override the variant's config (random init) or go to
    :func:`load_checkpoint` as overrides (pretrained).

    With weights the file decides the model (``create_model("umt-b16", pretrained=
    "umt-b16-k400")`` is the K400 classifier); the variant names the part taken out of it
    (``clip-b16`` a multimodal file's teacher) and its width and depth (with the overrides) are
    checked against the file's. A detector variant is built and starts its encoder (and head)
    from the file (:meth:`umt.models.detection.VideoDetector.load_backbone`).

    Example: ``create_model("umt-b16", num_classes=400, align_layers=0, final_norm=False)`` is the
    K400 fine-tuning model with random weights; ``create_model("clip-l14", img_size=196)`` the
    UMT-L teacher; ``create_model("umt-b16-vt", pretrained=True)`` the released 25M model.
    """
    if pretrained is False or pretrained is None:
        return build_model(name, **overrides)
    cls = model_class(name)
    if pretrained is True:
        source = DEFAULT_RELEASES.get(name)
        if source is None:
            raise InputError(
                f"{name}: no released weights of its own; pass pretrained= a released name "
                "('umt models' lists them) or a path"
            )
    elif isinstance(pretrained, (str, os.PathLike)):
        source = pretrained
    else:
        raise TypeError(f"pretrained must be a bool, a released name or a path, not {pretrained!r}")
    fam = family_of(cls.__name__)
    if fam is None:
        raise InputError(f"{name}: a {cls.__name__} does not load weights")
    if fam.part == "detector":
        model = build_model(name, **overrides)
        model.load_backbone(source)
        return model
    model = load_checkpoint(source, part=fam.part, **overrides)
    if not isinstance(model, cls):
        raise InputError(f"{source}: holds a {type(model).__name__}, not the {name} {cls.__name__}")
    wrong = _misfit({**model_config(name), **overrides}, model_config_of(model))
    if wrong:
        raise InputError(f"{source}: does not fit {name}: {', '.join(wrong)}")
    return model


def model_config_of(model: nn.Module) -> dict[str, Any]:
    """What ``config.json`` stores for ``model``: its constructor arguments (every default
    resolved) and its ``"architecture"``. Raises ``TypeError`` for a class no family owns."""
    fam = family_of(type(model).__name__)
    if fam is None or type(model) is not fam.cls:
        raise TypeError(f"cannot save a {type(model).__name__}")
    config = getattr(model, "model_config", None)
    if config is None:
        config = model._hub_mixin_config
    return {**dict(config), ARCHITECTURE: fam.architecture}


def save_pretrained(model: nn.Module, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (huggingface_hub's mixin layout, with the
    ``"architecture"``) for any model of a registered family; :func:`load_checkpoint` reads
    the folder back (so does ``<Class>.from_pretrained``)."""
    config = model_config_of(model)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, config=config)
    return out_dir


_FLAGS = {
    "video-text": "--num-heads / --num-frames / --img-size (video), --text-num-heads, --teacher-heads",
    "video-qa": "--num-heads / --num-frames / --img-size (video), --text-num-heads",
    "student": "--num-heads / --num-frames / --img-size",
    "teacher": "--num-heads / --img-size, return_layers= in Python",
}


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
    rel = find_release(src)
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
    save_pretrained(model, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"source: {src}", f"format: {source.kind}"]
    if rel is not None:
        lines.insert(1, f"file: {rel.repo}/{rel.path} ({source.path})")
    fam = family_of(type(model).__name__)
    assert fam is not None  # save_pretrained refused any other
    lines += fam.describe(model, cfg)
    flags = _FLAGS.get(fam.part, "keyword arguments in Python")
    if fam.part == "teacher" and source.which == "video-text":
        flags = "teacher_heads= / teacher_img_size= in Python"
    if assumed:
        lines.append(
            f"assumed: {'; '.join(assumed)} - not stored in the checkpoint; set them with {flags} "
            "if they differ"
        )
    lines += [f"parameters: {n_params:,}", f"written: {Path(out_dir) / 'model.safetensors'}"]
    return "\n".join(printable(line) for line in lines)
