"""One stage-1 training step: frozen CLIP teacher -> semantic mask -> student on the kept
tokens -> UMA loss over the K aligned layers -> AdamW."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.data.transforms import resolve_mean_std
from umt.losses import uma_loss
from umt.masking import per_sample_uniform, semantic_mask
from umt.models.layers import DropPath

# Mask draws use their own stream of ``sample_seed``, apart from the sample's augmentation draws;
# drop-path draws use another stream, derived from the mask seed.
MASK_STREAM = 1
DROP_PATH_STREAM = 2


class AlignedStudent(nn.Module):
    """Makes ``student.forward_aligned`` the module's ``forward`` so DDP / FSDP hooks run."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.has_drop_path = any(m.p > 0 for m in student.modules() if isinstance(m, DropPath))

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, drop_path_seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        # video [B,3,T,H,W], mask [B,N] (True = dropped) -> [K,B,N_vis,C]
        noise = None
        if drop_path_seeds is not None and self.training and self.has_drop_path:
            depth = len(self.student.blocks)
            noise = per_sample_uniform(drop_path_seeds, (depth, 2), video.device)  # [B,depth,2]
        return self.student.forward_aligned(video, mask, noise)


def renormalize(video: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Re-normalise a [B,3,T,H,W] clip from the ``src`` mean/std to the ``dst`` one."""
    if src == dst:
        return video
    (m0, s0), (m1, s1) = resolve_mean_std(src), resolve_mean_std(dst)
    shape = (1, 3, 1, 1, 1)
    m0_, s0_, m1_, s1_ = (
        torch.tensor(v, dtype=video.dtype, device=video.device).view(shape)
        for v in (m0, s0, m1, s1)
    )
    return (video * s0_ + m0_ - m1_) / s1_


def teacher_input(
    video: torch.Tensor, size: int | None, src_norm: str, dst_norm: str
) -> torch.Tensor:
    """The clip as the teacher sees it: re-normalised, and resized per frame (bicubic) when
    the teacher's resolution differs (CLIP-L/14 at 196 px for a 224 px student)."""
    video = renormalize(video, src_norm, dst_norm)  # [B,3,T,H,W]
    B, C, T, H, W = video.shape
    if size is not None and (H, W) != (size, size):
        frames = video.transpose(1, 2).reshape(B * T, C, H, W)
        frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        video = frames.reshape(B, T, C, size, size).transpose(1, 2)
    return video


def drop_path_seeds(mask_seeds: Sequence[int]) -> list[int]:
    """One drop-path seed per sample, derived from its mask seed (so again a function of the run
    seed, the epoch and the sample index only)."""
    from umt.data import sample_seed

    return [sample_seed(int(s), 0, 0, DROP_PATH_STREAM) for s in mask_seeds]


def mask_seeds(seed: int, epoch: int, indices: Sequence[int] | torch.Tensor) -> list[int]:
    """One mask seed per sample: a function of (run seed, epoch, sample index) only, never of
    the rank, the worker or the batch, so any split of a batch over processes draws the same."""
    from umt.data import sample_seed

    idx = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
    return [sample_seed(seed, epoch, int(i), MASK_STREAM) for i in idx]


@dataclass
class StepConfig:
    mask_ratio: float = 0.8
    loss_kind: str = "l2"
    loss_weight: float = 1.0
    teacher_img_size: int | None = None
    data_norm: str = "imagenet"
    teacher_norm: str = "imagenet"
    clip_grad: float | None = None
    accum_steps: int = 1


def compute_loss(
    student: nn.Module,
    teacher: nn.Module,
    video: torch.Tensor,
    seeds: Sequence[int],
    cfg: StepConfig,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """UMA loss of one micro-batch. ``video`` [B,3,T,H,W]; ``seeds`` one mask seed per sample
    (the sample's drop-path draws derive from it too); ``student`` is an ``AlignedStudent``
    (possibly DDP/FSDP-wrapped)."""
    device_type = video.device.type
    amp = torch.autocast(device_type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    with torch.no_grad(), amp:
        tvideo = teacher_input(video, cfg.teacher_img_size, cfg.data_norm, cfg.teacher_norm)

        def choose_mask(cls_attn: torch.Tensor) -> torch.Tensor:  # [B,T,HW] -> [B,N]
            _, t, hw = cls_attn.shape
            uniform = per_sample_uniform(seeds, (t, hw)).to(cls_attn.device)  # [B,T,HW]
            return semantic_mask(cls_attn.float(), mask_ratio=cfg.mask_ratio, uniform=uniform)

        # The teacher's last block past the class-token attention runs on the kept tokens only.
        hidden, _, mask = teacher.forward_masked(tvideo, choose_mask)  # [K,B,N_vis,width], [B,N]
        targets = teacher.project(hidden)  # ln_post + proj: [K,B,N_vis,C]
    with amp:
        aligned = student(video, mask, drop_path_seeds(seeds))  # [K,B,N_vis,C]
    loss = uma_loss(aligned.float(), targets.float(), kind=cfg.loss_kind)
    return loss * cfg.loss_weight


def grad_sync(model: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on accumulation micro-steps (DDP ``no_sync`` / FSDP2)."""
    if enabled:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):

        @contextlib.contextmanager
        def _fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return _fsdp_no_sync()
    return contextlib.nullcontext()


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last checkpoint."""


def train_step(
    student: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, Sequence[int]]],
    cfg: StepConfig,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    reduce_fn=None,
) -> dict[str, float]:
    """Forward/backward over ``micro_batches`` ([(video [B,3,T,H,W], mask seeds [B]), ...]), then
    one optimizer step. Returns ``{"loss", "grad_norm"}``; the loss is the mean over micro-batches
    (and over processes through ``reduce_fn``). Raises ``NonFiniteLossError`` before touching the
    weights when the loss is not finite."""
    student.train()
    n = len(micro_batches)
    total = torch.zeros((), device=micro_batches[0][0].device)
    for i, (video, seeds) in enumerate(micro_batches):
        with grad_sync(student, i == n - 1):
            loss = compute_loss(student, teacher, video, seeds, cfg, amp_dtype) / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
    if reduce_fn is not None:
        total = reduce_fn(total)
    loss_value = float(total)
    if not torch.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"loss is {loss_value}")
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = float("nan")
    if cfg.clip_grad is not None and cfg.clip_grad > 0:
        norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.clip_grad)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        grad_norm = float(norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss_value, "grad_norm": grad_norm}
