"""Stage-1 trainer: builds everything from a ``Config`` and runs a short loop.

Parallelism (DDP / FSDP2), compilation and checkpointing are applied here, outside the model code.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import Config
from umt.train import checkpoint as ckpt
from umt.train.distributed import (
    DistInfo,
    ResumableSampler,
    all_reduce_mean,
    all_reduce_sum_int,
    barrier,
    broadcast_str,
    cleanup,
    init_distributed,
    wrap_model,
)
from umt.train.optim import build_optimizer, build_schedules, scaled_lrs
from umt.train.step import AlignedStudent, NonFiniteLossError, StepConfig, mask_seeds, train_step


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


# --------------------------------------------------------------------------- pieces
def amp_dtype_for(cfg: Config, device: torch.device) -> torch.dtype | None:
    p = cfg.train.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


def _not_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def build_teacher(cfg: Config, device: torch.device | str = "cpu") -> tuple[nn.Module, str]:
    """The frozen teacher and a sentence saying what it is. Random init is seeded by the run
    seed, so every process and every resume builds the same one."""
    t = cfg.teacher
    size = t.img_size or cfg.data.input_size
    if t.weights:
        from umt.models.checkpoints import load_teacher

        teacher = load_teacher(
            t.weights, img_size=size, return_layers=t.return_layers, normalize=t.normalize
        )
        desc = f"teacher: CLIP weights from {t.weights}"
    else:
        from umt.models import create_model

        kw = _not_none(
            patch_size=t.patch_size,
            width=t.width,
            layers=t.layers,
            heads=t.heads,
            output_dim=t.output_dim,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed + 7919)
            teacher = create_model(
                t.name, img_size=size, return_layers=t.return_layers, normalize=t.normalize, **kw
            )
        desc = (
            f"teacher: {t.name} ({teacher.width} wide x {len(teacher.transformer.resblocks)} deep) "
            "RANDOMLY INITIALISED: no CLIP weights given (pass --teacher PATH for real CLIP). "
            "The loss falls as the student mimics a random network; it learns no useful features."
        )
    return teacher.to(device), desc  # CLIPTeacher is frozen (no grads, eval) by construction


def build_student(cfg: Config, teacher_dim: int) -> nn.Module:
    from umt.models import create_model

    m = cfg.model
    kw = _not_none(
        patch_size=m.patch_size,
        embed_dim=m.embed_dim,
        depth=m.depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
        pos_embed=m.pos_embed,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        student = create_model(
            m.name,
            img_size=cfg.data.input_size,
            num_frames=cfg.data.num_frames,
            tubelet_size=m.tubelet_size,
            drop_path_rate=m.drop_path_rate,
            align_layers=cfg.teacher.return_layers,
            align_dim=teacher_dim,
            **kw,
        )
    if m.grad_checkpointing:
        student.set_grad_checkpointing(m.grad_checkpointing)
    return student


def check_token_grids(student: nn.Module, teacher: nn.Module) -> None:
    """The mask drawn from the teacher's attention must fit the student's tokens: the same patch
    grid per frame and one token per frame in time (tubelet 1), as in the official recipes."""
    t_side = teacher.grid
    _, s_h, s_w = student.grid
    if (t_side, t_side) != (s_h, s_w):
        raise ValueError(
            f"the teacher sees {t_side}x{t_side} patches per frame ({teacher.img_size}px / patch "
            f"{teacher.patch_size}) but the student {s_h}x{s_w} ({student.img_size}px / patch "
            f"{student.patch_size}); set teacher.img_size to {s_h * teacher.patch_size} "
            "(as UMT-L's CLIP-L/14 runs at 196 px for a 224 px student)"
        )
    if student.tubelet_size != 1:
        raise ValueError(
            f"model.tubelet_size={student.tubelet_size}: semantic masking from a per-frame teacher "
            "needs tubelet 1 (the official stage-1 recipes use 1)"
        )


def compile_blocks(student: nn.Module) -> None:
    """torch.compile each transformer block in place (the token count per step is fixed)."""
    for block in getattr(student, "blocks", []):
        block.compile()


def synthetic_root(cfg: Config) -> Path:
    if cfg.data.synthetic_root:
        return Path(cfg.data.synthetic_root)
    home = os.environ.get("UMT_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "umt"
    return base / "synthetic"


def build_dataset(cfg: Config, info: DistInfo) -> Any:
    """The training dataset: map-style, items ``{"video": [3,T,H,W], "index", ...}``.

    ``data.train_list: null`` is the synthetic set, made on first use by rank 0."""
    from umt import data as umt_data

    d = cfg.data
    kw = dict(
        num_frames=d.num_frames,
        sampling=d.sampling,
        frame_stride=d.sampling_rate,
        input_size=d.input_size,
        train=True,
        augment="pretrain",
        scales=tuple(d.scales),
        flip=d.flip,
        mean=d.mean_std,
        seed=cfg.train.seed,
    )
    if d.train_list is None:
        root = synthetic_root(cfg)
        if info.is_main:
            umt_data.ensure_synthetic_dataset(root)
        barrier()
        return umt_data.VideoDataset(Path(root) / "train.csv", **kw)
    if umt_data.detect_format(d.train_list) == "wds":
        return build_shard_dataset(cfg, info, kw)
    if not Path(d.train_list).is_file():
        raise FileNotFoundError(f"data.train_list: no such file {d.train_list}")
    return umt_data.build_dataset(d.train_list, root=d.root or None, **kw)


def build_shard_dataset(cfg: Config, info: DistInfo, kw: dict[str, Any]) -> Any:
    """WebDataset tar shards (``data.train_list=shards-{000..099}.tar``), streamed: each process
    and worker cycles over its share of the shards; an epoch is ``data.num_samples`` clips."""
    from umt import data as umt_data

    d = cfg.data
    if not d.num_samples or d.num_samples <= 0:
        raise ValueError(
            f"data.train_list={d.train_list}: tar shards stream without a length; set "
            "data.num_samples to the clips per epoch (all processes together)"
        )
    dataset = umt_data.ShardDataset(
        d.train_list, repeat=True, rank=info.rank, world_size=info.world_size, **kw
    )
    dataset.urls = [str(Path(d.root, u)) if d.root else u for u in dataset.urls]
    missing = [u for u in dataset.urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data.train_list={d.train_list}: {len(missing)} of {len(dataset.urls)} shard(s) "
            f"not found: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
    try:
        dataset.check_split(d.num_workers)
    except ValueError as err:
        raise ValueError(f"data.train_list={d.train_list}: {err}") from None
    return dataset


def default_output_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.recipe}-{stamp}"


def _latest_run_dir(cfg: Config) -> Path | None:
    runs = Path("runs")
    if not runs.is_dir():
        return None
    cands = sorted(
        (p for p in runs.glob(f"{cfg.recipe}-*") if ckpt.latest_checkpoint(p / "checkpoints")),
        key=lambda p: p.name,
    )
    return cands[-1] if cands else None


class _Stopper:
    """Turns SIGTERM into a flag checked after each step (save, then exit cleanly)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def install(self) -> None:
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        self.requested = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class _Logger:
    """Rank-0 logging: progress bar, metrics.jsonl, TensorBoard (when installed)."""

    def __init__(self, cfg: Config, out: Path, active: bool, total: int, initial: int) -> None:
        self.active = active
        self.bar = None
        self.tb = None
        self.file = None
        if not active:
            return
        self.file = open(out / "metrics.jsonl", "a")  # noqa: SIM115
        if cfg.train.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc="pretrain",
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 15.0,
            )
        if cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard not installed
                self.tb = None

    def log(self, rec: dict[str, Any]) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k in ("loss", "lr", "wd", "clips_per_s", "grad_norm"):
                v = rec.get(k)
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()


