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


# --------------------------------------------------------------------------- stage 2, whole
def _vt_sizes(cfg: dict) -> dict:
    """Every size the multimodal checkpoint does not store, from the fixture's config.json."""
    v, t, te = cfg["vision_encoder"], cfg["text_encoder_bert"], cfg["teacher"]
    return dict(
        num_heads=v["encoder_num_heads"],
        num_frames=v["num_frames"],
        img_size=v["img_size"],
        align_interval=v.get("clip_student_return_interval", 1),
        text_num_heads=t["num_attention_heads"],
        text_layer_norm_eps=t.get("layer_norm_eps", 1e-12),
        text_pad_token_id=t.get("pad_token_id", 0),
        teacher_heads=te["heads"],
        teacher_img_size=te["input_resolution"],
        teacher_return_layers=te["clip_return_layer"],
        teacher_return_interval=te.get("clip_return_interval", 1),
    )


def _video_text(root):
    from umt.models import UMTVideoText

    cfg, io = load_case(root, "multimodal")
    model = load_checkpoint(root / "multimodal" / "model.pth", **_vt_sizes(cfg)).eval()
    assert isinstance(model, UMTVideoText)
    video = io["video_btchw"].permute(0, 2, 1, 3, 4)  # [B, T, 3, H, W] -> [B, 3, T, H, W]
    return cfg, io, model, video


def _similarity(vision_feat: torch.Tensor, text_feat: torch.Tensor, temp) -> torch.Tensor:
    """mean over t of cos(vision_feat[i, t], text_feat[j]) / temp: [Bv, T, D], [Bt, D] -> [Bv, Bt]."""
    from umt.losses import video_text_similarity

    return video_text_similarity(vision_feat, text_feat, temp)


def _vt_outputs(model, io, video) -> dict[str, torch.Tensor]:
    ids, att = io["input_ids"], io["attention_mask"]
    with torch.no_grad():
        vision_embeds, pooled_v = model.encode_vision(video)
        text_embeds, pooled_t = model.encode_text(ids, att)
        vision_proj = model.vision_features(pooled_v)
        text_proj = model.text_features(pooled_t)
        sim = _similarity(vision_proj, text_proj, model.temp)
        _, _, aligned = model.encode_vision_aligned(video, io["mask"])
        return {
            "vision_embeds": vision_embeds,
            "pooled_vision_embeds": pooled_v,
            "text_embeds": text_embeds,
            "pooled_text_embeds": pooled_t,
            "vision_proj": vision_proj,
            "text_proj": text_proj,
            "sim_v2t": sim,
            "itm_logits": model.itm_logits(text_embeds, att, vision_embeds),
            "mlm_logits": model.mlm_logits(text_embeds, att, vision_embeds),
            "student_aligned": aligned,
        }


def test_multimodal_whole_model(official_root):
    cfg, io, model, video = _video_text(official_root)
    t = cfg["text_encoder_bert"]
    assert model.text_encoder.fusion_layer == t["fusion_layer"]
    assert model.text_encoder.num_layers == t["num_hidden_layers"]
    assert model.embed_dim == cfg["embed_dim"]
    assert model.teacher is not None and not model.teacher.normalize
    for name, value in _vt_outputs(model, io, video).items():
        close(value, io[name], name)
    # umt's VTC loss on those features: matched pairs on the diagonal (distinct sample ids)
    from umt.losses import vtc_loss

    out = _vt_outputs(model, io, video)
    ids = torch.arange(out["text_proj"].shape[0])
    with torch.no_grad():
        vtc = vtc_loss(out["vision_proj"], out["text_proj"], ids, model.temp, gather=True)
    close(vtc.reshape(1), io["vtc_loss"], "vtc_loss")


def test_multimodal_whole_teacher_and_uta(official_root):
    cfg, io, model, video = _video_text(official_root)
    with torch.no_grad():
        teacher_video = model.teacher_video(video)  # resized when the teacher's size differs
        features, cls_attn = model.teacher(teacher_video)
        _, pooled, aligned = model.encode_vision_aligned(video, io["mask"])
        targets = model.teacher.targets(model.teacher.forward_hidden(teacher_video)[0], io["mask"])
        loss = uma_loss(aligned, targets, kind="l2", normalize=True)
    assert pooled.shape[1] == 1  # masked: one pooled feature over the kept tokens
    close(features, io["teacher_features"], "teacher_features")
    close(cls_attn.flatten(0, 1), io["teacher_cls_attn"], "teacher_cls_attn")
    close(aligned, io["student_aligned"], "student_aligned")
    close(loss.reshape(1), io["uta_loss"], "uta_loss")


