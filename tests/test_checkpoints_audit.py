"""Loading umt's own checkpoints, and refusing bad files with one clear line.

Covers: the trainer's checkpoint folder (``model.safetensors`` + ``config.json``), umt weights
without ``config.json`` (never mistaken for an official file), sizes assumed for official files
being reported, corrupt files, bad ``config.json`` files, format sniffing by content, the
official ``args`` namespace, and control characters in messages.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import resource
import shutil
import subprocess
import sys
import time
import warnings

import pytest
import torch
from safetensors.torch import save_file

from umt.models import (
    AssumedSizeWarning,
    VideoViT,
    convert_checkpoint,
    create_model,
    detect_checkpoint,
    load_checkpoint,
    load_student,
    load_teacher,
    read_state_dict,
)

SIZES = dict(num_heads=2, num_frames=4, img_size=32)


def _shake(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _student() -> VideoViT:
    torch.manual_seed(0)
    model = VideoViT(
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_frames=4,
        img_size=32,
        patch_size=16,
        align_layers=1,
        align_dim=32,
    )
    _shake(model)
    return model.eval()


def _save_like_trainer(model: VideoViT, folder: pathlib.Path, config: bool = True) -> None:
    """What a trainer checkpoint folder holds: weights, the model's kwargs, the run config."""
    folder.mkdir(parents=True)
    save_file(model.state_dict(), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if config:
        (folder / "config.json").write_text(json.dumps(model._hub_mixin_config))
    (folder / "config.yaml").write_text("model:\n  name: umt-b16\n")


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x)) and torch.equal(
            a.forward_aligned(x, None), b.forward_aligned(x, None)
        )


# --------------------------------------------------------------------------- umt's own weights
def test_trainer_folder_loads_exactly_and_without_config_refuses(tmp_path):
    model = _student()
    step = tmp_path / "run" / "checkpoints" / "step_000123"
    _save_like_trainer(model, step)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedSizeWarning)
        again = load_checkpoint(step)
        assert isinstance(again, VideoViT) and _same(model, again)
        report = convert_checkpoint(step, tmp_path / "converted")
        assert _same(model, load_checkpoint(tmp_path / "converted"))
    assert "format: umt\n" in report and "\nassumed:" not in report

    (step / "config.json").unlink()
    for path in (step, step / "model.safetensors"):
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        msg = str(err.value)
        assert str(step / "config.json") in msg and "is missing" in msg
        assert "num_heads=..., num_frames=..., img_size=..." in msg
        assert "--num-heads N --num-frames N --img-size N" in msg
        assert "\n" not in msg
    # A run folder instead of a step folder: said so.
    with pytest.raises(FileNotFoundError, match="pass one of its checkpoints/step_"):
        load_checkpoint(tmp_path / "run")


def test_umt_weights_without_config_load_with_given_sizes_exactly(tmp_path):
    """Given the sizes, our weights load as our model: no official position re-interpolation."""
    model = _student()
    _save_like_trainer(model, tmp_path / "step", config=False)
    sd = read_state_dict(tmp_path / "step")
    assert detect_checkpoint(sd).kind == "umt-student"
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedSizeWarning)  # nothing is assumed
        again = load_checkpoint(tmp_path / "step", **SIZES)
        assert _same(model, again)
        report = convert_checkpoint(tmp_path / "step", tmp_path / "out", **SIZES)
    assert "format: umt-student" in report and "\nassumed:" not in report
    assert "input: 4 frames of 32px" in report
    assert _same(model, load_checkpoint(tmp_path / "out"))

    # The same weights as a bare torch file: still ours, still refused without sizes.
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pth")
    with pytest.raises(
        ValueError, match=r"ours.pth: umt student weights without a config.*num_heads"
    ):
        load_student(tmp_path / "ours.pth")
    assert _same(model, load_student(tmp_path / "ours.pth", **SIZES))

    # A classifier saved in umt's folder layout without config.json is umt's too (not official).
    clf = create_model(
        "umt-b16", embed_dim=64, depth=1, num_heads=2, img_size=32, num_frames=4,
        patch_size=16, align_layers=0, num_classes=3, final_norm=False,
    ).eval()  # fmt: skip
    (tmp_path / "clf").mkdir()
    save_file(clf.state_dict(), str(tmp_path / "clf" / "model.safetensors"))
    with pytest.raises(ValueError, match="config.json is missing"):
        load_checkpoint(tmp_path / "clf")
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "clf", **SIZES).eval()(x), clf(x))


