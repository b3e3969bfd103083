"""AdamW with the official UMT parameter groups and per-step cosine schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from umt.config import TaskConfig
from umt.errors import InputError


def param_groups(
    model: nn.Module, weight_decay: float, skip: Iterable[str] = ()
) -> list[dict[str, object]]:
    """Split trainable parameters into decay / no-decay groups.

    No weight decay on 1-D parameters (norms, biases), ``*.bias``, position tables and the names
    in ``skip`` (``model.no_weight_decay()``), as the official ``get_parameter_groups``.
    """
    skip = set(skip)
    decay, no_decay = [], []
    decay_names, no_decay_names = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        clean = _strip_wrappers(name)
        leaf = clean.rsplit(".", 1)[-1]
        if (
            param.ndim <= 1
            or clean.endswith(".bias")
            or clean in skip
            or leaf in skip
            or "pos_embed" in leaf
            or "position" in leaf
        ):
            no_decay.append(param)
            no_decay_names.append(clean)
        else:
            decay.append(param)
            decay_names.append(clean)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def _strip_wrappers(name: str) -> str:
    """Drop the prefixes DDP / torch.compile / checkpoint wrappers add to parameter names."""
    for prefix in ("module.", "_orig_mod.", "_checkpoint_wrapped_module."):
        name = name.replace(prefix, "")
    return name


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """:func:`param_groups` with the model's own ``no_weight_decay()`` names, without names."""
    base = model.module if hasattr(model, "module") else model
    skip = base.no_weight_decay() if hasattr(base, "no_weight_decay") else set()
    groups = param_groups(model, weight_decay, skip)
    for g in groups:
        g.pop("names")
    return groups


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) / ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def vit_layer_id(name: str, num_layers: int) -> int:
    """Layer index of a ViT parameter for layer-wise lr decay (the official
    ``get_num_layer_for_vit``): position tables, class / mask tokens and the patch embedding
    -> 0, block ``j`` -> ``j + 1``, everything else (``fc_norm``, ``head``, ...) -> ``num_layers + 1``.
    ``name`` is a clean parameter name (no wrapper prefixes)."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("rel_pos_bias"):
        return num_layers + 1
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def layer_decay_param_groups(
    model: nn.Module, weight_decay: float, layer_decay: float, skip: Iterable[str] = ()
) -> list[dict[str, object]]:
    """Parameter groups with layer-wise lr decay, as the official fine-tuning builds them
    (``get_parameter_groups`` with ``LayerDecayValueAssigner``).

    With ``L`` blocks, layer ``i`` (:func:`vit_layer_id`) gets ``lr_scale = layer_decay **
    (L + 1 - i)``: the patch embedding ``layer_decay ** (L + 1)``, block ``j``
    ``layer_decay ** (L - j)``, the head 1. No weight decay for 1-D parameters, names ending in
    ``.bias`` and the names in ``skip`` plus the model's ``no_weight_decay()`` (e.g. a learned
    ``pos_embed``). One group per (layer, decay / no decay), in the order parameters first
    appear; each has ``params``, ``weight_decay``, ``lr_scale``, ``layer_id`` and ``names``
    (clean names: DDP / compile prefixes dropped). :meth:`Schedules.apply` multiplies each
    group's lr by its ``lr_scale``.
    """
    if not layer_decay > 0:
        raise InputError(f"layer_decay must be > 0 (1.0 = no decay), got {layer_decay}")
    base = _unwrap(model)
    if hasattr(base, "get_num_layers"):
        num_layers = int(base.get_num_layers())
    elif isinstance(getattr(base, "blocks", None), nn.ModuleList):
        num_layers = len(base.blocks)
    else:
        raise InputError(
            f"layer-wise lr decay needs a ViT with .blocks; {type(base).__name__} has none "
            "(set optim.layer_decay to null)"
        )
    skip = set(skip)
    if hasattr(base, "no_weight_decay"):
        skip |= set(base.no_weight_decay())
    scales = [float(layer_decay) ** (num_layers + 1 - i) for i in range(num_layers + 2)]
    groups: dict[str, dict[str, object]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        clean = _strip_wrappers(name)
        no_decay = param.ndim == 1 or clean.endswith(".bias") or clean in skip
        layer = vit_layer_id(clean, num_layers)
        key = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_decay else weight_decay,
                "lr_scale": scales[layer],
                "layer_id": layer,
                "names": [],
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(clean)
    return list(groups.values())


def build_optimizer(
    model_or_groups: nn.Module | list[dict[str, object]], cfg: TaskConfig, lr: float
) -> torch.optim.AdamW:
    """AdamW over parameter groups (a module: :func:`default_param_groups`); ``lr`` is the
    already scaled peak learning rate; empty groups are dropped."""
    groups = model_or_groups
    if isinstance(groups, nn.Module):
        groups = default_param_groups(groups, cfg.optim.weight_decay)
    kwargs: dict[str, object] = {}
    if cfg.optim.fused:
        kwargs["fused"] = True
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=lr,
        betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
        **kwargs,
    )


def cosine_scheduler(
    base_value: float,
    final_value: float,
    epochs: int,
    niter_per_ep: int,
    warmup_epochs: int = 0,
    start_warmup_value: float = 0.0,
    warmup_steps: int = -1,
) -> list[float]:
    """Per-step values: linear warm-up from ``start_warmup_value`` to ``base_value`` over
    ``warmup_epochs * niter_per_ep`` steps (or ``warmup_steps`` if > 0; both ends included, as
    ``numpy.linspace``), then a half cosine from ``base_value`` to ``final_value``.
    Same values as the official ``utils.cosine_scheduler``; length ``epochs * niter_per_ep``."""
    total = epochs * niter_per_ep
    warmup_iters = warmup_steps if warmup_steps > 0 else warmup_epochs * niter_per_ep
    warmup_iters = min(warmup_iters, total)
    values: list[float] = []
    if warmup_iters > 0:
        if warmup_iters == 1:
            values.append(float(start_warmup_value))
        else:
            delta = (base_value - start_warmup_value) / (warmup_iters - 1)
            values.extend(start_warmup_value + i * delta for i in range(warmup_iters))
            values[-1] = float(base_value)
    rest = total - warmup_iters
    for i in range(rest):
        values.append(
            final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / rest))
        )
    return values


@dataclass
class Schedules:
    """Per-optimizer-step learning rate and weight decay, indexed by the global step."""

    lr: list[float]
    wd: list[float]

    def __len__(self) -> int:
        return len(self.lr)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set lr / weight decay of every group for ``step``; returns the lr."""
        i = min(step, len(self.lr) - 1)
        for group in optimizer.param_groups:
            group["lr"] = self.lr[i] * group.get("lr_scale", 1.0)
            if group["weight_decay"] > 0:
                group["weight_decay"] = self.wd[i]
        return self.lr[i]


