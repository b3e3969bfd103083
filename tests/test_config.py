"""Typed config: recipes, dotted overrides, refusal of unknown keys and wrong types."""

from __future__ import annotations

import pytest

from umt.config import ConfigError, from_dict, list_recipes, load_config, save_config


def test_packaged_recipes_load():
    assert {"umt-b16-k710", "umt-l16-k710", "umt-tiny-synthetic"} <= set(list_recipes())
    for name in list_recipes():
        cfg = load_config(name)
        assert cfg.recipe == name


def test_b16_recipe_matches_official_script():
    c = load_config("umt-b16-k710")
    assert (c.model.name, c.teacher.name) == ("umt-b16", "clip-b16")
    assert (c.data.num_frames, c.model.tubelet_size, c.data.input_size) == (8, 1, 224)
    assert c.data.sampling == "segments" and c.data.flip  # official num_segments sampling
    assert c.data.scales == [1.0, 0.875, 0.75, 0.66]
    assert c.mask.kind == "attention" and c.mask.ratio == 0.8
    assert c.teacher.return_layers == 6 and c.loss.kind == "l2" and c.loss.weight == 1.0
    assert c.optim.betas == [0.9, 0.95]
    assert (c.optim.lr, c.optim.min_lr, c.optim.warmup_lr) == (1.5e-4, 1e-5, 0.0)
    assert c.train.precision == "fp16"  # autocast + grad scaler, as the official run
    assert c.teacher.weights is None and not c.teacher.allow_random  # weights required
    assert c.optim.weight_decay == 0.05
    assert (c.schedule.epochs, c.schedule.warmup_epochs) == (201, 40)
    assert c.train.batch_size == 64 and c.model.drop_path_rate == 0.1
    assert c.data.teacher_norm == "imagenet"


def test_l16_recipe_inherits_and_changes():
    c = load_config("umt-l16-k710")
    assert (c.model.name, c.teacher.name) == ("umt-l16", "clip-l14")
    assert c.teacher.img_size == 196 and c.teacher.output_dim == 768
    assert c.model.drop_path_rate == 0.2
    assert c.optim.lr == 1.5e-4 and c.data.num_frames == 8  # inherited


def test_dotted_overrides_typed():
    c = load_config(
        None, ["optim.lr=3e-4", "data.num_frames=4", "optim.clip_grad=1", "train.max_steps=null"]
    )
    assert c.optim.lr == pytest.approx(3e-4) and isinstance(c.optim.lr, float)
    assert c.data.num_frames == 4
    assert c.optim.clip_grad == 1.0 and isinstance(c.optim.clip_grad, float)
    assert c.train.max_steps is None
    c = load_config(None, ["data.scales=[1.0, 0.5]", "data.teacher_norm=clip"])
    assert c.data.scales == [1.0, 0.5] and c.data.teacher_norm == "clip"


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lrr=1", ["optim.lrr", "did you mean 'lr'"]),
        ("optimm.lr=1", ["optimm", "did you mean 'optim'"]),
        ("optim.lr=fast", ["optim.lr", "number"]),
        ("train.batch_size=1.5", ["train.batch_size", "integer"]),
        ("data.sampling=sparce", ["data.sampling", "did you mean 'sparse'"]),
        ("data.flip=maybe", ["data.flip", "true/false"]),
        ("optim.lr", ["key.sub=value"]),
        ("optim.lr.x=1", ["optim.lr", "no sub-keys"]),
    ],
)
def test_bad_overrides_refused_with_key_named(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for w in words:
        assert w in str(err.value)


def test_bad_yaml_keys_refused(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("base: umt-tiny-synthetic\nteacher:\n  widht: 64\n")
    with pytest.raises(ConfigError, match="teacher.widht.*did you mean 'width'"):
        load_config(str(f))
    with pytest.raises(ConfigError, match="unknown recipe 'umt-b16-k71'.*umt-b16-k710"):
        load_config("umt-b16-k71")
    with pytest.raises(ConfigError, match="mask.ratio"):
        from_dict({"mask": {"ratio": 1.5}})


def test_saved_config_round_trips(tmp_path):
    c = load_config("umt-l16-k710", ["optim.lr=2e-4", "train.seed=7"])
    save_config(c, tmp_path / "c.yaml")
    again = load_config(str(tmp_path / "c.yaml"))
    assert again == c


def test_cli_print_config_and_help(capsys):
    from umt.cli import main

    assert main(["pretrain", "--print-config", "optim.lr=5e-4", "--config", "umt-b16-k710"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0005" in out and "clip-b16" in out
    assert main(["pretrain", "--print-config", "optim.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    for word in ("umt-b16-k710", "umt-l16-k710", "umt-tiny-synthetic", "optim.lr=", "torchrun"):
        assert word in text


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("optim:\n  lr: [1e-4\ntrain:\n  seed: 0\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_config(str(f))


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.checkpoint_every=0", "train.checkpoint_every"),
        ("train.log_every=0", "train.log_every"),
        ("train.keep_last=-1", "train.keep_last"),
        ("data.num_workers=-2", "data.num_workers"),
    ],
)
def test_step_intervals_and_counts_validated(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_only_the_tiny_recipe_may_use_a_random_teacher():
    from umt.train.tasks.stage1 import check_teacher_setting

    check_teacher_setting(load_config("umt-tiny-synthetic"))  # allowed, and says so at start
    for recipe in ("umt-b16-k710", "umt-l16-k710"):
        with pytest.raises(ConfigError) as err:
            check_teacher_setting(load_config(recipe))
        assert "--teacher PATH" in str(err.value) and "open_clip" in str(err.value)
        assert load_config(recipe).train.precision == "fp16"
        assert load_config(recipe).data.sampling == "segments"
    assert load_config("umt-tiny-synthetic").train.precision == "auto"
