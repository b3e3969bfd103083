"""An official-style stage-2 (video-text) step, for a same-machine "before" figure in
``stage2_step.py``.

It runs our :class:`umt.models.video_text.UMTVideoText` modules with the computation patterns of
the official ``multi_modality`` code (``models/umt.py``, ``models/criterions.py``,
``backbones/bert/xbert.py``, ``backbones/vit/vit.py``, ``backbones/vit/clip.py``) swapped back in:

- video-encoder attention as explicit ``softmax(q k^T) v`` matrices (``vit.py`` ``Attention``);
- BERT attention as explicit matrices with the additive ``(1 - mask) * -10000`` masks of
  ``get_extended_attention_mask``, an all-ones video mask included in every cross-attention;
- the teacher on every token through ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``,
  sequence-first), its last block asked for the full head-averaged attention matrix
  (``need_weights=True``) to read the class token's row, every token of the K returned blocks
  through ``ln_post`` and ``proj``, then the kept ones gathered with a repeated boolean mask;
- the semantic mask from ``torch.multinomial`` over every frame's attention (a full permutation);
- the student forward of ``PretrainVisionTransformer`` (kept tokens gathered with a boolean
  index, the alignment position table repeated for the batch then gathered); drop path and
  dropout draw from the global RNG;
- VTC over the full (all-gathered) similarity matrix with ``get_mask`` targets, VTM with
  softmax-weighted hard negatives drawn by ``torch.multinomial`` and an all-ones video mask, MLM
  with ``MLMLoss.mask`` (Bernoulli draws from the global RNG, in place) and
  ``CrossEntropyLoss`` over the vocabulary.

For the same weights, inputs and random draws (``draws``: the mask, the negatives and the masked
captions, e.g. recorded from umt's step) the loss parts equal umt's to float tolerance: only the way
they are computed differs. A benchmark aid, not a reference for parity (the fixtures are).
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
import torch.nn.functional as F

from official_style import _mha, _QuickGELU, make_official_student, official_mask
from umt.models.video_text import UMTVideoText


# --------------------------------------------------------------------------- BERT (xbert.py)
def _extended_mask(mask: torch.Tensor) -> torch.Tensor:
    """``BertModel.get_extended_attention_mask``: ``[B, L]`` 1/0 -> ``[B, 1, 1, L]`` 0/-10000
    (float32, the parameters' dtype)."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * -10000.0


def _explicit_bert_attention(
    self,
    x: torch.Tensor,
    key_mask: torch.Tensor | None,
    context: torch.Tensor | None = None,
    causal: bool = False,
    context_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """``BertSelfAttention`` + ``BertSelfOutput``: scores ``q k^T / sqrt(d)`` plus the additive
    mask, softmax, dropout on the probabilities, ``probs @ v``, dense, dropout, residual, LN.
    ``causal`` (a decoder's self-attention): later tokens masked out too. ``context_index``
    (umt's shared-video cross-attention): the context rows are repeated per caption first, as
    the official code holds one video copy per pair, so keys and values are projected per row."""
    if context_index is not None and context is not None:
        context = context.index_select(0, context_index)
        if key_mask is not None:
            key_mask = key_mask.index_select(0, context_index)
    src = x if context is None else context
    q, k, v = self._split(self.q(x)), self._split(self.k(src)), self._split(self.v(src))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [B, h, L, L_k]
    if key_mask is not None:
        scores = scores + _extended_mask(key_mask)
    if causal:
        n = x.shape[1]
        later = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(later, torch.finfo(scores.dtype).min)
    probs = F.dropout(scores.softmax(dim=-1), self.attn_dropout, self.training)
    y = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
    y = y.view(*y.shape[:-2], -1)  # [B, L, C]
    return self.norm(x + self.drop(self.out(y)))


def make_official_video_text(model: UMTVideoText) -> UMTVideoText:
    """Patch ``model`` in place: explicit attention in the video encoder and in BERT."""
    make_official_student(model.vision_encoder)
    for m in model.text_encoder.modules():
        if type(m).__name__ == "BertAttention":
            m.forward = types.MethodType(_explicit_bert_attention, m)
    if model.teacher is not None:
        for blk in model.teacher.transformer.resblocks:
            blk.mlp.gelu = _QuickGELU()  # out of place, as the official QuickGELU
    return model


# --------------------------------------------------------------------------- teacher (clip.py)
def official_teacher(teacher: Any, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``clip.py`` ``VisionTransformer.forward`` without a mask: every block on every token, the
    last with its attention weights. Returns ``clip_output [K, B, T*HW, C_out]`` (every token
    projected, not normalised: stage 2) and the class-token attention ``[B*T, HW]``."""
    b, _, t, h, w = video.shape
    x = teacher.conv1(video.transpose(1, 2).reshape(b * t, 3, h, w))  # [BT, C, H', W']
    x = x.flatten(2).transpose(1, 2)  # [BT, HW, C]
    cls = teacher.class_embedding.to(x.dtype) + torch.zeros(
        x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device
    )
    x = torch.cat([cls, x], dim=1) + teacher.positional_embedding.to(x.dtype)
    x = teacher.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
    blocks = teacher.transformer.resblocks
    z, attn = [], None
    for i, blk in enumerate(blocks):
        y, weights = _mha(blk.attn, blk.ln_1(x), need_weights=i == len(blocks) - 1)
        x = x + y
        x = x + blk.mlp(blk.ln_2(x))
        if i in teacher.return_indices:
            z.append(x)
        if weights is not None:
            attn = weights[:, 0, 1:]  # [BT, HW]
    zs = torch.stack(z)  # [K, L, BT, C]
    k, hw, c = zs.shape[0], zs.shape[1] - 1, zs.shape[-1]
    zs = teacher.ln_post(zs[:, 1:])  # [K, HW, BT, C]
    zs = zs.reshape(k, hw, b, t, c).permute(0, 2, 3, 1, 4).reshape(k, b, t * hw, c)
    return zs @ teacher.proj, attn


def official_encode_teacher(
    teacher: Any, video: torch.Tensor, ratio: float, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``UMT.encode_teacher`` (attention masking): ``(mask [B, N] True = dropped, clip_output
    [K, B, N_vis, C_out])``. ``mask`` given: use it instead of the multinomial draw."""
    with torch.no_grad():
        clip_output, attn = official_teacher(teacher, video)
        b = video.shape[0]
        if mask is None:
            mask = official_mask(attn.float(), b, ratio)
        k, _, _, c = clip_output.shape
        mask_clip = mask.unsqueeze(0).repeat(k, 1, 1)
        clip_output = clip_output[~mask_clip].reshape(k, b, -1, c)
    return mask, clip_output


# --------------------------------------------------------------------------- student (vit.py)
def official_encode_vision(
    enc: Any, video: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``PretrainVisionTransformer.forward`` with a mask: ``(x_vis [B, N_vis, C], pooled
    [B, 1, C], x_clip [K, B, N_vis, C_out])``."""
    x = enc.patch_embed(video)
    x = x + enc.pos_embed.type_as(x).to(x.device).clone().detach()
    b, _, c = x.shape
    x_vis = x[~mask].reshape(b, -1, c)
    inter = []
    for i, blk in enumerate(enc.blocks):
        x_vis = blk(x_vis)  # drop path from the global RNG
        if i in enc.align_indices:
            inter.append(x_vis)
    x_vis = enc.norm(x_vis)
    x_clip_vis = enc.norm(torch.stack(inter))
    k = x_clip_vis.shape[0]
    pos = enc.align_pos_embed.repeat(b, 1, 1).type_as(x).to(x.device).clone().detach()
    pos = pos[~mask].view(b, -1, c).unsqueeze(0).repeat(k, 1, 1, 1)
    x_clip_full = x_clip_vis + pos
    x_clip = torch.stack([head(x_clip_full[i]) for i, head in enumerate(enc.align_heads)])
    pooled = enc.pool_norm(x_vis.mean(1, keepdim=True))
    return x_vis, pooled, x_clip


# --------------------------------------------------------------------------- criterions.py
def _get_sim(vision_proj: torch.Tensor, text_proj: torch.Tensor, temp: Any):
    vision_proj = F.normalize(vision_proj, dim=-1)
    text_proj = F.normalize(text_proj, dim=-1)
    sim_v2t = torch.einsum("mld,nd->mln", vision_proj, text_proj).mean(1) / temp
    return sim_v2t, sim_v2t.T


@torch.no_grad()
def _get_mask(sim: torch.Tensor, idx: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    idx = idx.view(-1, 1)
    mask = torch.eq(idx, idx.T).to(sim.dtype)
    if normalize:
        mask = mask / mask.sum(1, keepdim=True)
    return mask


def official_vtc(vision_proj, text_proj, idx, temp) -> torch.Tensor:
    """``VTC_VTM_Loss.vtc_loss`` (one process: the all-gather is the identity; the loss is over
    the full gathered matrix)."""
    sim_v2t, sim_t2v = _get_sim(vision_proj, text_proj, temp)
    with torch.no_grad():
        targets = _get_mask(sim_v2t, idx=idx, normalize=True)
    loss_i2t = -torch.sum(F.log_softmax(sim_v2t, dim=1) * targets, dim=1).mean()
    loss_t2i = -torch.sum(F.log_softmax(sim_t2v, dim=1) * targets, dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def official_vtm(
    model: UMTVideoText, vision_embeds, text_embeds, vision_proj, text_proj, text_atts, idx,
    negatives: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:  # fmt: skip
    """``VTC_VTM_Loss.vtm_loss`` with hard negatives. ``negatives`` given (negative video per
    text, negative text per video): use them instead of the multinomial draws."""
    with torch.no_grad():
        sim_v2t, sim_t2v = _get_sim(vision_proj, text_proj, model.temp)
        vision_atts = torch.ones(
            vision_embeds.size()[:-1], dtype=torch.long, device=vision_embeds.device
        )
        weights_v2t = F.softmax(sim_v2t + 1e-4, dim=1)
        weights_t2v = F.softmax(sim_t2v + 1e-4, dim=1)
        mask = _get_mask(sim_v2t, idx=idx).bool()
        weights_v2t.masked_fill_(mask, 0)
        weights_t2v.masked_fill_(mask, 0)
        weights_v2t = torch.nan_to_num_(weights_v2t, nan=1e-2, posinf=1e-2, neginf=1e-2)
        weights_t2v = torch.nan_to_num_(weights_t2v, nan=1e-2, posinf=1e-2, neginf=1e-2)
    if negatives is None:
        vision_neg = torch.multinomial(weights_t2v, 1).squeeze()
        text_neg = torch.multinomial(weights_v2t, 1).squeeze()
    else:
        vision_neg, text_neg = (n.to(vision_embeds.device) for n in negatives)
    vision_all = torch.cat([vision_embeds, vision_embeds[vision_neg], vision_embeds], dim=0)
    text_all = torch.cat([text_embeds, text_embeds, text_embeds[text_neg]], dim=0)
    vision_atts_all = torch.cat([vision_atts, vision_atts, vision_atts], dim=0)
    text_atts_all = torch.cat([text_atts, text_atts, text_atts[text_neg]], dim=0)
    out = model.text_encoder.forward_fusion(text_all, text_atts_all, vision_all, vision_atts_all)
    logits = model.itm_head(out[:, 0])  # [3B, 2]
    bs = logits.shape[0] // 3
    labels = logits.new_ones(3 * bs, dtype=torch.long)
    labels[bs:] = 0
    return F.cross_entropy(logits, labels)


def official_mlm_mask(
    input_ids: torch.Tensor, prob: float, vocab_size: int, special: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MLMLoss.mask`` (on the CPU, global RNG, in place on clones): (masked ids, labels)."""
    input_ids = input_ids.cpu().clone()
    labels = input_ids.clone()
    masked = torch.bernoulli(torch.full(labels.shape, prob)).bool()
    masked[input_ids == special["pad"]] = False
    masked[input_ids == special["cls"]] = False
    labels[~masked] = -100
    replaced = torch.bernoulli(torch.full(input_ids.shape, 0.8)).bool() & masked
    input_ids[replaced] = special["mask"]
    rand = torch.bernoulli(torch.full(input_ids.shape, 0.5)).bool() & masked & ~replaced
    words = torch.randint(vocab_size, input_ids.shape, dtype=torch.long)
    input_ids[rand] = words[rand]
    return input_ids, labels


def official_mlm(
    model: UMTVideoText, masked_ids: torch.Tensor, labels: torch.Tensor, text_atts, vision_embeds
) -> torch.Tensor:
    """``MLMLoss.mlm_loss`` after the mask: text layers ("text" mode), fusion layers with an
    all-ones video mask ("fusion" mode), the MLM head, ``CrossEntropyLoss`` (ignore -100)."""
    enc = model.text_encoder
    dev = vision_embeds.device
    masked_ids, labels = masked_ids.to(dev), labels.to(dev)
    text = enc.forward_text(masked_ids, text_atts)
    vision_atts = torch.ones(vision_embeds.size()[:-1], dtype=torch.long, device=dev)
    fused = enc.forward_fusion(text, text_atts, vision_embeds, vision_atts)
    scores = enc.mlm_logits(fused)
    return F.cross_entropy(scores.view(-1, enc.vocab_size), labels.view(-1))


def official_uta(student_output: torch.Tensor, clip_output: torch.Tensor) -> torch.Tensor:
    """``UTA_Loss.uta_loss`` (norm l2, loss l2)."""
    student_output = student_output / student_output.norm(dim=-1, keepdim=True)
    clip_output = clip_output / clip_output.norm(dim=-1, keepdim=True)
    return (2 - 2 * (student_output * clip_output).sum(dim=-1)).mean()


# --------------------------------------------------------------------------- umt.py UMT.forward
def official_forward(
    model: UMTVideoText,
    video: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    idx: torch.Tensor,
    *,
    ratio: float,
    mlm_prob: float,
    special: dict[str, int],
    weights: dict[str, float],
    draws: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """The official ``UMT.forward`` of one video batch: the four weighted loss parts and their sum
    (``loss``). ``draws`` (``mask``, ``negatives``, ``mlm``): the random decisions to use instead
    of the official draws (for checking against umt's step)."""
    draws = draws or {}
    model.clamp_temp()
    mask, clip_output = official_encode_teacher(model.teacher, video, ratio, draws.get("mask"))
    vision_embeds, pooled_vision, student_output = official_encode_vision(
        model.vision_encoder, video, mask
    )
    text_embeds = model.text_encoder.forward_text(input_ids, attention_mask)
    pooled_text = text_embeds[:, 0]
    vision_proj = model.vision_proj(pooled_vision)
    text_proj = model.text_proj(pooled_text)
    parts = {"uma": official_uta(student_output, clip_output)}
    parts["vtc"] = official_vtc(vision_proj, text_proj, idx, model.temp)
    parts["vtm"] = official_vtm(
        model, vision_embeds, text_embeds, vision_proj, text_proj, attention_mask, idx,
        draws.get("negatives"),
    )  # fmt: skip
    if "mlm" in draws:
        masked_ids, labels = draws["mlm"]
    else:
        masked_ids, labels = official_mlm_mask(
            input_ids, mlm_prob, model.text_encoder.vocab_size, special
        )
    parts["mlm"] = official_mlm(model, masked_ids, labels, attention_mask, vision_embeds)
    parts = {k: v * weights[k] for k, v in parts.items()}
    parts["loss"] = sum(parts.values())
    return parts