def scaled_lrs(cfg: TaskConfig, world_size: int) -> tuple[float, float, float, int]:
    """(lr, min_lr, warmup_lr, total_batch): learning rates scaled by total batch / 256 when
    ``optim.scale_lr`` (total = clips per step: per-process batch x world size x accumulation
    steps x ``data.clips_per_video`` clips per loaded video, as the official fine-tuning scales)."""
    clips_per_video = getattr(cfg.data, "clips_per_video", 1)
    total = cfg.train.batch_size * world_size * cfg.train.accum_steps * clips_per_video
    factor = total / 256.0 if cfg.optim.scale_lr else 1.0
    o = cfg.optim
    return o.lr * factor, o.min_lr * factor, o.warmup_lr * factor, total


def cosine_floor_scheduler(
    base_value: float,
    floor: float,
    epochs: int,
    niter_per_ep: int,
    warmup_epochs: int = 0,
    warmup_steps: int = -1,
) -> list[float]:
    """Per-step values of the official multi-modality schedule (``get_cosine_schedule_with_warmup``
    with ``min_lr_multi``): ``base x max(floor, s / W)`` for the W warm-up steps, then
    ``base x max(floor, (1 + cos(pi p)) / 2)`` with p the progress over the remaining steps;
    length ``epochs * niter_per_ep``."""
    total = epochs * niter_per_ep
    warm = warmup_steps if warmup_steps > 0 else warmup_epochs * niter_per_ep
    values = []
    for s in range(total):
        if s < warm:
            mult = max(floor, s / max(1, warm))
        else:
            progress = (s - warm) / max(1, total - warm)
            mult = max(floor, 0.5 * (1.0 + math.cos(math.pi * progress)))
        values.append(base_value * mult)
    return values


def build_schedules(cfg: TaskConfig, steps_per_epoch: int, world_size: int) -> Schedules:
    lr, min_lr, warmup_lr, _ = scaled_lrs(cfg, world_size)
    s = cfg.schedule
    if s.kind == "cosine_floor":
        lrs = cosine_floor_scheduler(
            lr, s.lr_floor, s.epochs, steps_per_epoch, s.warmup_epochs, s.warmup_steps
        )
    else:
        lrs = cosine_scheduler(
            lr, min_lr, s.epochs, steps_per_epoch, s.warmup_epochs, warmup_lr, s.warmup_steps
        )
    wd_end = (
        cfg.optim.weight_decay if cfg.optim.weight_decay_end is None else cfg.optim.weight_decay_end
    )
    wds = cosine_scheduler(cfg.optim.weight_decay, wd_end, s.epochs, steps_per_epoch)
    return Schedules(lr=lrs, wd=wds)


def finetune_param_groups(
    model: nn.Module, weight_decay: float, layer_decay: float | None
) -> list[dict[str, Any]]:
    """The fine-tuning tasks' groups: layer-wise lr decay when ``layer_decay`` is set (the
    bookkeeping keys dropped), else the plain decay / no-decay split."""
    if layer_decay is None:
        return default_param_groups(model, weight_decay)
    groups = layer_decay_param_groups(model, weight_decay, layer_decay)
    for g in groups:
        g.pop("names", None)
        g.pop("layer_id", None)
    return groups
