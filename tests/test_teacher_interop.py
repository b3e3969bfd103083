"""Our teacher loaded from open_clip / HuggingFace CLIP weights computes what those libraries do.

Random-init models (no download), every parameter shaken so a mis-mapped weight shows.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from umt.models import load_teacher

WIDTH, LAYERS, HEADS, PATCH, IMG, OUT = 48, 3, 4, 8, 32, 24


def _shake(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _video() -> torch.Tensor:
    return torch.randn(2, 3, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def _frames(video: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def _compare(ours_feat, ours_attn, ref_hidden, ref_attn, b, t):
    """ref_hidden: list of projected per-layer features [BT, HW, OUT] (last K, ascending)."""
    k = len(ref_hidden)
    ref = torch.stack(ref_hidden).reshape(k, b, -1, ref_hidden[0].shape[-1])
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert ours_feat.shape == ref.shape
    assert torch.allclose(ours_feat, ref, atol=1e-5), (ours_feat - ref).abs().max()
    assert torch.allclose(ours_attn.flatten(0, 1), ref_attn, atol=1e-6)


def test_open_clip_visual_weights(tmp_path):
    pytest.importorskip("open_clip")
    from open_clip.transformer import QuickGELU, VisionTransformer

    torch.manual_seed(0)
    ref = VisionTransformer(
        image_size=IMG,
        patch_size=PATCH,
        width=WIDTH,
        layers=LAYERS,
        heads=HEADS,
        mlp_ratio=4.0,
        output_dim=OUT,
        act_layer=QuickGELU,
    ).eval()
    _shake(ref)
    # A full open_clip CLIP state dict names the tower "visual."
    sd = {"visual." + k: v.contiguous() for k, v in ref.state_dict().items()}
    sd["logit_scale"] = torch.tensor(4.6)
    save_file(sd, str(tmp_path / "open_clip.safetensors"))
    teacher = load_teacher(tmp_path / "open_clip.safetensors", heads=HEADS, return_layers=2)

    video = _video()
    b, t = video.shape[0], video.shape[2]
    with torch.no_grad():
        feat, attn = teacher(video)
        x = ref.conv1(_frames(video)).flatten(2).transpose(1, 2)
        cls = ref.class_embedding.expand(x.shape[0], 1, -1)
        x = ref.ln_pre(torch.cat([cls, x], 1) + ref.positional_embedding)
        hidden = []
        for i, blk in enumerate(ref.transformer.resblocks):
            if i == LAYERS - 1:
                y = blk.ln_1(x)
                _, w = blk.attn(y, y, y, need_weights=True, average_attn_weights=True)
                ref_attn = w[:, 0, 1:]
            x = blk(x)
            if i >= LAYERS - 2:
                hidden.append(ref.ln_post(x[:, 1:]) @ ref.proj)
        # the tower's own pooled output is ln_post(class token) @ proj: same ln_post / proj
        assert torch.allclose(ref(_frames(video)), ref.ln_post(x[:, 0]) @ ref.proj, atol=1e-5)
    _compare(feat, attn, hidden, ref_attn, b, t)
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("prefix", ["", "clip."])
def test_huggingface_clip_vision_weights(tmp_path, prefix):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMG,
        patch_size=PATCH,
        projection_dim=OUT,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(0)
    ref = transformers.CLIPVisionModelWithProjection(config).eval()
    ref.config._attn_implementation = "eager"
    _shake(ref)
    sd = {prefix + k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(sd, str(tmp_path / "hf.safetensors"))
    teacher = load_teacher(tmp_path / "hf.safetensors", heads=HEADS, return_layers=2)

    video = _video()
    b, t = video.shape[0], video.shape[2]
    with torch.no_grad():
        feat, attn = teacher(video)
        out = ref.vision_model(
            pixel_values=_frames(video), output_hidden_states=True, output_attentions=True
        )
        vm = ref.vision_model
        hidden = [
            ref.visual_projection(vm.post_layernorm(h[:, 1:])) for h in out.hidden_states[-2:]
        ]
        ref_attn = out.attentions[-1].mean(1)[:, 0, 1:]
    _compare(feat, attn, hidden, ref_attn, b, t)


def test_teacher_position_interpolation(tmp_path):
    """CLIP at another input size (UMT-L uses CLIP-L/14 at 196 px): bicubic table resize."""
    from umt.models import create_model

    teacher = create_model("clip-b16", width=64, layers=2, heads=4, output_dim=32, return_layers=1)
    teacher.save_pretrained(tmp_path / "t")
    small = load_teacher(tmp_path / "t", img_size=160)
    assert small.positional_embedding.shape == (1 + 10 * 10, 64)
    assert torch.equal(small.positional_embedding[0], teacher.positional_embedding[0])
    feat, attn = small(torch.randn(1, 3, 2, 160, 160))
    assert feat.shape == (1, 1, 2 * 100, 32) and attn.shape == (1, 2, 100)
    assert (attn >= 0).all() and (attn.sum(-1) < 1).all()  # the class token takes the rest
