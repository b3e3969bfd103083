"""Six steps of the official stage-2 pretraining and of the official retrieval fine-tuning,
replayed by umt: every step's losses and the weights after the six steps.

The fixtures (``tests/fixtures/official_trajectories/{stage2,retrieval}/``) were made by
``make_video_text.py`` beside them, which runs the official training loops
(``tasks/pretrain.py``, ``tasks/retrieval.py``) on a tiny model on CPU in float32 and records every
random draw. Here umt runs the same six steps through its own code: the official file through
``load_checkpoint``, the task's parameter groups, the loop's optimizer and per-step schedule
(``build_optimizer``, ``build_schedules``, ``Schedules.apply``), the loop's ``train_step`` around
the task's ``loss`` (``VideoTextTask.loss`` -> ``VideoTextTrainModule``), with the recorded draws
fed through ``batch["draws"]`` (the semantic mask, the VTM hard negatives, the MLM masking). The
token ids are the official tokenizer's, fed as they are.

One deliberate difference: the official AdamW decays the temperature (a 0-dim parameter slips
past its "1-D or bias" rule, the spec's section J item 8); umt does not. The test checks the
temperature against the official value corrected by exactly that decay, and every other weight
as it is.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import loop_step
from umt.config import load_config
from umt.masking import num_kept_per_frame
from umt.models import load_checkpoint
from umt.models.video_text import UMTVideoText
from umt.train.distributed import DistInfo, wrap_model
from umt.train.loop import resolve_precision
from umt.train.optim import build_optimizer, build_schedules, scaled_lrs
from umt.train.tasks.base import RunContext
from umt.train.tasks.video_text import VideoTextTask, VideoTextTrainModule

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parent / "fixtures" / "official_trajectories"
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-6
# Weights whose gradient is exactly zero in exact arithmetic (the attention key biases: a
# softmax over the keys ignores a constant added to all of a query's scores). In float32 their
# gradient is rounding noise (~1e-11 here), which AdamW (eps 1e-8) turns into steps of up to
# lr x |g| / (|g| + eps), ~1e-6 over the six steps, differently in any two implementations.
# They are held to "stayed where they were, in both": within NOISE_ATOL of the start (the other
# weights move by ~3e-4).
NOISE_ATOL = 1e-5


def frames(u8: torch.Tensor, norm: dict) -> torch.Tensor:
    """The official model input from the stored uint8 frames ``[B, T, 3, H, W]`` (the float32
    operations of the generator), as umt takes it: ``[B, 3, T, H, W]``."""
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(3, 1, 1)
    return ((u8.to(torch.float32) / 255.0 - mean) / std).permute(0, 2, 1, 3, 4)


def official_names(model: torch.nn.Module, official: dict[str, torch.Tensor]) -> dict[str, str]:
    """umt parameter name -> the official name of the same tensor, found by value (every
    fixture weight was shaken by noise, so values identify tensors; the converter itself is
    not re-implemented here). Tied official tensors (the MLM decoder and the word embeddings)
    map to one umt parameter: the first official name is taken."""
    by_size: dict[int, list[str]] = {}
    for name, t in official.items():
        by_size.setdefault(t.numel(), []).append(name)
    out = {}
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        hits = [
            o for o in by_size.get(flat.numel(), []) if torch.equal(official[o].reshape(-1), flat)
        ]
        assert hits, f"umt parameter {name} matches no tensor of the official file"
        out[name] = sorted(hits)[0]
    return out


class Trajectory:
    """One fixture case, replayed by umt."""

    def __init__(self, case: str, overrides: list[str]):
        folder = ROOT / case
        if not (folder / "trajectory.json").is_file():
            pytest.skip(f"no trajectory fixture {folder}")
        self.meta = json.loads((folder / "trajectory.json").read_text())
        self.steps = load_file(str(folder / "steps.safetensors"))
        self.initial = load_file(str(folder / "initial.safetensors"))
        self.final = load_file(str(folder / "final.safetensors"))
        # The official runs were recorded in float32 on CPU (their fp16 off): so is the replay.
        self.cfg = load_config(self.meta["umt_recipe"], [*overrides, "train.precision=fp32"])
        info = DistInfo()
        amp, _ = resolve_precision(self.cfg, info.device)
        self.task = VideoTextTask(self.cfg, RunContext(info=info, amp_dtype=amp))
        self.net = load_checkpoint(
            folder / "initial.safetensors", part="video-text", **self.meta["umt_load"]
        )
        assert isinstance(self.net, UMTVideoText)
        self.names = official_names(self.net, self.initial)
        self.start = {k: v.detach().clone() for k, v in self.net.named_parameters()}

    def batch(self, i: int) -> dict:
        """Step ``i``'s micro-batch as the loop hands it to the task, with the recorded draws."""
        rec = self.meta["steps"][i]
        s = {k.split(".", 1)[1]: v for k, v in self.steps.items() if k.startswith(f"{i}.")}
        draws = {"neg_video": s["neg_video"], "neg_text": s["neg_text"]}
        for key in ("mask", "mlm_input_ids", "mlm_labels"):
            if key in s:
                draws[key] = s[key]
        return {
            "video": frames(s["frames_u8"], self.meta["frames_normalisation"]),
            "input_ids": s["input_ids"],
            "attention_mask": s["attention_mask"],
            "sample_ids": s["sample_ids"],
            "media": rec["media"],
            "index": [i * len(s["sample_ids"]) + j for j in range(len(s["sample_ids"]))],
            "draws": draws,
        }

    def exactly_zero_gradients(self) -> set[str]:
        """The trainable weights whose gradient at step 0 vanishes in float64 (< 1e-12 of the
        largest): the ones whose float32 gradient is rounding noise alone."""
        net = copy.deepcopy(self.net).double()
        module = VideoTextTrainModule(net, self.cfg, self.meta["special_token_ids"])
        batch = self.batch(0)
        batch["video"] = batch["video"].double()
        self.task.loss(module, batch, 0).backward()
        grads = {
            n: 0.0 if p.grad is None else float(p.grad.abs().max())
            for n, p in net.named_parameters()
            if p.requires_grad
        }
        top = max(grads.values())
        return {n for n, g in grads.items() if g < 1e-12 * top}

    def run(self, prepare=None) -> tuple[list[dict[str, float]], list[float]]:
        """The six steps as the loop takes them; returns each step's loss parts (with the total
        as ``loss``) and lr."""
        cfg, task = self.cfg, self.task
        if prepare is not None:
            prepare(self.net)
        self.noise_only = self.exactly_zero_gradients()
        module = VideoTextTrainModule(self.net, cfg, self.meta["special_token_ids"])
        model = wrap_model(module, cfg, task.ctx.info, task.ctx.amp_dtype)
        lr, _, _, _ = scaled_lrs(cfg, 1)
        optimizer = build_optimizer(task.param_groups(model), cfg, lr)
        names = {id(p): n for n, p in self.net.named_parameters()}
        self.decayed = {
            names[id(p)]: g["weight_decay"] > 0 for g in optimizer.param_groups for p in g["params"]
        }
        per_epoch = self.meta["steps_per_epoch"]
        schedules = build_schedules(cfg, per_epoch, 1)
        parts, lrs = [], []
        for i in range(len(self.meta["steps"])):
            batch = self.batch(i)
            epoch = i // per_epoch
            lrs.append(schedules.apply(optimizer, i))
            out = loop_step(task, model, optimizer, batch, epoch, cfg.optim.clip_grad)
            parts.append({**task.step_metrics(), "loss": out["loss"]})
        return parts, lrs

    def official_final(self, umt_name: str, rename=lambda n: n) -> torch.Tensor:
        return self.final[rename(self.names[umt_name])]

    def official_initial(self, umt_name: str) -> torch.Tensor:
        return self.initial[self.names[umt_name]]


