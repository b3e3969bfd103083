"""Typed config: recipes, dotted overrides, refusal of unknown keys and wrong types."""

from __future__ import annotations

import ast
import copy
import dataclasses
import sys
import typing
from pathlib import Path

import pytest
import yaml

from umt.config import (
    ConfigError,
    TaskConfig,
    from_dict,
    list_recipes,
    load_config,
    recipe_names,
    registry,
    save_config,
    task_command,
    upgrade_saved_config,
)
from umt.config.common import (
    ClipDataConfig,
    DistConfig,
    EncoderConfig,
    EvalConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)
from umt.config.registry import TASKS, config_class
from umt.config.stage1 import Stage1Config


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
    assert c.teacher.return_layers == 6 and c.loss.uma_kind == "l2" and c.loss.uma == 1.0
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


@pytest.mark.parametrize(
    "recipe, override, key",
    [
        (None, "optim.lr=-1", "optim.lr"),
        (None, "optim.lr=nan", "optim.lr"),
        (None, "optim.min_lr=-1e-6", "optim.min_lr"),
        (None, "optim.weight_decay=-0.05", "optim.weight_decay"),
        (None, "optim.eps=-1e-8", "optim.eps"),
        (None, "optim.betas=[0.9, 1.0]", "optim.betas"),
        (None, "optim.betas=[0.9]", "optim.betas"),
        (None, "optim.clip_grad=-1", "optim.clip_grad"),
        ("umt-tiny-synthetic-ft", "optim.lr=-1", "optim.lr"),  # the layer-decay form too
        ("umt-tiny-synthetic-ft", "optim.layer_decay=1.5", "optim.layer_decay"),
        ("umt-tiny-synthetic-ava", "optim.weight_decay_end=-1", "optim.weight_decay_end"),
        ("umt-tiny-synthetic-stage2", "optim.betas=[-0.1, 0.999]", "optim.betas"),
        (None, "schedule.warmup_epochs=-1", "schedule.warmup_epochs"),
        (None, "schedule.steps_per_epoch=-5", "schedule.steps_per_epoch"),
        ("umt-tiny-synthetic-stage2", "data.rrc_scale=[0.9, 0.1]", "data.rrc_scale"),
        ("umt-tiny-synthetic-qa", "data.rrc_scale=[0.0, 1.0]", "data.rrc_scale"),
        ("umt-tiny-synthetic-mc", "data.rrc_scale=[0.5]", "data.rrc_scale"),
        ("umt-tiny-synthetic-ft", "augment.rrc_scale=[0.08, 1.5]", "augment.rrc_scale"),
        ("umt-tiny-synthetic-ft", "augment.rrc_ratio=[1.33, 0.75]", "augment.rrc_ratio"),
        (None, "loss.uma=-1", "loss.uma"),
        (None, "teacher.return_layers=0", "teacher.return_layers"),
        ("umt-tiny-synthetic-stage2", "teacher.return_layers=5", "teacher.return_layers"),
        (None, "data.scales=[]", "data.scales"),  # every clip was "skipped" (IndexError)
        (None, "data.scales=[1.5]", "data.scales"),
        ("videomae-tiny-synthetic", "data.scales=[0.0]", "data.scales"),
        (None, "data.sampling_rate=0", "data.sampling_rate"),
        ("umt-tiny-synthetic-ft", "eval.every_epochs=-1", "eval.every_epochs"),  # a section's own
        (None, "probe.k=-1", "probe.k"),  # was a traceback after the whole pretraining
        (None, "probe.fit_clips=0", "probe.fit_clips"),
        ("umt-tiny-synthetic-qa", "eval.num_frames=-1", "eval.num_frames"),  # was "loads failed"
        ("umt-tiny-synthetic-stage2", "eval.k_test=-1", "eval.k_test"),
        ("umt-tiny-synthetic-mc", "eval.k_test=-1", "eval.k_test"),
        ("umt-tiny-synthetic-qa", "eval.k_test=0", "eval.k_test"),
        ("umt-tiny-synthetic-ft", "augment.mixup=-1", "augment.mixup"),  # was silently off
        ("umt-tiny-synthetic-ft", "augment.smoothing=1.5", "augment.smoothing"),
        (None, "dist.timeout_min=0", "dist.timeout_min"),
        (None, "model.grad_checkpointing=-1", "model.grad_checkpointing"),
        (None, "model.tubelet_size=0", "model.tubelet_size"),  # was a ZeroDivisionError
    ],
)
def test_settings_refused_with_the_config(recipe, override, key):
    """What AdamW, the schedule or the crop would refuse (or silently misuse) only after the
    model is built."""
    with pytest.raises(ConfigError, match=key):
        load_config(recipe, [override])


