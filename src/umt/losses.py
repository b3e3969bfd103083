"""Losses of UMT. Stage 1: the unmasked-token alignment (UMA) loss; classification fine-tuning:
the soft-target cross-entropy for mixup / cutmix / label-smoothed targets; stage 2 (video-text):
the contrastive (VTC, with a differentiable all-gather), matching (VTM, hard negatives) and
masked-language-modelling (MLM) losses of the official ``MM/models/criterions.py``; video QA:
the answer decoder's per-answer NLL and its answer-weighted loss (``MM/models/umt_qa.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "uma_loss",
    "UMA_KINDS",
    "soft_target_cross_entropy",
    "SoftTargetCrossEntropy",
    "video_text_similarity",
    "gather_with_grad",
    "gather_ids",
    "vtc_loss",
    "hard_negatives",
    "random_negatives",
    "vtm_pairs",
    "vtm_loss",
    "mask_tokens",
    "mlm_loss",
    "reconstruction_loss",
    "answer_token_nll",
    "qa_answer_loss",
]

UMA_KINDS = ("l2", "mse", "smooth_l1")


def uma_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kind: str = "l2",
    normalize: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Unmasked-token alignment between student and teacher features.

    Args:
        student: aligned student outputs ``[K, B, N_vis, C]``.
        teacher: teacher features at the same positions ``[K, B, N_vis, C]``.
        kind: ``"l2"`` -> ``2 - 2 <s, t>`` (the official "l2": the squared distance of unit
            vectors), ``"mse"`` or ``"smooth_l1"`` (beta 1) on the raw values.
        normalize: l2-normalise both sides first (the official stage-2 loss does; stage 1 gets
            unit vectors from its heads and teacher already).
        reduction: ``"mean"`` (a scalar over K, B and tokens) or ``"none"`` (one value per aligned
            layer, ``[K]``).
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")
    s, t = student.float(), teacher.float()
    if normalize:
        s = F.normalize(s, dim=-1)
        t = F.normalize(t, dim=-1)
    if kind == "l2":
        per_elem = 2 - 2 * (s * t).sum(dim=-1)  # [K, B, N_vis]
    elif kind == "mse":
        per_elem = F.mse_loss(s, t, reduction="none")  # [K, B, N_vis, C]
    elif kind in ("smooth_l1", "smooth-l1"):
        per_elem = F.smooth_l1_loss(s, t, reduction="none")
    else:
        raise ValueError(f"unknown UMA loss {kind!r}; choose one of {UMA_KINDS}")
    if reduction == "none":
        return per_elem.reshape(per_elem.shape[0], -1).mean(dim=1)  # [K]
    return per_elem.mean()


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (timm's ``SoftTargetCrossEntropy``, the official
    fine-tuning criterion with mixup / cutmix): ``mean_b sum_k -target[b, k] *
    log_softmax(logits)[b, k]``.

    Args:
        logits: ``[B, K]``; computed in float32 whatever their dtype.
        target: ``[B, K]`` probabilities (e.g. :class:`umt.data.transforms.Mixup` output).

    Returns:
        A scalar.
    """
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and soft targets {tuple(target.shape)} differ; "
            "targets must be [B, num_classes] probabilities"
        )
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return torch.sum(-target.float() * log_probs, dim=-1).mean()


class SoftTargetCrossEntropy(nn.Module):
    """Module form of :func:`soft_target_cross_entropy`: ``(logits [B, K], target [B, K])``
    -> scalar."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(logits, target)


# ---------------------------------------------------------------------------------------------
# Stage 2 (video-text): VTC, VTM and MLM.


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half / bfloat16 -> float32 (the loss maths); float32 / float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def video_text_similarity(
    vision_feat: torch.Tensor, text_feat: torch.Tensor, temp: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Pair-wise video-text similarity (the official ``get_sim``).

    Both sides are l2-normalised here; the cosine of every frame feature with every text is
    averaged over the frames and divided by ``temp``.

    Args:
        vision_feat: ``[Bv, T, D]`` (per-frame or pooled ``T = 1``) or ``[Bv, D]``.
        text_feat: ``[Bt, D]``.
        temp: a float or a 0-dim tensor (gradients flow into a learnable one).

    Returns:
        ``[Bv, Bt]`` (video-to-text; transpose it for text-to-video).
    """
    if vision_feat.dim() == 2:
        vision_feat = vision_feat.unsqueeze(1)  # [Bv, 1, D]
    if vision_feat.dim() != 3 or text_feat.dim() != 2:
        raise ValueError(
            f"video_text_similarity wants vision [Bv, T, D] or [Bv, D] and text [Bt, D], got "
            f"{tuple(vision_feat.shape)} and {tuple(text_feat.shape)}"
        )
    if vision_feat.shape[-1] != text_feat.shape[-1]:
        raise ValueError(
            f"vision features have dim {vision_feat.shape[-1]} but text features "
            f"{text_feat.shape[-1]}"
        )
    v = F.normalize(vision_feat, dim=-1)
    t = F.normalize(text_feat, dim=-1)
    return torch.einsum("mld,nd->mln", v, t).mean(1) / temp  # [Bv, Bt]


