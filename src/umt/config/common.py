"""The sections every task shares, declared once, and :class:`TaskConfig`, the base of every
task's config: ``recipe``, ``task``, ``model`` (a video encoder), ``data`` (clips), and the
sections the loop reads (``optim``, ``schedule``, ``train``, ``dist``).

Sections used by several tasks live here too (the CLIP teacher, the end-of-pretraining probe,
pretraining clips, layer-decayed AdamW, evaluation cadence); a task's own sections live in its
module (:mod:`umt.config.stage1`, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from umt.config._loader import ConfigError

DEFAULT_RECIPE = "umt-tiny-synthetic"
DEFAULT_FINETUNE_RECIPE = "umt-tiny-synthetic-ft"


# --------------------------------------------------------------------------- model
def check_mask_ratio(key: str, ratio: float) -> None:
    """Refuse (:class:`ConfigError` naming ``key``) a share of dropped tokens outside [0, 1)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"{key}: must be in [0, 1), got {ratio}")


def check_range(key: str, values: list[float], low: float, high: float | None) -> None:
    """Refuse (:class:`ConfigError` naming ``key``) unless ``values`` is ``[a, b]`` with
    ``low < a <= b``, and ``b <= high`` when ``high`` is given: a crop's area or aspect range."""
    if len(values) != 2:
        raise ConfigError(f"{key}: needs two numbers [min, max], got {values}")
    a, b = values
    if not (low < a <= b and (high is None or b <= high)):
        top = "" if high is None else f" and <= {high}"
        raise ConfigError(f"{key}: needs [min, max] with {low} < min <= max{top}, got {values}")


@dataclass
class EncoderConfig:
    """The video encoder every task builds (a ``VideoViT``). ``None`` sizes keep the registry
    default of ``name``."""

    name: str = "umt-b16"
    patch_size: int | None = None
    tubelet_size: int = 1
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    drop_path_rate: float = 0.1
    grad_checkpointing: int = 0  # recompute the first N blocks in the backward pass (0 = off)

    def validate(self) -> None:
        # The sizes are checked by the model that takes them (umt.models.VideoViT), all but the
        # tubelet, which the config's own check of data.num_frames divides by.
        if self.tubelet_size < 1:
            raise ConfigError(f"model.tubelet_size: must be >= 1, got {self.tubelet_size}")
        if self.grad_checkpointing < 0:
            raise ConfigError("model.grad_checkpointing: must be >= 0 (blocks; 0 = off)")


@dataclass
class PretrainModelConfig(EncoderConfig):
    """The student of a pretraining (stage 1, VideoMAE): weights start at random."""

    pos_embed: str | None = None  # position table: null = the registry default of name


@dataclass
class InitEncoderConfig(EncoderConfig):
    """An encoder whose weights start from an earlier run: ``init`` is a checkpoint (which kinds,
    the task's model section says), ``"scratch"`` (random init) or ``"auto"`` (the latest ``umt
    pretrain`` run of ``init_recipe``)."""

    init: str | None = None
    init_recipe: str = DEFAULT_RECIPE  # the pretraining recipe "auto" looks for


@dataclass
class TeacherConfig:
    """The frozen CLIP teacher. ``weights``: CLIP weights (a file or folder), or ``builtin``: the
    small image-text teacher umt trains on the synthetic set's frames and captions (cached; the
    sizes below and ``img_size`` are its recipe). With no weights, ``allow_random`` distils a
    randomly initialised CLIP: it tests the machinery, nothing more."""

    name: str = "clip-b16"
    weights: str | None = None
    allow_random: bool = False
    img_size: int | None = None  # teacher input resolution; None = data.input_size
    patch_size: int | None = None
    width: int | None = None
    layers: int | None = None
    heads: int | None = None
    output_dim: int | None = None
    return_layers: int = 6  # K aligned layers
    normalize: bool = True  # l2-normalise the targets (stage 1)
    # weights: builtin: its training steps (part of its recipe; null = the recipe's 1000)
    builtin_steps: int | None = None

    def validate(self) -> None:
        if self.return_layers < 1:
            raise ConfigError(f"teacher.return_layers: must be >= 1, got {self.return_layers}")
        if self.layers is not None and self.return_layers > self.layers:
            raise ConfigError(
                f"teacher.return_layers: {self.return_layers} of teacher.layers "
                f"{self.layers}: at most all of them"
            )