def test_sizes_assumed_for_official_files_are_reported(tmp_path):
    official = create_model(
        "umt-b16", embed_dim=64, depth=2, num_heads=2, img_size=224, num_frames=8,
        patch_size=16, align_layers=0, num_classes=3, final_norm=False,
    )  # fmt: skip
    torch.save({"module": official.state_dict()}, tmp_path / "ft.pth")
    with pytest.warns(AssumedSizeWarning) as rec:
        load_student(tmp_path / "ft.pth")
    msg = str(rec[0].message)
    assert "ft.pth: umt-finetune checkpoint" in msg
    assert "num_heads=1 (head width 64)" in msg
    assert "num_frames=8 (official default)" in msg and "img_size=224 (official default)" in msg
    report = convert_checkpoint(tmp_path / "ft.pth", tmp_path / "out")
    assumed = [line for line in report.splitlines() if line.startswith("assumed: ")]
    assert len(assumed) == 1
    assert (
        "num_heads=1 (head width 64); num_frames=8 (official default); img_size=224" in assumed[0]
    )
    assert "--num-heads / --num-frames / --img-size" in assumed[0]
    # Only what is still assumed is reported; nothing when everything is given.
    with pytest.warns(AssumedSizeWarning) as rec:
        load_student(tmp_path / "ft.pth", num_heads=2)
    assert "num_heads" not in str(rec[0].message) and "num_frames=8" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedSizeWarning)
        load_student(tmp_path / "ft.pth", num_heads=2, num_frames=8, img_size=224)
        report = convert_checkpoint(
            tmp_path / "ft.pth", tmp_path / "out2", num_heads=2, num_frames=8, img_size=224
        )
    assert "\nassumed:" not in report

    teacher = create_model(
        "clip-b16", width=128, layers=2, heads=4, output_dim=32, img_size=32, return_layers=1
    )
    save_file(teacher.state_dict(), str(tmp_path / "clip.safetensors"))
    with pytest.warns(AssumedSizeWarning, match=r"heads=2 \(head width 64\); return_layers=2"):
        load_teacher(tmp_path / "clip.safetensors")


# --------------------------------------------------------------------------- corrupt files
def test_corrupt_or_truncated_safetensors_are_named(tmp_path):
    model = _student()
    _save_like_trainer(model, tmp_path / "step")
    weights = tmp_path / "step" / "model.safetensors"
    data = weights.read_bytes()
    teacher = create_model(
        "clip-b16", width=64, layers=2, heads=1, output_dim=32, img_size=32, return_layers=1
    )
    save_file(teacher.state_dict(), str(tmp_path / "teacher.safetensors"))
    tdata = (tmp_path / "teacher.safetensors").read_bytes()

    weights.write_bytes(data[: len(data) - 100])  # data cut short
    (tmp_path / "alone.safetensors").write_bytes(data[:40])  # header cut short
    (tmp_path / "teacher_cut.safetensors").write_bytes(tdata[: len(tdata) // 2])
    (tmp_path / "named.pth").write_bytes(data[: len(data) // 2])  # safetensors named .pth
    (tmp_path / "noise.safetensors").write_bytes(b"\x13\x37" * 40)
    cases = [
        (lambda: load_checkpoint(tmp_path / "step"), weights),
        (lambda: load_student(tmp_path / "alone.safetensors", **SIZES), "alone.safetensors"),
        (lambda: load_teacher(tmp_path / "teacher_cut.safetensors"), "teacher_cut.safetensors"),
        (lambda: load_checkpoint(tmp_path / "named.pth"), "named.pth"),
        (lambda: read_state_dict(tmp_path / "noise.safetensors"), "noise.safetensors"),
    ]
    for load, name in cases:
        with pytest.raises(ValueError) as err:
            load()
        msg = str(err.value)
        assert f"{name}: corrupt or truncated safetensors file" in msg, msg
        assert msg.endswith("re-download it or pick another checkpoint"), msg
        assert "\n" not in msg and "weights_only" not in msg


def test_config_json_unknown_key_and_invalid_json(tmp_path):
    model = _student()
    _save_like_trainer(model, tmp_path / "step")
    cfg_file = tmp_path / "step" / "config.json"
    cfg_file.write_text(json.dumps({**model._hub_mixin_config, "num_head": 2}))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "step")
    assert str(err.value) == (
        f"{cfg_file}: unknown key 'num_head' for a VideoViT (did you mean 'num_heads'?)"
    )
    teacher = create_model(
        "clip-b16", width=64, layers=2, heads=1, output_dim=32, img_size=32, return_layers=1
    )
    teacher.save_pretrained(tmp_path / "teacher")
    tcfg = json.loads((tmp_path / "teacher" / "config.json").read_text())
    (tmp_path / "teacher" / "config.json").write_text(json.dumps({**tcfg, "normalise": False}))
    with pytest.raises(
        ValueError, match=r"unknown key 'normalise' for a CLIPTeacher .*'normalize'"
    ):
        load_teacher(tmp_path / "teacher")
    cfg_file.write_text('{"embed_dim": 64,')
    with pytest.raises(ValueError, match=r"step/config.json: invalid JSON \("):
        load_checkpoint(tmp_path / "step")
    cfg_file.write_text("[64, 2]")
    with pytest.raises(ValueError, match=r"config.json: must hold a JSON object"):
        load_checkpoint(tmp_path / "step")
    # A wrong value type is named too, not a TypeError from the constructor.
    cfg_file.write_text(json.dumps({**model._hub_mixin_config, "depth": "2"}))
    with pytest.raises(ValueError, match=r"config.json does not match .*cannot build a VideoViT"):
        load_checkpoint(tmp_path / "step")


def test_config_claiming_a_bigger_model_is_refused_before_allocating(tmp_path):
    """A few-MB file whose config.json claims a giant model: refused from the shapes alone."""
    model = _student()
    _save_like_trainer(model, tmp_path / "step")
    huge = {**model._hub_mixin_config, "embed_dim": 131072, "depth": 48, "num_heads": 1024}
    (tmp_path / "step" / "config.json").write_text(json.dumps(huge))  # ~40 TB if built
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "step")
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'step' / 'config.json'} does not match the weights in ")
    assert "(the weights hold embed_dim 64, depth 2)" in msg
    assert "patch_embed.proj.weight is [64, 3, 1, 16, 16] in the weights but " in msg
    assert "[131072, 3, 1, 16, 16] by the config" in msg
    assert "missing from the weights: blocks.2." in msg
    assert elapsed < 20 and grown_mb < 1024, (elapsed, grown_mb)
    # Overridden sizes that contradict the weights are refused the same way.
    (tmp_path / "step" / "config.json").write_text(json.dumps(model._hub_mixin_config))
    with pytest.raises(ValueError, match=r"align_heads.0.linear.weight is \[32, 64\] in the w"):
        load_checkpoint(tmp_path / "step", align_dim=48)


# --------------------------------------------------------------------------- safe reading
def test_format_is_sniffed_and_messages_never_suggest_unsafe_loading(tmp_path):
    model = _student()
    _save_like_trainer(model, tmp_path / "step")
    shutil.copy(tmp_path / "step" / "model.safetensors", tmp_path / "weights.pth")
    sd = read_state_dict(tmp_path / "weights.pth")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in sd.items())
    assert _same(model, load_checkpoint(tmp_path / "weights.pth", **SIZES))

    (tmp_path / "junk.pth").write_bytes(b"hello, not a checkpoint at all")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "junk.pth")
    assert str(err.value) == (
        f"{tmp_path / 'junk.pth'}: not a checkpoint: neither a safetensors file nor a PyTorch "
        "file (starts with bytes b'hello, not a che')"
    )

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"model": Evil()}, fh, protocol=2)
    torch.save({"model": model.state_dict(), "p": pathlib.PurePosixPath("x")}, tmp_path / "p.pth")
    torch.save(model.state_dict(), tmp_path / "cut.pth")  # a zip torch file, cut short
    (tmp_path / "cut.pth").write_bytes((tmp_path / "cut.pth").read_bytes()[:2000])
    expected = {
        "evil.pth": "refused: the file holds a pickled print, not only tensors",
        "p.pth": "refused: the file holds a pickled pathlib.PurePosixPath, not only",
        "cut.pth": "unreadable PyTorch file, corrupt or truncated",
    }
    for name, text in expected.items():
        with pytest.raises(ValueError) as err:
            load_checkpoint(tmp_path / name)
        msg = str(err.value)
        assert msg.startswith(f"{tmp_path / name}: {text}"), msg
        assert "weights_only=False" not in msg and "\n" not in msg and "\x1b" not in msg