def _trim_metrics(path: Path, upto_step: int) -> None:
    """On resume, drop metric lines written after the checkpoint being resumed."""
    if not path.is_file():
        return
    keep = [
        ln
        for ln in path.read_text().splitlines()
        if ln and json.loads(ln).get("step", 0) <= upto_step
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def plot_losses(metrics: Path, png: Path) -> None:
    """Loss curve PNG from ``metrics.jsonl`` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    if not recs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("UMA loss (2 - 2cos)")
    ax.set_title("stage-1 pretraining")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


# --------------------------------------------------------------------------- main loop
def pretrain(cfg: Config, echo: Callable[[str], None] | None = None) -> RunResult:
    """Run stage-1 pretraining as ``cfg`` says; returns the losses of this invocation.

    Under torchrun with the gloo backend, end the worker process with
    :func:`umt.train.distributed.exit_process` after this returns (``umt pretrain`` does), or
    the interpreter's teardown can occasionally abort it."""
    t_start = time.time()
    info = init_distributed(cfg)
    try:
        return _pretrain(cfg, info, echo, t_start)
    finally:
        cleanup()


def _pretrain(cfg: Config, info: DistInfo, echo, t_start: float) -> RunResult:
    say = echo or (lambda s: print(s, flush=True))
    main = info.is_main
    device = info.device

    # ---- data (first: a bad list or shard set is refused before anything is built or written)
    dataset = build_dataset(cfg, info)
    # tar shards stream: no index, no sampler
    streaming = isinstance(dataset, torch.utils.data.IterableDataset)
    if streaming:
        sampler = None
        num_clips = int(cfg.data.num_samples)
        batches_per_rank = num_clips // (cfg.train.batch_size * info.world_size)
        if batches_per_rank == 0:
            raise ValueError(
                f"data.num_samples={num_clips} is less than one step's batch "
                f"({cfg.train.batch_size} x {info.world_size} processes)"
            )
    else:
        sampler = ResumableSampler(
            len(dataset), cfg.train.batch_size, info.world_size, info.rank, seed=cfg.train.seed
        )
        num_clips = len(dataset)
        batches_per_rank = sampler.num_batches
    steps_per_epoch = cfg.schedule.steps_per_epoch or batches_per_rank // cfg.train.accum_steps
    if steps_per_epoch < 1:
        raise ValueError("fewer batches per epoch than train.accum_steps")
    batches_per_epoch = steps_per_epoch * cfg.train.accum_steps  # per process

    # ---- output folder (rank 0 decides, the others follow)
    out_name = cfg.train.output_dir
    if out_name is None and cfg.train.resume == "auto" and main:
        latest = _latest_run_dir(cfg)
        out_name = str(latest) if latest is not None else None
    if out_name is None and cfg.train.resume not in (None, "", "auto") and main:
        # --resume PATH without --output-dir: continue in that checkpoint's run folder.
        found = ckpt.resolve_resume(cfg.train.resume, "")
        if found is not None and found.parent.name == "checkpoints":
            out_name = str(found.parent.parent)
    if out_name is None and main:
        out_name = str(default_output_dir(cfg))
    out = Path(broadcast_str(out_name))
    ckpt_root = out / "checkpoints"
    if main:
        out.mkdir(parents=True, exist_ok=True)
    config_yaml = cfg.to_yaml()
    if main:
        (out / "config.yaml").write_text(config_yaml)

    # ---- models
    amp = amp_dtype_for(cfg, device)
    teacher, teacher_desc = build_teacher(cfg, device)
    teacher_dim = int(teacher.output_dim)
    student = build_student(cfg, teacher_dim).to(device)
    check_token_grids(student, teacher)
    if cfg.model.compile:
        compile_blocks(student)
    model = wrap_model(AlignedStudent(student), cfg, info, amp)

    from umt.data import collate_videos

    collate = collate_videos
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=False,  # workers see the dataset's epoch only when re-created
    )

    # ---- optimizer and schedules
    lr, _, _, total_batch = scaled_lrs(cfg, info.world_size)
    optimizer = build_optimizer(model, cfg, lr)
    schedules = build_schedules(cfg, steps_per_epoch, info.world_size)
    total_steps = len(schedules)
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None

    # ---- resume
    state = ckpt.TrainState()
    resume_from = ckpt.resolve_resume(cfg.train.resume, ckpt_root)
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, model, optimizer)
        if scaler is not None and state.scaler:
            scaler.load_state_dict(state.scaler)
        saved_clips = state.extra.get("clips_per_batch_all_ranks")
        now_clips = cfg.train.batch_size * info.world_size
        if saved_clips and saved_clips != now_clips:  # world size or batch changed: same clips
            state.batch_in_epoch = state.batch_in_epoch * saved_clips // now_clips
        if main:
            _trim_metrics(out / "metrics.jsonl", state.step)
    last_ckpt: Path | None = resume_from

    step_cfg = StepConfig(
        mask_ratio=cfg.mask.ratio,
        loss_kind=cfg.loss.kind,
        loss_weight=cfg.loss.weight,
        teacher_img_size=cfg.teacher.img_size,
        data_norm=cfg.data.mean_std,
        teacher_norm=cfg.data.teacher_norm,
        clip_grad=cfg.optim.clip_grad,
        accum_steps=cfg.train.accum_steps,
    )

    n_params = sum(p.numel() for p in student.parameters())
    if main:
        say(f"umt pretrain: recipe {cfg.recipe} -> {out}")
        say(
            f"  student {cfg.model.name} ({student.embed_dim} wide x {len(student.blocks)} deep): "
            f"{n_params / 1e6:.2f}M params; "
            f"{cfg.data.num_frames} frames of {cfg.data.input_size}px; mask ratio {cfg.mask.ratio}"
        )
        say(f"  {teacher_desc}")
        say(
            f"  {num_clips} clips{' per epoch, streamed from tar shards' if streaming else ''}; "
            f"{info.world_size} process(es) x batch {cfg.train.batch_size} x "
            f"accum {cfg.train.accum_steps} = {total_batch} clips/step; lr {lr:.3g}; "
            f"{steps_per_epoch} steps/epoch; steps {state.step} -> {total_steps}; device {device}"
            + (f"; precision {amp}" if amp else "")
        )
        if resume_from is not None:
            say(f"  resumed from {resume_from} (step {state.step})")

    result = RunResult(output_dir=out, first_step=state.step, teacher=teacher_desc)
    logger = _Logger(cfg, out, main, total_steps, state.step)
    stopper = _Stopper()
    stopper.install()

    def save(st: ckpt.TrainState) -> None:
        nonlocal last_ckpt
        st.scaler = scaler.state_dict() if scaler is not None else None
        path = ckpt.save_checkpoint(
            ckpt_root,
            model,
            optimizer,
            st,
            config_yaml,
            is_main=main,
            keep_last=cfg.train.keep_last,
        )
        last_ckpt = path or (ckpt_root / f"step_{st.step:06d}")
        barrier()

    step = state.step
    epoch, batch_in_epoch = state.epoch, state.batch_in_epoch
    from umt.data.faults import FaultCounter

    faults = FaultCounter()  # videos the dataset skipped, reported through the batches
    try:
        while step < total_steps and not stopper.requested:
            if streaming:
                if batch_in_epoch >= batches_per_epoch:  # saved at an epoch's end
                    epoch, batch_in_epoch = epoch + 1, 0
                dataset.set_position(epoch, batch_in_epoch, cfg.train.batch_size)
            else:
                sampler.set_position(epoch, batch_in_epoch)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
            micro: list[tuple[torch.Tensor, list[int]]] = []
            t0 = time.perf_counter()
            finished_epoch = True
            for batch in loader:
                batch_in_epoch += 1
                video = batch["video"].to(device, non_blocking=True)  # [B,3,T,H,W]
                seeds = mask_seeds(cfg.train.seed, epoch, batch["index"])
                faults.add_batch(batch)
                micro.append((video, seeds))
                if len(micro) < cfg.train.accum_steps:
                    continue
                cur_lr = schedules.apply(optimizer, step)
                try:
                    out_step = train_step(
                        model, teacher, optimizer, micro, step_cfg, amp, scaler, all_reduce_mean
                    )
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(
                        f"{err} at step {step + 1}; stopping. The last good checkpoint is "
                        f"{last_ckpt if last_ckpt else 'none (no checkpoint written yet)'}. "
                        "Try a lower optim.lr or optim.clip_grad=1.0."
                    ) from None
                micro = []
                step += 1
                dt = time.perf_counter() - t0
                t0 = time.perf_counter()
                result.losses.append(out_step["loss"])
                result.steps.append(step)
                skipped = all_reduce_sum_int(faults.num_skipped_files, device)
                if step % cfg.train.log_every == 0 or step == total_steps:
                    logger.log(
                        {
                            "step": step,
                            "epoch": epoch,
                            "loss": out_step["loss"],
                            "lr": cur_lr,
                            "wd": schedules.wd[min(step - 1, len(schedules) - 1)],
                            "grad_norm": out_step["grad_norm"]
                            if math.isfinite(out_step["grad_norm"])
                            else None,
                            "clips_per_s": total_batch / max(dt, 1e-9),
                            "step_s": dt,
                            "skipped_videos": skipped,
                            "time": round(time.time() - t_start, 3),
                        }
                    )
                stop = all_reduce_sum_int(int(stopper.requested), device) > 0
                stopper.requested = stop
                at_end = step >= total_steps
                if at_end or stop or step % cfg.train.checkpoint_every == 0:
                    save(
                        ckpt.TrainState(
                            step=step,
                            epoch=epoch,
                            batch_in_epoch=batch_in_epoch,
                            extra={
                                "clips_per_batch_all_ranks": cfg.train.batch_size * info.world_size,
                                "world_size": info.world_size,
                                "loss": out_step["loss"],
                            },
                        )
                    )
                if at_end or stop:
                    finished_epoch = False
                    break
                if streaming and batch_in_epoch >= batches_per_epoch:
                    break  # this epoch's clips are done (the shard stream itself has no end)
            if finished_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
    except KeyboardInterrupt:
        result.interrupted = True
        logger.write(f"interrupted at step {step}; last checkpoint: {last_ckpt or 'none'}")
        raise
    except torch.OutOfMemoryError as err:
        raise RuntimeError(
            f"out of memory at step {step + 1} ({err}). The last checkpoint is intact: "
            f"{last_ckpt or 'none'}. Try a smaller train.batch_size with train.accum_steps, or "
            "model.grad_checkpointing=N."
        ) from None
    finally:
        logger.close()
        stopper.restore()

    result.interrupted = stopper.requested
    result.last_checkpoint = last_ckpt
    result.wall_s = time.time() - t_start
    if main:
        if stopper.requested:
            say(f"stopped by SIGTERM after step {step}; checkpoint {last_ckpt}")
        if result.losses:
            say(
                f"UMA loss: {result.losses[0]:.4f} (step {result.first_step + 1}) -> "
                f"{result.losses[-1]:.4f} (step {step}); {result.wall_s:.1f}s"
            )
        if faults.num_skipped_files:
            say(f"data: {faults.summary(num_clips)}")
        if cfg.train.plot and (out / "metrics.jsonl").is_file():
            plot_losses(out / "metrics.jsonl", out / "loss_curve.png")
            say(f"loss curve: {out / 'loss_curve.png'}")
        if last_ckpt is not None:
            say(f"checkpoint: {last_ckpt}")
    return result


def main_entry(cfg: Config) -> int:
    """CLI entry: run and map failures to exit codes."""
    try:
        pretrain(cfg)
    except NonFiniteLossError as err:
        print(f"umt pretrain: error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("umt pretrain: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130
    return 0