# --------------------------------------------------------------------------- data
@dataclass
class ClipDataConfig:
    """Where clips come from and their size, in every task. ``train_list: null`` means the task's
    built-in synthetic set."""

    train_list: str | None = None
    root: str = ""  # prefix joined to relative paths in the lists
    synthetic_root: str | None = None  # default: under $UMT_HOME or ~/.cache/umt
    num_frames: int = 8
    sampling_rate: int = 1
    input_size: int = 224
    flip: bool = True  # random horizontal flip in training
    num_workers: int = 0

    def validate(self) -> None:
        if self.num_workers < 0:
            raise ConfigError("data.num_workers: must be >= 0")
        if self.num_frames < 1 or self.input_size < 1:
            raise ConfigError("data.num_frames and data.input_size: must be >= 1")
        if self.sampling_rate < 1:
            raise ConfigError("data.sampling_rate: must be >= 1 (frames between clip frames)")


@dataclass
class VideoDataConfig(ClipDataConfig):
    """Clips sampled from whole videos (every task but detection, which reads keyframes)."""

    # segments: the official pretraining sampling (segments of n // T frames, one random frame
    # each); sparse: the fine-tuning segment sampling; dense: T frames sampling_rate apart.
    sampling: Literal["segments", "sparse", "dense"] = "segments"
    mean_std: Literal["imagenet", "clip"] = "imagenet"
    # Clips per epoch (all processes together) when train_list names WebDataset tar shards,
    # which stream without a length; ignored for annotation lists.
    num_samples: int | None = None


@dataclass
class PretrainDataConfig(VideoDataConfig):
    """Pretraining clips (stage 1, VideoMAE): multi-scale crop + flip, frames re-normalised for
    the teacher."""

    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    teacher_norm: Literal["imagenet", "clip"] = "imagenet"

    def validate(self) -> None:
        super().validate()
        if not self.scales or not all(0.0 < x <= 1.0 for x in self.scales):
            raise ConfigError(
                f"data.scales: one or more crop sides as fractions of the short side, each in "
                f"(0, 1], got {self.scales}"
            )


