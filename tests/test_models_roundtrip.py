"""Every model we make saves with ``save_pretrained`` and loads back with ``load_checkpoint``:
same class, same ``"architecture"`` in ``config.json``, exactly the same outputs."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from umt.models import (
    BertTextEncoder,
    CLIPTeacher,
    UMTVideoQA,
    UMTVideoText,
    VideoDetector,
    VideoMAE,
    VideoViT,
    create_model,
    list_models,
    load_checkpoint,
    model_config,
    save_pretrained,
)
from umt.models.registry import families

VIT = dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, depth=2, num_heads=2)
CLIP = dict(img_size=32, patch_size=16, width=32, layers=2, heads=2, output_dim=16, return_layers=1)
BERT = dict(
    vocab_size=40,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    max_position_embeddings=16,
    fusion_layer=1,
    encoder_width=32,
)


def tiny_overrides(cls: type[nn.Module]) -> dict[str, Any]:
    """``create_model`` overrides that make any registered variant of ``cls`` tiny."""
    if cls is VideoViT:
        return dict(VIT, align_layers=1, align_dim=16)
    if cls is CLIPTeacher:
        return dict(CLIP)
    if cls is VideoDetector:
        return dict(VIT, num_classes=5)
    if cls is UMTVideoText:
        teacher = dict(CLIP, normalize=False)
        return dict(
            vision=dict(VIT, align_layers=1, align_dim=16), text=BERT, embed_dim=16, teacher=teacher
        )
    if cls is VideoMAE:
        encoder = dict(VIT, num_frames=4, tubelet_size=2)
        return dict(encoder=encoder, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    raise AssertionError(f"no tiny sizes for {cls.__name__}: add them here")


def tiny_unregistered(cls: type[nn.Module]) -> nn.Module:
    """A tiny model of a family that has no named variant."""
    if cls is BertTextEncoder:
        return BertTextEncoder(**BERT)
    if cls is UMTVideoQA:
        return UMTVideoQA(dict(VIT), dict(BERT), decoder_layers=1)
    raise AssertionError(f"no tiny model for {cls.__name__}: add it here")


def outputs(model: nn.Module) -> list[torch.Tensor]:
    """The model's outputs on a fixed seeded input (eval mode, no grad)."""
    gen = torch.Generator().manual_seed(0)
    frames = getattr(model.encoder if isinstance(model, VideoMAE) else model, "num_frames", 2)
    video = torch.randn(2, 3, frames, 32, 32, generator=gen)
    ids = torch.randint(1, 40, (2, 6), generator=gen)
    mask = torch.ones(2, 6, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        if isinstance(model, VideoViT):
            return [model(video)]
        if isinstance(model, CLIPTeacher):
            return list(model(video))
        if isinstance(model, VideoDetector):
            boxes = [torch.tensor([[2.0, 3.0, 20.0, 30.0]]), torch.tensor([[0.0, 0.0, 31.0, 31.0]])]
            return [model(video, boxes)]
        if isinstance(model, UMTVideoText):
            return [*model(video, ids, mask), *model.teacher(video)]
        if isinstance(model, VideoMAE):
            keep = torch.rand(2, model.encoder.num_patches, generator=gen).argsort(dim=1)
            masked = torch.zeros(2, model.encoder.num_patches, dtype=torch.bool)
            masked.scatter_(1, keep[:, : model.encoder.num_patches // 2], True)
            return [model(video, masked)]
        if isinstance(model, BertTextEncoder):
            return [model.forward_text(ids, mask)]
        if isinstance(model, UMTVideoQA):
            vision = model.encode_vision(video)
            states = model.encode_question(ids, mask, vision)
            return [vision, states, model.answer_logits(ids[:, :3], mask[:, :3], states, mask)]
    raise AssertionError(f"no outputs for {type(model).__name__}: add them here")


def roundtrip(model: nn.Module, folder: Path, part: str = "auto") -> nn.Module:
    save_pretrained(model, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == type(model).__name__
    loaded = load_checkpoint(folder, part=part)
    assert type(loaded) is type(model)
    return loaded


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for x, y in zip(outputs(a), outputs(b), strict=True):
        assert torch.equal(x, y)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _part(model: nn.Module) -> str:
    # A VideoMAE loads as its encoder unless the whole model is asked for.
    return "videomae" if isinstance(model, VideoMAE) else "auto"


@functools.cache
def variant_class(name: str) -> type[nn.Module]:
    """The class of a registered variant (built on the meta device: no memory)."""
    with torch.device("meta"):
        return type(create_model(name))


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_roundtrips(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **tiny_overrides(variant_class(name)))
    assert_same(model, roundtrip(model, tmp_path / name, _part(model)))


@pytest.mark.parametrize("family", families(), ids=lambda f: f.architecture)
def test_every_family_saves_and_loads(family, tmp_path):
    """Every model class the hub knows, a named variant or not (the text tower, the QA model)."""
    registered = [n for n in list_models() if variant_class(n) is family.cls]
    torch.manual_seed(0)
    if registered:
        model = create_model(registered[0], **tiny_overrides(family.cls))
    else:
        model = tiny_unregistered(family.cls)
    assert_same(model, roundtrip(model, tmp_path / "m", _part(model)))


def test_videomae_loads_as_its_encoder_by_default(tmp_path):
    torch.manual_seed(0)
    model = create_model("videomae-b16", **tiny_overrides(VideoMAE))
    save_pretrained(model, tmp_path)
    encoder = load_checkpoint(tmp_path)
    assert type(encoder) is VideoViT
    assert_same(model.encoder, encoder)


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_model("umt-b16", **tiny_overrides(VideoViT)),
        lambda: create_model("clip-b16", **tiny_overrides(CLIPTeacher)),
        lambda: create_model("umt-b16-vt", **tiny_overrides(UMTVideoText)),
        lambda: tiny_unregistered(UMTVideoQA),
        lambda: create_model("umt-b16-ava", **tiny_overrides(VideoDetector)),
        lambda: tiny_unregistered(BertTextEncoder),
    ],
    ids=["VideoViT", "CLIPTeacher", "UMTVideoText", "UMTVideoQA", "VideoDetector", "BERT"],
)
def test_a_folder_written_before_the_architecture_field_still_loads(
    build: Callable[[], nn.Module], tmp_path
):
    torch.manual_seed(0)
    model = build()
    save_pretrained(model, tmp_path)
    cfg_file = tmp_path / "config.json"
    config = json.loads(cfg_file.read_text())
    del config["architecture"]
    cfg_file.write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path)
    assert type(loaded) is type(model)
    assert_same(model, loaded)


def test_an_unknown_architecture_is_refused_by_name(tmp_path):
    model = create_model("umt-b16", **tiny_overrides(VideoViT))
    save_pretrained(model, tmp_path)
    cfg_file = tmp_path / "config.json"
    config = json.loads(cfg_file.read_text())
    config["architecture"] = "VideoViTX"
    cfg_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown architecture 'VideoViTX'.*VideoViT"):
        load_checkpoint(tmp_path)


def test_the_registry_config_is_what_a_variant_saves(tmp_path):
    """``config.json`` holds the variant's constructor arguments (defaults resolved)."""
    model = create_model("clip-b16", **tiny_overrides(CLIPTeacher))
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    expected = {**model_config("clip-b16"), **tiny_overrides(CLIPTeacher)}
    assert {k: config[k] for k in expected} == expected