def check_steps(traj: Trajectory, parts: list[dict], lrs: list[float], part_names: dict) -> float:
    """Each step's lr and loss parts against the official; returns the largest relative gap."""
    worst = 0.0
    for i, (rec, got, lr) in enumerate(zip(traj.meta["steps"], parts, lrs)):
        assert lr == pytest.approx(rec["lr"], rel=1e-12, abs=0), f"step {i}: lr"
        assert set(rec["losses"]) == set(part_names), f"step {i}: official parts {rec['losses']}"
        for off_name, umt_name in part_names.items():
            want, have = rec["losses"][off_name], got[umt_name]
            gap = abs(have - want) / abs(want)
            worst = max(worst, gap)
            assert gap < LOSS_RTOL, f"step {i} ({rec['media']}): {off_name} {have} vs {want}"
        gap = abs(got["loss"] - rec["loss"]) / abs(rec["loss"])
        worst = max(worst, gap)
        assert gap < LOSS_RTOL, f"step {i}: total {got['loss']} vs {rec['loss']}"
    return worst


def check_weights(traj: Trajectory, rename=lambda n: n) -> float:
    """Every trainable umt weight after the six steps against the official one (the temperature:
    see the module docstring; the weights of ``NOISE_ATOL``: see there); returns the largest
    absolute gap of the others."""
    noise = traj.noise_only
    assert noise and all(n.endswith(".k.bias") for n in noise), sorted(noise)
    worst = moved = 0.0
    for name, p in traj.net.named_parameters():
        if not p.requires_grad or name == "temp":  # temp: check_temperature
            continue
        want = traj.official_final(name, rename).reshape(p.shape)
        gap = float((p.detach() - want).abs().max())
        step = float((p.detach() - traj.start[name]).abs().max())
        if name in noise:
            official_step = (want - traj.official_initial(name).reshape(p.shape)).abs().max()
            assert max(step, float(official_step), gap) < NOISE_ATOL, (name, step, gap)
            continue
        worst, moved = max(worst, gap), max(moved, step)
        assert gap < WEIGHT_ATOL, f"{name} ({traj.names[name]}): {gap:.3g} from the official"
    assert moved > 100 * WEIGHT_ATOL, f"the six steps moved the weights by only {moved}"
    return worst


