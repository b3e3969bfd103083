"""Parity with the official implementation: every stored output, to 1e-5 in float32.

Every size is read from the fixtures' ``config.json``; run on another set with
``UMT_FIXTURES=OTHER pytest -m parity``.
"""

from __future__ import annotations

import pytest
import torch

from official_fixtures import load_case
from umt.losses import uma_loss
from umt.masking import num_kept_per_frame, semantic_mask
from umt.models import load_checkpoint, load_student, load_teacher, save_pretrained

pytestmark = pytest.mark.parity
ATOL = 1e-5


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = (actual.float() - expected.float()).abs().max().item()
    assert err <= ATOL, f"{what}: max abs error {err:.3g} > {ATOL}"


def _stage1_models(root):
    cfg, io = load_case(root, "stage1")
    s, t = cfg["student"], cfg["teacher"]
    student = load_student(
        root / "stage1" / "student.pth",
        num_heads=s["encoder_num_heads"],
        num_frames=s["num_frames"],
        img_size=s["img_size"],
        layer_norm_eps=s.get("layer_norm_eps", 1e-6),
        align_interval=s.get("clip_student_return_interval", 1),
        align_l2=s.get("clip_norm_type", "l2") == "l2",
    ).eval()
    teacher = load_teacher(
        root / "stage1" / "teacher_visual.pth",
        heads=t["heads"],
        img_size=t["input_resolution"],
        return_layers=t["clip_return_layer"],
        return_interval=t.get("clip_return_interval", 1),
        normalize=t.get("clip_norm_type", "l2") == "l2",
    )
    return cfg, io, student, teacher


def test_stage1_teacher(official_root):
    cfg, io, _, teacher = _stage1_models(official_root)
    with torch.no_grad():
        features, cls_attn = teacher(io["video"])
        hidden, _ = teacher.forward_hidden(io["video"])
        targets = teacher.targets(hidden, io["mask"])
    close(features, io["teacher_features"], "teacher_features")
    close(cls_attn.flatten(0, 1), io["teacher_cls_attn"], "teacher_cls_attn")
    close(targets, io["teacher_targets"], "teacher_targets")
    # The training path: the last block past the class-token attention on the kept tokens only.
    seen = []
    with torch.no_grad():
        hidden_kept, attn_masked, mask = teacher.forward_masked(
            io["video"], lambda attn: seen.append(attn) or io["mask"]
        )
    assert torch.equal(mask, io["mask"]) and torch.equal(seen[0], attn_masked)
    close(attn_masked.flatten(0, 1), io["teacher_cls_attn"], "teacher_cls_attn (masked path)")
    close(teacher.project(hidden_kept), io["teacher_targets"], "teacher_targets (masked path)")


def test_stage1_student_and_loss(official_root):
    cfg, io, student, teacher = _stage1_models(official_root)
    with torch.no_grad():
        encoder_out, aligned = student.forward_pretrain(io["video"], io["mask"])
        loss = uma_loss(aligned, io["teacher_targets"], kind="l2")
    close(encoder_out, io["student_encoder_out"], "student_encoder_out")
    close(aligned, io["student_aligned"], "student_aligned")
    close(loss.reshape(1), io["uma_loss"], "uma_loss")


def test_stage1_mask_layout(official_root):
    """The stored mask keeps HW - int(HW * ratio) per frame; ours from the same attention too."""
    cfg, io, student, _ = _stage1_models(official_root)
    ratio = cfg["mask_ratio"]
    b = io["video"].shape[0]
    t, hw = student.grid[0], student.num_patches_per_frame
    kept = (~io["mask"]).reshape(b, t, hw).sum(-1)
    assert (kept == num_kept_per_frame(hw, ratio)).all()
    ours = semantic_mask(
        io["teacher_cls_attn"].reshape(b, t, hw), ratio, torch.Generator().manual_seed(0)
    )
    assert ours.shape == io["mask"].shape and ours.dtype == torch.bool
    assert ((~ours).reshape(b, t, hw).sum(-1) == kept).all()


@pytest.mark.parametrize("case", ["finetune_learnedpos", "finetune_sincos"])
def test_finetune_classifier(official_root, case):
    cfg, io = load_case(official_root, case)
    model = load_student(
        official_root / case / "model.pth",
        num_heads=cfg["num_heads"],
        num_frames=cfg["all_frames"],
        img_size=cfg["img_size"],
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-6),
    ).eval()
    assert model.num_classes == cfg["num_classes"]
    with torch.no_grad():
        features = model.forward_features(io["video"])
        pooled = model.forward_head(features, pre_logits=True)
        logits = model(io["video"])
    close(pooled, io["pooled_features"], f"{case} pooled_features")
    close(logits, io["logits"], f"{case} logits")


def _multimodal(root):
    cfg, io = load_case(root, "multimodal")
    v, t = cfg["vision_encoder"], cfg["teacher"]
    path = root / "multimodal" / "model.pth"
    student = load_checkpoint(
        path,
        part="student",
        num_heads=v["encoder_num_heads"],
        num_frames=v["num_frames"],
        img_size=v["img_size"],
        align_interval=v.get("clip_student_return_interval", 1),
    ).eval()
    teacher = load_checkpoint(
        path,
        part="teacher",
        heads=t["heads"],
        img_size=t["input_resolution"],
        return_layers=t["clip_return_layer"],
        return_interval=t.get("clip_return_interval", 1),
    )
    video = io["video_btchw"].permute(0, 2, 1, 3, 4)  # [B, T, 3, H, W] -> [B, 3, T, H, W]
    return io, student, teacher, video


def test_multimodal_vision(official_root):
    io, student, _, video = _multimodal(official_root)
    with torch.no_grad():
        embeds = student.forward_features(video)
        pooled = student.pool_frames(embeds)
        aligned = student.forward_aligned(video, io["mask"])
    close(embeds, io["vision_embeds"], "vision_embeds")
    close(pooled, io["pooled_vision_embeds"], "pooled_vision_embeds")
    close(aligned, io["student_aligned"], "student_aligned")


def test_multimodal_teacher_and_uta(official_root):
    io, student, teacher, video = _multimodal(official_root)
    assert not teacher.normalize
    with torch.no_grad():
        features, cls_attn = teacher(video)
        hidden, _ = teacher.forward_hidden(video)
        targets = teacher.targets(hidden, io["mask"])
        aligned = student.forward_aligned(video, io["mask"])
        loss = uma_loss(aligned, targets, kind="l2", normalize=True)
    close(features, io["teacher_features"], "teacher_features")
    close(cls_attn.flatten(0, 1), io["teacher_cls_attn"], "teacher_cls_attn")
    close(loss.reshape(1), io["uta_loss"], "uta_loss")


def test_converted_files_compute_the_same(official_root, tmp_path):
    """Official file -> umt format -> reload with no other file: same outputs."""
    cfg, io, student, teacher = _stage1_models(official_root)
    save_pretrained(student, tmp_path / "student")
    save_pretrained(teacher, tmp_path / "teacher")
    student2 = load_checkpoint(tmp_path / "student").eval()
    teacher2 = load_checkpoint(tmp_path / "teacher")
    with torch.no_grad():
        close(teacher2(io["video"])[0], io["teacher_features"], "reloaded teacher")
        close(
            student2.forward_aligned(io["video"], io["mask"]),
            io["student_aligned"],
            "reloaded student",
        )
