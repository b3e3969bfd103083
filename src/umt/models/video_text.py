"""The stage-2 model: UMT video encoder + BERT text encoder (+ frozen CLIP teacher).

Mirrors the official ``multi_modality/models/umt.py`` class ``UMT``: a :class:`VideoViT` with
``pool_norm`` (per-frame pooled features for retrieval, one pooled feature over the kept tokens
when masked), a :class:`BertTextEncoder` whose upper layers cross-attend to the video tokens,
``vision_proj`` / ``text_proj`` to the joint space, the video-text matching head ``itm_head`` on the
fused ``[CLS]`` token, a learnable temperature, and optionally the frozen CLIP teacher for the
unmasked-token alignment. The losses live in :mod:`umt.losses`; this module computes features.
"""

from __future__ import annotations

import difflib
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
    check_args,
    init_args,
    input_error,
    strip_prefix,
    weights_file,
)
from umt.models.clip_teacher import CLIPTeacher, teacher_state_dict
from umt.models.layers import interpolate_grid_pos_embed
from umt.models.registry import (
    Family,
    model_config,
    register_family,
    register_model,
)
from umt.models.text_bert import BertTextEncoder, bert_state_dict
from umt.models.video_vit import (
    VideoViT,
    infer_layout,
    resize_learned_pos,
    student_state_dict,
)

__all__ = ["UMTVideoText", "vision_config", "text_config", "recognise_video_text"]

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
        if embed_dim < 1:
            raise InputError(f"embed_dim (the joint space's width) must be >= 1, not {embed_dim}")
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
        vision_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Video-text matching: the fusion layers (every video token attended) and ``itm_head``
        on the first token. ``[B, L, C], [B, L], [B, N, C_v] -> [B, 2]`` (index 1 = match).
        With ``vision_index [B]``, ``vision_embeds`` is ``[U, N, C_v]``, each video once (see
        :meth:`BertTextEncoder.forward_fusion`)."""
        fused = self.text_encoder.forward_fusion(
            text_embeds, attention_mask, vision_embeds, vision_index=vision_index
        )
        return self.itm_head(fused[:, 0])

    def mlm_logits(
        self,
        text_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits conditioned on the video: the fusion layers and the MLM head on
        the text-only layers' output of the masked caption (:meth:`encode_text`, as
        :meth:`itm_logits` reads it). ``[B, L, C], [B, L], [B, N, C_v] -> [B, L, vocab]``;
        with ``positions`` (bool ``[B, L]``) only those tokens' logits, ``[M, vocab]`` (the
        loss needs only the masked tokens: the vocabulary-wide head then runs on a fraction of
        the positions)."""
        fused = self.text_encoder.forward_fusion(text_embeds, attention_mask, vision_embeds)
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


# --------------------------------------------------------------------------- checkpoint formats
# ``umt-multimodal``: the official stage-2 model: ``vision_encoder.*`` (student),
# ``clip_teacher.*`` (teacher), ``text_encoder.*`` (BERT with cross-attention), ``vision_proj``,
# ``text_proj``, ``itm_head``, ``temp``: loads whole as a ``UMTVideoText`` or as its student /
# teacher alone. ``umt-video-text``: this library's own ``UMTVideoText`` weights without their
# ``config.json`` (refused for the whole model: its sizes need the config).
#
# A whole model takes flat keyword overrides: ``VideoViT`` arguments as they are (``num_heads``,
# ``num_frames``, ``img_size``, ``align_interval``, ``drop_path_rate``, ...), ``BertTextEncoder``
# arguments prefixed ``text_`` (``text_num_heads``, ``text_dropout``, ``text_mlm_head``, ...),
# ``CLIPTeacher`` arguments prefixed ``teacher_`` (``teacher_heads``, ``teacher_img_size``,
# ``teacher_return_interval``, ...), and ``embed_dim`` / ``temp``.
def recognise_video_text(sd: dict[str, torch.Tensor], path: str) -> CheckpointInfo | None:
    """The stage-2 layout of ``sd`` (see above), or None."""
    keys = set(sd)
    if not any(k.startswith("vision_encoder.") for k in keys):
        return None
    if "text_encoder.word_embed.weight" in keys:  # umt's own UMTVideoText names
        teacher = any(k.startswith("teacher.") for k in keys)
        parts = ["video-text", "student"] + (["teacher"] if teacher else [])
        return CheckpointInfo(path, "umt-video-text", parts, ["umt's own video-text weights"])
    text = any(k.startswith("text_encoder.") for k in keys)
    parts = (["video-text"] if text else []) + ["student"]
    if any(k.startswith("clip_teacher.") for k in keys):
        parts.append("teacher")
    return CheckpointInfo(path, "umt-multimodal", parts)


_TOP = ("embed_dim", "temp")