def test_official_args_namespace_is_allowed(tmp_path):
    clf = create_model(
        "umt-b16", embed_dim=64, depth=2, num_heads=2, img_size=32, num_frames=4,
        patch_size=16, align_layers=0, num_classes=3, final_norm=False, pos_embed="learned",
    ).eval()  # fmt: skip
    torch.save({"model": clf.state_dict(), "args": argparse.Namespace(lr=1.0)}, tmp_path / "a.pth")
    again = load_student(tmp_path / "a.pth", **SIZES).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), clf(x))
    report = convert_checkpoint(tmp_path / "a.pth", tmp_path / "out", num_heads=2, img_size=32)
    assert "format: umt-finetune" in report and "classes: 3" in report
    assert "\nassumed:" not in report  # the frames follow from the learned table at 32 px


def test_control_characters_are_escaped(tmp_path):
    save_file({"foo\x1b[31m.bar": torch.zeros(1)}, str(tmp_path / "esc.safetensors"))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "esc.safetensors")
    msg = str(err.value)
    assert "\x1b" not in msg and "first keys: foo\\x1b[31m.bar" in msg
    out = subprocess.run(
        [sys.executable, "-m", "umt", "convert", str(tmp_path / "esc.safetensors"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "\x1b" not in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.startswith("umt convert: error: ") and "foo\\x1b[31m.bar" in out.stderr


def test_cli_convert_of_umt_weights_without_config(tmp_path):
    model = _student()
    _save_like_trainer(model, tmp_path / "step", config=False)
    cmd = [sys.executable, "-m", "umt", "convert", str(tmp_path / "step"), str(tmp_path / "out")]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "config.json is missing" in bad.stderr and "--num-heads N" in bad.stderr
    flags = ["--num-heads", "2", "--num-frames", "4", "--img-size", "32"]
    good = subprocess.run(cmd + flags, capture_output=True, text=True, check=True)
    assert "format: umt-student" in good.stdout and "\nassumed:" not in good.stdout
    assert _same(model, load_checkpoint(tmp_path / "out"))
