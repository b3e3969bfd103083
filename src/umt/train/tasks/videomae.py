"""VideoMAE pretraining in the same loop as UMT stage 1, to compare objectives at equal budget.

One micro-batch: per-sample tube (or random) mask -> encoder on the visible tokens -> decoder with
mask tokens -> pixels of the masked tubelet-patches -> MSE against the clip's own pixels
(un-normalised, then standardised per patch and channel). The data are stage 1's training clips;
masks and drop-path draws come from per-sample seeds (run seed, epoch, sample index), so a resume
or another split of the batch over processes draws the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import ConfigError
from umt.config.videomae import VideoMAEConfig
from umt.data.transforms.video import resolve_mean_std
from umt.errors import InputError
from umt.losses import reconstruction_loss
from umt.masking import num_kept_per_frame, per_sample_uniform, random_mask, tube_mask
from umt.models.videomae import patch_targets
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    autocast_off,
    drop_path_noise,
    drop_path_seeds,
    encoder_sizes,
    has_drop_path,
    mask_seeds,
    plain_model,
    pretraining_clips,
)


# --------------------------------------------------------------------------- the module
class VideoMAETrainModule(nn.Module):
    """Makes the VideoMAE forward (with per-sample drop path) the module's ``forward`` so
    DDP / FSDP hooks run. Checkpoints hold the ``VideoMAE``'s own names (``encoder.*``: a
    plain ``VideoViT``; ``decoder.*``)."""

    state_prefix = "model."

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.has_drop_path = has_drop_path(model.encoder)

    def forward(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        drop_path_seeds: Sequence[int] | None = None,
    ) -> torch.Tensor:
        # video [B, 3, T, H, W], mask [B, N] (True = masked) -> [B, N_masked, tubelet*p*p*3]
        noise = None
        if drop_path_seeds is not None and self.training and self.has_drop_path:
            noise = drop_path_noise(self.model.encoder, drop_path_seeds, video.device)
        return self.model(video, mask, noise)

    def no_weight_decay(self) -> set[str]:
        return {self.state_prefix + n for n in self.model.no_weight_decay()}


# --------------------------------------------------------------------------- pieces
def encoder_base(name: str) -> dict[str, Any]:
    """The registry's ``VideoViT`` arguments for ``model.name``: a student variant's
    (``umt-b16``) or a VideoMAE variant's encoder (``videomae-b16``)."""
    from umt.models import model_config

    base = model_config(name)
    return dict(base["encoder"]) if "encoder" in base else base


