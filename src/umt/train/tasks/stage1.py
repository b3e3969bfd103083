"""Stage 1: align the kept tokens of a video student with a frozen CLIP image teacher.

One micro-batch: frozen teacher -> class-token attention -> semantic mask -> student on the kept
tokens -> alignment heads on its last K blocks -> UMA loss (``2 - 2cos``) against the teacher's
features at the same positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config.stage1 import Stage1Config
from umt.errors import InputError
from umt.losses import uma_loss
from umt.train.builtin_teacher import BUILTIN, prepare_for_run
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    autocast_off,
    build_encoder,
    build_teacher,
    check_teacher_setting,
    count_params,
    drop_path_noise,
    drop_path_seeds,
    has_drop_path,
    mask_seeds,
    plain_model,
    pretraining_clips,
    teacher_targets,
)


# --------------------------------------------------------------------------- models
class AlignedStudent(nn.Module):
    """Makes ``student.forward_aligned`` the module's ``forward`` so DDP / FSDP hooks run."""

    state_prefix = "student."  # checkpoints hold the student's own names

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.has_drop_path = has_drop_path(student)

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, drop_path_seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        # video [B,3,T,H,W], mask [B,N] (True = dropped) -> [K,B,N_vis,C]
        noise = None
        if drop_path_seeds is not None and self.training and self.has_drop_path:
            noise = drop_path_noise(self.student, drop_path_seeds, video.device)
        return self.student.forward_aligned(video, mask, noise)


def build_student(cfg: Stage1Config, teacher_dim: int) -> nn.Module:
    """The stage-1 student (``VideoViT`` with K alignment heads), seeded by the run seed."""
    return build_encoder(
        cfg,
        align_layers=cfg.teacher.return_layers,
        align_dim=teacher_dim,
        weight_init="xavier",  # the official stage-1 init
    )


def check_token_grids(student: nn.Module, teacher: nn.Module) -> None:
    """The mask drawn from the teacher's attention must fit the student's tokens: the same patch
    grid per frame and one token per frame in time (tubelet 1), as in the official recipes."""
    t_side = teacher.grid
    _, s_h, s_w = student.grid
    if (t_side, t_side) != (s_h, s_w):
        raise InputError(
            f"the teacher sees {t_side}x{t_side} patches per frame ({teacher.img_size}px / patch "
            f"{teacher.patch_size}) but the student {s_h}x{s_w} ({student.img_size}px / patch "
            f"{student.patch_size}); set teacher.img_size to {s_h * teacher.patch_size} "
            "(as UMT-L's CLIP-L/14 runs at 196 px for a 224 px student)"
        )
    if student.tubelet_size != 1:
        raise InputError(
            f"model.tubelet_size={student.tubelet_size}: semantic masking from a per-frame teacher "
            "needs tubelet 1 (the official stage-1 recipes use 1)"
        )


# --------------------------------------------------------------------------- one micro-batch
@dataclass
class StepConfig:
    """The stage-1 loss settings of one micro-batch."""

    mask_ratio: float = 0.8
    loss_kind: str = "l2"
    loss_weight: float = 1.0
    teacher_img_size: int | None = None
    data_norm: str = "imagenet"
    teacher_norm: str = "imagenet"
    mask_kind: str = "attention"

    @classmethod
    def from_config(cls, cfg: Stage1Config) -> StepConfig:
        return cls(
            mask_ratio=cfg.mask.ratio,
            loss_kind=cfg.loss.uma_kind,
            loss_weight=cfg.loss.uma,
            teacher_img_size=cfg.teacher.img_size,
            data_norm=cfg.data.mean_std,
            teacher_norm=cfg.data.teacher_norm,
            mask_kind=cfg.mask.kind,
        )


