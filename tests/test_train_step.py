"""The training step: teacher without gradients, semantic mask, UMA loss, AdamW."""

from __future__ import annotations

import copy

import pytest
import torch

from train_helpers import STAGE1, TINY
from umt.config import load_config
from umt.train.optim import build_optimizer
from umt.train.step import NonFiniteLossError, train_step
from umt.train.tasks.common import renormalize, teacher_input
from umt.train.tasks.stage1 import (
    AlignedStudent,
    StepConfig,
    build_student,
    build_teacher,
    compute_loss,
    uma_loss_fn,
)


def _models(*extra):
    cfg = load_config(None, [*TINY, *STAGE1, *extra])
    teacher, _ = build_teacher(cfg)
    student = AlignedStudent(build_student(cfg, teacher.output_dim))
    return cfg, student, teacher


def _batch(b, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.data.input_size
    return torch.randn(b, 3, cfg.data.num_frames, s, s, generator=g), list(range(seed, seed + b))


def test_loss_falls_and_teacher_untouched():
    cfg, student, teacher = _models()
    t_before = copy.deepcopy(teacher.state_dict())
    opt = build_optimizer(student, cfg, lr=2e-3)
    video, seeds = _batch(4, cfg)
    losses = [
        train_step(student, opt, [(video, seeds)], uma_loss_fn(teacher, StepConfig()))["loss"]
        for _ in range(8)
    ]
    assert losses[-1] < losses[0] - 0.01
    assert 0.0 <= min(losses) and max(losses) <= 4.0  # 2 - 2cos of unit vectors
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, t_before[k], rtol=0, atol=0)


def test_loss_depends_only_on_kept_tokens_of_semantic_mask():
    cfg, student, teacher = _models()
    video, seeds = _batch(2, cfg)
    a = compute_loss(student, teacher, video, seeds, StepConfig(mask_ratio=0.5))
    b = compute_loss(student, teacher, video, seeds, StepConfig(mask_ratio=0.5))
    c = compute_loss(student, teacher, video, [s + 100 for s in seeds], StepConfig(mask_ratio=0.5))
    assert a.item() == b.item()  # same seeds, same mask
    assert a.item() != c.item()  # other seeds, other mask
    # A sample's loss does not depend on the batch it is in (per-sample seeds).
    one = compute_loss(student, teacher, video[:1], seeds[:1], StepConfig(mask_ratio=0.5))
    two = compute_loss(student, teacher, video[1:], seeds[1:], StepConfig(mask_ratio=0.5))
    torch.testing.assert_close((one + two) / 2, a, rtol=1e-5, atol=1e-6)


def test_accumulation_equals_big_batch():
    cfg, student, teacher = _models()
    student2 = copy.deepcopy(student)
    opt1 = build_optimizer(student, cfg, lr=1e-3)
    opt2 = build_optimizer(student2, cfg, lr=1e-3)
    video, seeds = _batch(4, cfg)
    out1 = train_step(student, opt1, [(video, seeds)], uma_loss_fn(teacher, StepConfig()))
    micro = [(video[:2], seeds[:2]), (video[2:], seeds[2:])]
    out2 = train_step(student2, opt2, micro, uma_loss_fn(teacher, StepConfig()))
    assert out1["loss"] == pytest.approx(out2["loss"], rel=1e-5)
    # Adam's first update is ~lr * sign(grad): allow float noise on near-zero gradients.
    for p1, p2 in zip(student.parameters(), student2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=5e-5)


def test_grad_clipping_reports_norm():
    cfg, student, teacher = _models()
    opt = build_optimizer(student, cfg, lr=1e-3)
    out = train_step(
        student, opt, [_batch(2, cfg)], uma_loss_fn(teacher, StepConfig()), clip_grad=1e-3
    )
    assert out["grad_norm"] > 1e-3  # the norm before clipping


