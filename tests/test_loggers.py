"""``train.loggers``: TensorBoard and Weights & Biases (offline) get what ``metrics.jsonl`` gets,
with the run's name and config; a resume continues both; a missing package is refused before any
work; a logger failing mid-run does not stop the run."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train_helpers import TINY_FT, run_cli, tiny_config
from umt.config import ConfigError, load_config
from umt.train import loggers, pretrain

# A tiny fine-tuning run: 3 steps an epoch, validated after each epoch.
FT = [
    "finetune",
    *TINY_FT,
    "model.init=scratch",
    "schedule.epochs=2",
    "schedule.steps_per_epoch=3",
    "eval.test_views=1x1",
    "train.checkpoint_every=2",
    "train.loggers=[tensorboard,wandb]",
]


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B offline, every folder of its own under ``tmp_path``, no key."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def expected(recs: list[dict]) -> dict[int, dict[str, float]]:
    """What each step of ``metrics.jsonl`` should give the loggers: ``{step: {tag: value}}``."""
    out: dict[int, dict[str, float]] = {}
    for rec in recs:
        prefix = "val" if any(k.startswith("val_") for k in rec) else "train"
        out.setdefault(rec["step"], {}).update(loggers.scalars(rec, prefix))
    return out


def wandb_records(path: Path):
    """The records of a W&B ``.wandb`` file: a 7-byte header, then LevelDB-log chunks (32 KiB
    blocks; 7-byte chunk headers: crc, length, type) of ``wandb_internal_pb2.Record``s. wandb
    0.31 has no Python reader of its own (its Go core reads these files)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding to the block's end
            pos += left
            continue
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            yield wandb_internal_pb2.Record.FromString(parts)
            parts = b""


def wandb_attempts(run: Path) -> list[tuple]:
    """Each attempt's (oldest first) W&B run record and history ``{step: {tag: value}}``."""
    out = []
    for f in sorted((run / "wandb").glob("offline-run-*/run-*.wandb")):
        run_rec, history = None, {}
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run_rec = rec.run
            elif kind == "history":
                items = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
                step = int(items.pop("_step"))
                history[step] = {k: v for k, v in items.items() if not k.startswith("_")}
        out.append((run_rec, history))
    return out


def tensorboard_of(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def tb_history(acc) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for name in acc.Tags()["scalars"]:
        for ev in acc.Scalars(name):
            assert name not in out.get(ev.step, {}), f"{name} logged twice at step {ev.step}"
            out.setdefault(ev.step, {})[name] = ev.value
    return out


def assert_same(got: dict[int, dict[str, float]], want: dict[int, dict[str, float]]) -> None:
    assert sorted(got) == sorted(want)
    for step in want:
        assert got[step].keys() == want[step].keys(), step
        for name, value in want[step].items():
            assert got[step][name] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, name)


# --------------------------------------------------------------------------- config
def test_loggers_config_default_choices_and_old_key():
    assert load_config(None).train.loggers == ["tensorboard"]
    assert load_config(None).train.wandb_project == "umt"
    for recipe in ("umt-b16-k710", "umt-tiny-synthetic-ft", "umt-tiny-synthetic-qa"):
        assert load_config(recipe).train.loggers == ["tensorboard"]
    cfg = load_config(None, ["train.loggers=[wandb,tensorboard]", "train.wandb_project=p"])
    assert cfg.train.loggers == ["wandb", "tensorboard"] and cfg.train.wandb_project == "p"
    assert load_config(None, ["train.loggers=[]"]).train.loggers == []
    with pytest.raises(ConfigError, match=r"train.loggers\[0\]: 'tensorbord' is not one of"):
        load_config(None, ["train.loggers=[tensorbord]"])
    with pytest.raises(ConfigError, match="train.loggers: .* names a logger twice"):
        load_config(None, ["train.loggers=[wandb,wandb]"])
    with pytest.raises(ConfigError, match="'train.tensorboard' was renamed to 'train.loggers'"):
        load_config(None, ["train.tensorboard=false"])


def test_wandb_mode_follows_the_environment(tmp_path):
    nothing = tmp_path / "no-netrc"
    assert loggers.wandb_mode({"NETRC": str(nothing)}) == (
        "offline",
        "no WANDB_MODE, WANDB_API_KEY or wandb login",
    )
    assert loggers.wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"})[0] is None
    assert loggers.wandb_mode({"WANDB_API_KEY": "k", "NETRC": str(nothing)})[0] == "online"
    rc = tmp_path / "netrc"
    rc.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert loggers.wandb_mode({"NETRC": str(rc)})[0] == "online"
    # a login to another host than WANDB_BASE_URL's is not one to W&B's server
    assert loggers.wandb_mode({"NETRC": str(rc), "WANDB_BASE_URL": "https://wb.corp"})[0] == (
        "offline"
    )


