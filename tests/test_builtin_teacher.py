"""The built-in teacher: trained on synthetic frames + captions, cached by recipe, verified by
checksum, rebuilt when stale or corrupt; and the stage-1 mask kinds of the ablations."""

from __future__ import annotations

import json

import pytest
import torch

from umt.config.teacher import TeacherRecipe, recipe_from_config
from umt.train import builtin_teacher as bt

# A teacher small enough to train in a second or two (the cache logic is the same).
SMALL = TeacherRecipe(
    img_size=32, width=32, layers=2, heads=2, output_dim=16, steps=4, batch_size=8, warmup_steps=1
)


def _ensure(recipe, synthetic, root, **kw):
    lines: list[str] = []
    folder, desc = bt.ensure_builtin_teacher(recipe, synthetic, root=root, log=lines.append, **kw)
    return folder, desc, lines


def test_trained_once_then_reused(synthetic, tmp_path, monkeypatch):
    folder, desc, lines = _ensure(SMALL, synthetic, tmp_path)
    assert folder == bt.teacher_dir(SMALL, tmp_path) and folder.name.endswith(SMALL.key())
    assert any("training it" in line for line in lines) and "trained now" in desc
    for name in (
        "model.safetensors",
        "config.json",
        "recipe.json",
        "checksum.sha256",
        "report.json",
    ):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "recipe.json").read_text()) == SMALL.to_dict()
    report = json.loads((folder / "report.json").read_text())
    zs = report["zero_shot"]
    assert zs["frames"] == 60 * 8 and 0.0 <= zs["colour_acc"] <= 1.0
    assert zs["colour_chance"] == pytest.approx(1 / 6) and zs["shape_chance"] == 0.25

    def no_training(*a, **k):
        raise AssertionError("a cached teacher must not be trained again")

    monkeypatch.setattr(bt, "train_teacher", no_training)
    again, desc2, lines2 = _ensure(SMALL, synthetic, tmp_path)
    assert again == folder and "cached" in desc2 and not lines2
    assert "colour" in desc2 and "shape" in desc2  # the zero-shot report is said


def test_loads_as_a_frozen_clip_teacher(synthetic, tmp_path):
    from umt.models import load_teacher

    folder, _, _ = _ensure(SMALL, synthetic, tmp_path)
    teacher = load_teacher(folder, return_layers=2)
    assert teacher.width == 32 and teacher.output_dim == 16 and teacher.img_size == 32
    assert teacher.return_layers == 2 and not any(p.requires_grad for p in teacher.parameters())
    feats, attn = teacher(torch.randn(1, 3, 2, 32, 32))
    assert feats.shape == (2, 1, 2 * 4, 16) and attn.shape == (1, 2, 4)


def test_recipe_change_gives_another_teacher(synthetic, tmp_path):
    first, _, _ = _ensure(SMALL, synthetic, tmp_path)
    other = TeacherRecipe(**{**SMALL.to_dict(), "crop_scales": (1.0,), "steps": 5})
    assert other.key() != SMALL.key()
    second, desc, lines = _ensure(other, synthetic, tmp_path)
    assert second != first and "trained now" in desc and first.is_dir()
    # A folder holding another recipe than its name says is refused and rebuilt.
    (second / "recipe.json").write_text(json.dumps(SMALL.to_dict()))
    assert bt.check_cached(second, other) == "made with another recipe"
    _, desc, lines = _ensure(other, synthetic, tmp_path)
    assert "trained now" in desc and any("made with another recipe" in x for x in lines)
    assert bt.check_cached(second, other) is None


