"""Classification fine-tuning: the model and its initialisation from every checkpoint kind, the
optimizer groups, the loop's validation / best checkpoint / final test, resume, 2 processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import umt
from official_fixtures import load_case
from train_helpers import TINY_FT as TINY_FT_BASE
from train_helpers import TORCHRUN_2, amp_trace, eager_grad_scaler, home_with_set, run_cli
from umt.config import ConfigError, load_config
from umt.models.video_vit import read_student_weights
from umt.train import finetune
from umt.train.tasks.classify import build_classifier, load_init_weights

TINY_FT = [
    *TINY_FT_BASE,
    "schedule.epochs=2",
    "schedule.steps_per_epoch=3",
    "eval.test_views=2x2",
]


def ft_config(synthetic: Path, out: Path, *extra: str):
    return load_config(
        None,
        [*TINY_FT, f"data.synthetic_root={synthetic}", f"train.output_dir={out}", *extra],
        task="finetune",
    )


def ft_args(synthetic: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY_FT, f"data.synthetic_root={synthetic}", f"train.output_dir={out}", *extra]


# --------------------------------------------------------------------------- the model
def test_classifier_is_the_official_fine_tuning_model():
    cfg = load_config(None, [*TINY_FT, "model.init=scratch"], task="finetune")
    model = build_classifier(cfg)
    assert model.num_classes == 12 and isinstance(model.norm, torch.nn.Identity)
    assert model.fc_norm is not None and not isinstance(model.pos_embed, torch.nn.Parameter)
    # The head starts at trunc_normal(0.02) x 0.001; the other Linears at std 0.02.
    assert float(model.head.weight.detach().std()) == pytest.approx(2e-5, rel=0.2)
    assert float(model.blocks[0].mlp.fc1.weight.detach().std()) == pytest.approx(0.02, rel=0.1)
    # The fixed table is the 8 x 14 x 14 sin-cos table interpolated to this layout.
    from umt.models.layers import interpolate_pos_table, sincos_table

    want = interpolate_pos_table(sincos_table(8 * 14 * 14, 64), (8, 14, 14), model.grid)
    torch.testing.assert_close(model.pos_embed, want)


def _moving_squares(n: int, g: torch.Generator, shuffle_frames: bool) -> tuple:
    """``n`` black clips ``[n, 3, 4, 32, 32]``, each with a 12 px white square that moves 12 px
    left (label 0) or right (1) over its 4 frames. Left starts at x 12-20, right at 0-8: as
    sets of places the two are alike, so only the frames' order tells them apart."""
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.zeros(n, 3, 4, 32, 32)
    for i in range(n):
        top = int(torch.randint(0, 21, (1,), generator=g))
        start = int(torch.randint(0, 9, (1,), generator=g)) + (0 if y[i] else 12)
        order = torch.randperm(4, generator=g) if shuffle_frames else torch.arange(4)
        for t in range(4):
            left = start + (4 * t if y[i] else -4 * t)
            x[i, :, int(order[t]), top : top + 12, left : left + 12] = 1.0
    return x, y


@pytest.mark.parametrize("shuffle_frames", [False, True])
def test_the_classifier_learns_which_way_a_square_moves_from_the_frame_order(shuffle_frames):
    """The official fine-tuning model (mean over the tokens, fc_norm, a head scaled by 0.001)
    learns a motion's direction, which needs attention across frames and the time positions:
    in 300 steps of 32 fresh clips it is right on >= 95% of 256 others. With each clip's frames
    in a random order (the same places, the direction gone) it stays near chance: the task
    cannot be solved from one frame or from the set of places. (Small actors take far longer:
    see the README on motion in the built-in world.)"""
    cfg = load_config(
        None,
        [
            *TINY_FT, "model.init=scratch", "model.num_classes=2", "model.patch_size=8",
            "model.drop_path_rate=0", "data.num_frames=4", "data.input_size=32",
        ],
        task="finetune",
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_classifier(cfg)
    assert model.grid == (4, 4, 4)
    g = torch.Generator().manual_seed(1)
    val_x, val_y = _moving_squares(256, g, shuffle_frames)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(300):
        x, y = _moving_squares(32, g, shuffle_frames)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(val_x).argmax(1) == val_y).float().mean().item()
    if shuffle_frames:
        assert acc < 0.65, acc
    else:
        assert acc >= 0.95, acc