def test_non_finite_loss_raises_before_update():
    cfg, student, teacher = _models()
    opt = build_optimizer(student, cfg, lr=1e-3)
    before = copy.deepcopy(student.state_dict())
    video, seeds = _batch(2, cfg)
    video[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError):
        train_step(student, opt, [(video, seeds)], uma_loss_fn(teacher, StepConfig()))
    for k, v in student.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_grad_checkpointing_same_gradients():
    cfg, student, teacher = _models()
    _, student_ckpt, _ = _models("model.grad_checkpointing=2")
    student_ckpt.load_state_dict(student.state_dict())
    video, seeds = _batch(2, cfg)
    for s in (student, student_ckpt):
        compute_loss(s, teacher, video, seeds, StepConfig()).backward()
    for p1, p2 in zip(student.parameters(), student_ckpt.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-7)


def test_drop_path_draws_are_per_sample_and_survive_recomputation():
    """With drop path on, a sample's loss depends on its own seed only (not on the rest of the
    batch), the branches really are dropped, and grad checkpointing recomputes the same draws."""
    cfg, student, teacher = _models("model.drop_path_rate=0.5")
    video, seeds = _batch(4, cfg)
    sc = StepConfig()
    student.train()
    whole = [
        compute_loss(student, teacher, video[i : i + 1], seeds[i : i + 1], sc) for i in range(4)
    ]
    halves = [compute_loss(student, teacher, video[:2], seeds[:2], sc)]
    torch.testing.assert_close(halves[0], (whole[0] + whole[1]) / 2)
    again = compute_loss(student, teacher, video, seeds, sc)
    torch.testing.assert_close(again, sum(whole) / 4)
    torch.testing.assert_close(compute_loss(student, teacher, video, seeds, sc), again)
    student.eval()  # no drop path: another loss
    assert not torch.allclose(compute_loss(student, teacher, video, seeds, sc), again)
    student.train()
    _, ckpt, _ = _models("model.drop_path_rate=0.5", "model.grad_checkpointing=2")
    ckpt.load_state_dict(student.state_dict())
    ckpt.train()
    for s in (student, ckpt):
        s.zero_grad()
        compute_loss(s, teacher, video, seeds, sc).backward()
    for p1, p2 in zip(student.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-7)


