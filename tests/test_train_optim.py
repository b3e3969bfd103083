"""Optimizer groups and schedules as the official recipe."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from umt.config import load_config
from umt.train.optim import (
    build_optimizer,
    build_schedules,
    cosine_scheduler,
    param_groups,
    scaled_lrs,
)


def _official_cosine(base, final, epochs, niter, warmup_epochs=0, start=0.0, warmup_steps=-1):
    """The official utils.cosine_scheduler, written out with numpy as a reference."""
    import numpy as np

    warm = np.array([])
    wi = warmup_epochs * niter
    if warmup_steps > 0:
        wi = warmup_steps
    if warmup_epochs > 0:
        warm = np.linspace(start, base, wi)
    iters = np.arange(epochs * niter - wi)
    sched = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warm, sched))


@pytest.mark.parametrize(
    "args",
    [(1e-3, 1e-5, 10, 7, 2, 1e-6), (0.05, 0.1, 5, 3, 0, 0.0), (1.0, 0.0, 3, 4, 1, 0.5)],
)
def test_cosine_matches_official(args):
    ours = cosine_scheduler(*args)
    ref = _official_cosine(*args)
    assert len(ours) == len(ref) == args[2] * args[3]
    assert ours == pytest.approx(ref.tolist(), rel=1e-12, abs=1e-15)


def test_cosine_shape():
    v = cosine_scheduler(
        1.0, 0.1, epochs=4, niter_per_ep=5, warmup_epochs=1, start_warmup_value=0.0
    )
    assert v[0] == 0.0 and v[4] == 1.0 and v[5] == 1.0  # warm-up reaches lr, cosine starts there
    assert all(a >= b for a, b in zip(v[5:], v[6:]))
    assert v[-1] > 0.1 and math.isclose(v[-1], 0.1, rel_tol=0.15)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2, bias=False)

    def no_weight_decay(self):
        return {"cls_token"}


def test_no_decay_on_1d_bias_pos_and_skip_list():
    groups = param_groups(_Toy(), 0.05, _Toy().no_weight_decay())
    decay, no_decay = groups[0]["names"], groups[1]["names"]
    assert sorted(decay) == ["fc.weight", "head.weight"]
    assert sorted(no_decay) == ["cls_token", "fc.bias", "norm.bias", "norm.weight", "pos_embed"]


def test_lr_scaled_by_total_batch_over_256_and_schedules_applied():
    cfg = load_config("umt-b16-k710", ["train.accum_steps=2"])
    lr, min_lr, warm, total = scaled_lrs(cfg, world_size=32)
    assert total == 64 * 32 * 2
    assert lr == pytest.approx(1.5e-4 * 16) and min_lr == pytest.approx(1e-5 * 16)
    assert warm == 0.0  # the official pretraining warms up from 0
    sch = build_schedules(cfg, steps_per_epoch=100, world_size=32)
    assert sch.lr[0] == 0.0 and sch.lr[1] > 0.0  # lr at step 0 is 0
    assert sch.lr[40 * 100 - 1] == pytest.approx(1.5e-4 * 16)  # peak at the end of warm-up
    cfg = load_config(
        None, ["optim.weight_decay_end=0.2", "schedule.epochs=3", "schedule.warmup_epochs=1"]
    )
    model = _Toy()
    opt = build_optimizer(model, cfg, lr=1e-3)
    assert opt.defaults["betas"] == (0.9, 0.95)
    sch = build_schedules(cfg, steps_per_epoch=4, world_size=1)
    assert len(sch) == 12
    lr_used = sch.apply(opt, 11)
    assert lr_used == pytest.approx(sch.lr[11])
    wds = sorted(g["weight_decay"] for g in opt.param_groups)
    assert wds[0] == 0.0 and wds[1] == pytest.approx(sch.wd[11]) and sch.wd[-1] > 0.19