def test_optimizer_settings_at_their_limits_are_kept():
    c = load_config(None, ["optim.lr=0", "optim.clip_grad=0", "optim.betas=[0.0, 0.999]"])
    assert (c.optim.lr, c.optim.clip_grad, c.optim.betas) == (0.0, 0.0, [0.0, 0.999])


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


# --------------------------------------------------------------------------- the package
CONFIG_DIR = Path(__file__).resolve().parents[1] / "src" / "umt" / "config"


def test_the_config_package_imports_nothing_heavy():
    """The CLI's --help reads recipes: umt.config may import only the standard library, yaml,
    itself, umt.textfile and umt.errors (no torch, no models)."""
    allowed = {"yaml", "umt.textfile", "umt.errors"}
    files = sorted(CONFIG_DIR.glob("*.py"))
    assert {"__init__.py", "_loader.py", "common.py", "registry.py", "stage1.py"} <= {
        f.name for f in files
    }
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or module in allowed
                    or module == "umt.config"
                    or module.startswith("umt.config.")
                )
                assert ok, f"{path.name} imports {module}"


def test_every_task_is_registered_once_with_its_config_command_and_task_class():
    from umt.train.tasks import Task, task_class

    assert set(TASKS) == {
        "pretrain",
        "stage2",
        "videomae",
        "finetune",
        "finetune-retrieval",
        "finetune-ava",
        "finetune-qa",
        "builtin-teacher",
    }
    for name, entry in TASKS.items():
        # the built-in teacher's config has no video encoder or clip data (its own schema)
        assert issubclass(entry.config_class, TaskConfig) == (name != "builtin-teacher")
        assert name in typing.get_args(typing.get_type_hints(entry.config_class)["task"])
        assert entry.command in ("pretrain", "finetune", "teacher")
        assert task_command(name) == entry.command
        assert config_class({"task": name}) is entry.config_class
        cls = task_class(name)
        assert issubclass(cls, Task) and f"{cls.__module__}:{cls.__name__}" == entry.task_path
    assert config_class({}) is Stage1Config  # no task: stage 1
    with pytest.raises(ConfigError, match="did you mean 'finetune-qa'"):
        config_class({"task": "finetune-q"})
    # every packaged recipe names a registered task; each command lists exactly its recipes
    assert sorted(recipe_names("pretrain") + recipe_names("finetune")) == list_recipes()


def test_register_task_is_the_one_place_a_task_is_declared(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "TASKS", dict(TASKS))

    @registry.register_task(name="probe-only", command="pretrain", task="some.module:ProbeTask")
    @dataclasses.dataclass
    class ProbeOnlyConfig(TaskConfig):
        recipe: str = "probe-only"
        task: typing.Literal["probe-only"] = "probe-only"

    f = tmp_path / "p.yaml"
    f.write_text("task: probe-only\ntrain:\n  seed: 3\n")
    cfg = load_config(str(f), ["optim.lr=1e-3"], task="pretrain")
    assert isinstance(cfg, ProbeOnlyConfig) and cfg.train.seed == 3 and cfg.optim.lr == 1e-3
    with pytest.raises(ConfigError, match="umt pretrain"):
        load_config(str(f), task="finetune")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_task(name="probe-only", command="pretrain", task="m:C")(ProbeOnlyConfig)
    with pytest.raises(ValueError, match="allows"):
        registry.register_task(name="other", command="pretrain", task="m:C")(ProbeOnlyConfig)


def test_every_task_config_shares_the_common_sections():
    for entry in TASKS.values():
        cfg = entry.config_class()
        if entry.name != "builtin-teacher":  # no video encoder, no clips
            assert isinstance(cfg.model, EncoderConfig) and isinstance(cfg.data, ClipDataConfig)
        for section, cls in (
            ("optim", OptimConfig),
            ("schedule", ScheduleConfig),
            ("train", TrainConfig),
            ("dist", DistConfig),
        ):
            assert isinstance(getattr(cfg, section), cls)
        assert list(cfg.to_dict())[:2] == ["recipe", "task"]
        assert list(cfg.to_dict())[-4:] == ["optim", "schedule", "train", "dist"]
        if hasattr(cfg, "eval"):
            assert isinstance(cfg.eval, EvalConfig) and cfg.eval.every_epochs == 1