def test_teacher_renormalisation_and_resize():
    x = torch.randn(2, 3, 2, 32, 32)
    back = renormalize(renormalize(x, "imagenet", "clip"), "clip", "imagenet")
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)
    assert renormalize(x, "imagenet", "imagenet") is x
    y = teacher_input(x, 28, "imagenet", "clip")
    assert y.shape == (2, 3, 2, 28, 28)
    # Same pixels whichever normalisation the data uses.
    from umt.data.transforms.video import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

    pix = torch.rand(1, 3, 1, 4, 4)
    inet = (pix - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(1, 3, 1, 1, 1)
    clip = (pix - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(CLIP_STD).view(
        1, 3, 1, 1, 1
    )
    torch.testing.assert_close(renormalize(inet, "imagenet", "clip"), clip, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_step_on_cpu():
    cfg, student, teacher = _models()
    opt = build_optimizer(student, cfg, lr=1e-3)
    out = train_step(
        student, opt, [_batch(2, cfg)], uma_loss_fn(teacher, StepConfig()), amp_dtype=torch.bfloat16
    )
    assert 0.0 <= out["loss"] <= 4.0
    assert all(p.dtype == torch.float32 for p in student.parameters())


def test_teacher_and_student_token_grids_must_match():
    from umt.models import CLIPTeacher, VideoViT
    from umt.train.tasks.stage1 import check_token_grids

    student = VideoViT(
        img_size=112, patch_size=16, num_frames=4, embed_dim=32, depth=1, num_heads=2
    )
    ok = CLIPTeacher(
        img_size=56, patch_size=8, width=32, layers=1, heads=2, output_dim=16, return_layers=1
    )
    check_token_grids(student, ok)  # 7x7 both
    wrong = CLIPTeacher(
        img_size=112, patch_size=8, width=32, layers=1, heads=2, output_dim=16, return_layers=1
    )
    with pytest.raises(ValueError, match="set teacher.img_size to 56"):
        check_token_grids(student, wrong)
    tube = VideoViT(
        img_size=112,
        patch_size=16,
        num_frames=4,
        tubelet_size=2,
        embed_dim=32,
        depth=1,
        num_heads=2,
    )
    with pytest.raises(ValueError, match="tubelet"):
        check_token_grids(tube, ok)


# --------------------------------------------------------------------------- fp16 + grad scaler
def _fp16_step(student, opt, batch, teacher, scaler, clip_grad=None):
    return train_step(
        student,
        opt,
        [batch],
        uma_loss_fn(teacher, StepConfig()),
        clip_grad=clip_grad,
        scaler=scaler,
        amp_dtype=torch.float16,
    )


@pytest.mark.parametrize("fused", [True, False])
def test_fp16_overflow_skips_the_step_and_halves_the_scale(fused):
    """A gradient that overflows fp16 (a huge loss scale) is no error: the optimizer step is
    skipped (weights and AdamW state untouched) and the scale halves; at a sane scale the next
    step updates the weights. The fused AdamW kernel takes the scaler's ``found_inf`` too."""
    cfg, student, teacher = _models(f"optim.fused={str(fused).lower()}")
    opt = build_optimizer(student, cfg, lr=1e-3)
    assert opt.defaults["fused"] is (True if fused else None)
    batch = _batch(2, cfg)
    before = copy.deepcopy(student.state_dict())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    out = _fp16_step(student, opt, batch, teacher, scaler)
    assert 0.0 <= out["loss"] <= 4.0  # the loss itself is finite
    assert (out["amp_scale"], out["skipped_step"]) == (2.0**40, 1)
    assert scaler.get_scale() == 2.0**39
    for k, v in student.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(s.get("step", 0) for s in opt.state.values())  # no AdamW step counted
    assert all(p.grad is None for p in student.parameters())

    scaler.update(2.0**10)  # a scale the gradients fit in
    out = _fp16_step(student, opt, batch, teacher, scaler)
    assert (out["amp_scale"], out["skipped_step"]) == (2.0**10, 0)
    assert scaler.get_scale() == 2.0**10  # no overflow: kept (grows after growth_interval)
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_fp16_unscales_before_clipping():
    """The reported norm is the unscaled gradients' norm and the clip applies to them: with
    SGD at lr 1 the update is the clipped gradient, of norm ``clip_grad`` (clipping the
    scaled gradients, then unscaling, would leave a step 2**12 times smaller)."""
    cfg, student, teacher = _models()
    batch = _batch(2, cfg)
    ref = copy.deepcopy(student)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = uma_loss_fn(teacher, StepConfig())(ref, batch)
    loss.backward()
    true_norm = float(
        torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in ref.parameters() if p.grad is not None])
        )
    )
    before = [p.detach().clone() for p in student.parameters()]
    opt = torch.optim.SGD(student.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    clip = true_norm / 10
    out = _fp16_step(student, opt, batch, teacher, scaler, clip_grad=clip)
    assert out["skipped_step"] == 0
    assert out["grad_norm"] == pytest.approx(true_norm, rel=1e-3)
    moved = torch.linalg.vector_norm(
        torch.stack([(p.detach() - b).norm() for p, b in zip(student.parameters(), before)])
    )
    assert float(moved) == pytest.approx(clip, rel=1e-3)


def test_fp16_scaler_state_round_trips_through_a_checkpoint(tmp_path):
    """The scale and the growth tracker (steps since the last overflow) are saved in
    state.json and come back into a fresh GradScaler as they were."""
    from umt.train import checkpoint as ckpt

    cfg, student, teacher = _models()
    opt = build_optimizer(student, cfg, lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5)
    for seed in range(3):  # three quiet steps: the growth tracker at 3
        assert _fp16_step(student, opt, _batch(2, cfg, seed), teacher, scaler)["skipped_step"] == 0
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0**10 and saved["_growth_tracker"] == 3
    state = ckpt.TrainState(step=6, scaler=saved)
    path = ckpt.save_checkpoint(tmp_path, student, opt, state, "a: 1\n")
    got = ckpt.load_training_checkpoint(path, student, opt)
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(got.scaler)
    assert fresh.state_dict() == saved
    # Both now behave alike: two more quiet steps reach growth_interval and double the scale.
    for s in (scaler, fresh):
        for seed in range(2):
            _fp16_step(student, opt, _batch(2, cfg, seed), teacher, s)
    assert scaler.get_scale() == fresh.get_scale() == 2.0**11
