"""Where a run's records go besides ``metrics.jsonl`` (``train.loggers``): TensorBoard and
Weights & Biases, behind one interface (:class:`Backend`).

On rank 0 each backend gets every record ``metrics.jsonl`` gets, at its step: a training step's
numbers as ``train/<key>`` (loss, lr, wd, grad_norm, clips_per_s, ...), a validation's as
``val/<key>`` (``val_top1`` as ``val/top1``). Each records the run's name (its folder's) and its
whole config. A resumed run continues the same TensorBoard log (the steps after its checkpoint
purged, as ``metrics.jsonl`` is trimmed) and the same W&B run (its id kept in
``<run>/wandb/run-id``). A backend that fails mid-run is dropped with one warning; the run goes
on (:class:`umt.train.loop.RunLogger`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import netrc
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from umt.config import ConfigError, TaskConfig, flatten

# logger -> the package it needs (what ``pip install`` takes, and what it imports)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_loggers(loggers: Sequence[str]) -> None:
    """Refuse, before any work, a logger whose package is not installed (one line, exit 2)."""
    for name in loggers:
        package = PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"train.loggers: {name} needs the {package} package: pip install {package}"
            )


def tag(prefix: str, key: str) -> str:
    """A record's key as the loggers name it: ``train/loss``, ``val/top1`` (for ``val_top1``)."""
    return f"{prefix}/{key.removeprefix(prefix + '_')}"


def scalars(rec: Mapping[str, Any], prefix: str) -> dict[str, int | float]:
    """The finite numbers of a ``metrics.jsonl`` record, its step aside, under their tags."""
    return {
        tag(prefix, k): v
        for k, v in rec.items()
        if k != "step"
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


class Backend:
    """One logger: ``log`` numbers at a step, ``close`` at the end (``failed``: the run ended
    in an error). Any of them may raise; the caller drops the backend then."""

    name = ""

    def log(self, values: dict[str, int | float], step: int) -> None:
        raise NotImplementedError

    def close(self, failed: bool) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- TensorBoard
def hparam_values(cfg: TaskConfig) -> dict[str, int | float | str | bool]:
    """The config flattened to ``section.key`` with the value types TensorBoard's HPARAMS take
    (lists and nulls as their JSON text)."""
    return {
        k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
        for k, v in flatten(cfg.to_dict()).items()
    }


class TensorBoardBackend(Backend):
    """``<run>/tensorboard``: scalars, the config YAML and the run name as text, the config as
    HPARAMS (compared against ``train/loss`` and the validation's best metric)."""

    name = "tensorboard"

    def __init__(self, cfg: TaskConfig, out: Path, start_step: int, best_metric: str | None):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # A resumed run drops what an earlier attempt logged after the checkpoint's step.
        purge = start_step + 1 if start_step > 0 else None
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=purge)
        self.writer.add_text("run", out.name, start_step)
        # Markdown: an indented block keeps the YAML's layout.
        self.writer.add_text("config", textwrap.indent(cfg.to_yaml(), "    "), start_step)
        tags = ["train/loss"] + ([tag("val", best_metric)] if best_metric else [])
        experiment, start, self.end = hparams(hparam_values(cfg), dict.fromkeys(tags, 0.0))
        if start_step == 0:  # TensorBoard keeps a run's first HPARAMS: a resume adds none
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(start)

    def log(self, values: dict[str, int | float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def close(self, failed: bool) -> None:
        if not failed:
            self.writer.file_writer.add_summary(self.end)
        self.writer.close()


# --------------------------------------------------------------------------- Weights & Biases
def wandb_mode(env: Mapping[str, str]) -> tuple[str | None, str]:
    """The mode for ``wandb.init`` (None: ``WANDB_MODE``'s, which wandb reads itself) and why:
    ``WANDB_MODE`` when set; else online when there is an API key (``WANDB_API_KEY``, or the
    ``wandb login`` entry of ``~/.netrc`` / ``$NETRC``); else offline."""
    if env.get("WANDB_MODE"):
        return None, f"WANDB_MODE={env['WANDB_MODE']}"
    if env.get("WANDB_API_KEY"):
        return "online", "WANDB_API_KEY is set"
    host = urlparse(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    path = env.get("NETRC") or str(Path("~/.netrc").expanduser())
    try:
        if Path(path).is_file() and netrc.netrc(path).authenticators(host):
            return "online", f"logged in to {host} ({path})"
    except (netrc.NetrcParseError, OSError):
        pass
    return "offline", "no WANDB_MODE, WANDB_API_KEY or wandb login"


class WandbBackend(Backend):
    """A W&B run named after the run folder, with the whole config, its files under
    ``<run>/wandb``; a resumed run continues the W&B run whose id ``<run>/wandb/run-id`` keeps.
    W&B does not capture the console (``console="off"``): the loop's output stays as it is."""

    name = "wandb"

    def __init__(
        self, cfg: TaskConfig, out: Path, best_metric: str | None, say: Callable[[str], None]
    ):
        import wandb

        mode, why = wandb_mode(os.environ)
        folder = out / "wandb"
        folder.mkdir(exist_ok=True)
        id_file = folder / "run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        self.run = wandb.init(
            project=cfg.train.wandb_project,
            name=out.name,
            id=run_id,
            resume="allow",
            config=cfg.to_dict(),
            allow_val_change=True,  # a resume may change train.max_steps, ...
            dir=str(out),
            mode=mode,
            settings=wandb.Settings(console="off", silent=True),
        )
        if run_id is None:
            id_file.write_text(self.run.id + "\n")
        if best_metric:
            self.run.define_metric(tag("val", best_metric), summary="max")
        # An online run resumed past the checkpoint's step takes no steps below its last one
        # (their values are those it has: a resume repeats them exactly).
        self.first_step = self.run.starting_step
        if self.run.offline:
            state, where = "offline", f"upload with: wandb sync {folder}/offline-run-*"
        elif self.run.disabled:
            state, where = "disabled", "nothing is recorded"
        else:
            state, where = "online", self.run.url or ""
        say(
            f"  wandb: {state} ({why}); project {cfg.train.wandb_project}, "
            f"{'continuing run' if run_id else 'run'} {out.name} (id {self.run.id}); {where}"
        )

    def log(self, values: dict[str, int | float], step: int) -> None:
        if step >= self.first_step:
            self.run.log(values, step=step)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def open_backend(
    name: str,
    cfg: TaskConfig,
    out: Path,
    start_step: int,
    best_metric: str | None,
    say: Callable[[str], None],
) -> Backend:
    """Start logger ``name`` for the run in ``out`` (``start_step``: the step it resumes at)."""
    if name == "tensorboard":
        backend: Backend = TensorBoardBackend(cfg, out, start_step, best_metric)
        say(f"  tensorboard: {out / 'tensorboard'} (tensorboard --logdir {out.parent})")
        return backend
    return WandbBackend(cfg, out, best_metric, say)
