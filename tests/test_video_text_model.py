"""The stage-2 model ``UMTVideoText``: shapes, the official pooling rules, images as one-frame
clips, the frozen teacher, saving and loading whole, the registry's video-text variants."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import umt
from umt.models import (
    AssumedSizeWarning,
    UMTVideoText,
    VideoViT,
    convert_checkpoint,
    create_model,
    detect_checkpoint,
    load_checkpoint,
    model_config,
)

VISION = dict(
    img_size=32,
    patch_size=8,
    num_frames=4,
    embed_dim=32,
    depth=3,
    num_heads=4,
    align_layers=2,
    align_dim=24,
)
TEXT = dict(
    vocab_size=60,
    hidden_size=32,
    num_layers=3,
    num_heads=4,
    intermediate_size=48,
    max_position_embeddings=16,
    fusion_layer=2,
    dropout=0.0,
    attention_dropout=0.0,
)
TEACHER = dict(
    img_size=32, patch_size=8, width=24, layers=2, heads=2, output_dim=24, return_layers=2
)


def _model(seed: int = 0, teacher: bool = True, **kw) -> UMTVideoText:
    torch.manual_seed(seed)
    model = UMTVideoText(VISION, TEXT, embed_dim=16, teacher=TEACHER if teacher else None, **kw)
    with torch.no_grad():  # biases and norms away from their init
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    return model.eval()


def _text(b: int = 2, n: int = 8):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 60, (b, n), generator=g)
    ids[:, 0] = 2
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 5:] = 0
    ids[mask == 0] = 0
    return ids, mask


def _video(b: int = 2, t: int = 4):
    return torch.randn(b, 3, t, 32, 32, generator=torch.Generator().manual_seed(4))


def _mask(b: int, t: int, hw: int = 16, keep: int = 4):
    g = torch.Generator().manual_seed(5)
    rows = [torch.randperm(hw, generator=g)[:keep] for _ in range(b * t)]
    m = torch.ones(b * t, hw, dtype=torch.bool)
    for i, r in enumerate(rows):
        m[i, r] = False
    return m.reshape(b, t * hw)


def test_construction_defaults():
    model = _model()
    v = model.vision_encoder
    assert v.pool_norm is not None and v.pool_norm.eps == 1e-6 and v.norm.eps == 1e-6
    assert all(not h.l2 and h.norm.eps == 1e-5 for h in v.align_heads)
    assert model.text_encoder.encoder_width == 32 and model.text_encoder.fusion_layer == 2
    assert model.itm_head.out_features == 2 and model.vision_proj.out_features == 16
    assert isinstance(model.temp, torch.nn.Parameter) and model.temp.ndim == 0
    assert UMTVideoText(VISION, TEXT, temp=0.05).temp.item() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="encoder_width"):
        UMTVideoText(VISION, {**TEXT, "encoder_width": 48})
    with pytest.raises(ValueError, match="fusion_layer"):
        UMTVideoText(VISION, {**TEXT, "fusion_layer": 4})
    with pytest.raises(ValueError, match="embed_dim .* must be >= 1, not -1"):
        UMTVideoText(VISION, TEXT, embed_dim=-1)  # model.proj_dim=-1 was a torch traceback


def test_teacher_is_frozen_and_out_of_the_optimizer():
    model = _model().train()
    assert model.teacher is not None and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("teacher.") for n in trainable)
    assert "temp" in trainable
    assert model.vision_encoder.training and model.text_encoder.training
    nwd = model.no_weight_decay()
    assert "temp" in nwd and nwd <= {n for n, _ in model.named_parameters()}
    learned = UMTVideoText({**VISION, "pos_embed": "learned"}, TEXT)
    assert "vision_encoder.pos_embed" in learned.no_weight_decay()
    assert _model(teacher=False).teacher is None


def test_clamp_temp():
    model = _model()
    with torch.no_grad():
        model.temp.fill_(2.0)
    model.clamp_temp()
    assert model.temp.item() == pytest.approx(0.5)
    with torch.no_grad():
        model.temp.fill_(-1.0)
    model.clamp_temp()
    assert model.temp.item() == pytest.approx(0.001)


def test_encode_vision_pooling_rules():
    model = _model()
    video = _video()
    with torch.no_grad():
        embeds, pooled = model.encode_vision(video)
        assert embeds.shape == (2, 64, 32) and pooled.shape == (2, 4, 32)
        per_frame = model.vision_encoder.pool_norm(embeds.reshape(2, 4, 16, 32).mean(2))
        assert torch.allclose(pooled, per_frame, atol=1e-6)
        mask = _mask(2, 4)
        embeds_m, pooled_m = model.encode_vision(video, mask)
        assert embeds_m.shape == (2, 16, 32) and pooled_m.shape == (2, 1, 32)
        expected = model.vision_encoder.pool_norm(embeds_m.mean(1, keepdim=True))
        assert torch.allclose(pooled_m, expected, atol=1e-6)
        # one pass for training: the same embeddings + the aligned outputs
        e2, p2, aligned = model.encode_vision_aligned(video, mask)
        assert torch.allclose(e2, embeds_m, atol=1e-6) and torch.allclose(p2, pooled_m, atol=1e-6)
        assert aligned.shape == (2, 2, 16, 24)
        ref = model.vision_encoder.forward_aligned(video, mask)
        assert torch.allclose(aligned, ref, atol=1e-6)


def test_images_are_one_frame_clips():
    """T=1 uses the first H*W rows of the table: exactly a one-frame model with the same weights."""
    model = _model()
    image = _video(t=1)
    one = VideoViT(**{**model.model_config["vision"], "num_frames": 1}).eval()
    one.load_state_dict(model.vision_encoder.state_dict())
    mask = _mask(2, 1, keep=8)
    with torch.no_grad():
        embeds, pooled = model.encode_vision(image)
        assert embeds.shape == (2, 16, 32) and pooled.shape == (2, 1, 32)
        assert torch.allclose(embeds, one.forward_features(image), atol=1e-6)
        _, pooled_m, aligned = model.encode_vision_aligned(image, mask)
        assert pooled_m.shape == (2, 1, 32)
        assert torch.allclose(aligned, one.forward_aligned(image, mask), atol=1e-6)
        # the teacher takes images too
        feats, attn = model.teacher(model.teacher_video(image))
        assert feats.shape == (2, 2, 16, 24) and attn.shape == (2, 1, 16)
    with pytest.raises(ValueError, match="built for 4 frames"):
        model.encode_vision(_video(t=2))
    learned = VideoViT(**{**VISION, "pos_embed": "learned"})
    with pytest.raises(ValueError, match="built for 4 frames"):
        learned.forward_features(image)
    interpolated = VideoViT(**{**VISION, "sincos_source_grid": [8, 4, 4]})
    with pytest.raises(ValueError, match="built for 4 frames"):
        interpolated.forward_features(image)


def test_teacher_video_resizes_to_the_teacher():
    model = UMTVideoText(VISION, TEXT, teacher={**TEACHER, "img_size": 24})
    video = _video()
    resized = model.teacher_video(video)
    assert resized.shape == (2, 3, 4, 24, 24)
    ref = torch.nn.functional.interpolate(
        video[:, :, 2], size=(24, 24), mode="bicubic", align_corners=False
    )
    assert torch.allclose(resized[:, :, 2], ref, atol=1e-6)
    assert _model().teacher_video(video) is video


def test_text_heads_and_fusion():
    model = _model()
    ids, mask = _text()
    video = _video()
    with torch.no_grad():
        text_embeds, pooled = model.encode_text(ids, mask)
        assert text_embeds.shape == (2, 8, 32) and torch.equal(pooled, text_embeds[:, 0])
        vision_embeds, vpooled = model.encode_vision(video)
        assert model.vision_features(vpooled).shape == (2, 4, 16)
        assert model.text_features(pooled).shape == (2, 16)
        itm = model.itm_logits(text_embeds, mask, vision_embeds)
        assert itm.shape == (2, 2)
        fused = model.text_encoder.forward_fusion(text_embeds, mask, vision_embeds)
        assert torch.allclose(itm, model.itm_head(fused[:, 0]), atol=1e-6)
        mlm = model.mlm_logits(text_embeds, mask, vision_embeds)
        assert mlm.shape == (2, 8, 60)
        assert torch.allclose(mlm, model.text_encoder.mlm_logits(fused), atol=1e-5)
        # masked vision tokens (the training path) work with the fusion layers too
        masked, _ = model.encode_vision(video, _mask(2, 4))
        assert model.itm_logits(text_embeds, mask, masked).shape == (2, 2)
        v_feat, t_feat = model(video, ids, mask)
        assert v_feat.shape == (2, 4, 16) and t_feat.shape == (2, 16)


def test_grad_flows_and_checkpointing_matches():
    def grads(checkpointing: bool):
        model = _model(seed=7).train()
        model.set_grad_checkpointing(checkpointing)
        ids, mask = _text()
        video = _video()
        v, pooled_v, aligned = model.encode_vision_aligned(video, _mask(2, 4))
        t, pooled_t = model.encode_text(ids, mask)
        loss = (
            model.itm_logits(t, mask, v).sum()
            + model.vision_features(pooled_v).sum() * model.temp
            + model.text_features(pooled_t).square().sum()
            + aligned.square().sum()
        )
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    a, b = grads(False), grads(True)
    assert a.keys() == b.keys() and "temp" in a
    assert not any(n.startswith("teacher.") for n in a)
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-6), n


def test_save_and_load_whole(tmp_path):
    model = _model()
    umt.save_pretrained(model, tmp_path / "vt")
    cfg = json.loads((tmp_path / "vt" / "config.json").read_text())
    assert cfg["vision"]["pool_norm"] is True and cfg["vision"]["align_l2"] is False
    assert cfg["text"]["encoder_width"] == 32 and cfg["teacher"]["width"] == 24
    again = load_checkpoint(tmp_path / "vt")
    assert isinstance(again, UMTVideoText)
    again.eval()
    ids, mask = _text()
    video = _video()
    with torch.no_grad():
        for a, b in zip(_outputs(model, video, ids, mask), _outputs(again, video, ids, mask)):
            assert torch.equal(a, b)
    assert again.temp.item() == model.temp.item()
    assert not any(p.requires_grad for p in again.teacher.parameters())
    # parts of a saved video-text model
    student = load_checkpoint(tmp_path / "vt", part="student")
    assert isinstance(student, VideoViT)
    assert torch.equal(
        student.patch_embed.proj.weight, model.vision_encoder.patch_embed.proj.weight
    )
    teacher = load_checkpoint(tmp_path / "vt", part="teacher")
    assert torch.equal(teacher.proj, model.teacher.proj)
    assert isinstance(load_checkpoint(tmp_path / "vt", part="video-text"), UMTVideoText)
    # the mixin's own loader reads the same folder
    hub = UMTVideoText.from_pretrained(tmp_path / "vt").eval()
    with torch.no_grad():
        assert torch.equal(hub.encode_text(ids, mask)[0], model.encode_text(ids, mask)[0])
    # a frame-count override keeps the (fixed) positions consistent
    eight = load_checkpoint(tmp_path / "vt", num_frames=8)
    assert eight.vision_encoder.num_frames == 8
    # convert_checkpoint re-writes a umt folder and reports the sizes
    report = convert_checkpoint(tmp_path / "vt", tmp_path / "vt2")
    assert "video-text" in report and "cross-attention from layer 2" in report
    assert isinstance(load_checkpoint(tmp_path / "vt2"), UMTVideoText)


def _outputs(model, video, ids, mask):
    v, pv = model.encode_vision(video)
    t, pt = model.encode_text(ids, mask)
    return [
        v,
        pv,
        t,
        model.vision_features(pv),
        model.text_features(pt),
        model.itm_logits(t, mask, v),
        model.mlm_logits(t, mask, v),
        model.encode_vision_aligned(video, _mask(2, 4))[2],
    ]


def test_video_text_without_teacher_saves(tmp_path):
    model = _model(teacher=False)
    umt.save_pretrained(model, tmp_path / "vt")
    again = load_checkpoint(tmp_path / "vt")
    assert again.teacher is None
    with pytest.raises(ValueError, match="without a teacher"):
        load_checkpoint(tmp_path / "vt", part="teacher")


def test_loader_refusals(tmp_path):
    model = _model()
    umt.save_pretrained(model, tmp_path / "vt")
    with pytest.raises(TypeError, match="text_num_heads"):
        load_checkpoint(tmp_path / "vt", text_num_head=2)
    with pytest.raises(TypeError, match="unknown key"):
        load_checkpoint(tmp_path / "vt", banana=1)
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(tmp_path / "vt", text_intermediate_size=64)
    # the weights alone (no config.json): the whole model's sizes are not guessed
    (tmp_path / "bare").mkdir()
    (tmp_path / "vt" / "model.safetensors").rename(tmp_path / "bare" / "model.safetensors")
    with pytest.raises(ValueError, match="config.json"):
        load_checkpoint(tmp_path / "bare")
    from umt.models import read_state_dict

    info = detect_checkpoint(read_state_dict(tmp_path / "bare"))
    assert info.kind == "umt-video-text" and info.parts[0] == "video-text"
    with pytest.raises(ValueError, match="part must be"):
        load_checkpoint(tmp_path / "bare", part="text")


def test_registry_video_text_variants():
    assert {"umt-b16-vt", "umt-l16-vt"} <= set(umt.list_models())
    b = model_config("umt-b16-vt")
    b["vision"]["depth"] = 99  # a deep copy: the registry is not changed
    assert model_config("umt-b16-vt")["vision"]["depth"] == 12
    with torch.device("meta"):
        base = create_model("umt-b16-vt")
        large = create_model("umt-l16-vt", teacher=None)
    assert isinstance(base, UMTVideoText)
    assert base.text_encoder.fusion_layer == 9 and base.text_encoder.num_layers == 12
    assert base.embed_dim == 512 and base.vision_encoder.num_frames == 4
    assert base.teacher.width == 768 and base.teacher.return_layers == 6
    assert not base.teacher.normalize
    v = large.vision_encoder
    assert (v.embed_dim, len(v.blocks), v.blocks[0].attn.num_heads, v.patch_size) == (
        1024,
        24,
        16,
        16,
    )
    assert large.text_encoder.fusion_layer == 19 and large.text_encoder.hidden_size == 1024
    assert large.embed_dim == 768 and large.teacher is None
    assert model_config("umt-l16-vt")["teacher"]["img_size"] == 196


def test_official_defaults_are_reported(official_root):
    path = official_root / "multimodal" / "model.pth"
    if not path.is_file():
        pytest.skip("no multimodal fixture")
    with pytest.warns(AssumedSizeWarning) as rec:
        model = load_checkpoint(path)
    text = " ".join(str(w.message) for w in rec)
    for name in ("num_heads=", "num_frames=4", "img_size=224", "text_num_heads=", "teacher_heads="):
        assert name in text
    assert isinstance(model, UMTVideoText)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumedSizeWarning)
        assert isinstance(load_checkpoint(path, part="student"), VideoViT)


def test_mlm_logits_at_masked_positions_give_the_same_loss():
    """The training step runs the MLM head on the masked tokens only: same loss, same grads."""
    from umt.losses import mask_tokens, mlm_loss

    torch.manual_seed(0)
    model = UMTVideoText(
        vision=dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2),
        text=dict(
            vocab_size=50,
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=64,
            max_position_embeddings=16,
            fusion_layer=1,
        ),  # fmt: skip
        embed_dim=16,
    ).eval()  # no dropout: the two forwards must see the same network
    ids = torch.randint(5, 50, (3, 10))
    ids[:, 0] = 2
    att = torch.ones_like(ids)
    att[0, 7:] = 0
    ids[0, 7:] = 0
    masked, labels = mask_tokens(ids, 50, 4, 0, 2, generator=torch.Generator().manual_seed(1))
    vision = torch.randn(3, 8, 32)
    text, _ = model.encode_text(masked, att)
    full = mlm_loss(model.mlm_logits(text, att, vision), labels)
    g_full = torch.autograd.grad(full, model.text_encoder.word_embed.weight)[0]
    sel = labels != -100
    text, _ = model.encode_text(masked, att)
    part = mlm_loss(model.mlm_logits(text, att, vision, positions=sel), labels[sel])
    g_part = torch.autograd.grad(part, model.text_encoder.word_embed.weight)[0]
    torch.testing.assert_close(part, full)
    torch.testing.assert_close(g_part, g_full)


def test_text_convention_is_recorded_and_followed(tmp_path):
    """How the text tower reads a single text is a property of the model: saved, read back, and
    every tokenizer made for the model follows it; a saved head count cannot be overridden."""
    from umt.evaluate.retrieval import resolve_tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "rides", "bike"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words + [f"w{i}" for i in range(60 - len(words))]) + "\n")
    official = _model(teacher=False)
    assert official.text_encoder.sep_after_text is False  # the official family's default
    standard = UMTVideoText(VISION, {**TEXT, "sep_after_text": True}, embed_dim=16)
    for name, model, expected in (
        ("official", official, [2, 5, 6, 7, 8, 0]),
        ("standard", standard, [2, 5, 6, 7, 8, 3]),
    ):
        umt.save_pretrained(model, tmp_path / name)
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["text"]["sep_after_text"] is (name == "standard")
        again = load_checkpoint(tmp_path / name)
        assert again.text_encoder.sep_after_text is (name == "standard")
        tok = resolve_tokenizer(tmp_path / name, again, vocab)
        ids, _ = tok(["A man rides bike"], max_length=6)
        assert ids[0].tolist() == expected
        cut, _ = tok(["a man rides bike a man"], max_length=4)  # cut: [SEP] kept only if read
        assert cut[0].tolist() == ([2, 5, 6, 3] if name == "standard" else [2, 5, 6, 7])
    with pytest.raises(ValueError, match="stores text_num_heads=4"):
        load_checkpoint(tmp_path / "official", text_num_heads=2)
    with pytest.raises(ValueError, match="stores num_heads=4"):
        load_checkpoint(tmp_path / "official", num_heads=2)
    assert isinstance(load_checkpoint(tmp_path / "official", num_heads=4), UMTVideoText)


def test_sentence_model_folders_read_texts_with_sep(tmp_path):
    """load_bert records the convention from the folder: a sentence-transformers model (the
    bundled MiniLM) was trained on [CLS] X [SEP]; a plain BERT (bert-base-uncased, as the
    official recipes start from) is fine-tuned on the official [CLS] X."""
    from umt.models.text_bert import BertTextEncoder, load_bert, trained_with_sep

    plain = tmp_path / "plain"
    BertTextEncoder(**TEXT, encoder_width=32).save_pretrained(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_bert(plain, fusion_layer=2, encoder_width=32).sep_after_text is False
        (plain / "modules.json").write_text("[]")
        assert trained_with_sep(plain) and trained_with_sep(plain / "model.safetensors")
        assert load_bert(plain, fusion_layer=2, encoder_width=32).sep_after_text is True
        forced = load_bert(plain, fusion_layer=2, encoder_width=32, sep_after_text=False)
        assert forced.sep_after_text is False