@pytest.mark.parity
def test_init_from_an_official_fine_tuned_file_computes_its_logits(official_root):
    """Continuing an official fine-tuned classifier: encoder, head and its (detached) position
    table come in, and the model gives the official logits."""
    c, io = load_case(official_root, "finetune_learnedpos")
    root = official_root / "finetune_learnedpos"
    cfg = load_config(
        None,
        [
            f"model.embed_dim={c['embed_dim']}",
            f"model.depth={c['depth']}",
            f"model.num_heads={c['num_heads']}",
            f"model.patch_size={c['patch_size']}",
            f"model.num_classes={c['num_classes']}",
            f"data.num_frames={c['all_frames']}",
            f"data.input_size={c['img_size']}",
            "model.init=scratch",
        ],
        task="finetune",
    )
    weights, kind = read_student_weights(str(root / "model.pth"))
    assert kind == "umt-finetune" and "pos_embed" in weights
    model = build_classifier(cfg, table_from_checkpoint=True)
    notes = load_init_weights(model, weights, str(root / "model.pth"))
    assert "head kept" in notes
    assert not model.pos_embed.requires_grad  # the official model never trains it
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(io["video"]), io["logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parity
def test_init_from_an_official_stage1_file_takes_the_encoder(official_root):
    c = load_case(official_root, "stage1")[0]["student"]
    root = official_root / "stage1"
    cfg = load_config(
        None,
        [
            f"model.embed_dim={c['encoder_embed_dim']}",
            f"model.depth={c['encoder_depth']}",
            f"model.num_heads={c['encoder_num_heads']}",
            f"model.patch_size={c['patch_size']}",
            f"data.num_frames={c['num_frames']}",
            f"data.input_size={c['img_size']}",
            "model.init=scratch",
        ],
        task="finetune",
    )
    weights, kind = read_student_weights(str(root / "student.pth"))
    assert kind == "umt-pretrain" and not any(k.startswith("align_heads") for k in weights)
    model = build_classifier(cfg)
    head = model.head.weight.clone()
    notes = load_init_weights(model, weights, str(root / "student.pth"))
    assert any("new head" in n for n in notes)
    torch.testing.assert_close(model.head.weight, head)  # the fresh head stays
    official = torch.load(root / "student.pth", weights_only=True)["model"]
    torch.testing.assert_close(
        model.blocks[1].attn.qkv.weight, official["encoder.blocks.1.attn.qkv.weight"]
    )


def _saved_classifier(tmp_path: Path, num_classes: int) -> Path:
    net = umt.VideoViT(
        img_size=48, patch_size=16, num_frames=2, embed_dim=64, depth=2, num_heads=2,
        num_classes=num_classes, final_norm=False,
    )  # fmt: skip
    out = tmp_path / f"clf{num_classes}"
    umt.save_pretrained(net, out)
    return out


def test_k710_head_rows_for_k400_and_a_map_file_for_k600(tmp_path):
    src = _saved_classifier(tmp_path, 710)
    head = load_file(str(src / "model.safetensors"))["head.weight"]
    weights, _ = read_student_weights(str(src))

    def model_for(n):
        return build_classifier(
            load_config(None, [*TINY_FT, f"model.num_classes={n}"], task="finetune")
        )

    k400 = model_for(400)
    notes = load_init_weights(k400, weights, str(src))
    assert any("first 400 rows" in n for n in notes)
    torch.testing.assert_close(k400.head.weight, head[:400])
    with pytest.raises(ValueError, match=r"label_mixto600.json.*model.init_label_map"):
        load_init_weights(model_for(600), weights, str(src))
    rows = list(range(709, 109, -1))  # any 600 rows, in any order
    (tmp_path / "map.json").write_text(json.dumps(rows))
    k600 = model_for(600)
    load_init_weights(k600, weights, str(src), str(tmp_path / "map.json"))
    torch.testing.assert_close(k600.head.weight, head[rows])
    (tmp_path / "bad.json").write_text(json.dumps([0, 1]))
    with pytest.raises(ValueError, match="maps 2 classes"):
        load_init_weights(model_for(600), weights, str(src), str(tmp_path / "bad.json"))


def test_an_encoder_of_another_size_is_refused(tmp_path):
    src = _saved_classifier(tmp_path, 12)
    weights, _ = read_student_weights(str(src))
    cfg = load_config(None, [*TINY_FT, "model.embed_dim=96", "model.num_heads=2"], task="finetune")
    with pytest.raises(ValueError, match=r"embed_dim 64 \(here 96\)"):
        load_init_weights(build_classifier(cfg), weights, str(src))


def test_real_recipes_need_an_init_checkpoint_and_task_matches_command():
    from umt.train.distributed import DistInfo
    from umt.train.tasks.base import RunContext
    from umt.train.tasks.classify import ClassifyTask

    cfg = load_config("umt-b16-k400-ft")
    with pytest.raises(ConfigError, match="model.init"):
        ClassifyTask(cfg, RunContext(DistInfo())).check()
    with pytest.raises(ConfigError, match="umt pretrain"):
        load_config("umt-b16-k710", task="finetune")
    with pytest.raises(ConfigError, match="umt finetune"):
        load_config("umt-b16-k400-ft", task="pretrain")


def test_b16_k400_recipe_matches_the_official_script():
    from umt.train.optim import scaled_lrs

    c = load_config("umt-b16-k400-ft")
    assert (c.model.name, c.model.num_classes, c.data.num_frames, c.data.input_size) == (
        "umt-b16", 400, 8, 224,
    )  # fmt: skip
    assert (c.data.sampling, c.data.clips_per_video, c.train.batch_size) == ("sparse", 2, 16)
    assert (c.schedule.epochs, c.schedule.warmup_epochs) == (5, 1)
    assert c.optim.betas == [0.9, 0.999] and c.optim.weight_decay == 0.05
    assert c.optim.layer_decay == 0.75 and c.model.drop_path_rate == 0.1
    assert c.eval.test_views == "4x3" and c.train.precision == "fp16"
    lr, min_lr, warmup_lr, clips = scaled_lrs(c, world_size=16)
    assert clips == 16 * 16 * 2 and lr == pytest.approx(4e-5)
    assert min_lr == pytest.approx(2e-6) and warmup_lr == pytest.approx(2e-6)
    a = c.augment
    assert (a.mixup, a.cutmix, a.smoothing, a.erase_prob) == (0.8, 1.0, 0.1, 0.25)
    assert a.rand_augment == "rand-m7-n4-mstd0.5-inc1"
    ssv2 = load_config("umt-b16-ssv2-ft")
    assert (ssv2.model.num_classes, ssv2.data.flip, ssv2.eval.test_views) == (174, False, "2x3")
    l16 = load_config("umt-l16-k400-ft-f16")
    assert (l16.data.num_frames, l16.train.batch_size, l16.eval.test_views) == (16, 8, "4x1")
    assert l16.optim.layer_decay == 0.85 and l16.model.drop_path_rate == 0.2


# --------------------------------------------------------------------------- runs
def test_tiny_finetune_validates_keeps_the_best_and_tests(synthetic, tmp_path):
    out = tmp_path / "ft"
    lines: list[str] = []
    res = finetune(ft_config(synthetic, out, "model.init=scratch"), echo=lines.append)
    assert len(res.losses) == 6
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in recs if "val_top1" in r]
    assert [r["epoch"] for r in vals] == [0, 1] and all(r["val_videos"] == 60 for r in vals)
    best = json.loads((out / "best" / "info.json").read_text())
    assert best["value"] == max(r["val_top1"] for r in vals)
    clf = umt.load_checkpoint(out / "best")
    assert clf.num_classes == 12
    test = json.loads((out / "test" / "results.json").read_text())
    assert test["videos"] == 60 and test["views"] == 4
    preds = (out / "test" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == 60
    assert any(ln.startswith("test (2x2 views, the best-validation weights") for ln in lines)


def test_finetune_without_validation_tests_the_last_weights(synthetic, tmp_path):
    """eval.every_epochs=0: no validation pass, no best weights, and the test still runs on the
    last weights; with eval.test_best left on it is refused before any work."""
    out = tmp_path / "ft"
    lines: list[str] = []
    cfg = ft_config(synthetic, out, "model.init=scratch", "eval.every_epochs=0",
                    "eval.test_best=false")  # fmt: skip
    res = finetune(cfg, echo=lines.append)
    assert len(res.losses) == 6
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert not [r for r in recs if "val_top1" in r]
    assert not (out / "best" / "model.safetensors").exists()
    test = json.loads((out / "test" / "results.json").read_text())
    assert test["videos"] == 60
    assert any(ln.startswith("test (2x2 views, the last weights") for ln in lines)
    with pytest.raises(ConfigError, match="eval.test_best=false"):
        ft_config(synthetic, tmp_path / "x", "eval.every_epochs=0")


def test_finetune_from_own_pretraining_run_and_resume_equals_straight(synthetic, tmp_path):
    """--init auto takes the latest `umt pretrain` run; 3 steps + resume + 3 equal 6 straight
    (with EMA of the weights and repeated augmentation on)."""
    from train_helpers import tiny_config
    from umt.train import pretrain

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        pre = tiny_config(synthetic, tmp_path / "x", "train.max_steps=1", "data.input_size=48")
        pre.train.output_dir = None
        pretrain(pre)
        extra = (
            "model.init=auto", "data.clips_per_video=2", "train.ema_decay=0.9",
            "schedule.epochs=1", "schedule.steps_per_epoch=6", "model.drop_path_rate=0.2",
        )  # fmt: skip
        lines: list[str] = []
        straight = finetune(ft_config(synthetic, tmp_path / "a", *extra), echo=lines.append)
        assert any("latest 'umt pretrain' run" in ln for ln in lines)
        finetune(ft_config(synthetic, tmp_path / "b", *extra, "train.max_steps=3"))
        second = finetune(ft_config(synthetic, tmp_path / "b", *extra, "train.resume=auto"))
    finally:
        os.chdir(cwd)
    assert second.first_step == 3
    first = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    losses_b = [r["loss"] for r in first if "loss" in r]
    assert losses_b == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000006" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000006" / name))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_finetune_fp16_resume_equals_straight(synthetic, tmp_path, monkeypatch):
    """fp16 autocast + grad scaler on CPU: 3 steps + resume + 3 equal 6 straight, bit for bit
    (weights and their EMA), with overflows that skip steps and a scale at the stop that is
    not the starting one."""
    eager_grad_scaler(monkeypatch, init_scale=2.0**14)
    extra = (
        "model.init=scratch", "data.clips_per_video=2", "train.ema_decay=0.9",
        "schedule.epochs=1", "schedule.steps_per_epoch=6", "model.drop_path_rate=0.2",
        "train.precision=fp16",
    )  # fmt: skip
    finetune(ft_config(synthetic, tmp_path / "a", *extra))
    straight = amp_trace(tmp_path / "a")
    assert len(straight) == 6 and 1 in [s[1] for s in straight]
    finetune(ft_config(synthetic, tmp_path / "b", *extra, "train.max_steps=3"))
    second = finetune(ft_config(synthetic, tmp_path / "b", *extra, "train.resume=auto"))
    assert second.first_step == 3 and straight[3][0] != 2.0**14
    assert amp_trace(tmp_path / "b") == straight
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000006" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000006" / name))
        assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_double_batch(synthetic, tmp_path):
    """Every draw of a sample (frames, crop, erasing, drop path) comes from its own seed, so two
    processes with batch 2 train the same model as one with batch 4 (mixup pairs samples
    within each process's batch, as the official code: off here)."""
    common = [
        "finetune", "model.init=scratch", "train.max_steps=3", "dist.backend=gloo",
        "train.device=cpu", "augment.mixup=0", "augment.cutmix=0", "augment.erase_prob=0.5",
        "model.drop_path_rate=0.2", "data.clips_per_video=2", "eval.every_epochs=100",
    ]  # fmt: skip
    one = run_cli([*common, *ft_args(synthetic, tmp_path / "one", "train.batch_size=4")], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_cli(
        [*common, *ft_args(synthetic, tmp_path / "two", "train.batch_size=2")],
        tmp_path,
        launcher=TORCHRUN_2,
    )
    assert two.returncode == 0, two.stderr[-3000:]

    def read(out):
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in recs if "loss" in r], load_file(
            str(out / "checkpoints" / "step_000003" / "model.safetensors")
        )

    l1, w1 = read(tmp_path / "one")
    l2, w2 = read(tmp_path / "two")
    assert len(l1) == 3 and l2 == pytest.approx(l1, rel=1e-5, abs=1e-6)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=5e-5)
    # Both ran the final multi-view test over all 60 videos, once.
    assert json.loads((tmp_path / "two" / "test" / "results.json").read_text())["videos"] == 60


