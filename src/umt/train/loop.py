"""The one training loop. Every task (stage 1, fine-tuning, ...) runs here.

The loop owns processes (torchrun), the run folder, the optimizer and its per-step schedules,
mixed precision (autocast around ``task.loss``, in :func:`~umt.train.step.train_step`), gradient
accumulation and clipping, validation (:mod:`umt.train.validate`: eval mode, no gradients, rank 0
or every rank, the metrics on every rank), checkpoints and exact resume, logging, signals and
guards. A :class:`~umt.train.tasks.base.Task` builds its models and data, computes the loss of a
micro-batch and gives its validation protocol. Parallelism (DDP / FSDP2), compilation and checkpointing
are applied here, outside the model code.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from umt.config import ConfigError, TaskConfig, flatten, upgrade_saved_config
from umt.errors import InputError, MachineError
from umt.train import checkpoint as ckpt
from umt.train import loggers, runs
from umt.train.compile import check_compile, compile_blocks
from umt.train.data import build_loader
from umt.train.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum_int,
    barrier,
    broadcast_str,
    cleanup,
    init_distributed,
    strategy,
    unwrap,
    wrap_model,
)
from umt.train.ema import ModelEMA
from umt.train.optim import build_optimizer, build_schedules, scaled_lrs
from umt.train.step import NonFiniteLossError, train_step
from umt.train.tasks.base import RunContext, Task
from umt.train.validate import validate

SIGNAL_EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}


@dataclass
class RunResult:
    output_dir: Path
    losses: list[float] = field(default_factory=list)  # per optimizer step of this invocation
    steps: list[int] = field(default_factory=list)
    first_step: int = 0
    last_checkpoint: Path | None = None
    teacher: str = ""
    wall_s: float = 0.0
    interrupted: bool = False
    stop_signal: int | None = None  # the signal that stopped the run early, if any


class RunError(MachineError):
    """The run could not go on (disk full, unwritable folder, unusable checkpoint); the message
    says what happened, whether a checkpoint is safe, and what to do."""


# --------------------------------------------------------------------------- precision
def resolve_precision(cfg: TaskConfig, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for float32, a note for the start-up lines or "").

    On CUDA ``auto`` is bf16. On CPU fp16 (autocast + grad scaler) and bf16 run as asked and
    ``auto`` is fp32, which the note says; elsewhere (e.g. mps) only bf16 and fp32 apply."""
    p = cfg.train.precision
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if device.type == "cuda":
        return table["bf16" if p == "auto" else p], ""
    if p == "auto":
        return None, f"precision auto: fp32 on {device} (train.precision=fp16 or bf16 on request)"
    if p == "fp16" and device.type != "cpu":
        return None, f"precision fp16 is a CPU / GPU setting; fp32 on {device}"
    return table[p], ""