def build_videomae(cfg: VideoMAEConfig) -> nn.Module:
    """The VideoMAE of ``cfg``, seeded by the run seed: the encoder is the registry's
    ``model.name`` (e.g. ``umt-b16``) with the recipe's sizes and no alignment heads; the
    decoder has the ``model.decoder_*`` sizes."""
    from umt.models.videomae import VideoMAE

    m, d = cfg.model, cfg.data
    encoder = {
        **encoder_base(m.name),
        **encoder_sizes(m),
        "img_size": d.input_size,
        "num_frames": d.num_frames,
        "tubelet_size": m.tubelet_size,
        "drop_path_rate": m.drop_path_rate,
        "align_layers": 0,
        "weight_init": "xavier",  # the official VideoMAE encoder's init
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = VideoMAE(
            encoder,
            decoder_embed_dim=m.decoder_embed_dim,
            decoder_depth=m.decoder_depth,
            decoder_num_heads=m.decoder_num_heads,
        )
    if m.grad_checkpointing:
        model.set_grad_checkpointing(m.grad_checkpointing)
    return model


def draw_mask(
    kind: str,
    ratio: float,
    grid: tuple[int, int, int],
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Per-sample VideoMAE masks ``[B, N]`` (True = masked) over the token ``grid``
    ``(T', H', W')``; sample b's mask is a function of ``seeds[b]`` only."""
    t, h, w = grid
    b = len(seeds)
    if kind == "tube":
        u = per_sample_uniform(seeds, (1, h * w))  # [B, 1, HW]
        mask = tube_mask(b, t, h * w, ratio, uniform=u)
    elif kind == "random":
        u = per_sample_uniform(seeds, (1, t * h * w))  # [B, 1, N]
        mask = random_mask(b, t * h * w, ratio, uniform=u)
    else:
        raise InputError(f"mask kind must be 'tube' or 'random', not {kind!r}")
    return mask.to(device)  # [B, N]


def unnormalize(video: torch.Tensor, mean_std: str) -> torch.Tensor:
    """A normalised clip ``[B, 3, T, H, W]`` back to pixel values (float32)."""
    mean, std = resolve_mean_std(mean_std)
    shape = (1, 3, 1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=video.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=video.device).view(shape)
    return video.float() * s + m


# --------------------------------------------------------------------------- the task
class VideoMAETask(Task):
    """``umt pretrain`` with a ``videomae`` recipe: VideoMAE pixel reconstruction."""

    name = "videomae"
    loss_name = "reconstruction loss"
    resume_sections = ("model", "data", "mask", "loss")

    cfg: VideoMAEConfig

    def check(self) -> None:
        m, d, k = self.cfg.model, self.cfg.data, self.cfg.mask
        if min(m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads) < 1:
            raise ConfigError("model.decoder_embed_dim, decoder_depth, decoder_num_heads: >= 1")
        if m.decoder_embed_dim % m.decoder_num_heads:
            raise ConfigError(
                f"model.decoder_embed_dim {m.decoder_embed_dim} is not divisible by "
                f"model.decoder_num_heads {m.decoder_num_heads}"
            )
        patch = m.patch_size or encoder_base(m.name).get("patch_size", 16)
        if d.input_size % patch:
            raise ConfigError(f"data.input_size {d.input_size} is not a multiple of patch {patch}")
        n = (d.input_size // patch) ** 2  # tokens per time slot: a tube mask draws over these
        if k.kind == "random":
            n *= d.num_frames // m.tubelet_size
        if num_kept_per_frame(n, k.ratio) == n:
            raise ConfigError(f"mask.ratio {k.ratio} masks none of {n} tokens: nothing to predict")

    def build_data(self) -> Any:
        # The stage-1 training clips, read the same way (multi-scale crop, flip as data.flip).
        return pretraining_clips(self.cfg, self.ctx.info)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        model = build_videomae(cfg).to(self.ctx.device)
        self.grid = model.encoder.grid  # (T', H', W')
        self.patch, self.tubelet = model.patch_size, model.tubelet_size
        return VideoMAETrainModule(model)

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model, "model")

    def describe(self, model: nn.Module) -> list[str]:
        net = self.export_model(model)
        enc, dec = net.encoder, net.decoder
        cfg = self.cfg
        n_enc = sum(p.numel() for p in enc.parameters())
        n_dec = sum(p.numel() for p in dec.parameters())
        mask = draw_mask(cfg.mask.kind, cfg.mask.ratio, enc.grid, [0])
        n_vis = int((~mask).sum())
        return [
            f"VideoMAE encoder {cfg.model.name} ({enc.embed_dim} wide x {len(enc.blocks)} deep, "
            f"tubelet {enc.tubelet_size}): {n_enc / 1e6:.2f}M params; decoder "
            f"{dec.embed_dim} wide x {len(dec.blocks)} deep: {n_dec / 1e6:.2f}M params",
            f"{cfg.data.num_frames} frames of {cfg.data.input_size}px; {cfg.mask.kind} mask "
            f"ratio {cfg.mask.ratio} ({n_vis} of {enc.num_patches} tokens visible); targets: "
            + ("pixels normalised per patch" if cfg.loss.normalize_target else "raw pixels"),
        ]

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        cfg = self.cfg
        video = batch["video"]  # [B, 3, T, H, W], normalised with data.mean_std
        seeds = mask_seeds(cfg.train.seed, epoch, batch["index"])
        mask = draw_mask(cfg.mask.kind, cfg.mask.ratio, self.grid, seeds, video.device)  # [B, N]
        with torch.no_grad(), autocast_off(video.device):  # float32 pixel targets
            pixels = unnormalize(video, cfg.data.mean_std)  # [B, 3, T, H, W]
            target = patch_targets(pixels, self.patch, self.tubelet, cfg.loss.normalize_target)
        pred = model(video, mask, drop_path_seeds(seeds))  # [B, N_masked, tubelet*p*p*3]
        with autocast_off(video.device):
            return reconstruction_loss(pred.float(), target, mask)

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """On the synthetic set (or with ``probe.enabled``): probe the trained encoder beside
        the same encoder at random init."""
        from umt.train.probe import probe_enabled, run_probe

        if not probe_enabled(self.cfg):
            return []
        cfg = self.cfg
        summary = {"objective": "videomae", "mask": cfg.mask.kind, "run_dir": str(out)}
        return run_probe(
            cfg,
            self.ctx,
            self.export_model(model).encoder,
            lambda: build_videomae(cfg).encoder,
            out,
            summary,
        )