@pytest.mark.slow
def test_default_finetune_command_starts_from_scratch_and_tests(synthetic, tmp_path):
    """`umt finetune` with no recipe: the built-in one, no pretraining run in this folder (so
    from scratch, and it says so), ending with the multi-view test on the synthetic test split.
    (That it learns, from the default pretraining and from scratch, is the heavy
    tests/test_default_run.py::test_default_finetune_from_the_default_pretraining_beats_scratch.)"""
    home = home_with_set(tmp_path / "home", synthetic)
    env_home = os.environ.get("UMT_HOME")
    os.environ["UMT_HOME"] = str(home)
    try:
        res = run_cli(["finetune", "train.max_steps=2"], tmp_path, timeout=600)
    finally:
        if env_home is None:
            del os.environ["UMT_HOME"]
        else:
            os.environ["UMT_HOME"] = env_home
    assert res.returncode == 0, res.stderr[-3000:]
    assert "from scratch: no 'umt pretrain' run of umt-tiny-synthetic" in res.stdout
    (run,) = (tmp_path / "runs").iterdir()
    test = json.loads((run / "test" / "results.json").read_text())
    assert test["videos"] == 60 and test["views"] == 6  # the test split, 2 clips x 3 crops
    assert f"top-1 {test['top1']:.2f}%" in res.stdout


@pytest.mark.parity
def test_init_from_an_official_stage2_file_takes_its_vision_encoder(official_root):
    c = load_case(official_root, "multimodal")[0]["vision_encoder"]
    path = official_root / "multimodal" / "model.pth"
    weights, kind = read_student_weights(str(path))
    assert kind == "umt-multimodal"
    cfg = load_config(
        None,
        [
            f"model.embed_dim={c['encoder_embed_dim']}",
            f"model.depth={c['encoder_depth']}",
            f"model.num_heads={c['encoder_num_heads']}",
            f"model.patch_size={c['patch_size']}",
            f"data.num_frames={c['num_frames']}",
            f"data.input_size={c['img_size']}",
            "model.init=scratch",
        ],
        task="finetune",
    )
    model = build_classifier(cfg)
    load_init_weights(model, weights, str(path))
    official = torch.load(path, weights_only=True)["model"]
    torch.testing.assert_close(
        model.blocks[0].mlp.fc2.weight, official["vision_encoder.encoder.blocks.0.mlp.fc2.weight"]
    )