def check_param_groups(traj: Trajectory, rename=lambda n: n, frozen: str = "") -> None:
    """umt trains the official set of weights, with weight decay on the same ones except the
    temperature (the deliberate difference). ``frozen``: the prefix of official weights that
    are in the official optimizer but never get a gradient (the teacher)."""
    groups = traj.meta["official_param_groups"]
    official = {n: True for n in groups["decay"]} | {n: False for n in groups["no_decay"]}
    official = {n: d for n, d in official.items() if not (frozen and n.startswith(frozen))}
    umt = {rename(traj.names[n]): d for n, d in traj.decayed.items()}
    assert set(umt) == set(official)
    differ = {n for n in umt if umt[n] != official[n]}
    assert differ == {"temp"} and official["temp"] and not umt["temp"]


def check_temperature(traj: Trajectory, lrs: list[float], rename=lambda n: n) -> None:
    """umt's temperature = the official one without the official weight decay: AdamW multiplies
    the weight by (1 - lr x wd) before each update, so over the steps the two differ by
    sum_s lr_s x wd x temp_s (to first order; the decay's effect on the losses is far below)."""
    wd = traj.meta["optimizer"]["weight_decay"]
    assert "temp" in traj.meta["official_param_groups"]["decay"]  # the official code decays it
    have = float(traj.net.temp.detach())
    official = float(traj.official_final("temp", rename))
    decay = sum(lr * wd * have for lr in lrs)  # ~5.6e-7 here; float32 spacing at 0.07: 7.5e-9
    assert decay > 5e-7
    assert abs((official + decay) - have) < 1e-7, (have, official, decay)


def _check_recipe(cfg, meta: dict) -> dict:
    """umt's recipe is the official one: optimizer, schedule and loss weights. Returns the
    official criterion settings."""
    off_opt, off_sched, crit = meta["optimizer"], meta["scheduler"], meta["criterion"]
    assert (cfg.optim.lr, cfg.optim.weight_decay, list(cfg.optim.betas)) == (
        off_opt["lr"],
        off_opt["weight_decay"],
        off_opt["opt_betas"],
    )
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs, cfg.schedule.lr_floor) == (
        off_sched["epochs"],
        off_sched["warmup_epochs"],
        off_sched["min_lr_multi"],
    )
    w = crit["loss_weight"]
    assert (cfg.loss.uma, cfg.loss.vtc, cfg.loss.vtm, cfg.loss.mlm) == (
        w["uta"],
        w["vtc"],
        w["vtm"],
        w["mlm"],
    )
    return crit


