"""Losses of UMT. Stage 1: the unmasked-token alignment (UMA) loss; classification fine-tuning:
the soft-target cross-entropy for mixup / cutmix / label-smoothed targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["uma_loss", "UMA_KINDS", "soft_target_cross_entropy", "SoftTargetCrossEntropy"]

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
