"""Classification fine-tuning (``umt finetune``), as the official ``run_class_finetuning.py``.

The classifier is a ``VideoViT`` without final norm, mean-pooled, ``fc_norm``, linear head (its
weights start at trunc_normal(0.02) x ``head_init_scale``), with the fixed sin-cos position table
of the pretraining layout interpolated to this one. Weights come from a stage-1 checkpoint (ours
or official), a stage-2 file (its vision encoder), a fine-tuned classifier (continue, or move
K710 -> K400/K600/K700 by head rows), or nowhere (scratch). One micro-batch: mixup / cutmix with
label smoothing (soft targets) -> classifier (per-sample drop path) -> soft-target cross-entropy.
Validation (one view) after each epoch keeps the best checkpoint; the end is the official
multi-view test of the best one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.config import ConfigError
from umt.config.classify import ClassifyConfig, parse_views
from umt.errors import InputError
from umt.textfile import read_text
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    DROP_PATH_STREAM,
    autocast_off,
    build_encoder,
    check_init,
    count_params,
    data_clip,
    drop_path_noise,
    encoder_sizes,
    load_best_weights,
    plain_model,
    resolve_init,
    weights_line,
)

MIXUP_STREAM = 3


# --------------------------------------------------------------------------- the model
def build_classifier(cfg: ClassifyConfig, table_from_checkpoint: bool = False) -> nn.Module:
    """The official fine-tuning model for ``cfg`` with random weights (seeded by the run seed).

    Its position table is the fixed sin-cos one, or, with ``table_from_checkpoint``, a frozen
    parameter that takes the checkpoint's table (the official model adds its table detached:
    never trained, but saved and loaded with the weights)."""
    from umt.models import model_config

    m = cfg.model
    patch = encoder_sizes(m).get("patch_size", model_config(m.name).get("patch_size", 16))
    side = 224 // patch  # the official table is built for 8 frames at 224 px, then interpolated
    model = build_encoder(
        cfg,
        head_drop_rate=m.head_drop_rate,
        num_classes=m.num_classes,
        align_layers=0,
        final_norm=False,
        fc_norm=True,
        pos_embed="learned" if table_from_checkpoint else "sincos",
        sincos_source_grid=None if table_from_checkpoint else [8, side, side],
        weight_init="trunc_normal",
    )
    with torch.no_grad():
        model.head.weight.mul_(m.head_init_scale)
        model.head.bias.mul_(m.head_init_scale)
    if table_from_checkpoint:
        model.pos_embed.requires_grad_(False)
    return model


def _head_rows(
    old: int, new: int, label_map: str | None, path: str
) -> tuple[list[int] | None, str]:
    """Which rows of a checkpoint head of ``old`` classes make the new head of ``new``:
    ``(rows, note)``; ``rows`` None keeps a freshly initialised head."""
    if label_map:
        try:
            rows = json.loads(read_text(label_map))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"model.init_label_map: cannot read {label_map} ({err})") from None
        if not (isinstance(rows, list) and all(isinstance(r, int) for r in rows)):
            raise InputError(
                f"model.init_label_map: {label_map} must hold a JSON list of row indices"
            )
        if len(rows) != new or not all(0 <= r < old for r in rows):
            raise InputError(
                f"model.init_label_map: {label_map} maps {len(rows)} classes onto rows up to "
                f"{max(rows, default=-1)}, but the head needs {new} rows out of {old}"
            )
        return rows, f"head rows from {label_map}"
    if old == new:
        return list(range(new)), "head kept"
    if old == 710 and new == 400:
        return list(range(400)), "head: the first 400 rows (K710 starts with the K400 classes)"
    if old == 710 and new in (600, 700):
        raise InputError(
            f"{path}: a K710 head becomes a K{new} head through the official map "
            f"k710/label_mixto{new}.json (not in the official repository): pass it as "
            f"model.init_label_map=PATH (a JSON list of {new} row indices)"
        )
    return None, f"head: {old} classes in the checkpoint, {new} here: a new head"


def load_init_weights(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    path: str,
    label_map: str | None = None,
) -> list[str]:
    """Load ``weights`` (from :func:`umt.models.video_vit.read_student_weights`) into the
    classifier ``model``: the encoder always, the head when it fits (or through the K710 rows /
    ``label_map``), the position table (interpolated to this layout) when the checkpoint has
    one. Returns notes on what was taken; refuses an encoder of another size."""
    from umt.models.layers import interpolate_pos_table
    from umt.models.video_vit import encoder_mismatch, infer_layout

    weights = dict(weights)
    wrong = encoder_mismatch(weights, model)
    if wrong:
        raise InputError(
            f"{path}: its encoder does not fit this model: {', '.join(wrong)}; "
            "set model.name / model.embed_dim / model.depth / model.patch_size to match"
        )
    notes = []
    if "pos_embed" in weights and weights["pos_embed"].shape != model.pos_embed.shape:
        table = weights["pos_embed"]  # [1, N, C]
        frames, img = infer_layout(table.shape[1], model.patch_size, model.tubelet_size, None, None)
        src = (frames // model.tubelet_size, img // model.patch_size, img // model.patch_size)
        weights["pos_embed"] = interpolate_pos_table(table, src, model.grid)
        notes.append(f"its position table interpolated from {src} to {model.grid}")
    if "head.weight" in weights:
        rows, note = _head_rows(
            weights["head.weight"].shape[0], model.num_classes, label_map, str(path)
        )
        notes.append(note)
        if rows is None:
            del weights["head.weight"], weights["head.bias"]
        else:
            weights["head.weight"] = weights["head.weight"][rows]
            weights["head.bias"] = weights["head.bias"][rows]
    else:
        notes.append("a new head (trunc_normal x head_init_scale)")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith(("head.", "fc_norm."))]
    if missing or unexpected:
        raise InputError(
            f"{path}: weights do not fit the classifier (missing {missing[:6]}, "
            f"unexpected {unexpected[:6]})"
        )
    return notes


# --------------------------------------------------------------------------- the task
class ClassifyTask(Task):
    """``umt finetune``: supervised classification fine-tuning."""

    name = "finetune"
    loss_name = "loss"
    best_metric = "val_top1"
    eval_on_every_rank = True  # validate() shards the set over the ranks and gathers the counts
    resume_sections = ("model", "data", "augment")
    resume_ignored = Task.resume_ignored | {
        "model.init",
        "model.init_recipe",
        "model.init_label_map",
        "data.val_list",
        "data.test_list",
    }

    cfg: ClassifyConfig

    # ---------------------------------------------------------------- building
    def check(self) -> None:
        m = self.cfg.model
        if self.reads_init and m.init is None:
            raise ConfigError(
                f"recipe '{self.cfg.recipe}' needs model.init: the checkpoint to fine-tune (a "
                "stage-1, stage-2 or fine-tuned UMT file, official or umt's), or "
                "model.init=scratch to start from random weights"
            )
        if self.reads_init:
            check_init(m.init)
        if self.reads_init and m.init_label_map and not Path(m.init_label_map).is_file():
            raise FileNotFoundError(f"model.init_label_map: no such file {m.init_label_map}")

    def _lists(self) -> tuple[Any, Any, Any]:
        """(train, val, test) annotation sources; the synthetic set's files when unset (its
        val split to validate, its test split, disjoint from both, to test)."""
        d = self.cfg.data
        if d.train_list is None:
            from umt.train.data import ensure_synthetic

            root = ensure_synthetic(self.cfg, self.ctx.info)
            val = d.val_list or str(root / "val.csv")
            test = d.test_list or (val if d.val_list else str(root / "test.csv"))
            return None, val, test
        return d.train_list, d.val_list, d.test_list or d.val_list

    def build_data(self) -> Any:
        from umt.data.clip_spec import ClipSpec
        from umt.data.transforms.recipes import build_finetune_transform
        from umt.train.data import build_video_dataset

        cfg, d, a = self.cfg, self.cfg.data, self.cfg.augment
        train_list, self.val_list, self.test_list = self._lists()
        for key, value in (("data.val_list", self.val_list), ("data.test_list", self.test_list)):
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"{key}: no such file {value}")
        transform = build_finetune_transform(
            d.input_size,
            scale=tuple(a.rrc_scale),
            ratio=tuple(a.rrc_ratio),
            flip=d.flip,
            rand_augment=a.rand_augment,
            erase_prob=a.erase_prob,
            mean=d.mean_std,
        )
        return build_video_dataset(
            cfg,
            self.ctx.info,
            train_list,
            "train",
            clip=ClipSpec(
                num_frames=d.num_frames,
                sampling=d.sampling,
                frame_stride=d.sampling_rate,
                input_size=d.input_size,
                clips_per_video=d.clips_per_video,
            ),
            transform=transform,
            labels=d.labels,
            seed=cfg.train.seed,
        )

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        path, self.init_desc = resolve_init(cfg, self.ctx.resume_from)
        self.init_notes: list[str] = []
        if path is None:
            model = build_classifier(cfg)
        else:
            from umt.models.video_vit import read_student_weights

            weights, kind = read_student_weights(path)
            model = build_classifier(cfg, table_from_checkpoint="pos_embed" in weights)
            self.init_notes = [f"a {kind} checkpoint"]
            label_map = cfg.model.init_label_map if self.reads_init else None
            self.init_notes += load_init_weights(model, weights, path, label_map)
        a = cfg.augment
        self.mixup = None
        if (a.mixup > 0 or a.cutmix > 0) and a.mixup_prob > 0:
            from umt.data.transforms.mixup import Mixup

            self.mixup = Mixup(
                cfg.model.num_classes,
                mixup_alpha=a.mixup,
                cutmix_alpha=a.cutmix,
                prob=a.mixup_prob,
                switch_prob=a.mixup_switch_prob,
                label_smoothing=a.smoothing,
            )
        return model.to(self.ctx.device)

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model)

    def describe(self, model: nn.Module) -> list[str]:
        net = self.export_model(model)
        cfg, d = self.cfg, self.cfg.data
        n_params = count_params(net)
        views = "x".join(map(str, parse_views(cfg.eval.test_views)))
        lines = [
            f"classifier {cfg.model.name} ({net.embed_dim} wide x {len(net.blocks)} deep, "
            f"{net.num_classes} classes): {n_params / 1e6:.2f}M params; {d.num_frames} frames "
            f"of {d.input_size}px; layer decay {cfg.optim.layer_decay}",
            weights_line(self.init_desc, self.init_notes),
            f"{d.clips_per_video} clip(s) per video; mixup {cfg.augment.mixup}, cutmix "
            f"{cfg.augment.cutmix}, smoothing {cfg.augment.smoothing}; validation: "
            + (f"{self.val_list}" if self.val_list else "none")
            + f"; test {views} views: {self.test_list or 'none'}",
        ]
        return lines

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        from umt.train.optim import finetune_param_groups

        return finetune_param_groups(model, self.cfg.optim.weight_decay, self.cfg.optim.layer_decay)

    # ---------------------------------------------------------------- training
    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        from umt.data import make_generator, sample_seed
        from umt.losses import soft_target_cross_entropy

        cfg = self.cfg
        video, labels = batch["video"], batch["label"]  # [B,3,T,H,W], [B]
        index = batch["index"].tolist()
        repeat = batch.get("repeat", torch.zeros(len(index), dtype=torch.long)).tolist()
        if self.mixup is not None:
            gen = make_generator(sample_seed(cfg.train.seed, epoch, index[0], MIXUP_STREAM))
            video, target = self.mixup(video, labels, generator=gen)  # target [B, classes]
        else:
            target = F.one_hot(labels, cfg.model.num_classes).float()
            s = cfg.augment.smoothing
            target = target * (1.0 - s) + s / cfg.model.num_classes
        noise = None
        if model.training and cfg.model.drop_path_rate > 0:
            seeds = [
                sample_seed(cfg.train.seed, epoch, i, DROP_PATH_STREAM, r)
                for i, r in zip(index, repeat)
            ]
            noise = drop_path_noise(self.export_model(model), seeds, video.device)  # [B, depth, 2]
        logits = model(video, None, noise)  # [B, classes]
        with autocast_off(video.device):
            return soft_target_cross_entropy(logits.float(), target)

    # ---------------------------------------------------------------- evaluation
    def evaluates(self, epoch: int | None) -> bool:
        if self.val_list is None:
            return False
        return self.validation_due(epoch)

    def _eval_data(self, num_clips: int = 1, num_crops: int = 1) -> dict[str, Any]:
        """The clip settings validation and test share (official short-side resize + crops)."""
        d = self.cfg.data
        clip = data_clip(
            d,
            False,
            short_side=d.short_side or d.input_size,
            num_clips=num_clips,
            num_crops=num_crops,
        )
        return dict(root=d.root or None, labels=d.labels, clip=clip)

    def _eval_batch(self) -> int:
        return self.cfg.eval.batch_size or self.cfg.train.batch_size

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, Any] | None:
        """The official single-view validation (collective: each rank scores its shard)."""
        from umt.data import VideoDataset
        from umt.evaluate.classification import validate

        d = self.cfg.data
        if not hasattr(self, "val_set"):
            self.val_set = VideoDataset(
                self.val_list, seed=self.cfg.train.seed, **self._eval_data()
            )
        res = validate(
            model,
            self.val_set,
            criterion=nn.CrossEntropyLoss(),
            batch_size=int(1.5 * self._eval_batch()),  # as the official validation loader
            num_workers=d.num_workers,
            autocast_dtype=self.ctx.amp_dtype,
        )
        out: dict[str, Any] = {
            "val_top1": res.top1,
            "val_top5": res.top5,
            "val_videos": res.num_videos,
        }
        if res.loss is not None and math.isfinite(res.loss):
            out["val_loss"] = res.loss
        if res.faults:  # left out of the scores, never replaced: named in the log
            out["val_skipped_videos"] = len(res.faults)
            out["val_skipped"] = sorted({path for path, _ in res.faults})
        return out

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """The official multi-view test, of the best-validation weights (``eval.test_best``)."""
        if self.test_list is None:
            return ["no test list (data.test_list): no multi-view test"]
        from umt.data.datasets import MultiViewDataset
        from umt.evaluate.classification import (
            evaluate_classification,
            write_confusion_png,
            write_per_class_csv,
            write_predictions,
        )

        cfg, d = self.cfg, self.cfg.data
        net = plain_model(model)
        which = load_best_weights(net, best, cfg.eval.test_best)
        clips, crops = parse_views(cfg.eval.test_views)
        dataset = MultiViewDataset(self.test_list, normalize=False, **self._eval_data(clips, crops))
        result = evaluate_classification(
            net,
            dataset,
            batch_size=max(1, self._eval_batch() // 2),
            num_workers=d.num_workers,
            autocast_dtype=self.ctx.amp_dtype,
            progress=cfg.train.progress,
        )
        summary = result.summary()
        lines = [
            f"test ({clips}x{crops} views, {which}): top-1 {result.top1:.2f}%, top-5 "
            f"{result.top5:.2f}%, mean class accuracy {result.mean_class_acc:.2f}% over "
            f"{result.num_videos} videos"
            + (f"; {len(result.skipped)} unreadable video(s) skipped" if result.skipped else "")
        ]
        if self.ctx.info.is_main:
            from umt.train.checkpoint import write_outputs

            files = {
                "results.json": lambda p: p.write_text(json.dumps(summary, indent=1)),
                "predictions.jsonl": lambda p: write_predictions(result, p),
                "per_class.csv": lambda p: write_per_class_csv(result, p),
            }
            if result.num_classes <= 50:
                files["confusion.png"] = lambda p: write_confusion_png(result, p)
            test_dir = write_outputs(out / "test", files)  # all or nothing
            lines.append(f"test results: {test_dir}")
        self.test_result = result
        return lines
