"""Stage 1: align the kept tokens of a video student with a frozen CLIP image teacher.

One micro-batch: frozen teacher -> class-token attention -> semantic mask -> student on the kept
tokens -> alignment heads on its last K blocks -> UMA loss (``2 - 2cos``) against the teacher's
features at the same positions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.config import Config, ConfigError
from umt.data.transforms.video import resolve_mean_std
from umt.errors import InputError
from umt.losses import uma_loss
from umt.masking import per_sample_uniform, semantic_mask, tube_mask
from umt.models.layers import DropPath
from umt.train.builtin_teacher import BUILTIN
from umt.train.tasks.base import Task, not_none

# Mask draws use their own stream of ``sample_seed``, apart from the sample's augmentation draws;
# drop-path draws use another stream, derived from the mask seed.
MASK_STREAM = 1
DROP_PATH_STREAM = 2

TEACHER_FORMATS = (
    "OpenAI CLIP (.pt / .pth, whole model or its visual tower), open_clip or HuggingFace CLIP "
    "weights, an official UMT teacher file, or a folder written by 'umt convert'"
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


def has_drop_path(module: nn.Module) -> bool:
    """Whether any stochastic-depth layer of ``module`` drops anything."""
    return any(m.p > 0 for m in module.modules() if isinstance(m, DropPath))


def drop_path_noise(
    encoder: nn.Module, seeds: Sequence[int], device: torch.device | str
) -> torch.Tensor:
    """Per-sample drop-path uniforms ``[B, depth, 2]`` of a ``VideoViT`` from per-sample
    drop-path seeds (:func:`drop_path_seeds`)."""
    return per_sample_uniform(seeds, (len(encoder.blocks), 2), device)


def check_teacher_setting(cfg: Config) -> None:
    """A recipe meant for real data needs real CLIP weights; only a recipe that says
    ``teacher.allow_random: true`` (the built-in tiny one) may distil a random teacher."""

    t = cfg.teacher
    if t.weights == BUILTIN:
        return
    if t.weights:
        if not Path(t.weights).exists():
            raise FileNotFoundError(f"teacher.weights: no such file or folder {t.weights}")
        return
    if not t.allow_random:
        raise ConfigError(
            f"recipe '{cfg.recipe}' needs the CLIP teacher's weights: pass --teacher PATH "
            f"(or teacher.weights=PATH): {TEACHER_FORMATS}; or --teacher builtin, the small "
            "teacher umt trains on its synthetic set. Only to test the machinery, "
            "teacher.allow_random=true distils a randomly initialised CLIP instead"
        )


def build_teacher(
    cfg: Config,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, str]:
    """The frozen teacher and a sentence saying what it is. ``teacher.weights: builtin`` loads
    the cached built-in teacher (training it first when the cache lacks it; ``log`` hears its
    progress). Random init (only when the recipe allows it) is seeded by the run seed, so every
    process and every resume builds the same."""
    check_teacher_setting(cfg)
    t = cfg.teacher
    size = t.img_size or cfg.data.input_size
    if t.weights == BUILTIN:
        from umt.data import ensure_synthetic_dataset
        from umt.models.checkpoints import load_teacher
        from umt.train.builtin_teacher import ensure_builtin_teacher, recipe_from_config
        from umt.train.data import synthetic_root

        recipe = recipe_from_config(cfg)
        root = ensure_synthetic_dataset(synthetic_root(cfg), **recipe.synthetic)
        folder, desc = ensure_builtin_teacher(recipe, root, log=log)
        teacher = load_teacher(folder, return_layers=t.return_layers, normalize=t.normalize)
        return teacher.to(device), desc
    if t.weights:
        from umt.models.checkpoints import load_teacher

        kw = not_none(heads=t.heads)  # else width / 64, as every OpenAI CLIP (reported)
        teacher = load_teacher(
            t.weights, img_size=size, return_layers=t.return_layers, normalize=t.normalize, **kw
        )
        desc = f"teacher: CLIP weights from {t.weights}"
    else:
        from umt.models import create_model

        kw = not_none(
            patch_size=t.patch_size,
            width=t.width,
            layers=t.layers,
            heads=t.heads,
            output_dim=t.output_dim,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + 7919)
            teacher = create_model(
                t.name, img_size=size, return_layers=t.return_layers, normalize=t.normalize, **kw
            )
        desc = (
            f"teacher: {t.name} ({teacher.width} wide x {len(teacher.transformer.resblocks)} deep) "
            "RANDOMLY INITIALISED: no CLIP weights given (pass --teacher PATH for real CLIP). "
            "The loss falls as the student mimics a random network; it learns no useful features."
        )
    return teacher.to(device), desc  # CLIPTeacher is frozen (no grads, eval) by construction


def encoder_sizes(m: Any) -> dict[str, Any]:
    """The ``VideoViT`` sizes a ``model`` section sets (unset ones keep the registry's)."""
    return not_none(
        patch_size=m.patch_size,
        embed_dim=m.embed_dim,
        depth=m.depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
        pos_embed=m.pos_embed,
    )


def build_student(cfg: Config, teacher_dim: int) -> nn.Module:
    """The stage-1 student (``VideoViT`` with K alignment heads), seeded by the run seed."""
    from umt.models import create_model

    m = cfg.model
    kw = encoder_sizes(m)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        student = create_model(
            m.name,
            img_size=cfg.data.input_size,
            num_frames=cfg.data.num_frames,
            tubelet_size=m.tubelet_size,
            drop_path_rate=m.drop_path_rate,
            align_layers=cfg.teacher.return_layers,
            align_dim=teacher_dim,
            weight_init="xavier",  # the official stage-1 init
            **kw,
        )
    if m.grad_checkpointing:
        student.set_grad_checkpointing(m.grad_checkpointing)
    return student


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


def compile_blocks(student: nn.Module) -> None:
    """torch.compile each transformer block in place (the token count per step is fixed)."""
    for block in getattr(student, "blocks", []):
        block.compile()


# --------------------------------------------------------------------------- one micro-batch
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
    """The stage-1 loss settings of one micro-batch."""

    mask_ratio: float = 0.8
    loss_kind: str = "l2"
    loss_weight: float = 1.0
    teacher_img_size: int | None = None
    data_norm: str = "imagenet"
    teacher_norm: str = "imagenet"
    mask_kind: str = "attention"

    @classmethod
    def from_config(cls, cfg: Config) -> StepConfig:
        return cls(
            mask_ratio=cfg.mask.ratio,
            loss_kind=cfg.loss.kind,
            loss_weight=cfg.loss.weight,
            teacher_img_size=cfg.teacher.img_size,
            data_norm=cfg.data.mean_std,
            teacher_norm=cfg.data.teacher_norm,
            mask_kind=cfg.mask.kind,
        )


def teacher_targets(
    teacher: nn.Module,
    video: torch.Tensor,
    seeds: Sequence[int],
    mask_ratio: float,
    teacher_img_size: int | None = None,
    data_norm: str = "imagenet",
    teacher_norm: str = "imagenet",
    mask_kind: str = "attention",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen teacher's side of one batch, without gradients: its class-token attention
    picks the kept tokens (semantic mask from the per-sample ``seeds``), and its projected
    features at those positions are the targets. ``video`` [B,3,T,H,W] ->
    ``(targets [K,B,N_vis,C], mask [B,N])`` (True = dropped).

    ``mask_kind`` (the paper's ablation): ``attention`` (UMT's semantic masking), ``random``
    (each frame keeps the same number of tokens, uniformly at random) or ``tube`` (the same
    random positions in every frame). A given ``mask`` [B, N] (True = dropped) is used instead
    of drawing one (a test feeding another implementation's draw)."""
    if mask_kind not in ("attention", "random", "tube"):
        raise InputError(f"mask kind {mask_kind!r} is not attention, random or tube")
    with torch.no_grad():
        tvideo = teacher_input(video, teacher_img_size, data_norm, teacher_norm)

        def choose_mask(cls_attn: torch.Tensor) -> torch.Tensor:  # [B,T,HW] -> [B,N]
            b, t, hw = cls_attn.shape
            if mask is not None:
                if mask.shape != (b, t * hw):
                    raise InputError(f"given mask {tuple(mask.shape)}, want {(b, t * hw)}")
                return mask.to(device=cls_attn.device, dtype=torch.bool)
            if mask_kind == "tube":
                uniform = per_sample_uniform(seeds, (1, hw)).to(cls_attn.device)  # [B,1,HW]
                return tube_mask(b, t, hw, mask_ratio, uniform=uniform, device=cls_attn.device)
            uniform = per_sample_uniform(seeds, (t, hw)).to(cls_attn.device)  # [B,T,HW]
            # random: the same Gumbel top-k draw with equal weights for every token
            weights = cls_attn.float() if mask_kind == "attention" else torch.ones_like(cls_attn)
            return semantic_mask(weights.float(), mask_ratio=mask_ratio, uniform=uniform)

        # The teacher's last block past the class-token attention runs on the kept tokens only.
        hidden, _, chosen = teacher.forward_masked(tvideo, choose_mask)  # [K,B,N_vis,width], [B,N]
        targets = teacher.project(hidden)  # ln_post + proj: [K,B,N_vis,C]
    return targets, chosen


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
    with amp:
        targets, mask = teacher_targets(
            teacher, video, seeds, cfg.mask_ratio, cfg.teacher_img_size, cfg.data_norm,
            cfg.teacher_norm, cfg.mask_kind,
        )  # fmt: skip
    with amp:
        aligned = student(video, mask, drop_path_seeds(seeds))  # [K,B,N_vis,C]
    loss = uma_loss(aligned.float(), targets.float(), kind=cfg.loss_kind)
    return loss * cfg.loss_weight


def uma_loss_fn(
    teacher: nn.Module, cfg: StepConfig, amp_dtype: torch.dtype | None = None
) -> Callable[[nn.Module, tuple[torch.Tensor, Sequence[int]]], torch.Tensor]:
    """``loss_fn(student, (video, mask_seeds))`` for :func:`umt.train.step.train_step`."""

    def loss_fn(student: nn.Module, micro: tuple[torch.Tensor, Sequence[int]]) -> torch.Tensor:
        video, seeds = micro
        return compute_loss(student, teacher, video, seeds, cfg, amp_dtype)

    return loss_fn


# --------------------------------------------------------------------------- the task
class Stage1Task(Task):
    """``umt pretrain``: stage-1 Unmasked Teacher pretraining."""

    name = "pretrain"
    loss_name = "UMA loss"
    resume_sections = ("model", "data", "teacher", "mask", "loss")
    resume_ignored = Task.resume_ignored | {"teacher.weights"}

    def check(self) -> None:
        check_teacher_setting(self.cfg)

    def build_data(self) -> Any:
        from umt.data.clip_spec import ClipSpec

        d = self.cfg.data
        kw = dict(
            clip=ClipSpec(
                num_frames=d.num_frames,
                sampling=d.sampling,
                frame_stride=d.sampling_rate,
                train=True,
                input_size=d.input_size,
                augment="pretrain",
                scales=tuple(d.scales),
                flip=d.flip,
                mean=d.mean_std,
            ),
            seed=self.cfg.train.seed,
        )
        from umt.train.data import build_video_dataset

        return build_video_dataset(self.cfg, self.ctx.info, d.train_list, "train", **kw)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        log = (lambda line: print(line, flush=True)) if self.ctx.info.is_main else None
        self.teacher, self.teacher_desc = build_teacher(cfg, self.ctx.device, log=log)
        student = build_student(cfg, int(self.teacher.output_dim)).to(self.ctx.device)
        check_token_grids(student, self.teacher)
        if cfg.model.compile:
            compile_blocks(student)
        self.step_cfg = StepConfig.from_config(cfg)
        return AlignedStudent(student)

    def export_model(self, model: nn.Module) -> nn.Module:
        inner = model.module if hasattr(model, "module") else model
        return inner.student

    def describe(self, model: nn.Module) -> list[str]:
        student = self.export_model(model)
        n_params = sum(p.numel() for p in student.parameters())
        cfg = self.cfg
        return [
            f"student {cfg.model.name} ({student.embed_dim} wide x {len(student.blocks)} deep): "
            f"{n_params / 1e6:.2f}M params; {cfg.data.num_frames} frames of "
            f"{cfg.data.input_size}px; mask ratio {cfg.mask.ratio}",
            self.teacher_desc,
        ]

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        seeds = mask_seeds(self.cfg.train.seed, epoch, batch["index"])
        return compute_loss(
            model, self.teacher, batch["video"], seeds, self.step_cfg, self.ctx.amp_dtype
        )

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