def compute_loss(
    student: nn.Module,
    teacher: nn.Module,
    video: torch.Tensor,
    seeds: Sequence[int],
    cfg: StepConfig,
) -> torch.Tensor:
    """UMA loss of one micro-batch. ``video`` [B,3,T,H,W]; ``seeds`` one mask seed per sample
    (the sample's drop-path draws derive from it too); ``student`` is an ``AlignedStudent``
    (possibly DDP/FSDP-wrapped). Runs under the caller's autocast (the loop's); the loss itself
    is computed in float32."""
    targets, mask = teacher_targets(
        teacher, video, seeds, cfg.mask_ratio, cfg.teacher_img_size, cfg.data_norm,
        cfg.teacher_norm, cfg.mask_kind,
    )  # fmt: skip
    aligned = student(video, mask, drop_path_seeds(seeds))  # [K,B,N_vis,C]
    with autocast_off(video.device):
        loss = uma_loss(aligned.float(), targets.float(), kind=cfg.loss_kind)
    return loss * cfg.loss_weight


def uma_loss_fn(
    teacher: nn.Module, cfg: StepConfig
) -> Callable[[nn.Module, tuple[torch.Tensor, Sequence[int]]], torch.Tensor]:
    """``loss_fn(student, (video, mask_seeds))`` for :func:`umt.train.step.train_step` (which
    opens the autocast)."""

    def loss_fn(student: nn.Module, micro: tuple[torch.Tensor, Sequence[int]]) -> torch.Tensor:
        video, seeds = micro
        return compute_loss(student, teacher, video, seeds, cfg)

    return loss_fn


# --------------------------------------------------------------------------- the task
class Stage1Task(Task):
    """``umt pretrain``: stage-1 Unmasked Teacher pretraining."""

    name = "pretrain"
    loss_name = "UMA loss"
    resume_sections = ("model", "data", "teacher", "mask", "loss")
    resume_ignored = Task.resume_ignored | {"teacher.weights"}

    @classmethod
    def prepare(cls, cfg: Stage1Config, say: Callable[[str], None] | None) -> None:
        """The built-in teacher is made (trained by the loop, cached) before the run starts."""
        check_teacher_setting(cfg)
        prepare_for_run(cfg, say)

    def check(self) -> None:
        check_teacher_setting(self.cfg)

    def build_data(self) -> Any:
        return pretraining_clips(self.cfg, self.ctx.info)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        log = (lambda line: print(line, flush=True)) if self.ctx.info.is_main else None
        self.teacher, self.teacher_desc = build_teacher(cfg, self.ctx.device, log=log)
        student = build_student(cfg, int(self.teacher.output_dim)).to(self.ctx.device)
        check_token_grids(student, self.teacher)
        self.step_cfg = StepConfig.from_config(cfg)
        return AlignedStudent(student)

    def compile_roots(self, model: nn.Module) -> list[nn.Module]:
        """The student and the frozen teacher (kept outside the trained model)."""
        return [model, self.teacher]

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model, "student")

    def describe(self, model: nn.Module) -> list[str]:
        student = self.export_model(model)
        n_params = count_params(student)
        cfg = self.cfg
        return [
            f"student {cfg.model.name} ({student.embed_dim} wide x {len(student.blocks)} deep): "
            f"{n_params / 1e6:.2f}M params; {cfg.data.num_frames} frames of "
            f"{cfg.data.input_size}px; mask ratio {cfg.mask.ratio}",
            self.teacher_desc,
        ]

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        seeds = mask_seeds(self.cfg.train.seed, epoch, batch["index"])
        return compute_loss(model, self.teacher, batch["video"], seeds, self.step_cfg)

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """On the synthetic set (or with ``probe.enabled``): probe the trained student beside
        the same student at random init."""
        from umt.train.probe import probe_enabled, run_probe

        if not probe_enabled(self.cfg):
            return []
        cfg = self.cfg
        summary = {
            "objective": "umt",
            "mask": cfg.mask.kind,
            "teacher": "builtin"
            if cfg.teacher.weights == BUILTIN
            else (cfg.teacher.weights or "random"),
            "run_dir": str(out),
        }
        return run_probe(
            cfg,
            self.ctx,
            self.export_model(model),
            lambda: build_student(cfg, int(self.teacher.output_dim)),
            out,
            summary,
        )
