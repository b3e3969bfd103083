"""Six classification fine-tuning steps of the official code, replayed through umt's own
training code: the fine-tuning task (model from an official checkpoint, mixup / cutmix with
label smoothing, drop path, soft-target loss), its layer-decay parameter groups, the AdamW and
per-step schedules the loop builds, and the loop's step function.

The fixture (``fixtures/official_trajectories/finetune/``) was made by ``make_finetune.py``
beside it, which runs the official ``train_one_epoch`` (OpenGVLab/unmasked_teacher 4fb4049f) on
CPU in float32 and records its random draws (mixup / cutmix parameters, drop-path uniforms);
this test feeds those draws to umt in place of its own and needs nothing of the official code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import umt.masking
from train_helpers import loop_step
from umt.config import load_config
from umt.data.transforms.mixup import MixParams
from umt.train.distributed import DistInfo, wrap_model
from umt.train.optim import build_optimizer, build_schedules, scaled_lrs
from umt.train.tasks.base import RunContext
from umt.train.tasks.classify import ClassifyTask

pytestmark = pytest.mark.parity

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "official_trajectories" / "finetune"
RECIPE = "umt-b16-k400-ft"  # the official K400 recipe: its optimizer / mixup settings are used


@pytest.fixture(scope="module")
def case() -> tuple[dict, dict]:
    return json.loads((FIXTURE / "trajectory.json").read_text()), load_file(
        str(FIXTURE / "io.safetensors")
    )


def _config(c: dict):
    m, o = c["model"], c["optim"]
    return load_config(
        RECIPE,
        [
            f"model.init={FIXTURE / 'initial.safetensors'}",
            f"model.num_classes={m['num_classes']}",
            f"model.embed_dim={m['embed_dim']}",
            f"model.depth={m['depth']}",
            f"model.num_heads={m['num_heads']}",
            f"model.patch_size={m['patch_size']}",
            f"model.mlp_ratio={m['mlp_ratio']}",
            f"model.tubelet_size={m['tubelet_size']}",
            f"model.drop_path_rate={m['drop_path_rate']}",
            f"data.num_frames={m['all_frames']}",
            f"data.input_size={m['img_size']}",
            f"data.clips_per_video={c['num_sample']}",
            f"train.batch_size={c['videos_per_step']}",
            "train.precision=fp32",
            f"optim.lr={o['lr_per_256']}",
            f"optim.min_lr={o['min_lr_per_256']}",
            f"optim.warmup_lr={o['warmup_lr_per_256']}",
            f"schedule.epochs={o['epochs']}",
            f"schedule.warmup_epochs={o['warmup_epochs']}",
            f"schedule.steps_per_epoch={c['steps_per_epoch']}",
        ],
        task="finetune",
    )


def test_recipe_matches_the_official_run_settings(case):
    """What the test does not override comes from the recipe: it must be what the official
    run used (the official parser's defaults = the scripts' settings)."""
    c, _ = case
    cfg, o, mx = _config(c), c["optim"], c["mixup"]
    assert cfg.optim.betas == o["betas"] and cfg.optim.eps == o["eps"]
    assert cfg.optim.weight_decay == o["weight_decay"] and cfg.optim.weight_decay_end is None
    assert cfg.optim.layer_decay == o["layer_decay"] and cfg.optim.clip_grad == o["clip_grad"]
    assert cfg.optim.scale_lr and cfg.train.accum_steps == 1
    a = cfg.augment
    assert (a.mixup, a.cutmix, a.mixup_prob, a.mixup_switch_prob, a.smoothing) == (
        mx["mixup"],
        mx["cutmix"],
        mx["prob"],
        mx["switch_prob"],
        mx["smoothing"],
    )
    assert mx["mode"] == "batch" and cfg.model.head_drop_rate == 0.0


def test_six_official_fine_tuning_steps(case, monkeypatch):
    c, io = case
    cfg = _config(c)
    steps, depth = c["steps"], c["model"]["depth"]
    info = DistInfo()

    # ---- set-up, as the loop's _setup does it
    task = ClassifyTask(cfg, RunContext(info=info, amp_dtype=None))
    task.check()
    model = wrap_model(task.build_model(), cfg, info, None)  # official file -> umt classifier
    assert task.mixup is not None
    lr, _, _, total = scaled_lrs(cfg, info.world_size)
    assert total == c["videos_per_step"] * c["num_sample"]
    assert lr == pytest.approx(c["optim"]["lr"], rel=1e-12)
    optimizer = build_optimizer(task.param_groups(model), cfg, lr)
    schedules = build_schedules(cfg, c["steps_per_epoch"], info.world_size)

    # The official weights came in, under the official names.
    initial = load_file(str(FIXTURE / "initial.safetensors"))
    state = model.state_dict()
    assert set(state) == set(initial)
    for k, v in initial.items():
        assert torch.equal(state[k], v), k

    # Parameter groups: names, lr scale and weight decay of each, as the official groups (the
    # official optimizer also lists pos_embed, which never has a gradient: AdamW skips it; umt
    # freezes it and leaves it out).
    names = {id(p): n for n, p in model.named_parameters()}
    ours = sorted(
        (sorted(names[id(p)] for p in g["params"]), g["lr_scale"], g["weight_decay"])
        for g in optimizer.param_groups
    )
    theirs = sorted(
        (sorted(n for n in g["names"] if n != "pos_embed"), g["lr_scale"], g["weight_decay"])
        for g in c["param_groups"]
    )
    theirs = [g for g in theirs if g[0]]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a[0] == b[0] and a[1] == pytest.approx(b[1], rel=1e-12) and a[2] == b[2]
    assert not model.pos_embed.requires_grad

    # ---- the recorded draws, fed in place of umt's own
    mix = [
        MixParams(
            lam=float(io["mix_lam"][k]),
            cutmix=bool(io["mix_cutmix"][k]),
            box=tuple(int(x) for x in io["mix_box"][k]) if io["mix_cutmix"][k] else None,
        )
        for k in range(steps)
    ]
    assert 0 < sum(p.cutmix for p in mix) < steps  # both kinds of mixing are exercised
    noise = 1.0 - io["drop_path_uniform"]  # official keep: u >= p; umt keep: noise < 1 - p
    rates = [cfg.model.drop_path_rate * i / (depth - 1) for i in range(depth)]
    active = [i for i in range(depth) if rates[i] > 0]  # block 0: rate 0, no draw (noise 1)
    keep = torch.stack([noise[:, :, i] < 1.0 - rates[i] for i in active], dim=2)
    assert torch.equal(keep, io["drop_path_keep"][:, :, active].bool())  # same branches dropped
    assert int((~keep).sum()) > 0

    current: dict[str, object] = {}

    def recorded_mix(height, width, generator=None):
        return current["mix"]

    def recorded_noise(seeds, shape, device=None):
        assert tuple(shape) == (depth, 2) and len(seeds) == current["noise"].shape[0]
        return current["noise"].to(device)

    monkeypatch.setattr(task.mixup, "sample", recorded_mix)
    monkeypatch.setattr(umt.masking, "per_sample_uniform", recorded_noise)

    # ---- six steps of the loop's step function
    b = c["videos_per_step"] * c["num_sample"]
    index = torch.arange(c["videos_per_step"]).repeat_interleave(c["num_sample"])
    repeat = torch.arange(c["num_sample"]).repeat(c["videos_per_step"])
    for k in range(steps):
        epoch = k // c["steps_per_epoch"]
        current["mix"], current["noise"] = mix[k], noise[k]
        cur_lr = schedules.apply(optimizer, k)
        assert cur_lr == pytest.approx(float(io["lr"][k]), rel=1e-12, abs=1e-15)
        assert schedules.wd[k] == pytest.approx(float(io["wd"][k]), rel=1e-12)
        group_lr = sorted(g["lr"] for g in optimizer.param_groups)
        official_lr = sorted(set(io["group_lr"][k].tolist()))
        assert sorted(set(group_lr)) == pytest.approx(official_lr, rel=1e-12, abs=1e-15)
        batch = {
            "video": (io["videos_u8"][k].float() - 127.5) / 64.0,
            "label": io["labels"][k],
            "index": index,
            "repeat": repeat,
        }
        assert batch["video"].shape[0] == b
        out = loop_step(task, model, optimizer, batch, epoch, cfg.optim.clip_grad)
        want = float(io["loss"][k])
        assert abs(out["loss"] - want) <= 1e-5 * abs(want), (k, out["loss"], want)

    # ---- all weights after six steps
    final = load_file(str(FIXTURE / "final.safetensors"))
    state = model.state_dict()
    assert set(state) == set(final)
    moved = max(float((final[k] - initial[k]).abs().max()) for k in final)
    assert moved > 1e-3  # the official steps moved the weights well past the tolerance
    worst = max(float((state[k] - final[k]).abs().max()) for k in final)
    assert worst <= 1e-6, {
        k: float((state[k] - final[k]).abs().max())
        for k in final
        if float((state[k] - final[k]).abs().max()) > 1e-6
    }