def test_stage2_six_steps_equal_the_official():
    """Stage 2 (``tasks/pretrain.py``, recipe ``exp/pretraining/b16_25m.py``): UMA, VTC, VTM
    with hard negatives and MLM, video and image batches in the MetaLoader's order."""
    traj = Trajectory(
        "stage2", ["schedule.steps_per_epoch=3", "teacher.img_size=32", "train.batch_size=4"]
    )
    cfg, meta = traj.cfg, traj.meta
    # umt's recipe is the official one
    assert cfg.task == "stage2"
    crit = _check_recipe(cfg, meta)
    assert cfg.schedule.kind == "cosine_floor" and cfg.optim.clip_grad is None
    assert cfg.loss.mlm_prob == crit["mlm_masking_prob"]
    assert cfg.loss.vtm_hard_negatives == crit["vtm_hard_neg"]
    vis = meta["model"]["vision_encoder"]
    assert (cfg.mask.video_ratio, cfg.mask.image_ratio) == (
        vis["video_mask_ratio"],
        vis["image_mask_ratio"],
    )
    assert traj.net.teacher is not None and traj.net.text_encoder.mlm_head is not None
    assert {s["media"] for s in meta["steps"]} == {"image", "video"}

    # the recorded draws: the teacher's class-token attention is umt's, the semantic mask
    # keeps umt's number of tokens per frame, the MLM masking spares [PAD] and [CLS]
    hw = (vis["img_size"] // vis["patch_size"]) ** 2
    special = meta["special_token_ids"]
    for i, rec in enumerate(meta["steps"]):
        u8 = traj.steps[f"{i}.frames_u8"]
        video = frames(u8, meta["frames_normalisation"])
        got = {}

        def keep_recorded(cls_attn, _i=i, _got=got):
            _got["attn"] = cls_attn
            return traj.steps[f"{_i}.mask"]

        with torch.no_grad():
            traj.net.teacher.forward_masked(video, keep_recorded)
        want = traj.steps[f"{i}.teacher_cls_attn"].reshape(got["attn"].shape)
        torch.testing.assert_close(got["attn"], want, rtol=1e-5, atol=1e-6)
        ratio = cfg.mask.image_ratio if rec["media"] == "image" else cfg.mask.video_ratio
        mask = traj.steps[f"{i}.mask"].reshape(u8.shape[0], u8.shape[1], hw)
        assert bool(((~mask).sum(-1) == num_kept_per_frame(hw, ratio)).all())
        ids, labels = traj.steps[f"{i}.input_ids"], traj.steps[f"{i}.mlm_labels"]
        spared = (ids == special["pad"]) | (ids == special["cls"])
        assert bool((labels[spared] == -100).all()) and bool((labels != -100).any())

    parts, lrs = traj.run(prepare=lambda net: _grad_checkpointing(net, cfg))
    check_steps(traj, parts, lrs, {"uta": "uma", "vtc": "vtc", "vtm": "vtm", "mlm": "mlm"})
    check_param_groups(traj, frozen="clip_teacher.")
    check_weights(traj)
    check_temperature(traj, lrs)
    # the frozen teacher did not move (nor does the official one: no gradient reaches it)
    assert meta["teacher_unchanged"] is True
    for name, p in traj.net.teacher.named_parameters():
        assert torch.equal(p, traj.start[f"teacher.{name}"])


def test_retrieval_fine_tuning_six_steps_equal_the_official():
    """Retrieval fine-tuning (``tasks/retrieval.py``, recipe
    ``exp/finetuning/ret_ssv2_tpl/b16_5m.py``): VTC and VTM with hard negatives on per-frame
    features, from an official stage-2 file (teacher, alignment heads and MLM head dropped)."""
    traj = Trajectory("retrieval", ["schedule.steps_per_epoch=3", "train.batch_size=4"])
    cfg, meta = traj.cfg, traj.meta
    assert cfg.task == "finetune-retrieval"
    crit = _check_recipe(cfg, meta)
    assert cfg.loss.vtm_hard_negatives == crit["vtm_hard_neg"]
    # what the fine-tuning task does with a stage-2 file (VideoTextTask._load_video_text)
    traj.net.drop_pretraining_parts()
    assert traj.net.teacher is None and traj.net.text_encoder.mlm_head is None

    # the official fine-tuning renames text_encoder.bert.X -> text_encoder.X
    def rename(name: str) -> str:
        return name.replace("text_encoder.bert.", "text_encoder.")

    parts, lrs = traj.run(prepare=lambda net: _grad_checkpointing(net, cfg))
    check_steps(traj, parts, lrs, {"vtc": "vtc", "vtm": "vtm"})
    assert not any("uma" in got or "mlm" in got for got in parts)
    check_param_groups(traj, rename)
    check_weights(traj, rename)
    check_temperature(traj, lrs, rename)


def _grad_checkpointing(net: UMTVideoText, cfg) -> None:
    """The recipe's recomputation settings, as ``VideoTextTask.build_model`` applies them."""
    if cfg.model.grad_checkpointing:
        net.vision_encoder.set_grad_checkpointing(cfg.model.grad_checkpointing)
    if cfg.text.grad_checkpointing:
        net.text_encoder.set_grad_checkpointing(True)
