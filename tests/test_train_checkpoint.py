"""Checkpoints: no pickles, atomic folders, keep-last-N, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import amp_trace, eager_grad_scaler, tiny_config
from umt.train import checkpoint as ckpt
from umt.train import pretrain


def _toy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(2):
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_round_trip_restores_everything(tmp_path):
    import random

    model, opt = _toy()
    state = ckpt.TrainState(step=7, epoch=1, batch_in_epoch=3, scaler={"scale": 1024.0})
    random.seed(5)
    torch.manual_seed(5)
    path = ckpt.save_checkpoint(tmp_path, model, opt, state, "a: 1\n")
    assert path == tmp_path / "step_000007" and (path / ckpt.COMPLETE).is_file()
    expect_rand, expect_py = torch.rand(3), random.random()
    # Nothing pickled: tensors in safetensors, the rest JSON / YAML.
    for f in path.iterdir():
        assert f.suffix in (".safetensors", ".json", ".yaml", "")
    json.loads((path / "optimizer.json").read_text())
    assert load_file(str(path / "rng.safetensors"))["torch_cpu"].dtype == torch.uint8

    model2, opt2 = _toy()
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    opt2.state.clear()
    torch.manual_seed(99)
    random.seed(99)
    got = ckpt.load_training_checkpoint(path, model2, opt2)
    assert (got.step, got.epoch, got.batch_in_epoch, got.scaler) == (7, 1, 3, {"scale": 1024.0})
    for a, b in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    for k in sd1["state"]:
        for name, v in sd1["state"][k].items():
            torch.testing.assert_close(sd2["state"][k][name], v, rtol=0, atol=0)
    assert sd2["param_groups"][0]["betas"] == (0.9, 0.95)
    assert torch.equal(torch.rand(3), expect_rand) and random.random() == expect_py


def test_incomplete_folders_ignored_and_keep_last(tmp_path):
    model, opt = _toy()
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, model, opt, ckpt.TrainState(step=step), "", keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000003", "step_000004"]
    # A crash mid-write leaves a .tmp folder, or a folder without its marker: both ignored.
    (tmp_path / "step_000005.tmp").mkdir()
    (tmp_path / "step_000006").mkdir()
    assert ckpt.latest_checkpoint(tmp_path).name == "step_000004"
    assert ckpt.resolve_resume("auto", tmp_path).name == "step_000004"
    assert ckpt.resolve_resume(None, tmp_path) is None
    # --resume PATH: a checkpoint folder itself, or a run folder (its latest checkpoint).
    assert ckpt.resolve_resume(str(tmp_path / "step_000003"), "elsewhere").name == "step_000003"
    assert ckpt.resolve_resume(str(tmp_path), "elsewhere").name == "step_000004"
    with pytest.raises(FileNotFoundError):
        ckpt.resolve_resume(str(tmp_path / "step_000006"), "elsewhere")
    with pytest.raises(FileNotFoundError):
        ckpt.load_training_checkpoint(tmp_path / "step_000006", model)


def test_resume_gives_same_losses_as_uninterrupted(synthetic, tmp_path):
    straight = pretrain(tiny_config(synthetic, tmp_path / "a", "train.max_steps=6"))
    assert len(straight.losses) == 6
    first = pretrain(tiny_config(synthetic, tmp_path / "b", "train.max_steps=3"))
    # "Kill" after the step-3 checkpoint; a half-written later checkpoint must be ignored.
    (tmp_path / "b" / "checkpoints" / "step_000004.tmp").mkdir()
    second = pretrain(
        tiny_config(synthetic, tmp_path / "b", "train.max_steps=6", "train.resume=auto")
    )
    assert second.first_step == 3
    assert first.losses + second.losses == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000006" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    # metrics.jsonl holds each step once; the resolved config sits beside every checkpoint.
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "b" / "checkpoints" / "step_000006" / "config.yaml").is_file()


def test_fp16_resume_is_bit_identical_through_overflows(synthetic, tmp_path, monkeypatch):
    """fp16 autocast + grad scaler on CPU: 3 steps + resume + 3 equal 6 straight, bit for bit,
    with gradient overflows that skip steps on both sides of the stop (the scale at the stop
    is not the starting one: a resume without the saved scaler would differ)."""
    eager_grad_scaler(monkeypatch, init_scale=2.0**20)
    fp16 = ("train.precision=fp16",)
    lines: list[str] = []
    pretrain(tiny_config(synthetic, tmp_path / "a", *fp16, "train.max_steps=6"), echo=lines.append)
    assert any(ln.endswith("; device cpu; precision fp16 autocast + grad scaler") for ln in lines)
    straight = amp_trace(tmp_path / "a")
    skipped = [s[1] for s in straight]
    assert 1 in skipped[:3] and 1 in skipped[3:] and 0 in skipped  # overflows on both sides
    summary = f"fp16: {sum(skipped)} of 6 steps skipped on a gradient overflow; loss scale now"
    assert any(ln.startswith(summary) for ln in lines)
    pretrain(tiny_config(synthetic, tmp_path / "b", *fp16, "train.max_steps=3"))
    state = json.loads((tmp_path / "b" / "checkpoints" / "step_000003" / "state.json").read_text())
    assert state["scaler"]["scale"] == straight[3][0] != 2.0**20  # the scale step 4 used
    second = pretrain(
        tiny_config(synthetic, tmp_path / "b", *fp16, "train.max_steps=6", "train.resume=auto")
    )
    assert second.first_step == 3
    assert amp_trace(tmp_path / "b") == straight
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000006" / "model.safetensors"))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_non_finite_loss_stops_naming_step_and_checkpoint(synthetic, tmp_path):
    from umt.train.step import NonFiniteLossError

    cfg = tiny_config(
        synthetic,
        tmp_path / "nan",
        "optim.lr=1e30",
        "optim.warmup_lr=1e30",
        "optim.min_lr=1e30",
        "train.checkpoint_every=1",
        "train.max_steps=5",
    )
    with pytest.raises(NonFiniteLossError) as err:
        pretrain(cfg)
    msg = str(err.value)
    assert "at step" in msg and "step_00000" in msg
    last = ckpt.latest_checkpoint(tmp_path / "nan" / "checkpoints")
    assert last is not None and last.name in msg