# --------------------------------------------------------------------------- a run, resumed
@pytest.mark.slow
def test_tensorboard_and_wandb_get_what_metrics_jsonl_gets_and_a_resume_continues_them(
    synthetic, tmp_path, wandb_offline
):
    run = tmp_path / "ft-run"
    args = [*FT, f"data.synthetic_root={synthetic}", f"train.output_dir={run}"]
    first = run_cli([*args, "train.max_steps=4"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_id,) = {p.name.rsplit("-", 1)[1] for p in (run / "wandb").glob("offline-run-*")}
    assert (run / "wandb" / "run-id").read_text().strip() == run_id
    assert f"  tensorboard: {run / 'tensorboard'}" in first.stdout
    assert (
        f"  wandb: offline (WANDB_MODE=offline); project umt, run {run.name} (id {run_id}); "
        f"upload with: wandb sync {run / 'wandb'}/offline-run-*"
    ) in first.stdout
    recs = read_metrics(run)
    steps = [(r["step"], "val_top1" in r) for r in recs]
    assert steps == [(1, 0), (2, 0), (3, 0), (3, 1), (4, 0), (4, 1)]  # validated at 3 and the end
    assert_same(tb_history(tensorboard_of(run)), expected(recs))
    ((_, history),) = wandb_attempts(run)
    assert_same(history, expected(recs))

    # Resume from the checkpoint of step 2 (as after a kill at step 4): metrics.jsonl drops
    # steps 3-4 and gets them again; so does TensorBoard (purged), and the same W&B run.
    again = run_cli(
        [*args, "train.max_steps=6", f"train.resume={run}/checkpoints/step_000002"], tmp_path
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"continuing run {run.name} (id {run_id})" in again.stdout
    recs = read_metrics(run)
    assert [r["step"] for r in recs] == [1, 2, 3, 3, 4, 5, 6, 6]  # no validation at 4 now
    want = expected(recs)
    assert "val/top1" in want[6] and "val/top1" not in want[4]
    acc = tensorboard_of(run)
    assert_same(tb_history(acc), want)  # the first attempt's steps 3-4 purged
    attempts = wandb_attempts(run)
    assert len(attempts) == 2 and {r.run_id for r, _ in attempts} == {run_id}
    assert_same(attempts[1][1], {s: v for s, v in want.items() if s >= 3})

    # The run's name and its whole config, in both.
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert {(r.display_name, r.project) for r, _ in attempts} == {(run.name, "umt")}
    wb_config = {i.key: json.loads(i.value_json) for i in attempts[1][0].config.update}
    assert {k: wb_config[k] for k in cfg} == cfg and wb_config["train"]["max_steps"] == 6
    texts = {
        name: [ev.tensor_proto.string_val[0].decode() for ev in acc.Tensors(name)]
        for name in ("run/text_summary", "config/text_summary")
    }
    assert set(texts["run/text_summary"]) == {run.name}
    config_text = texts["config/text_summary"][-1]
    assert yaml.safe_load("\n".join(ln[4:] for ln in config_text.splitlines())) == cfg
    from tensorboard.plugins.hparams import plugin_data_pb2

    hp = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["train.max_steps"].number_value == 4  # the first
    assert start.session_start_info.hparams["model.name"].string_value == "umt-b16"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/experiment"])
    assert [m.name.tag for m in experiment.experiment.metric_infos] == ["train/loss", "val/top1"]


# --------------------------------------------------------------------------- failures
def test_a_missing_logger_package_is_one_line_before_any_work(synthetic, tmp_path):
    """The package is hidden as Python hides an uninstalled one (``sys.modules[name] = None``:
    ``find_spec`` finds nothing, ``import`` fails)."""
    run = tmp_path / "r"
    code = (
        "import sys; sys.modules['wandb'] = None\n"
        "from umt.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cfg_args = [f"data.synthetic_root={synthetic}", f"train.output_dir={run}"]
    res = subprocess.run(
        [sys.executable, "-c", code, "pretrain", "train.loggers=[tensorboard,wandb]", *cfg_args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.splitlines() == [
        "umt pretrain: error: train.loggers: wandb needs the wandb package: pip install wandb"
    ]
    assert not run.exists()  # nothing made, nothing trained


def test_a_logger_failing_mid_run_is_dropped_with_one_warning(
    synthetic, tmp_path, monkeypatch, capsys
):
    calls = []

    def failing_log(self, values, step):
        calls.append(step)
        if step >= 2:
            raise OSError(28, "No space left on device")
        self.writer.add_scalar("train/loss", values["train/loss"], step)

    monkeypatch.setattr(loggers.TensorBoardBackend, "log", failing_log)
    out = tmp_path / "r"
    res = pretrain(tiny_config(synthetic, out, "train.max_steps=4", "train.loggers=[tensorboard]"))
    assert res.losses and len(res.losses) == 4 and calls == [1, 2]  # dropped after step 2
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
    printed = capsys.readouterr().out
    warning = (
        "warning: tensorboard logging failed at step 2 (OSError: [Errno 28] No space left on "
        "device); training goes on without it (metrics.jsonl has every record)"
    )
    assert printed.count("warning: tensorboard") == 1 and warning in printed
    # what it logged before failing is there, and the file was closed (its end not marked)
    acc = tensorboard_of(out)
    assert [ev.step for ev in acc.Scalars("train/loss")] == [1]
    assert "_hparams_/session_end_info" not in acc.PluginTagToContent("hparams")


def test_a_logger_that_cannot_start_is_said_and_the_run_goes_on(
    synthetic, tmp_path, monkeypatch, capsys
):
    import wandb

    def no_server(**kwargs):
        raise wandb.errors.CommError("could not reach api.wandb.ai")

    monkeypatch.setattr(wandb, "init", no_server)
    out = tmp_path / "r"
    res = pretrain(tiny_config(synthetic, out, "train.max_steps=2", "train.loggers=[wandb]"))
    assert len(res.losses) == 2 and [r["step"] for r in read_metrics(out)] == [1, 2]
    printed = capsys.readouterr().out
    assert (
        "  warning: wandb could not start (CommError: could not reach api.wandb.ai); "
        "going on without it"
    ) in printed