# --------------------------------------------------------------------------- evaluation
@dataclass
class ProbeConfig:
    """What the student learnt, measured at the end of pretraining on the synthetic set's labels:
    frozen features (per-frame token means, concatenated over time) -> k-NN and a linear probe,
    for the trained student and for the same student at random init."""

    enabled: bool | None = None  # None = on when the training data is the built-in synthetic set
    k: int = 10  # neighbours of the (cosine, 1/distance-weighted) k-NN vote
    epochs: int = 200  # full-batch optimisation steps of the linear probe (L-BFGS)
    weight_decay: float = 1e-3
    random_init: bool = True  # also probe the randomly initialised student (the baseline)
    # Fit on the first N training clips (the synthetic labels cycle, so any N that is a
    # multiple of the class count stays balanced); None = all of them.
    fit_clips: int | None = 600

    def validate(self) -> None:
        # Checked now: the probe runs after the whole pretraining.
        for key in ("k", "epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"probe.{key}: must be >= 1, got {getattr(self, key)}")
        if not self.weight_decay >= 0.0:
            raise ConfigError(f"probe.weight_decay: must be >= 0, got {self.weight_decay}")
        if self.fit_clips is not None and self.fit_clips < 1:
            raise ConfigError("probe.fit_clips: must be >= 1, or null (all the training clips)")


@dataclass
class EvalConfig:
    """Evaluation during fine-tuning: every ``every_epochs`` epochs and after the last one;
    ``every_epochs: 0`` validates never (the run's test at the end still runs, with the last
    weights)."""

    every_epochs: int = 1
    batch_size: int | None = None  # clips per evaluation batch; null = train.batch_size

    def validate(self) -> None:
        if self.every_epochs < 0:
            raise ConfigError("eval.every_epochs: must be >= 0 (0: no validation)")
        frames = getattr(self, "num_frames", None)  # the forms that test on their own frames
        if frames is not None and frames < 1:
            raise ConfigError("eval.num_frames: must be >= 1, or null (data.num_frames)")
        if self.every_epochs == 0 and getattr(self, "test_best", False):
            raise ConfigError(
                "eval.every_epochs: 0 (no validation) leaves no best weights to test: set "
                "eval.test_best=false to test the last weights"
            )


# --------------------------------------------------------------------------- the loop's sections
@dataclass
class OptimConfig:
    """AdamW. ``lr``, ``min_lr`` and ``warmup_lr`` are per 256 clips when ``scale_lr``.
    ``warmup_lr`` is where the warm-up starts: 0, as the official pretraining (which passes no
    start value to its cosine scheduler)."""

    lr: float = 1.5e-4
    min_lr: float = 1e-5
    warmup_lr: float = 0.0
    scale_lr: bool = True
    weight_decay: float = 0.05
    weight_decay_end: float | None = None  # None = constant weight decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    clip_grad: float | None = None
    fused: bool = True  # fused AdamW kernel (CPU and CUDA); same update, fewer passes

    def validate(self) -> None:
        """What AdamW and the schedule would refuse (or silently misuse) only once the model
        is built: checked with the config, before any work."""
        for key in ("lr", "min_lr", "warmup_lr", "weight_decay", "eps"):
            if not getattr(self, key) >= 0.0:  # also refuses nan
                raise ConfigError(f"optim.{key}: must be >= 0, got {getattr(self, key)}")
        if self.weight_decay_end is not None and not self.weight_decay_end >= 0.0:
            raise ConfigError("optim.weight_decay_end: must be >= 0, or null (constant)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas: needs two numbers in [0, 1), got {self.betas}")
        if self.clip_grad is not None and not self.clip_grad >= 0.0:
            raise ConfigError("optim.clip_grad: must be >= 0, or null (0 and null: no clipping)")


@dataclass
class LayerDecayOptimConfig(OptimConfig):
    """AdamW with layer-wise lr decay, as the official fine-tuning (classification, AVA)."""

    layer_decay: float | None = 0.75  # lr x decay^(depth + 1 - layer id); null = off

    def validate(self) -> None:
        super().validate()
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError("optim.layer_decay: must be in (0, 1], or null")


@dataclass
class ScheduleConfig:
    """Per-step learning rate. ``cosine``: the single-modality form (linear warm-up from
    ``optim.warmup_lr``, then a half cosine down to ``optim.min_lr``); ``cosine_floor``: the
    multi-modality form, ``lr x max(lr_floor, step / warm-up)`` then ``lr x max(lr_floor,
    (1 + cos)/2)`` (``optim.min_lr`` and ``optim.warmup_lr`` unused)."""

    epochs: int = 201
    warmup_epochs: int = 40
    warmup_steps: int = -1  # > 0 overrides warmup_epochs
    steps_per_epoch: int | None = None  # None (or 0) = clips // (batch x world x accum)
    kind: Literal["cosine", "cosine_floor"] = "cosine"
    lr_floor: float = 0.01  # cosine_floor: the lowest lr, as a fraction of optim.lr

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError("schedule.epochs: must be >= 1")
        if self.warmup_epochs < 0:
            raise ConfigError("schedule.warmup_epochs: must be >= 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 0:
            raise ConfigError(
                "schedule.steps_per_epoch: must be >= 1, or null / 0 (the clips over the batch)"
            )


LoggerName = Literal["tensorboard", "wandb"]


@dataclass
class TrainConfig:
    batch_size: int = 64  # per process
    accum_steps: int = 1
    seed: int = 0
    max_steps: int | None = None  # stop after this optimizer step (None = full schedule)
    # fp16: autocast + grad scaler, as the official recipes run (on CPU too); bf16: autocast,
    # no scaler; auto: bf16 on GPU, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    output_dir: str | None = None  # None = runs/<recipe>-<timestamp>
    resume: str | None = None  # null | auto | PATH
    overwrite: bool = False  # replace the previous run's files in an existing output_dir
    checkpoint_every: int = 1000  # optimizer steps; a checkpoint is also written at the end
    keep_last: int = 3
    log_every: int = 1
    # Where the records of metrics.jsonl also go (rank 0): TensorBoard (<run>/tensorboard) and
    # Weights & Biases (project train.wandb_project, offline unless WANDB_MODE / a key says so).
    loggers: list[LoggerName] = field(default_factory=lambda: ["tensorboard"])
    wandb_project: str = "umt"
    plot: bool = True
    progress: bool = True
    ema_decay: float | None = None  # keep an EMA of the weights (e.g. 0.9999); None = off
    # torch.compile every repeated block (encoder, decoder, text and teacher layers) in place
    # before the model is wrapped (DDP / FSDP2); state-dict names do not change.
    compile: bool = False

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("train.batch_size: must be >= 1")
        if self.accum_steps < 1:
            raise ConfigError("train.accum_steps: must be >= 1")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError("train.max_steps: must be >= 0")
        for key in ("checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"train.{key}: must be >= 1 (optimizer steps), got {getattr(self, key)}"
                )
        if self.keep_last < 0:
            raise ConfigError("train.keep_last: must be >= 0 (0 keeps every checkpoint)")
        if self.resume and self.overwrite:
            raise ConfigError("train.resume and train.overwrite exclude each other: pick one")
        if len(set(self.loggers)) != len(self.loggers):
            raise ConfigError(f"train.loggers: {self.loggers} names a logger twice")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError("train.ema_decay: must be in (0, 1), or null for no EMA")


@dataclass
class DistConfig:
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: ddp when world size > 1
    backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    timeout_min: int = 30

    def validate(self) -> None:
        if self.timeout_min < 1:
            raise ConfigError(f"dist.timeout_min: must be >= 1, got {self.timeout_min}")


# The sections the loop reads, written last (as the recipes write them).
LOOP_SECTIONS = ("optim", "schedule", "train", "dist")


# --------------------------------------------------------------------------- the base
@dataclass
class TaskConfig:
    """The config of any task. Each task's config (registered with
    :func:`umt.config.registry.register_task`) narrows ``task``, ``model``, ``data`` and the
    defaults, adds its own sections and checks them in :meth:`validate`."""

    recipe: str = DEFAULT_RECIPE
    task: str = "pretrain"
    model: EncoderConfig = field(default_factory=EncoderConfig)
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    # Keys renamed: old dotted key -> new one. The old key is refused (in a recipe, an override,
    # a run's saved config.yaml) with the new name in the message. A task's own renames add to
    # these ({**TaskConfig.renamed_keys, ...}).
    renamed_keys: ClassVar[dict[str, str]] = {
        "train.tensorboard": "train.loggers",
        "model.compile": "train.compile",
    }
    # Old dotted key -> its old value as the new key's value, for the renames that changed the
    # value's form too (what a resume reads from an old run's config.yaml).
    renamed_values: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "train.tensorboard": lambda on: ["tensorboard"] if on else [],
    }

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in LOOP_SECTIONS:
            out[name] = out.pop(name)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> None:
        """Checks that types alone cannot express (a task's own checks, then these): each
        section's own ``validate()`` (optim, schedule, train, data, eval, teacher, ...), then
        the checks across sections."""
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section) and hasattr(section, "validate"):
                section.validate()
        if self.data.num_frames % self.model.tubelet_size:
            raise ConfigError("data.num_frames: must be a multiple of model.tubelet_size")