def test_multimodal_convert_and_reload(official_root, tmp_path):
    from umt.models import UMTVideoText, convert_checkpoint

    cfg, io, model, video = _video_text(official_root)
    report = convert_checkpoint(
        official_root / "multimodal" / "model.pth", tmp_path / "vt", **_vt_sizes(cfg)
    )
    assert "video-text" in report and "assumed" not in report
    again = load_checkpoint(tmp_path / "vt").eval()
    assert isinstance(again, UMTVideoText)
    expected = _vt_outputs(model, io, video)
    for name, value in _vt_outputs(again, io, video).items():
        close(value, io[name], f"reloaded {name}")
        assert torch.equal(value, expected[name]), name
    with torch.no_grad():
        features = again.teacher(again.teacher_video(video))[0]
    close(features, io["teacher_features"], "reloaded teacher_features")


def test_multimodal_retrieval_layout(official_root, tmp_path):
    """A fine-tuned retrieval file: no teacher, no alignment heads, BertModel names
    (``text_encoder.embeddings.*``, no ``bert.``), no masked-LM head; loads whole all the same."""
    from umt.models import UMTVideoText

    cfg, io, model, video = _video_text(official_root)
    official = torch.load(official_root / "multimodal" / "model.pth", weights_only=True)["model"]
    retrieval = {
        k.replace("text_encoder.bert.", "text_encoder."): v
        for k, v in official.items()
        if not k.startswith(("clip_teacher.", "vision_encoder.clip_decoder.", "text_encoder.cls."))
    }
    torch.save({"model": retrieval}, tmp_path / "ret.pth")
    sizes = {k: v for k, v in _vt_sizes(cfg).items() if not k.startswith("teacher_")}
    again = load_checkpoint(tmp_path / "ret.pth", **sizes).eval()
    assert isinstance(again, UMTVideoText)
    assert again.teacher is None and again.text_encoder.mlm_head is None
    assert again.vision_encoder.align_heads is None
    ids, att = io["input_ids"], io["attention_mask"]
    with torch.no_grad():
        vision_embeds, pooled_v = again.encode_vision(video)
        text_embeds, pooled_t = again.encode_text(ids, att)
        sim = _similarity(
            again.vision_features(pooled_v), again.text_features(pooled_t), again.temp
        )
        itm = again.itm_logits(text_embeds, att, vision_embeds)
    close(pooled_v, io["pooled_vision_embeds"], "retrieval pooled_vision_embeds")
    close(text_embeds, io["text_embeds"], "retrieval text_embeds")
    close(sim, io["sim_v2t"], "retrieval sim_v2t")
    close(itm, io["itm_logits"], "retrieval itm_logits")


def test_umt_convert_command_writes_the_whole_video_text_model(official_root, tmp_path):
    """`umt convert` of the official multimodal file (sizes as flags) -> the same outputs."""
    from train_helpers import run_cli

    cfg, io = load_case(official_root, "multimodal")
    s = _vt_sizes(cfg)
    run = run_cli(
        [
            "convert",
            str(official_root / "multimodal" / "model.pth"),
            str(tmp_path / "vt"),
            "--num-heads",
            str(s["num_heads"]),
            "--num-frames",
            str(s["num_frames"]),
            "--img-size",
            str(s["img_size"]),
            "--text-num-heads",
            str(s["text_num_heads"]),
            "--teacher-heads",
            str(s["teacher_heads"]),
        ],  # fmt: skip
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    model = load_checkpoint(tmp_path / "vt").eval()
    with torch.no_grad():
        text_embeds, _ = model.encode_text(io["input_ids"], io["attention_mask"])
        vision_embeds, _ = model.encode_vision(io["video_btchw"].permute(0, 2, 1, 3, 4))
        itm = model.itm_logits(text_embeds, io["attention_mask"], vision_embeds)
    close(text_embeds, io["text_embeds"], "text_embeds (converted)")
    close(itm, io["itm_logits"], "itm_logits (converted)")