def test_corrupt_cache_is_refused_and_rebuilt(synthetic, tmp_path):
    folder, _, _ = _ensure(SMALL, synthetic, tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in a tensor
    weights.write_bytes(bytes(data))
    assert "corrupt" in bt.check_cached(folder, SMALL)
    _, desc, lines = _ensure(SMALL, synthetic, tmp_path)
    assert any("corrupt" in line and "training it again" in line for line in lines)
    assert bt.check_cached(folder, SMALL) is None and "trained now" in desc
    # Missing or unreadable pieces are refused too.
    (folder / "checksum.sha256").unlink()
    assert bt.check_cached(folder, SMALL).startswith("unreadable")
    (folder / "checksum.sha256").write_text("")
    assert bt.check_cached(folder, SMALL) == "incomplete"


def test_retrain_forces_a_new_teacher(synthetic, tmp_path):
    folder, _, _ = _ensure(SMALL, synthetic, tmp_path)
    before = (folder / "report.json").read_text()
    _, desc, lines = _ensure(SMALL, synthetic, tmp_path, retrain=True)
    assert "trained now" in desc and any("retrain requested" in x for x in lines)
    # Same recipe, same seed: the same weights (training is deterministic on one machine).
    assert json.loads(before)["loss_first"] == pytest.approx(
        json.loads((folder / "report.json").read_text())["loss_first"], rel=1e-4
    )


def test_recipe_follows_the_config():
    from umt.config import load_config

    cfg = load_config("umt-tiny-synthetic")
    assert cfg.teacher.weights == bt.BUILTIN
    r = recipe_from_config(cfg)
    assert (r.img_size, r.width, r.layers, r.heads, r.output_dim) == (112, 128, 4, 4, 128)
    assert r.norm == cfg.data.teacher_norm
    r2 = recipe_from_config(load_config("umt-tiny-synthetic", ["teacher.width=64"]))
    assert r2.width == 64 and r2.key() != r.key()
    assert TeacherRecipe.from_dict(r.to_dict()) == r


def test_a_new_world_version_gives_another_teacher(monkeypatch, tmp_path):
    """A run's teacher recipe carries the world's version, so a world of another version (whose
    set lives in another folder) never picks up the teacher cached for the old one."""
    from umt.config import load_config
    from umt.data import synth

    monkeypatch.setenv("UMT_HOME", str(tmp_path))  # no set made: the recipe's defaults
    cfg = load_config("umt-tiny-synthetic")
    now = bt.recipe_for_run(cfg)
    assert now.world == synth.WORLD_VERSION
    monkeypatch.setattr(synth, "WORLD_VERSION", synth.WORLD_VERSION + 1)
    later = bt.recipe_for_run(cfg)
    assert later.world == now.world + 1 and later.key() != now.key()
    assert bt.teacher_dir(later) != bt.teacher_dir(now)
    assert TeacherRecipe.from_dict(later.to_dict()) == later


def test_teacher_object_is_what_every_frame_shows():
    """The teacher's caption object of a clip (colour, category) is drawn in each frame, and
    every object of the set is among object_names."""
    import numpy as np

    from umt.data.synth import CLASSES, COLOURS, object_names, render_clip, teacher_object

    names = object_names()
    assert len(names) == len(set(names)) == 24
    for label in range(len(CLASSES)):
        frames, rec = render_clip(label, 6, 112, np.random.default_rng([3, label]))
        colour, category = teacher_object(rec)
        assert (colour, category) in names and category == CLASSES[label]["category"]
        rgb = np.array(COLOURS[colour], dtype=np.uint8)
        for frame in frames:
            hits = (frame == rgb).all(-1).sum() + (frame == (rgb * 0.6).astype(np.uint8)).all(
                -1
            ).sum()
            assert hits > 20, (label, colour)


def test_unwritable_cache_is_one_clear_error(synthetic, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(bt.TeacherCacheError, match="UMT_HOME"):
        bt.ensure_builtin_teacher(SMALL, synthetic, root=blocker / "teachers")


# --------------------------------------------------------------------------- mask kinds
@pytest.mark.parametrize("kind", ["attention", "random", "tube"])
def test_stage1_mask_kinds(kind):
    from umt.models import create_model
    from umt.train.tasks.common import teacher_targets

    torch.manual_seed(0)
    teacher = create_model(
        "clip-b16", img_size=64, width=32, layers=2, heads=2, output_dim=16, return_layers=2
    )
    video = torch.randn(3, 3, 4, 64, 64)
    seeds = [11, 12, 13]
    targets, mask = teacher_targets(teacher, video, seeds, 0.75, mask_kind=kind)
    b, t, hw = 3, 4, 16
    per_frame = (~mask).reshape(b, t, hw)
    assert (per_frame.sum(-1) == 4).all()  # 25% of 16 kept in every frame
    assert targets.shape == (2, b, t * 4, 16)
    same_positions = (per_frame == per_frame[:, :1]).all()
    assert bool(same_positions) == (kind == "tube")
    again = teacher_targets(teacher, video, seeds, 0.75, mask_kind=kind)[1]
    assert torch.equal(mask, again)  # a function of the seeds
    if kind == "random":  # does not follow the attention: the same mask for another clip
        other = teacher_targets(teacher, torch.randn_like(video), seeds, 0.75, mask_kind=kind)[1]
        assert torch.equal(mask, other)
    if kind == "attention":
        other = teacher_targets(teacher, torch.randn_like(video), seeds, 0.75, mask_kind=kind)[1]
        assert not torch.equal(mask, other)
    with pytest.raises(ValueError, match="mask kind"):
        teacher_targets(teacher, video, seeds, 0.75, mask_kind="grid")


def test_a_teacher_recipe_of_its_own_is_one_registered_task(tmp_path):
    """``task: builtin-teacher`` is a recipe like any other: loaded, checked, its loop sections
    derived from its ``teacher`` recipe (a hand-set lr there is refused)."""
    from umt.config import ConfigError, load_config
    from umt.config.teacher import BuiltinTeacherConfig

    f = tmp_path / "t.yaml"
    cfg = BuiltinTeacherConfig.for_recipe(SMALL, "", "")
    f.write_text(cfg.to_yaml())
    back = load_config(str(f))
    assert isinstance(back, BuiltinTeacherConfig) and back.teacher == SMALL
    assert back.teacher.key() == SMALL.key()
    with pytest.raises(ConfigError, match="optim is derived from the teacher recipe"):
        load_config(str(f), ["optim.lr=0.1"])
    with pytest.raises(ConfigError, match="teacher.crop_scales"):
        load_config(str(f), ["teacher.crop_scales=[0.0]"])
    with pytest.raises(ConfigError, match="unknown config key 'teacher.widht'"):
        load_config(str(f), ["teacher.widht=3"])


def test_teacher_info_reads_a_teacher_recipe_of_its_own(tmp_path, monkeypatch):
    """`umt teacher info --config t.yaml` names the cache folder of that recipe (not cached:
    exit 1), and a recipe without a teacher section is refused in one line."""
    from train_helpers import run_cli
    from umt.config.teacher import BuiltinTeacherConfig

    monkeypatch.setenv("UMT_HOME", str(tmp_path / "home"))
    f = tmp_path / "t.yaml"
    f.write_text(BuiltinTeacherConfig.for_recipe(SMALL, "", "").to_yaml())
    res = run_cli(["teacher", "info", "--config", str(f)], tmp_path, timeout=120)
    assert res.returncode == 1, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["cached"] is False and info["path"].endswith(f"synthetic-clip-{SMALL.key()}")
    res = run_cli(["teacher", "info", "--config", "umt-tiny-synthetic-ft"], tmp_path, timeout=120)
    assert res.returncode == 2 and "has no teacher section" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