def _world() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


_MAX_GATHER_DIMS = 8


def _check_same_shape(x: torch.Tensor, world: int, what: str) -> None:
    """All-gather ``x``'s shape and raise the same ValueError on every rank if they differ
    (``all_gather`` of unequal tensors would fail obscurely or hang)."""
    import torch.distributed as dist

    if x.dim() > _MAX_GATHER_DIMS:
        raise ValueError(f"{what}: cannot gather a tensor of {x.dim()} > 8 dimensions")
    meta = torch.full((1 + _MAX_GATHER_DIMS,), -1, dtype=torch.long, device=x.device)
    meta[0] = x.dim()
    meta[1 : 1 + x.dim()] = torch.tensor(x.shape, dtype=torch.long)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    shapes = [tuple(m[1 : 1 + int(m[0])].tolist()) for m in metas]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            f"{what}: every process must hold a batch of the same shape to gather it, "
            f"got shapes {shapes} (rank order); use drop_last / equal per-rank batch sizes"
        )


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward sums the gathered gradient over the ranks (all_reduce)
    and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, world: int, rank: int) -> torch.Tensor:  # type: ignore[override]
        import torch.distributed as dist

        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.batch = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        lo = ctx.rank * ctx.batch
        return grad[lo : lo + ctx.batch], None, None


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` from every rank, concatenated in rank order, differentiably.

    ``[B, ...]`` -> ``[W * B, ...]``; the identity when ``torch.distributed`` is not initialised
    or has one process. Every rank must pass the same shape (checked: a ValueError on every rank
    otherwise).

    Backward all-reduces (sums) the gradient of the gathered tensor over the ranks and returns
    this rank's slice, i.e. the gradient of the *sum of all ranks' losses* with respect to this
    rank's ``x``. With DDP's gradient averaging, the parameter gradient then equals the
    single-process gradient of the mean loss over the joined batch (when each rank's loss is its
    share of that mean, as in :func:`vtc_loss`). This deliberately differs from the official
    ``AllGather`` (``MM/models/utils.py``), whose backward returns only the local slice without
    the all-reduce: there every rank computes the full-matrix loss, and after DDP's averaging
    the VTC gradient is ``1 / world_size`` of the joined-batch gradient.
    """
    world, rank = _world()
    if world == 1:
        return x
    _check_same_shape(x, world, "gather_with_grad")
    return _GatherWithGrad.apply(x, world, rank)


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """All-gather sample ids (no gradient): ``[B]`` -> ``[W * B]`` in rank order; the identity
    with one process. Raises a ValueError (on every rank) when the ranks' batch sizes differ."""
    import torch.distributed as dist

    world, _ = _world()
    if world == 1:
        return ids
    _check_same_shape(ids, world, "gather_ids")
    ids = ids.contiguous()
    parts = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(parts, ids)
    return torch.cat(parts, dim=0)


def vtc_loss(
    vision_feat: torch.Tensor,
    text_feat: torch.Tensor,
    sample_ids: torch.Tensor,
    temp: float | torch.Tensor,
    gather: bool = True,
) -> torch.Tensor:
    """Video-text contrastive loss with multi-positive targets (official ``vtc_loss``).

    Computed open_clip-style as a *local* loss: this rank's videos against all gathered texts
    (v2t) and this rank's texts against all gathered videos (t2v); targets
    ``(local id == all ids)`` row-normalised, shared by both directions;
    ``loss = (mean_rows(-sum tgt * log_softmax(v2t)) + mean_rows(-sum tgt * log_softmax(t2v))) / 2``.
    With one process (or ``gather=False``) this is exactly the official full-matrix formula;
    with W processes of equal batch size the mean of the ranks' losses is the official loss on
    the joined batch, and (through :func:`gather_with_grad`) the DDP-averaged gradient is the
    joined-batch gradient. Half-precision features are promoted to float32.

    Args:
        vision_feat: ``[B, T, D]`` or ``[B, D]`` projected (not necessarily normalised).
        text_feat: ``[B, D]``.
        sample_ids: ``[B]`` integer ids; equal ids are positives of each other.
        temp: float or 0-dim tensor (learnable: it receives a gradient).
        gather: gather features and ids from all ranks (no-op without torch.distributed).

    Returns:
        A scalar.
    """
    if vision_feat.shape[0] != text_feat.shape[0] or sample_ids.shape != (text_feat.shape[0],):
        raise ValueError(
            f"vtc_loss wants B videos, B texts and B ids, got vision {tuple(vision_feat.shape)}, "
            f"text {tuple(text_feat.shape)}, ids {tuple(sample_ids.shape)}"
        )
    vision_feat, text_feat = _compute_dtype(vision_feat), _compute_dtype(text_feat)
    sample_ids = sample_ids.to(text_feat.device)  # NCCL gathers device tensors only
    world, _ = _world() if gather else (1, 0)
    if world == 1:
        sim_v2t = video_text_similarity(vision_feat, text_feat, temp)  # [B, B]
        sim_t2v = sim_v2t.T
        all_ids = sample_ids
    else:
        all_ids = gather_ids(sample_ids)
        all_vision = gather_with_grad(vision_feat)  # [W*B, T, D]
        all_text = gather_with_grad(text_feat)  # [W*B, D]
        sim_v2t = video_text_similarity(vision_feat, all_text, temp)  # [B, W*B]
        sim_t2v = video_text_similarity(all_vision, text_feat, temp).T  # [B, W*B]
    with torch.no_grad():
        same = torch.eq(sample_ids.view(-1, 1), all_ids.view(1, -1)).to(sim_v2t.dtype)
        targets = same / same.sum(1, keepdim=True)  # [B, W*B], rows sum to 1
    loss_v2t = -torch.sum(F.log_softmax(sim_v2t, dim=1) * targets, dim=1).mean()
    loss_t2v = -torch.sum(F.log_softmax(sim_t2v, dim=1) * targets, dim=1).mean()
    return (loss_v2t + loss_t2v) / 2


@torch.no_grad()
def hard_negatives(
    sim_v2t: torch.Tensor,
    sample_ids: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity-weighted hard negatives of the local batch (official ``vtm_loss`` L111-128).

    Per direction ``w = softmax(sim + 1e-4, dim=1)`` (the ``+ 1e-4`` is the official one and
    changes nothing), entries whose sample ids are equal (the positive itself and every other
    caption of the same clip) are set to 0, then ``nan_to_num(nan=posinf=neginf=1e-2)`` as
    official, and one ``torch.multinomial`` draw per row (``generator`` must live on
    ``sim_v2t``'s device: a CPU generator for CPU tensors).

    Degenerate rows: when every sample of the batch shares a row's id, there is no negative and
    a ValueError is raised (``torch.multinomial`` itself would raise on CPU, or sample garbage /
    assert on CUDA; the official ``nan_to_num`` does not help: the row is zeros, not NaN). When
    negatives exist but all their weights underflowed to 0 (a very small temperature), that row
    falls back to ``softmax`` over the negatives only, the distribution the official weights
    approximate (the official code would fail there).

    Args:
        sim_v2t: ``[B, B]`` video-to-text similarity (already divided by the temperature).
        sample_ids: ``[B]`` ids, or None (only the diagonal is excluded).
        generator: for reproducible draws.

    Returns:
        (negative video index for each text ``[B]``, negative text index for each video ``[B]``).
    """
    if sim_v2t.dim() != 2 or sim_v2t.shape[0] != sim_v2t.shape[1]:
        raise ValueError(
            f"hard_negatives wants a square [B, B] similarity, got {tuple(sim_v2t.shape)}"
        )
    b = sim_v2t.shape[0]
    if sample_ids is None:
        same = torch.eye(b, dtype=torch.bool, device=sim_v2t.device)
    else:
        if sample_ids.shape != (b,):
            raise ValueError(f"hard_negatives: {b} similarities but ids {tuple(sample_ids.shape)}")
        ids = sample_ids.to(sim_v2t.device).view(-1, 1)
        same = torch.eq(ids, ids.T)  # [B, B], symmetric, diagonal True
    no_negative = same.all(dim=1)
    if bool(no_negative.any()):
        rows = no_negative.nonzero().flatten().tolist()
        raise ValueError(
            f"hard_negatives: batch rows {rows[:8]} have no negative: every sample in the batch "
            "shares their sample id (a batch of one id), so VTM cannot draw a hard negative"
        )
    sim_v2t = _compute_dtype(sim_v2t)
    out = []
    for sim in (sim_v2t.T, sim_v2t):  # t2v -> a video per text; v2t -> a text per video
        weights = F.softmax(sim + 1e-4, dim=1)
        weights.masked_fill_(same, 0)
        weights = torch.nan_to_num_(weights, nan=1e-2, posinf=1e-2, neginf=1e-2)
        empty = weights.sum(1) <= 0
        if bool(empty.any()):
            fallback = F.softmax(sim.masked_fill(same, float("-inf")), dim=1)
            weights = torch.where(empty.view(-1, 1), fallback, weights)
        out.append(torch.multinomial(weights, 1, generator=generator)[:, 0])
    return out[0], out[1]


def random_negatives(
    sample_ids: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniformly random negatives of the local batch (official ``vtm_hard_neg=False``): for each
    text a video and for each video a text, never one with the same sample id.

    Returns (negative video index for each text ``[B]``, negative text index for each video ``[B]``).
    """
    ids = sample_ids.view(-1, 1)
    allowed = ~torch.eq(ids, ids.T)  # [B, B]
    if not bool(allowed.any(dim=1).all()):
        raise ValueError("random_negatives: a batch of one sample id has no negative for VTM")
    weights = allowed.float()
    return (
        torch.multinomial(weights, 1, generator=generator)[:, 0],
        torch.multinomial(weights, 1, generator=generator)[:, 0],
    )


def vtm_pairs(
    num_videos: int,
    text_embeds: torch.Tensor,
    text_mask: torch.Tensor,
    neg_video_for_text: torch.Tensor,
    neg_text_for_video: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official 3B video-text matching pairs: videos ``[V, V_neg, V]`` with texts
    ``[T, T, T_neg]`` (rows ``[0, B)`` positives, ``[B, 2B)`` each text with its negative video,
    ``[2B, 3B)`` each video with its negative text).

    The videos are given as an index into the batch's ``num_videos`` (= B) videos, for the
    fusion layers' ``vision_index``: each video's keys and values are then projected once, not
    once per pair (the official code stacks three copies of the video tokens; same result).

    Args:
        num_videos: B; text_embeds: ``[B, L, C]``; text_mask: ``[B, L]``.
        neg_video_for_text, neg_text_for_video: ``[B]`` indices from :func:`hard_negatives`.

    Returns:
        (vision_index ``[3B]`` long, text ``[3B, L, C]``, text_mask ``[3B, L]``).
    """
    b = num_videos
    if text_embeds.shape[0] != b or text_mask.shape != text_embeds.shape[:2]:
        raise ValueError(
            f"vtm_pairs: {b} videos, text {tuple(text_embeds.shape)} and mask "
            f"{tuple(text_mask.shape)} do not form a batch of pairs"
        )
    if neg_video_for_text.shape != (b,) or neg_text_for_video.shape != (b,):
        raise ValueError(
            f"vtm_pairs: want [{b}] negative indices, got {tuple(neg_video_for_text.shape)} and "
            f"{tuple(neg_text_for_video.shape)}"
        )
    # index_select, not x[idx]: the backward of advanced indexing is index_put_(accumulate=True),
    # which on CPU adds with parallel float atomics (2+ threads, >= 32768 elements), so a
    # negative drawn 3+ times sums its gradients in a racing order and runs differ in the last
    # bits; index_select's backward (index_add_) adds in index order, deterministically. The
    # fusion layers gather the videos' keys and values with index_select for the same reason.
    device = text_embeds.device
    own = torch.arange(b, device=device)
    vision_index = torch.cat([own, neg_video_for_text.to(device, torch.long), own])
    neg_text = neg_text_for_video.to(device)
    text = torch.cat([text_embeds, text_embeds, text_embeds.index_select(0, neg_text)], dim=0)
    mask = torch.cat([text_mask, text_mask, text_mask.index_select(0, neg_text)], dim=0)
    return vision_index, text, mask


def vtm_loss(itm_logits: torch.Tensor) -> torch.Tensor:
    """Video-text matching cross-entropy (mean) on ``[3B, 2]`` logits laid out as by
    :func:`vtm_pairs`: labels 1 (match) for rows ``[0, B)``, 0 for ``[B, 3B)``."""
    if itm_logits.dim() != 2 or itm_logits.shape[1] != 2 or itm_logits.shape[0] % 3:
        raise ValueError(f"vtm_loss wants [3B, 2] logits, got {tuple(itm_logits.shape)}")
    b = itm_logits.shape[0] // 3
    labels = torch.zeros(3 * b, dtype=torch.long, device=itm_logits.device)
    labels[:b] = 1
    return F.cross_entropy(_compute_dtype(itm_logits), labels)


def mask_tokens(
    input_ids: torch.Tensor,
    vocab_size: int,
    mask_id: int,
    pad_id: int,
    cls_id: int,
    prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of the official ``MLMLoss.mask``.

    Each token is selected with probability ``prob``, never ``[PAD]`` or ``[CLS]`` (``[SEP]``
    can be). Of the selected: 80 % become ``[MASK]``; of the rest, half (10 %) a uniform random
    id in ``[0, vocab_size)``; the remaining 10 % stay. Random numbers are drawn on
    ``generator``'s device when one is given (else on ``input_ids``'s), in the official order
    (selection, [MASK], random-or-kept, random ids). ``input_ids`` is not modified.

    Args:
        input_ids: ``[B, L]`` token ids.

    Returns:
        (masked ids ``[B, L]``, labels ``[B, L]``: the original id at selected positions, -100
        elsewhere).
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"mask_tokens: prob must be in [0, 1], got {prob}")
    dev = generator.device if generator is not None else input_ids.device
    shape = input_ids.shape

    def draw(p: float) -> torch.Tensor:
        return torch.bernoulli(torch.full(shape, p, device=dev), generator=generator).bool()

    selected = draw(prob).to(input_ids.device)
    selected &= (input_ids != pad_id) & (input_ids != cls_id)
    labels = input_ids.masked_fill(~selected, -100)
    to_mask = draw(0.8).to(input_ids.device) & selected
    to_random = draw(0.5).to(input_ids.device) & selected & ~to_mask
    random_ids = torch.randint(
        vocab_size, shape, dtype=input_ids.dtype, device=dev, generator=generator
    ).to(input_ids.device)
    ids = input_ids.masked_fill(to_mask, mask_id)
    ids = torch.where(to_random, random_ids, ids)
    return ids, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked-language-modelling cross-entropy, the mean over labelled positions (``-100`` =
    ignored).

    Args:
        logits: ``[B, L, V]`` (promoted to float32 when half precision).
        labels: ``[B, L]`` from :func:`mask_tokens`.

    Returns:
        A scalar. When no position is labelled it is 0 and still part of the graph (zero
        gradients), where the official ``CrossEntropyLoss`` mean gives NaN. Computed as
        ``sum / max(count, 1)`` without a host synchronisation.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"mlm_loss: logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}"
        )
    flat = _compute_dtype(logits).reshape(-1, logits.shape[-1])
    total = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="sum")
    count = (labels != -100).sum().clamp(min=1)
    return total / count


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """VideoMAE's pixel loss: the mean squared error over the masked tokens.

    Args:
        pred: predictions of the masked tokens in token order ``[B, N_masked, D]``.
        target: targets of every token ``[B, N, D]`` (e.g. from
            :func:`umt.models.videomae.patch_targets`).
        mask: ``[B, N]`` bool, True = masked (the same count in every sample).

    Returns:
        A float32 scalar: the mean over ``B``, the masked tokens and ``D``.
    """
    b, n, d = target.shape
    if mask.shape != (b, n):
        raise ValueError(f"mask {tuple(mask.shape)} does not match target {tuple(target.shape)}")
    picked = target[mask].reshape(b, -1, d)  # [B, N_masked, D], token order
    if pred.shape != picked.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} does not match the {picked.shape[1]} masked tokens of "
            f"target {tuple(target.shape)}"
        )
    return F.mse_loss(pred.float(), picked.float())


def answer_token_nll(logits: torch.Tensor, answer_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Each answer's next-token cross-entropy summed over its tokens (the official
    ``BertLMHeadModel`` loss with ``reduction="none"``).

    ``logits [N, La, V]`` (position ``j`` predicts token ``j + 1``), ``answer_ids [N, La]``
    (``[CLS] answer [SEP] ...``; ``pad_id`` tokens are not predicted) -> ``[N]``.
    """
    targets = answer_ids[:, 1:].masked_fill(answer_ids[:, 1:] == pad_id, -100)  # [N, La-1]
    shifted = logits[:, :-1]  # [N, La-1, V]
    ce = F.cross_entropy(shifted.transpose(1, 2), targets, reduction="none")  # [N, La-1]
    return ce.sum(1)


def qa_answer_loss(nll: torch.Tensor, weights: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The official QA training loss: ``sum(weight * NLL) / batch_size`` over every (question,
    answer) pair; ``weights [N]`` = the share of annotators who gave that answer."""
    if nll.shape != weights.shape:
        raise ValueError(f"{tuple(nll.shape)} answer losses but {tuple(weights.shape)} weights")
    return (weights.to(nll.dtype) * nll).sum() / max(int(batch_size), 1)