def _split_overrides(
    overrides: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Flat overrides of a whole video-text model -> (vision, text, teacher, top-level).

    ``VideoViT`` arguments as they are, ``text_<BertTextEncoder argument>``,
    ``teacher_<CLIPTeacher argument>``, ``embed_dim`` and ``temp``; anything else is refused
    with a ``TypeError`` suggesting the closest name."""
    vision_args, text_args = init_args(VideoViT), init_args(BertTextEncoder)
    teacher_args = init_args(CLIPTeacher)
    vision: dict[str, Any] = {}
    text: dict[str, Any] = {}
    teacher: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in _TOP:
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
                + list(_TOP)
            )
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else "give VideoViT arguments as they are, text_<BertTextEncoder argument>, "
                "teacher_<CLIPTeacher argument>, embed_dim or temp"
            )
            raise input_error(
                f"overrides: unknown key {key!r} for a UMTVideoText ({hint})", TypeError
            )
    return vision, text, teacher, top


def _from_config(
    path: Path,
    sd: dict[str, torch.Tensor],
    native: tuple[dict[str, Any], str],
    strict: bool,
    overrides: dict[str, Any],
) -> tuple[UMTVideoText, dict[str, Any]]:
    config, where = native
    vision, text, teacher, top = _split_overrides(overrides)
    for name, part in (("vision", config.get("vision")), ("text", config.get("text"))):
        if not isinstance(part, dict):
            raise input_error(f"{where}: {name!r} must be a JSON object of model arguments")
    if teacher and not config.get("teacher"):
        raise input_error(f"{where} describes a video-text model without a teacher; drop teacher_*")
    stored = (
        ("num_heads", vision, config["vision"]),
        ("text_num_heads", text, config["text"]),
        ("teacher_heads", teacher, config.get("teacher") or {}),
    )
    for flag, given, saved in stored:  # the weights cannot tell a wrong head count
        key = flag.split("_", 1)[1] if flag != "num_heads" else flag
        if key in given and key in saved and int(given[key]) != int(saved[key]):
            raise input_error(
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
        check_args(cls, list(config[name]), f"{where} ({name})", InputError)
    if config.get("teacher"):
        check_args(CLIPTeacher, list(config["teacher"]), f"{where} (teacher)", InputError)
    skip = []
    if "num_frames" in vision or "img_size" in vision:
        skip.append("vision_encoder.pos_embed")
    if "img_size" in teacher:
        skip.append("teacher.positional_embedding")
    model = build_checked(
        UMTVideoText,
        cfg,
        sd,
        strict,
        skip=tuple(skip),
        context=f"{where} does not match the weights in {weights_file(path)}",
    )
    sub = strip_prefix(sd, "vision_encoder.")
    if "pos_embed" in sub:
        v = config["vision"]
        resize_learned_pos(sub, model.vision_encoder, v.get("num_frames"), v.get("img_size"))
        sd["vision_encoder.pos_embed"] = sub["pos_embed"]
    if model.teacher is not None and "teacher.positional_embedding" in sd:
        sd["teacher.positional_embedding"] = interpolate_grid_pos_embed(
            sd["teacher.positional_embedding"], (model.teacher.grid, model.teacher.grid)
        )
    model.load_state_dict(sd, strict=strict)
    return model, model.model_config


def _from_weights(
    path: Path, sd: dict[str, torch.Tensor], kind: str, strict: bool, overrides: dict[str, Any]
) -> tuple[UMTVideoText, dict[str, Any], list[str]]:
    """A whole official stage-2 model: sizes from the shapes, the rest from the overrides or the
    official defaults (head width 64 for video, text and teacher; 4 frames; 224 px)."""
    if kind != "umt-multimodal":
        raise input_error(
            f"{path}: umt video-text weights without their config.json: put the config.json "
            "saved with them beside the weights (the sizes of a whole video-text model are "
            "not guessed)"
        )
    vision_o, text_o, teacher_o, top = _split_overrides(overrides)
    assumed: list[str] = []
    try:
        vsd, vcfg = student_state_dict(sd, kind)
        tsd, tcfg = bert_state_dict({k: v for k, v in sd.items() if k.startswith("text_encoder.")})
    except ValueError as err:
        raise input_error(f"{path}: {err}") from None

    # vision
    if "num_heads" not in vision_o:
        vcfg["num_heads"] = max(1, vcfg["embed_dim"] // 64)
        assumed.append(f"num_heads={vcfg['num_heads']} (video head width 64)")
    frames, img = vision_o.get("num_frames"), vision_o.get("img_size")
    if "pos_embed" in vsd:
        try:
            f0, i0 = infer_layout(
                vsd["pos_embed"].shape[1], vcfg["patch_size"], vcfg["tubelet_size"], img, frames
            )
        except ValueError as err:
            raise input_error(f"{path}: {err}") from None
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
            raise input_error(f"{path}: {err}") from None
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
        raise input_error(f"{path}: a stage-2 checkpoint without vision_proj / text_proj")
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
    model = build_checked(
        UMTVideoText,
        cfg,
        whole,
        strict,
        skip=("vision_encoder.pos_embed", "teacher.positional_embedding"),
        context=f"{path}: the weights do not fit the {kind} video-text model with the given "
        "and assumed sizes",
    )
    if "pos_embed" in vsd:
        resize_learned_pos(vsd, model.vision_encoder, learned_frames, learned_img)
        whole["vision_encoder.pos_embed"] = vsd["pos_embed"]
    if model.teacher is not None:
        whole["teacher.positional_embedding"] = interpolate_grid_pos_embed(
            whole["teacher.positional_embedding"], (model.teacher.grid, model.teacher.grid)
        )
    model.load_state_dict(whole, strict=False)  # what does not fit was refused above
    return model, model.model_config, assumed


def _describe(model: UMTVideoText, cfg: dict[str, Any]) -> list[str]:
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


register_family(
    Family(
        UMTVideoText,
        "video-text",
        _describe,
        recognise=recognise_video_text,
        order=20,
        from_config=_from_config,
        from_weights=_from_weights,
        check_overrides=_split_overrides,  # flat names; unknown ones refused before any work
    )
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
register_model(
    "umt-b16-vt",
    UMTVideoText,
    "UMT-B/16 video-text (stage 2): UMT-B/16 4x224 + BERT-base (fusion from layer 9), 512-d, "
    "CLIP-B/16 teacher",
    vision=dict(model_config("umt-b16"), num_frames=4),
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
    vision=dict(model_config("umt-l16"), num_frames=4),
    text=_BERT_LARGE,
    embed_dim=768,
    temp=0.07,
    teacher=dict(model_config("clip-l14"), img_size=196, normalize=False),
)