# --------------------------------------------------------------------------- renamed keys
def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    new = "was renamed to 'eval.every_epochs'"
    with pytest.raises(ConfigError, match=f"'eval.val_every_epochs' {new}"):
        load_config("umt-tiny-synthetic-ft", ["eval.val_every_epochs=2"])
    recipe = tmp_path / "old.yaml"
    recipe.write_text("base: umt-tiny-synthetic-ft\neval:\n  val_every_epochs: 2\n")
    with pytest.raises(ConfigError, match=new):
        load_config(str(recipe))
    # a run's saved config.yaml, written before the rename, given back as a recipe
    saved = load_config("umt-tiny-synthetic-ft").to_dict()
    saved["eval"]["val_every_epochs"] = saved["eval"].pop("every_epochs")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(ConfigError, match=new):
        load_config(str(tmp_path / "config.yaml"), task="finetune")
    assert load_config("umt-tiny-synthetic-ft", ["eval.every_epochs=2"]).eval.every_epochs == 2
    # the old name means nothing to the other tasks: unknown there, as any other key
    with pytest.raises(ConfigError, match="unknown config key 'eval.val_every_epochs'"):
        load_config("umt-tiny-synthetic-qa", ["eval.val_every_epochs=2"])


@pytest.mark.parametrize(
    "recipe, old, new",
    [
        ("umt-tiny-synthetic-ft", "eval.val_every_epochs", "eval.every_epochs"),
        ("umt-tiny-synthetic-ft", "data.num_sample", "data.clips_per_video"),
        ("umt-tiny-synthetic", "loss.kind", "loss.uma_kind"),
        ("umt-tiny-synthetic", "loss.weight", "loss.uma"),
        ("umt-tiny-synthetic", "train.tensorboard", "train.loggers"),
        ("umt-tiny-synthetic-ft", "train.tensorboard", "train.loggers"),
        ("umt-tiny-synthetic-qa", "train.tensorboard", "train.loggers"),
    ],
)
def test_every_renamed_key_is_refused_in_overrides_and_recipes(tmp_path, recipe, old, new):
    cfg = load_config(recipe)
    value = cfg.to_dict()[new.split(".")[0]][new.split(".")[1]]
    with pytest.raises(ConfigError, match=f"'{old}' was renamed to '{new}'"):
        load_config(recipe, [f"{old}={value}"])
    section, key = old.split(".")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"base": recipe, section: {key: value}}))
    with pytest.raises(ConfigError, match=f"'{old}' was renamed to '{new}'"):
        load_config(str(tmp_path / "r.yaml"))


# The old form of the values whose form changed with their key's name.
OLD_VALUES = {"train.tensorboard": lambda loggers: "tensorboard" in loggers}


def _saved_before_the_renames(cfg: TaskConfig) -> dict:
    """``cfg`` as a run's config.yaml written before the keys were renamed."""
    saved = cfg.to_dict()
    for old, new in type(cfg).renamed_keys.items():
        (s_old, k_old), (s_new, k_new) = old.split("."), new.split(".")
        saved[s_old][k_old] = OLD_VALUES.get(old, lambda v: v)(saved[s_new].pop(k_new))
    return saved


@pytest.mark.parametrize("recipe", ["umt-tiny-synthetic-ft", "umt-tiny-synthetic"])
def test_an_old_run_resumes_across_the_renames(recipe):
    """A resume compares the checkpoint's config.yaml with the run's config: the keys renamed
    since are read under their new names, so an old run resumes, and a real change is still
    caught (under the new name)."""
    from umt.train.loop import config_differences
    from umt.train.tasks import task_class

    cfg = load_config(recipe)
    task = task_class(cfg.task)(cfg, None)
    saved = _saved_before_the_renames(cfg)
    assert saved["train"]["tensorboard"] is True and "loggers" not in saved["train"]
    assert upgrade_saved_config(saved) == cfg.to_dict()
    saved_off = copy.deepcopy(saved)
    saved_off["train"]["tensorboard"] = False  # tensorboard off: no loggers
    assert upgrade_saved_config(saved_off)["train"]["loggers"] == []
    assert config_differences(task, yaml.safe_dump(saved)) == []
    if cfg.task == "finetune":
        saved["data"]["num_sample"] = 3
        assert config_differences(task, yaml.safe_dump(saved)) == ["data.clips_per_video: 3 -> 1"]
    else:
        saved["loss"]["weight"] = 2.0
        assert config_differences(task, yaml.safe_dump(saved)) == ["loss.uma: 2.0 -> 1.0"]
    assert upgrade_saved_config(["not", "a", "mapping"]) == ["not", "a", "mapping"]


def test_recipes_read_with_the_c_parser_read_as_with_the_python_one():
    """Recipes are read with libyaml's CSafeLoader when it is there (the CLI's --help reads all
    of them): every packaged recipe must read the same as with the pure-Python SafeLoader."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for name in list_recipes():
        text = (CONFIG_DIR.parent / "configs" / f"{name}.yaml").read_text()
        assert yaml.load(text, Loader=loader) == yaml.safe_load(text), name