# --------------------------------------------------------------------------- signals
class StopRequested(BaseException):
    """Raised by :class:`Stopper` when a stop signal arrives inside an interruptible phase
    (validation, the end-of-run test): a BaseException, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, phase: str) -> None:
        super().__init__(f"{signal.Signals(signum).name} during {phase}")
        self.signum, self.phase = signum, phase


class Stopper:
    """SIGTERM (schedulers, ``docker stop``) and a first Ctrl-C set a flag checked after each
    step: the loop saves a checkpoint and stops. A second Ctrl-C interrupts at once. Inside
    :meth:`interruptible` (a phase that changes no training state) the first signal raises
    :class:`StopRequested` at once, so a preemption's grace period is not spent validating."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self._phase: str | None = None

    @contextlib.contextmanager
    def interruptible(self, phase: str, enabled: bool = True) -> Iterator[None]:
        """Within this block a stop signal raises :class:`StopRequested` (``enabled=False``,
        e.g. with several processes that must stay in step: only the flag is set)."""
        if not enabled:
            yield
            return
        if self.signum is not None:
            raise StopRequested(self.signum, phase)
        self._phase = phase
        try:
            yield
        finally:
            self._phase = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        for sig in SIGNAL_EXIT:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if self._phase is not None:
                phase, self._phase = self._phase, None
                raise StopRequested(signum, phase)
            if signum == signal.SIGINT:
                print(
                    "\ninterrupt: stopping after this step with a checkpoint "
                    "(Ctrl-C again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGTERM / SIGINT to the main process, which
    stops cleanly with a checkpoint; a signal to the whole process group (what SLURM and
    ``docker stop`` send) then no longer kills the workers under it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- logging
class RunLogger:
    """Rank-0 logging: progress bar, ``metrics.jsonl`` and the ``train.loggers`` backends
    (:mod:`umt.train.loggers`), which get every record the file gets. A backend that fails
    (to start, or mid-run) is dropped with one warning line; the run goes on."""

    def __init__(
        self,
        cfg: TaskConfig,
        out: Path,
        active: bool,
        total: int,
        initial: int,
        desc: str,
        best_metric: str | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.active = active
        self.bar = None
        self.backends: list[loggers.Backend] = []
        self.file: runs.MetricsFile | None = None
        if not active:
            return
        say = say or (lambda s: print(s, flush=True))
        self.file = runs.MetricsFile(out / "metrics.jsonl")
        for name in cfg.train.loggers:
            try:
                self.backends.append(
                    loggers.open_backend(name, cfg, out, initial, best_metric, say)
                )
            except Exception as err:
                say(f"  warning: {name} could not start ({_one_line(err)}); going on without it")
        if cfg.train.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 15.0,
            )

    def _to_backends(self, rec: dict[str, Any], prefix: str) -> None:
        values = loggers.scalars(rec, prefix)
        for backend in list(self.backends):
            try:
                backend.log(values, rec["step"])
            except Exception as err:
                self.backends.remove(backend)
                self.write(
                    f"warning: {backend.name} logging failed at step {rec['step']} "
                    f"({_one_line(err)}); training goes on without it (metrics.jsonl has "
                    "every record)"
                )
                self._close(backend, failed=True)

    def log_eval(self, rec: dict[str, Any]) -> None:
        """A validation record: to metrics.jsonl, the loggers (``val/<key>``), one printed line."""
        if not self.active:
            return
        self.file.append(rec)
        self._to_backends(rec, "val")
        values = {k: v for k, v in rec.items() if k not in ("step", "epoch")}
        shown = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
        )
        self.write(f"epoch {rec['epoch']} (step {rec['step']}): {shown}")

    def log(self, rec: dict[str, Any]) -> None:
        """A training step's record: to metrics.jsonl, the loggers (``train/<key>``), the bar."""
        if not self.active:
            return
        self.file.append(rec)
        self._to_backends(rec, "train")
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{rec['loss']:.4f}",
                lr=f"{rec['lr']:.2e}",
                clips_s=f"{rec['clips_per_s']:.1f}",
            )

    def write(self, text: str) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def _close(self, backend: loggers.Backend, failed: bool) -> None:
        try:
            backend.close(failed)
        except Exception as err:
            self.write(f"warning: {backend.name}: closing failed ({_one_line(err)})")

    def close(self, failed: bool = False) -> None:
        """End the bar, the loggers (``failed``: the run ends in an error) and the file."""
        if self.bar is not None:
            self.bar.close()
        for backend in self.backends:
            self._close(backend, failed)
        self.backends = []
        if self.file is not None:
            self.file.close()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


# --------------------------------------------------------------------------- resume checks
def config_differences(task: Task, saved_yaml: str) -> list[str]:
    """``key: saved -> now`` for each setting the task needs unchanged to resume."""
    try:
        saved = yaml.safe_load(saved_yaml) or {}
    except yaml.YAMLError:
        return ["config.yaml (unreadable)"]
    now = flatten(task.cfg.to_dict())
    then = flatten(upgrade_saved_config(saved))
    diffs = []
    for key in sorted(set(now) | set(then)):
        if key.split(".", 1)[0] not in task.resume_sections or key in task.resume_ignored:
            continue
        if now.get(key, "<unset>") != then.get(key, "<unset>"):
            diffs.append(f"{key}: {then.get(key, '<unset>')} -> {now.get(key, '<unset>')}")
    return diffs


# --------------------------------------------------------------------------- the loop
def train(
    cfg: TaskConfig, task_cls: type[Task], echo: Callable[[str], None] | None = None
) -> RunResult:
    """Run ``task_cls`` as ``cfg`` says; returns the losses of this invocation.

    Under torchrun with the gloo backend, end the worker process with
    :func:`umt.train.distributed.exit_process` after this returns (``umt`` does), or the
    interpreter's teardown can occasionally abort it."""
    t_start = time.time()
    check_model_names(cfg)  # before any work, the task's set-up included
    loggers.check_loggers(cfg.train.loggers)
    task_cls.prepare(cfg, echo)  # before the processes join (e.g. a cached teacher made once)
    info = init_distributed(cfg)
    try:
        run = _Run(cfg, task_cls, info, echo or (lambda s: print(s, flush=True)), t_start)
        try:
            return run.run()
        except BaseException as err:
            run._remove_failed_start()
            if isinstance(err, OSError) and run.wrote(err):
                raise run.write_error(err, "run output", staged=False) from None
            raise
    finally:
        cleanup()


