"""Open-ended video question answering: UMT video encoder + BERT question encoder + answer decoder.

Mirrors the official ``multi_modality/models/umt_qa.py`` ``UMT_QA``:

* the video encoder is the stage-2 :class:`VideoViT` without its pooling norm and alignment heads;
  every token of every frame (after the final norm) is what the text cross-attends to;
* the **question encoder** is the whole stage-2 :class:`BertTextEncoder` (text layers, then the
  fusion layers cross-attending to the video tokens), without the masked-LM head;
* the **answer decoder** is a BERT with causal self-attention (``is_decoder``) whose every layer
  cross-attends to the question encoder's states; it has ``num_layers - fusion_layer`` layers
  (B/16: 12 - 9 = 3, L/16: 24 - 19 = 5) and an LM head. From a stage-2 model
  (:meth:`UMTVideoQA.from_video_text`) decoder layer ``i`` starts as the pretrained fusion layer
  ``fusion_layer + i``, the decoder's embeddings as the text embeddings and its LM head as the
  pretrained masked-LM head (the official ``has_decoder`` initialisation).

Training is teacher-forced language modelling of ``[CLS] answer [SEP]`` (the official answer
text ``answer + " [SEP]"`` through the official tokenizer, which adds no ``[SEP]`` of its own), one decoder row per (question, answer) pair, weighted by how often
the annotators gave the answer (:func:`umt.losses.qa_answer_loss`). Inference ranks a fixed answer
list (:meth:`UMTVideoQA.rank_answers`): the probability of each answer's first token from one
decoder step keeps the top ``k``, whose full sequences are then scored by the decoder.

:func:`qa_state_dict` converts official QA checkpoints (``text_encoder.*`` BertModel,
``text_decoder.bert.*`` / ``text_decoder.cls.*``); :func:`load_video_qa` loads umt's QA folders,
official QA files and, through :meth:`UMTVideoQA.from_video_text`, any stage-2 checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from umt.errors import InputError
from umt.models._io import CheckpointInfo, read_config, read_state_dict, warn_assumed
from umt.models.hub import load_checkpoint
from umt.models.registry import Family, OpenedCheckpoint, register_family
from umt.models.released import checkpoint_path, find_release
from umt.models.text_bert import BertTextEncoder, bert_state_dict
from umt.models.video_vit import VideoViT, infer_layout, resize_learned_pos, student_state_dict

__all__ = [
    "UMTVideoQA",
    "qa_state_dict",
    "is_qa_state_dict",
    "load_video_qa",
    "read_video_qa",
    "recognise_video_qa",
]

# What the QA video encoder never has (the official ``add_pool_norm=False``, no teacher).
_VISION_FORCED: dict[str, Any] = {"pool_norm": False, "align_layers": 0}
_VISION_DROPPED = ("align_dim", "align_l2", "align_ln_eps", "align_interval")


def _vision_args(vision: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in vision.items() if k not in _VISION_DROPPED}
    out.update(_VISION_FORCED)
    return out


class UMTVideoQA(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="umt",
    tags=["video", "text", "question-answering", "umt"],
):
    """UMT open-ended video QA model.

    Args:
        vision: :class:`VideoViT` arguments (``pool_norm`` off and no alignment heads, forced).
        text: :class:`BertTextEncoder` arguments of the question encoder (its ``fusion_layer``
            is where cross-attention to the video starts; ``encoder_width`` defaults to the video
            width; no masked-LM head).
        decoder_layers: answer-decoder depth; default ``num_layers - fusion_layer`` (official).
    """

    def __init__(
        self,
        vision: dict[str, Any],
        text: dict[str, Any],
        decoder_layers: int | None = None,
    ) -> None:
        super().__init__()
        vcfg = _vision_args(dict(vision))
        self.vision_encoder = VideoViT(**vcfg)
        width = self.vision_encoder.embed_dim
        tcfg = {"encoder_width": width, **dict(text), "mlm_head": False, "is_decoder": False}
        if tcfg["encoder_width"] != width:
            raise InputError(
                f"text encoder_width {tcfg['encoder_width']} differs from the video width {width}"
            )
        self.text_encoder = BertTextEncoder(**tcfg)
        t = self.text_encoder
        n_dec = t.num_layers - t.fusion_layer if decoder_layers is None else int(decoder_layers)
        if n_dec < 1:
            raise InputError(
                f"the answer decoder needs at least one layer: num_layers {t.num_layers} - "
                f"fusion_layer {t.fusion_layer} = {n_dec}; give decoder_layers"
            )
        # The decoder cross-attends to the question states, which are text-wide (the official
        # code sets the video width, equal to the text width for B/16 and L/16).
        dcfg = {
            **tcfg,
            "num_layers": n_dec,
            "fusion_layer": 0,
            "encoder_width": t.hidden_size,
            "mlm_head": True,
            "is_decoder": True,
        }
        self.text_decoder = BertTextEncoder(**dcfg)
        tcfg["sep_after_text"] = t.sep_after_text  # recorded: how the tower reads a text
        self._config = {"vision": vcfg, "text": tcfg, "decoder_layers": n_dec}
        self._hub_mixin_config = self.model_config

    # ------------------------------------------------------------------ settings
    @property
    def model_config(self) -> dict[str, Any]:
        """The constructor arguments with every default filled in (what ``config.json`` holds)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._config.items()}

    def no_weight_decay(self) -> set[str]:
        """Names exempt from weight decay besides every 1-D parameter."""
        return {f"vision_encoder.{n}" for n in self.vision_encoder.no_weight_decay()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute every video block and every text / decoder layer in the backward pass."""
        self.vision_encoder.set_grad_checkpointing(enable)
        self.text_encoder.set_grad_checkpointing(enable)
        self.text_decoder.set_grad_checkpointing(enable)

    # ------------------------------------------------------------------ steps
    def encode_vision(self, video: torch.Tensor) -> torch.Tensor:
        """Every token of the clip after the final norm: ``[B, 3, T, H, W] -> [B, N, C]``."""
        return self.vision_encoder.forward_features(video)

    def encode_question(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        vision_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """The question through every text layer, the fusion layers attending to all video
        tokens: ``[B, Lq], [B, Lq], [B, N, C_v] -> [B, Lq, C]``."""
        return self.text_encoder(input_ids, attention_mask, vision_embeds)

    def answer_logits(
        self,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        question_states: torch.Tensor,
        question_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced decoder logits: ``[N, La], [N, La], [N, Lq, C], [N, Lq] ->
        [N, La, vocab]`` (position ``j`` predicts token ``j + 1``)."""
        hidden = self.text_decoder(answer_ids, answer_mask, question_states, question_mask)
        return self.text_decoder.mlm_logits(hidden)

    def answer_nll(
        self,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        question_states: torch.Tensor,
        question_mask: torch.Tensor,
        pad_id: int,
    ) -> torch.Tensor:
        """Each answer's negative log-likelihood, summed over its tokens after ``[CLS]``
        (padding ignored): ``[N, La] ... -> [N]``."""
        from umt.losses import answer_token_nll

        logits = self.answer_logits(answer_ids, answer_mask, question_states, question_mask)
        return answer_token_nll(logits.float(), answer_ids, pad_id)

    def forward(
        self,
        video: torch.Tensor,
        question_ids: torch.Tensor,
        question_mask: torch.Tensor,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        counts: torch.Tensor,
        pad_id: int,
    ) -> torch.Tensor:
        """Per-answer NLL for training. ``video [B, 3, T, H, W]``, questions ``[B, Lq]``, answers
        ``[N, La]`` with ``counts [B]`` answers per question (``N = counts.sum()``) -> ``[N]``."""
        vision = self.encode_vision(video)  # [B, N_v, C]
        states = self.encode_question(question_ids, question_mask, vision)  # [B, Lq, C]
        states = states.repeat_interleave(counts, dim=0)  # [N, Lq, C]
        qmask = question_mask.repeat_interleave(counts, dim=0)  # [N, Lq]
        return self.answer_nll(answer_ids, answer_mask, states, qmask, pad_id)

    @torch.no_grad()
    def rank_answers(
        self,
        question_states: torch.Tensor,
        question_mask: torch.Tensor,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        k: int,
        pad_id: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank a fixed answer list for each question (the official ``rank_answer``).

        1. One decoder step from ``[CLS]``: the probability of each answer's first token.
        2. Keep the ``k`` answers whose first token is likeliest.
        3. Score each kept answer by ``log p(first token) - NLL(answer)`` (the NLL counts the
           first token again, as the official code does) and softmax over the ``k``.

        Args:
            question_states: ``[Q, Lq, C]``; question_mask: ``[Q, Lq]``.
            answer_ids / answer_mask: the tokenised answer list ``[A, La]`` (``[CLS] ...``).
            k: candidates kept (``min(k, A)``); pad_id: the padding token.

        Returns:
            ``(answer indices [Q, k], probabilities [Q, k])``, best first.
        """
        q, a = question_states.shape[0], answer_ids.shape[0]
        k = min(int(k), a)
        start = answer_ids[:1, :1].expand(q, 1)  # [Q, 1] the [CLS] token
        first_logits = self.answer_logits(
            start, torch.ones_like(start), question_states, question_mask
        )[:, 0].float()  # [Q, V]
        first_prob = first_logits.softmax(-1).index_select(1, answer_ids[:, 1])  # [Q, A]
        top_prob, top_ids = first_prob.topk(k, dim=1)  # [Q, k]
        cand_ids = answer_ids[top_ids.flatten()]  # [Q*k, La]
        cand_mask = answer_mask[top_ids.flatten()]
        states = question_states.repeat_interleave(k, dim=0)  # [Q*k, Lq, C]
        qmask = question_mask.repeat_interleave(k, dim=0)
        nll = self.answer_nll(cand_ids, cand_mask, states, qmask, pad_id)  # [Q*k]
        score = top_prob.log() - nll.view(q, k)  # [Q, k]
        prob = score.softmax(-1)
        prob, order = prob.topk(k, dim=1)
        return top_ids.gather(1, order), prob

    # ------------------------------------------------------------------ building
    @classmethod
    def from_video_text(
        cls, model: nn.Module, decoder_layers: int | None = None
    ) -> tuple[UMTVideoQA, list[str]]:
        """A QA model initialised from a stage-2 :class:`umt.models.video_text.UMTVideoText`,
        as the official ``has_decoder`` loading does. Returns ``(model, notes)``: what was newly
        initialised (e.g. the decoder's LM head when the stage-2 model has no MLM head)."""
        vt_cfg = model.model_config
        text = {k: v for k, v in vt_cfg["text"].items() if k not in ("mlm_head", "is_decoder")}
        qa = cls(vt_cfg["vision"], text, decoder_layers=decoder_layers)
        notes: list[str] = []
        vision_sd = {
            k: v
            for k, v in model.vision_encoder.state_dict().items()
            if not k.startswith(("align_heads.", "pool_norm.", "align_pos_embed"))
        }
        qa.vision_encoder.load_state_dict(vision_sd)
        text_sd = {
            k: v
            for k, v in model.text_encoder.state_dict().items()
            if not k.startswith("mlm_head.")
        }
        qa.text_encoder.load_state_dict(text_sd)
        dec_sd, dec_notes = decoder_from_encoder(text_sd, model.text_encoder, qa.text_decoder)
        mlm = getattr(model.text_encoder, "mlm_head", None)
        if mlm is not None:
            dec_sd.update({f"mlm_head.{k}": v for k, v in mlm.state_dict().items()})
        else:
            dec_notes.append("the answer decoder's LM head (the stage-2 model has no MLM head)")
        missing, _ = qa.text_decoder.load_state_dict(dec_sd, strict=False)
        notes.extend(dec_notes)
        unexplained = [
            k for k in missing if not k.startswith("mlm_head.") and ".cross_attn." not in k
        ]
        if unexplained:
            raise InputError(f"answer decoder weights not found: {', '.join(unexplained[:3])}")
        return qa, notes

    def extra_repr(self) -> str:
        return f"decoder_layers={self._config['decoder_layers']}"


def decoder_from_encoder(
    encoder_sd: dict[str, torch.Tensor], encoder: BertTextEncoder, decoder: BertTextEncoder
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Decoder weights from a stage-2 text encoder's (umt names): embeddings as they are, decoder
    layer ``i`` <- encoder layer ``fusion_layer + i`` (self-attention, cross-attention, FFN).
    Cross-attention whose key/value width differs (video width != text width, never in the
    official models) is left to its fresh initialisation and named in the notes."""
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    own = decoder.state_dict()
    skipped: list[int] = []
    for k, v in encoder_sd.items():
        if not k.startswith("layers."):
            if k in own:
                out[k] = v
            continue
        parts = k.split(".")
        i = int(parts[1]) - encoder.fusion_layer
        if i < 0 or i >= decoder.num_layers:
            continue
        new = ".".join(["layers", str(i), *parts[2:]])
        if new in own and own[new].shape == v.shape:
            out[new] = v
        elif ".cross_attn." in new and i not in skipped:
            skipped.append(i)
    if len(skipped) < decoder.num_layers and encoder.num_layers - encoder.fusion_layer < (
        decoder.num_layers
    ):
        notes.append(
            f"answer-decoder layers beyond the {encoder.num_layers - encoder.fusion_layer} "
            "pretrained fusion layers"
        )
    if skipped:
        notes.append(
            f"the answer decoder's cross-attention keys/values of layers {skipped[0]}-"
            f"{skipped[-1]} (the video is {encoder.encoder_width} wide, the question states "
            f"{decoder.encoder_width})"
        )
    return out, notes


# --------------------------------------------------------------------------- official files
def is_qa_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` holds a QA model (an answer decoder: ``text_decoder.*``)."""
    return any(k.startswith("text_decoder.") for k in sd)


def qa_state_dict(
    sd: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Convert an official QA checkpoint (or umt's) to :class:`UMTVideoQA` names.

    Returns ``(state_dict, question-encoder config, decoder config)``: the configs hold what
    the shapes tell (see :func:`umt.models.text_bert.bert_state_dict`); the video encoder's
    tensors come back under ``vision_encoder.*`` with the official names converted."""
    enc = {k: v for k, v in sd.items() if k.startswith("text_encoder.")}
    dec = {k: v for k, v in sd.items() if k.startswith("text_decoder.")}
    if not enc or not dec:
        raise InputError("not a QA checkpoint: no text_encoder.* and text_decoder.* tensors")
    enc_sd, enc_cfg = bert_state_dict(enc)
    dec_sd, dec_cfg = bert_state_dict(dec)
    vision = {k: v for k, v in sd.items() if k.startswith("vision_encoder.")}
    if "text_encoder.word_embed.weight" in sd:  # umt's own names
        vsd = {k[len("vision_encoder.") :]: v for k, v in vision.items()}
    else:
        vsd, _ = student_state_dict(vision, "umt-multimodal")
    # A QA video encoder has no pooling norm nor alignment heads (a file initialised from a
    # stage-2 checkpoint may still carry them; the official loading ignores them too).
    vsd = {k: v for k, v in vsd.items() if not k.startswith(("pool_norm.", "align_heads."))}
    out = {f"vision_encoder.{k}": v for k, v in vsd.items()}
    out.update({f"text_encoder.{k}": v for k, v in enc_sd.items() if not k.startswith("mlm_")})
    out.update({f"text_decoder.{k}": v for k, v in dec_sd.items()})
    return out, enc_cfg, dec_cfg


def load_video_qa(
    path: str | Path,
    num_frames: int | None = None,
    img_size: int | None = None,
    decoder_layers: int | None = None,
    **overrides: Any,
) -> tuple[UMTVideoQA, list[str]]:
    """A :class:`UMTVideoQA` from a checkpoint, with notes on what was done.

    * umt's QA folder (``config.json`` with ``decoder_layers`` + ``model.safetensors``);
    * a stage-2 checkpoint (umt's or official): :meth:`UMTVideoQA.from_video_text`.
    * an official QA checkpoint (``text_decoder.*``): sizes from the shapes; head width 64
      unless ``num_heads`` / ``text_num_heads`` are given, 12 frames of 224 px (the official QA
      input) unless ``num_frames`` / ``img_size`` are given. Every size assumed is reported
      with an :class:`umt.models.AssumedSizeWarning`.

    ``num_frames`` / ``img_size`` re-size the video position table (as fine-tuning at another
    length does); ``overrides`` go to :func:`umt.models.load_checkpoint` for a
    stage-2 file (e.g. ``drop_path_rate``).
    """
    model, notes, assumed = read_video_qa(path, num_frames, img_size, decoder_layers, **overrides)
    warn_assumed(path, "official QA", assumed)
    return model, notes


def read_video_qa(
    path: str | Path,
    num_frames: int | None = None,
    img_size: int | None = None,
    decoder_layers: int | None = None,
    **overrides: Any,
) -> tuple[UMTVideoQA, list[str], list[str]]:
    """:func:`load_video_qa` returning ``(model, notes, assumed sizes)`` instead of warning
    about the sizes it assumed (``umt convert`` lists them in its report). ``path`` may be a
    released name (:mod:`umt.models.released`): its file, with the sizes the table knows
    beneath the given ones."""
    rel = find_release(path)
    if rel is not None:
        known = rel.overrides_for("video-qa")
        num_frames = known.pop("num_frames", None) if num_frames is None else num_frames
        img_size = known.pop("img_size", None) if img_size is None else img_size
        known.pop("num_frames", None)
        known.pop("img_size", None)
        overrides = {**known, **overrides}
    path = checkpoint_path(path)
    native = read_config(path)
    if native is not None and "decoder_layers" in native[0]:
        cfg, where = native
        vision = dict(cfg.get("vision") or {})
        learned = (vision.get("num_frames"), vision.get("img_size"))
        if num_frames is not None:
            vision["num_frames"] = num_frames
        if img_size is not None:
            vision["img_size"] = img_size
        for key in ("drop_path_rate",):
            if key in overrides:
                vision[key] = overrides.pop(key)
        text = dict(cfg.get("text") or {})
        for flag, saved in (("num_heads", vision), ("text_num_heads", text)):
            if flag in overrides and int(overrides[flag]) == int(saved.get("num_heads", -1)):
                overrides.pop(flag)  # the stored value, given again
        if overrides:
            raise InputError(
                f"{where} describes a umt QA model, which stores its sizes: "
                f"{', '.join(overrides)} cannot be set"
            )
        try:
            model = UMTVideoQA(vision, cfg["text"], cfg.get("decoder_layers"))
        except (TypeError, ValueError, KeyError) as err:
            raise InputError(f"{where}: not a valid QA model config ({err})") from None
        sd = read_state_dict(path)
        sub = {k[len("vision_encoder.") :]: v for k, v in sd.items() if k.startswith("vision_")}
        if "pos_embed" in sub and learned != (num_frames, img_size):
            resize_learned_pos(sub, model.vision_encoder, learned[0], learned[1])
            sd["vision_encoder.pos_embed"] = sub["pos_embed"]
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{path}: the weights do not fit {where} (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]})"
            )
        return model, [f"umt QA model from {path}"], []
    if native is None:
        sd = read_state_dict(path)
        if is_qa_state_dict(sd):
            return _official_qa(path, sd, num_frames, img_size, overrides)
    vt_over = dict(overrides)
    if num_frames is not None:
        vt_over["num_frames"] = num_frames
    if img_size is not None:
        vt_over["img_size"] = img_size
    vt = load_checkpoint(path, part="video-text", **vt_over)  # warns of its own assumptions
    model, notes = UMTVideoQA.from_video_text(vt, decoder_layers=decoder_layers)
    notes = [f"from the stage-2 model {path}"] + [f"newly initialised: {n}" for n in notes]
    return model, notes, []


def _official_qa(
    path: Path,
    sd: dict[str, torch.Tensor],
    num_frames: int | None,
    img_size: int | None,
    overrides: dict[str, Any],
) -> tuple[UMTVideoQA, list[str], list[str]]:
    """An official QA checkpoint: sizes from the shapes, head width 64 (official), 12 frames and
    224 px (the official QA input) unless given. Returns ``(model, notes, assumed)``."""
    try:
        ours, tcfg, dcfg = qa_state_dict(sd)
        _, vcfg = student_state_dict(
            {k: v for k, v in sd.items() if k.startswith("vision_encoder.")}, "umt-multimodal"
        )
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    assumed = []
    if "num_heads" in overrides:
        vcfg["num_heads"] = int(overrides.pop("num_heads"))
    else:
        vcfg["num_heads"] = max(1, vcfg["embed_dim"] // 64)
        assumed.append(f"num_heads={vcfg['num_heads']} (video head width 64)")
    if "text_num_heads" in overrides:
        tcfg["num_heads"] = int(overrides.pop("text_num_heads"))
    else:
        tcfg["num_heads"] = max(1, tcfg["hidden_size"] // 64)
        assumed.append(f"text_num_heads={tcfg['num_heads']} (text head width 64)")
    if "vision_encoder.pos_embed" in ours:
        n = ours["vision_encoder.pos_embed"].shape[1]
        try:
            f0, i0 = infer_layout(n, vcfg["patch_size"], vcfg["tubelet_size"], img_size, num_frames)
        except ValueError as err:
            raise InputError(f"{path}: {err}") from None
        vcfg.update(num_frames=f0, img_size=i0)
    else:  # a fixed sin-cos table: the file does not tell the clip it was made for
        vcfg.update(num_frames=num_frames or 12, img_size=img_size or 224)
        if num_frames is None:
            assumed.append("num_frames=12 (the official QA input)")
        if img_size is None:
            assumed.append("img_size=224 (the official QA input)")
    if "drop_path_rate" in overrides:
        vcfg["drop_path_rate"] = overrides.pop("drop_path_rate")
    if overrides:
        raise InputError(
            f"{path}: an official QA checkpoint takes num_heads, text_num_heads, num_frames and "
            f"img_size, not {', '.join(overrides)}"
        )
    text = {k: v for k, v in tcfg.items() if k != "mlm_head"}
    model = UMTVideoQA(vcfg, text, decoder_layers=dcfg["num_layers"])
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise InputError(
            f"{path}: the official QA weights do not fit (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})"
        )
    return model, [f"official QA checkpoint {path}"], assumed


def recognise_video_qa(sd: dict[str, torch.Tensor], path: str) -> CheckpointInfo | None:
    """``umt-qa`` (an official or umt QA model: ``vision_encoder.*`` and an answer decoder,
    ``text_decoder.*``), or None."""
    if any(k.startswith("vision_encoder.") for k in sd) and is_qa_state_dict(sd):
        return CheckpointInfo(path, "umt-qa", ["video-qa", "student"], ["a video QA model"])
    return None


def _load(
    src: OpenedCheckpoint, strict: bool, overrides: dict[str, Any]
) -> tuple[UMTVideoQA, dict[str, Any], list[str]]:
    """The family loader: :func:`read_video_qa` (a QA model always loads whole and strictly)."""
    model, _, assumed = read_video_qa(src.path, **overrides)
    return model, model.model_config, assumed


def _describe(model: UMTVideoQA, cfg: dict[str, Any]) -> list[str]:
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


register_family(
    Family(UMTVideoQA, "video-qa", _describe, recognise=recognise_video_qa, order=10, load=_load)
)


def read_answer_list(folder: str | Path) -> list[str] | None:
    """The ``answer_list.json`` saved beside a QA checkpoint, or None."""
    folder = Path(folder)
    folder = folder if folder.is_dir() else folder.parent
    f = folder / "answer_list.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{f}: invalid JSON ({err})") from None
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        raise InputError(f"{f}: not a JSON list of answer strings")
    return data
