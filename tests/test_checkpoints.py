"""Checkpoint recognition, conversion, safe loading and the registry's sizes."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from umt.models import (
    create_model,
    detect_checkpoint,
    list_models,
    load_checkpoint,
    load_student,
    read_state_dict,
)
from umt.models.video_vit import student_state_dict


def _official_keys(official_root) -> dict[str, dict[str, list[int]]]:
    path = official_root / "keys" / "official_checkpoint_keys.json"
    if not path.is_file():
        pytest.skip("official_checkpoint_keys.json absent")
    return json.loads(path.read_text())


def _our_model_for(name: str, shapes: dict[str, list[int]]):
    """The registry variant an official release corresponds to, built on the meta device."""
    big = "UMT-L" in name
    base = "umt-l16" if big else "umt-b16"
    kw: dict = {}
    if "finetune" in name:
        kw.update(num_classes=shapes["head.weight"][0], align_layers=0, final_norm=False)
        frames = int(re.search(r"(\d+)x224", name).group(1))
        kw["num_frames"] = frames
        if "pos_embed" in shapes:
            kw["pos_embed"] = "learned"
    with torch.device("meta"):
        return create_model(base, **kw)


@pytest.mark.parity
def test_official_release_layouts_match_registry(official_root):
    """Every tensor of the released UMT-B/16 and UMT-L/16 files maps onto our variants exactly."""
    releases = _official_keys(official_root)
    assert len(releases) >= 4
    for name, shapes in releases.items():
        fake = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
        converted, cfg = student_state_dict(fake)
        model = _our_model_for(name, shapes)
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in converted.items()}
        assert ours == theirs, name
        n_ours = sum(p.numel() for p in model.parameters())
        n_theirs = sum(torch.Size(v).numel() for v in shapes.values())
        assert n_ours == n_theirs, name
        assert cfg["embed_dim"] == (1024 if "UMT-L" in name else 768)
        if "pretrain" in name:
            assert cfg["align_layers"] == 6
            assert cfg["align_dim"] == (768 if "UMT-L" in name else 512)


def test_registry_sizes():
    assert {"umt-b16", "umt-l16", "clip-b16", "clip-l14", "clip-l14-336"} <= set(list_models())
    with torch.device("meta"):
        b = create_model("umt-b16")
        cb = create_model("clip-b16")
        cl = create_model("clip-l14", img_size=196)
        c336 = create_model("clip-l14-336")
    # UMT-B/16 encoder: the ViT-B/16 body (86.2M without a head) + 6 alignment heads 768->512.
    enc = sum(p.numel() for n, p in b.named_parameters() if not n.startswith("align_heads"))
    c = 768
    block = 3 * c * c + 2 * c + (c * c + c) + 4 * c + (4 * c * c + 4 * c) + (4 * c * c + c)
    assert enc == (3 * 16 * 16 * c + c) + 12 * block + 2 * c == 85_637_376
    assert sum(p.numel() for p in b.align_heads.parameters()) == 6 * (768 * 512 + 512 + 2 * 512)
    assert b.align_indices == list(range(6, 12)) and b.num_patches == 8 * 196
    # OpenAI CLIP ViT-B/16 visual tower: 86,192,640 parameters; ViT-L/14: 303,966,208.
    assert sum(p.numel() for p in cb.parameters()) == 86_192_640
    assert cl.positional_embedding.shape == (14 * 14 + 1, 1024) and cl.output_dim == 768
    assert sum(p.numel() for p in c336.parameters()) == 303_966_208 + (24 * 24 - 16 * 16) * 1024
    with pytest.raises(KeyError, match="unknown model"):
        create_model("umt-x99")


def test_native_roundtrip_and_safetensors_file(tmp_path):
    model = create_model(
        "umt-b16",
        embed_dim=64,
        depth=2,
        num_heads=4,
        img_size=32,
        num_frames=4,
        patch_size=8,
        align_layers=2,
        align_dim=16,
    ).eval()
    model.save_pretrained(tmp_path / "m")
    again = load_checkpoint(tmp_path / "m").eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # A bare state-dict file in safetensors with official names is recognised too.
    sd = {"encoder." + k: v for k, v in model.state_dict().items() if not k.startswith("align")}
    for k, v in model.state_dict().items():
        if k.startswith("align_heads"):
            sd[k.replace("align_heads", "clip_decoder").replace(".linear.", ".head.")] = v
    save_file(sd, str(tmp_path / "official.safetensors"))
    assert (
        detect_checkpoint(read_state_dict(tmp_path / "official.safetensors")).kind == "umt-pretrain"
    )
    loaded = load_student(
        tmp_path / "official.safetensors", num_heads=4, num_frames=4, img_size=32
    ).eval()
    with torch.no_grad():
        assert torch.allclose(loaded.forward_features(x), model.forward_features(x), atol=1e-6)


def test_wrappers_and_prefixes(tmp_path):
    model = create_model(
        "umt-b16",
        embed_dim=64,
        depth=2,
        num_heads=4,
        img_size=32,
        num_frames=4,
        patch_size=8,
        align_layers=0,
        num_classes=3,
        final_norm=False,
        pos_embed="learned",
    )
    for wrap in ("model", "module"):
        for prefix in ("", "backbone.", "module."):
            sd = {prefix + k: v for k, v in model.state_dict().items()}
            torch.save({wrap: sd, "epoch": 3}, tmp_path / "c.pth")
            m = load_student(tmp_path / "c.pth", num_heads=4, img_size=32, num_frames=4)
            assert torch.equal(m.head.weight, model.head.weight)


def test_learned_pos_embed_is_interpolated(tmp_path):
    model = create_model(
        "umt-b16",
        embed_dim=64,
        depth=1,
        num_heads=4,
        img_size=32,
        num_frames=4,
        patch_size=8,
        align_layers=0,
        num_classes=3,
        final_norm=False,
        pos_embed="learned",
    )
    torch.save({"module": model.state_dict()}, tmp_path / "c.pth")
    spatial = load_student(tmp_path / "c.pth", num_heads=4, img_size=48, num_frames=4)
    assert spatial.pos_embed.shape == (1, 4 * 6 * 6, 64)
    spatial(torch.randn(1, 3, 4, 48, 48))
    temporal = load_student(tmp_path / "c.pth", num_heads=4, img_size=32, num_frames=8)
    assert temporal.pos_embed.shape == (1, 8 * 4 * 4, 64)
    # linear in time, align_corners=False: new frame 0 is old frame 0, new frame 7 old frame 3
    old = model.pos_embed.detach().reshape(4, 16, 64)
    new = temporal.pos_embed.detach().reshape(8, 16, 64)
    assert torch.allclose(new[0], old[0]) and torch.allclose(new[7], old[3])
    assert torch.allclose(new[2], 0.25 * old[0] + 0.75 * old[1], atol=1e-6)


def test_refuses_non_checkpoints_and_pickled_code(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    with pytest.raises(ValueError, match="empty.pth"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="text.pth"):
        read_state_dict(tmp_path / "text.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_state_dict(tmp_path / "missing.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(ValueError, match="evil.pth"):
        read_state_dict(tmp_path / "evil.pth")
    torch.save({"foo.bar": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a known UMT or CLIP checkpoint"):
        load_checkpoint(tmp_path / "other.pth")


def test_cli_convert(official_root, tmp_path):
    src = official_root / "stage1" / "student.pth"
    cfg = json.loads((official_root / "stage1" / "config.json").read_text())["student"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "umt",
            "convert",
            str(src),
            str(tmp_path / "out"),
            "--num-heads",
            str(cfg["encoder_num_heads"]),
            "--num-frames",
            str(cfg["num_frames"]),
            "--img-size",
            str(cfg["img_size"]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "umt-pretrain" in out.stdout
    assert f"aligned layers (K): {cfg['clip_return_layer']}" in out.stdout
    assert f"{cfg['num_frames']} frames of {cfg['img_size']}px" in out.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "config.json").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "umt", "convert", str(tmp_path / "nope.pth"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "nope.pth" in bad.stderr