def check_model_names(cfg: TaskConfig) -> None:
    """Refuse an unknown ``model.name`` / ``teacher.name`` before any work (a teacher trained,
    a model built), naming the key and the known variants."""
    from umt.models import model_config
    from umt.models.registry import UnknownModelError

    for section in ("model", "teacher"):
        name = getattr(getattr(cfg, section, None), "name", None)
        if name is None:
            continue
        try:
            model_config(name)
        except UnknownModelError as err:
            raise ConfigError(f"{section}.name: {err}") from None


class _Run:
    """One invocation of the loop: set-up (nothing written until the data, the models and the
    run folder are settled), the steps, the end."""

    def __init__(self, cfg: TaskConfig, task_cls: type[Task], info: DistInfo, say, t_start: float):
        self.cfg, self.info, self.say, self.t_start = cfg, info, say, t_start
        self.main = info.is_main
        amp, self.precision_note = resolve_precision(cfg, info.device)
        self.task = task_cls(cfg, RunContext(info=info, amp_dtype=amp))
        self.amp = amp
        self.last_ckpt: Path | None = None
        self.created_dir = False  # this run made its folder
        self.new_run_dir = False  # its folder held no run before this one
        self.stop_phase: str | None = None  # where a stop signal interrupted the run, if not a step
        self.overflow_steps = 0  # fp16 steps the grad scaler skipped in this invocation

    # ---------------------------------------------------------------- set-up
    def _data(self) -> None:
        cfg, info = self.cfg, self.info
        self.dataset = self.task.build_data()
        self.streaming = isinstance(self.dataset, torch.utils.data.IterableDataset)
        if self.streaming:  # tar shards: no index, no sampler
            self.sampler = None
            self.num_clips = int(cfg.data.num_samples)
            batches_per_rank = self.num_clips // (cfg.train.batch_size * info.world_size)
            if batches_per_rank == 0:
                raise InputError(
                    f"data.num_samples={self.num_clips} is less than one step's batch "
                    f"({cfg.train.batch_size} x {info.world_size} processes)"
                )
        else:
            self.sampler = self.task.build_sampler(
                self.dataset, cfg.train.batch_size, info.world_size, info.rank, cfg.train.seed
            )
            self.num_clips = len(self.dataset)
            batches_per_rank = self.sampler.num_batches
        self.steps_per_epoch = (
            cfg.schedule.steps_per_epoch or batches_per_rank // cfg.train.accum_steps
        )
        if self.steps_per_epoch < 1:
            raise InputError("fewer batches per epoch than train.accum_steps")
        self.batches_per_epoch = self.steps_per_epoch * cfg.train.accum_steps  # per process

    def _output_dir(self) -> Path:
        """Rank 0 picks and prepares the folder; the others follow."""
        cfg = self.cfg
        resume = cfg.train.resume
        name, error = None, None
        if self.main:
            try:
                name = str(self._pick_output_dir(resume))
            except (runs.RunFolderError, OSError) as err:
                error = (
                    err
                    if isinstance(err, runs.RunFolderError)
                    else RunError(runs.describe_os_error(err, "the run folder"))
                )
                name = "\0" + str(error)
        name = broadcast_str(name)
        if name.startswith("\0"):
            raise error or RunError(name[1:])
        return Path(name)

    def _pick_output_dir(self, resume: str | None) -> Path:
        cfg = self.cfg
        if cfg.train.output_dir is not None:
            out = Path(cfg.train.output_dir)
            held = out.is_dir() and any(out.iterdir())
            self.created_dir = runs.prepare_run_dir(out, bool(resume), cfg.train.overwrite)
            self.new_run_dir = not held or (cfg.train.overwrite and not resume)
            return out
        if resume == "auto":
            found = runs.latest_run_dir(cfg.recipe)
            if found is not None:
                self.say(f"resume auto: continuing {found[0]} (latest: {found[1].name})")
                return found[0]
            self.say(
                f"resume auto: no earlier run of recipe '{cfg.recipe}' with a checkpoint under "
                f"{runs.RUNS}/; starting a new run"
            )
        elif resume:
            # --resume PATH without --output-dir: continue in that checkpoint's run folder.
            first = ckpt.resolve_resume(resume, "")
            if first is not None and first.parent.name == "checkpoints":
                return first.parent.parent
        out = runs.claim_new_run_dir(cfg.recipe)
        self.created_dir = self.new_run_dir = True
        return out

    def _resume_source(self) -> Path | None:
        """The checkpoint a resume will continue from (read-only; before anything is built):
        the task builds its model from it instead of ``model.init``, which a requeued run
        may no longer have."""
        cfg = self.cfg
        resume = cfg.train.resume
        if not resume:
            return None
        if resume == "auto" and cfg.train.output_dir is None:
            found = runs.latest_run_dir(cfg.recipe)
            candidates = ckpt.resume_candidates(str(found[0]), "") if found else []
        else:
            try:
                candidates = ckpt.resume_candidates(
                    resume, Path(cfg.train.output_dir or "") / "checkpoints"
                )
            except FileNotFoundError:
                return None  # _resume says so
        for path in candidates:  # the one _resume will take: the newest readable
            try:
                ckpt.read_checkpoint(path, with_optimizer=False)
            except (ckpt.CorruptCheckpointError, FileNotFoundError):
                continue
            return path
        return None

    def _resume(self) -> ckpt.TrainState:
        """Load the newest usable checkpoint; an unreadable one falls back to the one before."""
        cfg = self.cfg
        candidates = ckpt.resume_candidates(cfg.train.resume, self.ckpt_root)
        explicit = cfg.train.resume not in (None, "", "auto") and len(candidates) == 1
        for i, path in enumerate(candidates):
            try:
                files = ckpt.read_checkpoint(path)
            except ckpt.CorruptCheckpointError as err:
                if explicit or i == len(candidates) - 1:
                    raise RunError(
                        f"{err}; no intact checkpoint to resume from"
                        + ("" if explicit else " (older ones were unreadable too)")
                    ) from None
                if self.main:
                    self.say(f"warning: {err}; falling back to {candidates[i + 1].name}")
                continue
            saved_cfg = (
                (path / "config.yaml").read_text() if (path / "config.yaml").is_file() else ""
            )
            diffs = config_differences(self.task, saved_cfg) if saved_cfg else []
            if diffs:
                raise ConfigError(
                    f"--resume {path}: the checkpoint was trained with other settings ("
                    + "; ".join(diffs[:6])
                    + (f"; {len(diffs) - 6} more" if len(diffs) > 6 else "")
                    + "); resume with the checkpoint's settings or start a new run"
                )
            try:
                state = ckpt.load_training_checkpoint(
                    path, self.model, self.optimizer, files=files, ema=self.ema
                )
            except (RuntimeError, KeyError, ValueError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(
                    f"--resume {path}: its weights do not fit this run's model ({first[:300]}); "
                    "resume with the checkpoint's model settings or start a new run"
                ) from None
            if self.scaler is not None and state.scaler:
                self.scaler.load_state_dict(state.scaler)
            saved_clips = state.extra.get("clips_per_batch_all_ranks")
            now_clips = cfg.train.batch_size * self.info.world_size
            if saved_clips and saved_clips != now_clips:  # world size or batch changed
                state.batch_in_epoch = state.batch_in_epoch * saved_clips // now_clips
            self.last_ckpt = path
            return state
        return ckpt.TrainState()

    def _setup(self) -> None:
        cfg, info, task = self.cfg, self.info, self.task
        task.ctx.resume_from = self._resume_source()
        task.check()
        if cfg.train.compile:
            check_compile(info.device)  # no C++ compiler (CPU) / triton (GPU): one line, now
        self._data()  # a bad list or shard set is refused before anything is built or written
        self.out = self._output_dir()
        self.ckpt_root = self.out / "checkpoints"
        self.config_yaml = cfg.to_yaml()
        model = task.build_model()
        self.exported = task.export_model(model)
        self.extra_files = task.export_files()
        self.compiled = compile_blocks(task.compile_roots(model)) if cfg.train.compile else 0
        self.model = wrap_model(model, cfg, info, self.amp)  # after compiling, as torchtitan
        self.loader = build_loader(
            self.dataset,
            cfg.train.batch_size,
            task.collate(),
            cfg.data.num_workers,
            info.device,
            sampler=self.sampler,
            train=True,
            streaming=self.streaming,
            worker_init_fn=ignore_stop_signals,
        )
        self.lr, _, _, self.total_batch = scaled_lrs(cfg, info.world_size)
        self.optimizer = build_optimizer(task.param_groups(self.model), cfg, self.lr)
        self.schedules = build_schedules(cfg, self.steps_per_epoch, info.world_size)
        self.total_steps = len(self.schedules)
        if cfg.train.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.train.max_steps)
        self.scaler = torch.amp.GradScaler(info.device.type) if self.amp == torch.float16 else None
        self.ema = None
        if cfg.train.ema_decay is not None:
            if strategy(cfg, info) == "fsdp":
                raise ConfigError("train.ema_decay: not with dist.strategy=fsdp (use ddp)")
            self.ema = ModelEMA(unwrap(self.model), cfg.train.ema_decay)
        self.best: dict[str, Any] | None = None
        self.evaluated_at = -1
        # The global generator (dropout): seed + rank, as the official scripts; a resume
        # restores the saved state instead.
        torch.manual_seed(cfg.train.seed + info.rank)
        self.state = self._resume()
        self.best = self.state.extra.get("best")
        if self.main:
            (self.out / "config.yaml").write_text(self.config_yaml)
            torn = runs.trim_metrics(self.out / "metrics.jsonl", self.state.step)
            if torn:
                self.say(f"warning: {self.out / 'metrics.jsonl'}: dropped {torn} torn line(s)")
        barrier()

    def _announce(self) -> None:
        if not self.main:
            return
        cfg, info, st = self.cfg, self.info, self.state
        self.say(f"umt {self.task.name}: recipe {cfg.recipe} -> {self.out}")
        for line in self.task.describe(self.model):
            self.say(f"  {line}")
        self.say(
            f"  {self.num_clips} clips"
            f"{' per epoch, streamed from tar shards' if self.streaming else ''}; "
            f"{info.world_size} process(es) x batch {cfg.train.batch_size} x "
            f"accum {cfg.train.accum_steps} = {self.total_batch} clips/step; lr {self.lr:.3g}; "
            f"{self.steps_per_epoch} steps/epoch; steps {st.step} -> {self.total_steps}; "
            f"device {info.device}" + self._precision_desc() + self._dist_desc()
        )
        if self.precision_note:
            self.say(f"  note: {self.precision_note}")
        if self.compiled:
            self.say(f"  torch.compile: {self.compiled} blocks (compiled on their first step)")
        if self.last_ckpt is not None:
            self.say(f"  resumed from {self.last_ckpt} (step {st.step})")

    def _dist_desc(self) -> str:
        """The start-up line's data-parallel part ("" for one process outside torchrun)."""
        how = strategy(self.cfg, self.info)
        if how == "none":
            return ""
        import torch.distributed as dist

        return f"; dist: {how} ({dist.get_backend()})"

    def _precision_desc(self) -> str:
        """The start-up line's precision part ("" for float32)."""
        if self.amp is None:
            return ""
        name = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.amp, str(self.amp))
        return f"; precision {name} autocast" + (
            " + grad scaler" if self.scaler is not None else ""
        )

    # ---------------------------------------------------------------- saving
    def _model_config(self) -> dict[str, Any] | None:
        config = getattr(self.exported, "_hub_mixin_config", None)
        return dict(config) if config is not None else None

    def _save(self, state: ckpt.TrainState) -> None:
        state.scaler = self.scaler.state_dict() if self.scaler is not None else None
        if self.best is not None:
            state.extra["best"] = self.best
        try:
            path = ckpt.save_checkpoint(
                self.ckpt_root,
                self.model,
                self.optimizer,
                state,
                self.config_yaml,
                is_main=self.main,
                keep_last=self.cfg.train.keep_last,
                model_config=self._model_config(),
                ema=self.ema,
                extra_files=self.extra_files,
            )
        except OSError as err:
            raise self.write_error(err, f"checkpoint step_{state.step:06d}") from None
        self.last_ckpt = path or (self.ckpt_root / f"step_{state.step:06d}")
        barrier()

    # ---------------------------------------------------------------- steps
    def _steps(self, result: RunResult, stopper: Stopper, logger: RunLogger) -> None:
        cfg, info, task = self.cfg, self.info, self.task
        from umt.data.faults import FaultCounter

        faults = FaultCounter()  # videos the dataset skipped, reported through the batches
        step = self.state.step
        epoch, batch_in_epoch = self.state.epoch, self.state.batch_in_epoch
        self.final_step, self.faults = step, faults
        state = self.state  # the state of the last completed step, what a stop saves
        pending = state.extra.get("pending_eval")
        if pending is not None and not self._validate(state, pending, logger, stopper):
            return  # a stop interrupted the validation a previous stop had interrupted
        while step < self.total_steps and not stopper.requested:
            if batch_in_epoch >= self.batches_per_epoch:  # saved at an epoch's end
                epoch, batch_in_epoch = epoch + 1, 0
            if self.streaming:
                self.dataset.set_position(epoch, batch_in_epoch, cfg.train.batch_size)
            else:
                self.sampler.set_position(epoch, batch_in_epoch)
            micro: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            finished_epoch = True
            batches = iter(self.loader)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except RuntimeError:
                    if stopper.requested:  # a worker killed by the same signal: stop cleanly
                        finished_epoch = False
                        break
                    raise
                batch_in_epoch += 1
                faults.add_batch(batch)
                micro.append(task.to_device(batch))
                if len(micro) < cfg.train.accum_steps:
                    continue
                cur_lr = self.schedules.apply(self.optimizer, step)
                try:
                    out = train_step(
                        self.model,
                        self.optimizer,
                        micro,
                        lambda model, mb, _e=epoch: task.loss(model, mb, _e),
                        cfg.optim.clip_grad,
                        self.scaler,
                        all_reduce_mean,
                        amp_dtype=self.amp,
                    )
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(
                        f"{err} at step {step + 1}; stopping. The last good checkpoint is "
                        f"{self.last_ckpt if self.last_ckpt else 'none (no checkpoint written yet)'}. "
                        "Try a lower optim.lr or optim.clip_grad=1.0."
                    ) from None
                micro = []
                if self.ema is not None:
                    self.ema.update(unwrap(self.model))
                step += 1
                dt, t0 = time.perf_counter() - t0, time.perf_counter()
                self.overflow_steps += out.get("skipped_step", 0)
                result.losses.append(out["loss"])
                result.steps.append(step)
                task.after_step(step, out["loss"])
                skipped = all_reduce_sum_int(faults.num_skipped_files, info.device)
                if step % cfg.train.log_every == 0 or step == self.total_steps:
                    logger.log(
                        {
                            "step": step,
                            "epoch": epoch,
                            "loss": out["loss"],
                            "lr": cur_lr,
                            "wd": self.schedules.wd[min(step - 1, len(self.schedules) - 1)],
                            "grad_norm": out["grad_norm"]
                            if math.isfinite(out["grad_norm"])
                            else None,
                            "clips_per_s": self.total_batch / max(dt, 1e-9),
                            "step_s": dt,
                            "skipped_videos": skipped,
                            **{k: out[k] for k in ("amp_scale", "skipped_step") if k in out},
                            "time": round(time.time() - self.t_start, 3),
                            **task.step_metrics(),
                        }
                    )
                self.final_step = step
                state = ckpt.TrainState(
                    step=step,
                    epoch=epoch,
                    batch_in_epoch=batch_in_epoch,
                    extra={
                        "clips_per_batch_all_ranks": cfg.train.batch_size * info.world_size,
                        "world_size": info.world_size,
                        "loss": out["loss"],
                    },
                )
                stop = all_reduce_sum_int(int(stopper.requested), info.device) > 0
                if stop and not stopper.requested:
                    stopper.signum = signal.SIGTERM  # another rank was signalled
                at_end = step >= self.total_steps
                if at_end or stop or step % cfg.train.checkpoint_every == 0:
                    self._save(state)
                if at_end or stop:
                    finished_epoch = False
                    break
                if batch_in_epoch >= self.batches_per_epoch:
                    # This epoch's steps are done (schedule.steps_per_epoch may end it before
                    # the data does; a shard stream has no end of its own).
                    break
            if finished_epoch:
                if self.task.evaluates(epoch) and not self._validate(state, epoch, logger, stopper):
                    return
                epoch, batch_in_epoch = epoch + 1, 0
        if (
            step >= self.total_steps
            and self.evaluated_at != step
            and not stopper.requested
            and self.task.evaluates(None)
        ):
            self._validate(state, epoch, logger, stopper)  # the run ended inside an epoch

    def _validate(
        self, state: ckpt.TrainState, epoch: int, logger: RunLogger, stopper: Stopper
    ) -> bool:
        """Validate after ``epoch`` at ``state`` (the last completed step); False when a stop
        signal came: ``state`` is then saved (if it is not already), and when the signal
        interrupted the validation it is marked so that the resumed run validates first."""
        redone = state.extra.pop("pending_eval", None) is not None
        try:
            self._evaluate(state.step, epoch, logger, stopper)
        except (StopRequested, RuntimeError):
            if not stopper.requested:
                raise  # a RuntimeError of its own, not a worker killed by the stop signal
            state.extra["pending_eval"] = epoch
            self._save(state)
            self.stop_phase = f"validation of epoch {epoch} (a resumed run validates it first)"
            return False
        stop = all_reduce_sum_int(int(stopper.requested), self.info.device) > 0
        if not stop:
            return True
        stopper.signum = stopper.signum or signal.SIGTERM  # another rank was signalled
        saved = self.last_ckpt is not None and self.last_ckpt.name == f"step_{state.step:06d}"
        if redone or not saved:
            self._save(state)
        return False

    # ---------------------------------------------------------------- validation
    def _eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, step: int, epoch: int, logger: RunLogger, stopper: Stopper) -> None:
        """The task's validation; a new best (``task.best_metric``) is exported to ``best/``.
        A stop signal interrupts the validation itself (one process), never the export."""
        logger.write(f"validating after epoch {epoch} (step {step})")
        with stopper.interruptible("validation", enabled=self.info.world_size == 1):
            metrics = validate(self.task, self._eval_model(), epoch)
        self.evaluated_at = step
        if not metrics:
            return
        logger.log_eval({"step": step, "epoch": epoch, **metrics})
        key = self.task.best_metric
        value = metrics.get(key) if key else None
        if value is None or (self.best is not None and value <= self.best["value"]):
            return
        self.best = {"metric": key, "value": value, "step": step, "epoch": epoch}
        try:
            ckpt.save_export(
                self.out / "best", self._eval_model(), self._model_config(), info=self.best,
                is_main=self.main, extra_files=self.extra_files,
            )  # fmt: skip
        except OSError as err:
            raise self.write_error(err, "the best-validation export best/") from None
        barrier()

    def run(self) -> RunResult:
        self._setup()  # a failure here or before the first checkpoint: train() cleans up
        self._announce()
        # Training time starts now: not the set-up (which may wait for another process to
        # train the built-in teacher, or train it).
        self.t_start = time.time()
        cfg = self.cfg
        result = RunResult(
            output_dir=self.out,
            first_step=self.state.step,
            teacher=self.task.teacher_desc,
        )
        self.final_step, self.faults = self.state.step, None
        stopper = Stopper()
        stopper.install()
        logger = RunLogger(
            cfg,
            self.out,
            self.main,
            self.total_steps,
            self.state.step,
            self.task.name,
            best_metric=self.task.best_metric,
            say=self.say,
        )
        failed = True
        try:
            self._steps(result, stopper, logger)
            failed = False
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once; _finish says what is saved
            stopper.signum = signal.SIGINT
            self.final_step = result.steps[-1] if result.steps else self.state.step
            failed = False
        except torch.OutOfMemoryError as err:
            raise RunError(
                f"out of memory ({str(err).splitlines()[0]}). The last checkpoint is intact: "
                f"{self.last_ckpt or 'none'}. Try a smaller train.batch_size with "
                "train.accum_steps, or model.grad_checkpointing=N."
            ) from None
        finally:
            logger.close(failed)
        try:  # the handlers stay until the end-of-run work is done: a stop there is said too
            result = self._finish(result, stopper)
            lines = self._final(stopper, result)
        finally:
            stopper.restore()
        for line in lines:
            if self.main:
                self.say(line)
        return result

    def _stopped_line(self, how: str, step: int) -> str:
        if self.stop_phase:
            how = f"{how} during the {self.stop_phase}"
        if self.last_ckpt is not None:
            return f"{how} after step {step}; last checkpoint: {self.last_ckpt}"
        return f"{how} after step {step}; no checkpoint was written"

    def wrote(self, err: OSError) -> bool:
        """Whether ``err`` is a failed write into this run's folder."""
        out = getattr(self, "out", None)
        name = err.filename if isinstance(err.filename, str) else None
        return (
            out is not None
            and name is not None
            and Path(name).resolve().is_relative_to(out.resolve())
        )

    def write_error(self, err: OSError, what: str, staged: bool = True) -> RunError:
        """One line for a failed write (a full disk): the file, why, (``staged``: it was
        written under a ``.tmp`` name) that no partial file is left, and the last complete
        checkpoint to resume from."""
        return RunError(
            runs.describe_os_error(err, what)
            + ("; its partial files were removed" if staged else "")
            + f". Last complete checkpoint: {self.last_ckpt or 'none'}"
            + ("; resume from it with --resume auto" if self.last_ckpt else "")
        )

    def _remove_failed_start(self) -> None:
        """A run that fails before its first checkpoint (in its set-up or its first steps,
        data errors included) leaves no folder that would block running it again: a folder it
        made is removed, one that was empty is emptied again."""
        out = getattr(self, "out", None)
        if not (self.main and self.new_run_dir) or out is None or not out.is_dir():
            return
        if ckpt.latest_checkpoint(out / "checkpoints") is not None:
            return
        import shutil

        if self.created_dir:
            shutil.rmtree(out, ignore_errors=True)
            return
        for entry in out.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()

    def _finish(self, result: RunResult, stopper: Stopper) -> RunResult:
        step, out = self.final_step, self.out
        result.interrupted = stopper.requested
        result.stop_signal = stopper.signum
        result.last_checkpoint = self.last_ckpt
        result.wall_s = time.time() - self.t_start
        if not self.main:
            return result
        if stopper.requested:
            name = signal.Signals(stopper.signum).name
            self.say(self._stopped_line(f"stopped by {name}", step))
        if result.losses:
            self.say(
                f"{self.task.loss_name}: {result.losses[0]:.4f} (step {result.first_step + 1}) -> "
                f"{result.losses[-1]:.4f} (step {step}); {result.wall_s:.1f}s"
            )
        if self.overflow_steps:
            self.say(
                f"fp16: {self.overflow_steps} of {len(result.losses)} steps skipped on a gradient "
                f"overflow; loss scale now {self.scaler.get_scale():g}"
            )
        if self.faults is not None and self.faults.num_skipped_files:
            self.say(f"data: {self.faults.summary(self.num_clips)}")
        if self.cfg.train.plot and (out / "metrics.jsonl").is_file():
            runs.plot_losses(
                out / "metrics.jsonl", out / "loss_curve.png", self.task.loss_name, self.task.name
            )
            self.say(f"loss curve: {out / 'loss_curve.png'}")
        if self.last_ckpt is not None and not stopper.requested:
            self.say(f"checkpoint: {self.last_ckpt}")
        return result

    def _final(self, stopper: Stopper, result: RunResult) -> list[str]:
        """The task's end-of-run work (e.g. the multi-view test, the probe), on every rank;
        skipped when the run was stopped early. A stop signal during it ends it at once (one
        process) with a line saying how to redo it; the training's checkpoint is complete."""
        if result.interrupted:
            return []
        best = self.out / "best" if self.best is not None else None
        try:
            with stopper.interruptible("the end-of-run work", enabled=self.info.world_size == 1):
                lines = self.task.finish(self._eval_model(), self.out, best) or []
        except (StopRequested, RuntimeError):
            if not stopper.requested:
                raise  # a RuntimeError of its own, not a worker killed by the stop signal
        else:
            if not stopper.requested:
                return lines
            name = signal.Signals(stopper.signum).name  # several processes: it finished
            result.stop_signal = stopper.signum
            return [*lines, f"{name} received during the end-of-run evaluation; it finished"]
        result.interrupted, result.stop_signal = True, stopper.signum
        name = signal.Signals(stopper.signum).name
        where = (
            f"checkpoint {self.last_ckpt} holds the finished training"
            if self.last_ckpt is not None
            else "no checkpoint was written"
        )
        return [
            f"stopped by {name} during the end-of-run evaluation (test / probe) after step "
            f"{self.final_step}; {where}; run the same command with --resume auto "
            "(train.resume=auto) to do the end-of-run evaluation again",
        ]


def main_entry(cfg: TaskConfig, task_cls: type[Task], command: str) -> int:
    """CLI entry: run; the exit code (143 / 130: stopped by SIGTERM / Ctrl-C after saving).
    The run's own failures are UmtErrors carrying their codes (NonFiniteLossError 3, RunError
    1), which the command line reports."""
    try:
        result = train(cfg, task_cls)
    except KeyboardInterrupt:  # before the first step
        print(f"umt {command}: interrupted before training started; nothing saved", file=sys.stderr)
        return 130
    if result.stop_signal is not None:
        return SIGNAL_EXIT.get(result.stop_signal, 1)
    return 0
