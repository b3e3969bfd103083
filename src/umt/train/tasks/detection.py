"""AVA action detection fine-tuning (``umt finetune`` with a ``finetune-ava`` recipe), as the
official ``AD/`` code (spec section E).

The model is :class:`umt.models.detection.VideoDetector` (the video ViT with its final norm,
the fixed sin-cos table interpolated on the fly, RoIAlign on the time-averaged features, max
over the bins, a linear 80-way head scaled by ``head_init_scale``), its encoder loaded from a
checkpoint with ``load_backbone`` (a K710 fine-tuned file officially; any stage-1 / stage-2 /
AVA checkpoint too) or random (``scratch``). Data: :class:`umt.data.detection.AVADataset`.

One micro-batch: per clip, the ground-truth boxes (at most ``model.proposals_per_clip``, a
random subset when more) jittered (``model.box_jitter``), both drawn from the clip's own seed
``(seed, epoch, index, BOX_STREAM)``, so a resume replays them exactly -> detector (per-sample
drop path) -> ``detection_loss`` (class-mean BCE x boxes).

Validation (``eval.every_epochs`` and the last epoch): the detector's boxes at the validation
keyframes (score >= ``data.box_thresh``), extended by ``model.test_box_ext`` for the RoIs and
scored ``sigmoid(logit) x box score``; the rows report the detector's own boxes in the original
frame, normalised as the official ``prepare_for_ava_detection``; frame-mAP@0.5 over the label
map's classes, excluded keyframes removed (:func:`umt.evaluate.detection.frame_map`). As the
official, it runs on the main process only (the other ranks wait and receive its numbers).
``val_map`` (percent) picks ``<run>/best/``. The end writes ``<run>/test/results.json`` (mAP,
per-class AP, and for small validation sets (the synthetic one) the chance level: the mAP of uniform
random scores on the same detection rows, mean and std over 20 draws, :func:`umt.evaluate.detection.chance_frame_map`) and
``<run>/test/detections.csv`` (AVA detection rows) for the last weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import ConfigError
from umt.config.detection import DetectionConfig
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    DROP_PATH_STREAM,
    autocast_off,
    build_encoder,
    check_init,
    count_params,
    drop_path_noise,
    plain_model,
    resolve_init,
    weights_line,
)

BOX_STREAM = 5
CHANCE_SEEDS = 20  # random-score draws for the chance level written beside the mAP
CHANCE_MAX_ROWS = 50_000  # ... computed for validation sets up to this many detection rows


def synthetic_detection_root(cfg: DetectionConfig) -> Path:
    """Where the built-in synthetic detection set lives: ``data.synthetic_root``, else
    ``$UMT_HOME/synthetic-detection-v2``, else ``~/.cache/umt/synthetic-detection-v2`` (v2: the
    set's second geometry; a folder of the first one is left as it is)."""
    if cfg.data.synthetic_root:
        return Path(cfg.data.synthetic_root)
    home = os.environ.get("UMT_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "umt"
    return base / "synthetic-detection-v2"


def build_detector(cfg: DetectionConfig) -> nn.Module:
    """The detector of ``cfg`` with random weights (seeded by the run seed)."""
    m = cfg.model
    return build_encoder(cfg, num_classes=m.num_classes, init_scale=m.head_init_scale)


class DetectionTask(Task):
    """``umt finetune`` with a ``finetune-ava`` recipe: AVA action detection."""

    name = "finetune-ava"
    loss_name = "loss"
    best_metric = "val_map"
    resume_ignored = Task.resume_ignored | {
        "model.init",
        "model.init_recipe",
        "data.val_list",
        "data.val_boxes",
        "data.label_map",
        "data.excluded",
    }

    cfg: DetectionConfig

    # ---------------------------------------------------------------- building
    def check(self) -> None:
        m, d = self.cfg.model, self.cfg.data
        if self.reads_init and m.init is None:
            raise ConfigError(
                f"recipe '{self.cfg.recipe}' needs model.init: the checkpoint whose encoder the "
                "detector starts from (officially the K710 fine-tuned b16/l16_ptk710_ftk710_"
                "f8_res224.pth), or model.init=scratch"
            )
        if self.reads_init:
            check_init(m.init)
        if self.cfg.dist.strategy == "fsdp":
            raise ConfigError("dist.strategy: fsdp is not supported for detection (use ddp)")
        if d.train_list is None:
            return  # the synthetic set brings every file
        if not Path(d.train_list).is_file():
            raise FileNotFoundError(f"data.train_list: no such file {d.train_list}")
        if d.val_list is not None:
            if not Path(d.val_list).is_file():
                raise FileNotFoundError(f"data.val_list: no such file {d.val_list}")
            if d.label_map is None:
                raise ConfigError(
                    "data.label_map: required with data.val_list (the evaluated classes, e.g. "
                    "ava_action_list_v2.2_for_activitynet_2019.pbtxt)"
                )
        for key in ("label_map", "val_boxes", "excluded"):
            value = getattr(d, key)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"data.{key}: no such file {value}")

    def _files(self) -> dict[str, Any]:
        """The annotation files: the config's, or the synthetic set's (made by rank 0)."""
        d = self.cfg.data
        if d.train_list is not None:
            return {
                "train": d.train_list,
                "val": d.val_list,
                "val_boxes": d.val_boxes,
                "label_map": d.label_map,
                "excluded": d.excluded,
                "root": d.root or None,
            }
        from umt.data.synth_detection import ensure_detection_dataset
        from umt.train.data import synthetic_write_error
        from umt.train.distributed import barrier

        root = synthetic_detection_root(self.cfg)
        if self.ctx.info.is_main:
            try:
                ensure_detection_dataset(root)
            except OSError as err:
                raise synthetic_write_error(err, root) from None
        barrier()
        return {
            "train": str(root / "train.csv"),
            "val": d.val_list or str(root / "val.csv"),
            "val_boxes": d.val_boxes or str(root / "val_boxes.csv"),
            "label_map": d.label_map or str(root / "label_map.pbtxt"),
            "excluded": d.excluded or str(root / "excluded.csv"),
            "root": str(root / "videos"),
        }

    def _dataset(self, train: bool) -> Any:
        from umt.data.detection import AVADataset

        d, f = self.cfg.data, self.files
        return AVADataset(
            f["train"] if train else f["val"],
            f["root"],
            train=train,
            boxes=None if train else f["val_boxes"],
            box_thresh=d.box_thresh,
            num_frames=d.num_frames,
            sampling_rate=d.sampling_rate,
            short_side=d.short_side,
            input_size=d.input_size,
            flip=d.flip,
            color_jitter=d.color_jitter,
            num_classes=self.cfg.model.num_classes,
            fps=d.fps,
            seed=self.cfg.train.seed,
        )

    def build_data(self) -> Any:
        self.files = self._files()
        return self._dataset(train=True)

    def collate(self) -> Any:
        from umt.data.detection import collate_detection

        return collate_detection

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        path, self.init_desc = resolve_init(cfg, self.ctx.resume_from)
        model = build_detector(cfg)
        self.init_notes: list[str] = []
        if path is not None:
            self.init_notes = model.load_backbone(path)
        self.loss_calls = 0
        return model.to(self.ctx.device)

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model)

    def describe(self, model: nn.Module) -> list[str]:
        net = self.export_model(model)
        cfg, d = self.cfg, self.cfg.data
        n_params = count_params(net)
        return [
            f"detector {cfg.model.name} ({net.embed_dim} wide x {len(net.blocks)} deep, "
            f"{net.num_classes} classes): {n_params / 1e6:.2f}M params; {d.num_frames} frames "
            f"every {d.sampling_rate} around the keyframe, short side {d.short_side}, crop "
            f"{d.input_size}; layer decay {cfg.optim.layer_decay}",
            weights_line(self.init_desc, self.init_notes),
            f"validation: {self.files['val'] or 'none'} (boxes {self.files['val_boxes'] or 'GT'}"
            f" >= {d.box_thresh})",
        ]

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        from umt.train.optim import finetune_param_groups

        return finetune_param_groups(model, self.cfg.optim.weight_decay, self.cfg.optim.layer_decay)

    # ---------------------------------------------------------------- training
    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        dev = self.ctx.device
        out = dict(batch)
        out["video"] = batch["video"].to(dev, non_blocking=True)
        return out

    def proposals(
        self, batch: dict[str, Any], epoch: int
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Training proposals of a batch: per clip the sampled, jittered GT boxes (drawn from
        the clip's seed) and their targets ``[sum n_i, classes]``."""
        from umt.data import make_generator, sample_seed
        from umt.models.detection import jitter_boxes, sample_boxes

        m = self.cfg.model
        boxes, targets = [], []
        for i, index in enumerate(batch["index"].tolist()):
            gen = make_generator(sample_seed(self.cfg.train.seed, epoch, index, BOX_STREAM))
            b, lab = batch["boxes"][i], batch["labels"][i]
            keep = sample_boxes(b.shape[0], m.proposals_per_clip, gen)
            jittered = jitter_boxes(
                b[keep], batch["image_size"][i], gen, tuple(m.box_jitter)
            )  # [n, 4]
            boxes.append(jittered.to(self.ctx.device))
            targets.append(lab[keep])
        return boxes, torch.cat(targets, dim=0).to(self.ctx.device)

    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        from umt.data import sample_seed
        from umt.models.detection import detection_loss

        cfg = self.cfg
        self.loss_calls += 1
        video = batch["video"]  # [B, 3, T, H, W]
        boxes, targets = self.proposals(batch, epoch)
        noise = None
        if model.training and cfg.model.drop_path_rate > 0:
            seeds = [
                sample_seed(cfg.train.seed, epoch, i, DROP_PATH_STREAM)
                for i in batch["index"].tolist()
            ]
            noise = drop_path_noise(self.export_model(model), seeds, video.device)  # [B, depth, 2]
        logits = model(video, boxes, noise)  # [K, classes]
        with autocast_off(video.device):
            return detection_loss(logits.float(), targets)

    # ---------------------------------------------------------------- evaluation
    def evaluates(self, epoch: int | None) -> bool:
        if not self.files.get("val"):
            return False
        # its validation is its result: always after the last epoch
        return self.validation_due(epoch) or epoch is None or epoch + 1 == self.cfg.schedule.epochs

    def eval_dataset(self) -> Any:
        if not hasattr(self, "val_set"):
            self.val_set = self._dataset(train=False)
        return self.val_set

    def eval_batch_size(self) -> int:
        return self.cfg.eval.batch_size or self.cfg.train.batch_size

    def eval_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[list[Any], Any]:
        """One batch of validation keyframes: ``(its unreadable videos as (path, reason), its
        detection rows or None when it has no readable clip with a box)``."""
        from umt.evaluate.detection import batch_detections
        from umt.models.detection import detection_scores, extend_boxes

        dev = self.ctx.device
        skipped = [(str(path), str(reason)) for path, reason in batch["faults"]]
        if batch["video"] is None or not any(b.shape[0] for b in batch["boxes"]):
            return skipped, None
        ext = tuple(self.cfg.model.test_box_ext)
        rois = [
            extend_boxes(b, size, ext).to(dev)
            for b, size in zip(batch["boxes"], batch["image_size"])
        ]
        logits = plain_model(model)(batch["video"].to(dev, non_blocking=True), rois)
        scores = detection_scores(logits.float().cpu(), torch.cat(batch["box_scores"]))
        return skipped, batch_detections(batch, scores.numpy())

    def eval_metrics(self, parts: list[tuple[list[Any], Any]]) -> dict[str, Any]:
        """Frame-mAP@0.5 of the detections; the result is kept for :meth:`finish`."""
        from umt.data.formats.ava import (
            AVABoxes,
            read_exclusions,
            read_groundtruth_csv,
            read_label_map,
        )
        from umt.evaluate.detection import frame_map

        f = self.files
        skipped: dict[str, str] = {}
        for faults, _ in parts:
            skipped.update(faults)
        detections = AVABoxes.concatenate([rows for _, rows in parts if rows is not None])
        result = frame_map(
            read_groundtruth_csv(f["val"]),
            detections,
            read_label_map(f["label_map"]),
            read_exclusions(f["excluded"]) if f.get("excluded") else None,
        )
        unreadable = [{"path": p, "reason": skipped[p]} for p in sorted(skipped)]
        self.last_eval = (self.loss_calls, result, detections, unreadable)
        metrics = {
            "val_map": 100.0 * result.mean_ap,
            "val_keyframes": float(len(self.val_set)),
            "val_detections": float(result.num_detections),
        }
        if unreadable:  # left out, counted and named (never replaced by other videos)
            metrics["val_skipped_videos"] = float(len(unreadable))
            metrics["val_skipped"] = [v["path"] for v in unreadable]
        return metrics

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """The validation of the last weights (reused when nothing was trained since the last
        one), written to ``<run>/test/``: ``results.json`` and ``detections.csv``."""
        if not self.files.get("val"):
            return ["no validation keyframes (data.val_list): no detection results"]
        if not self.ctx.info.is_main:
            return []
        from umt.data.formats.ava import (
            read_exclusions,
            read_groundtruth_csv,
            read_label_map,
            write_detections_csv,
        )
        from umt.evaluate.detection import OFFICIAL_MAP_KEY, chance_frame_map
        from umt.train.validate import eval_batches, evaluating

        last = getattr(self, "last_eval", None)
        if last is None or last[0] != self.loss_calls:  # trained since: validate the last weights
            with evaluating(model):
                self.eval_metrics(eval_batches(self, model, self.eval_dataset()))
        _, result, detections, skipped = self.last_eval
        f = self.files
        chance = chance_std = None
        if len(detections) <= CHANCE_MAX_ROWS:  # small sets (on AVA val 20 more mAPs are long)
            chance, chance_std = chance_frame_map(
                read_groundtruth_csv(f["val"]),
                detections,
                read_label_map(f["label_map"]),
                read_exclusions(f["excluded"]) if f.get("excluded") else None,
                seeds=CHANCE_SEEDS,
            )
        summary = {
            "mAP": 100.0 * result.mean_ap,
            OFFICIAL_MAP_KEY: result.mean_ap,
            "chance_mAP": None if chance is None else 100.0 * chance,
            "chance_mAP_std": None if chance_std is None else 100.0 * chance_std,
            "per_class_AP": {name: 100.0 * ap for name, ap in result.ap_by_name.items()},
            "num_groundtruth_per_class": {
                result.class_names[c]: n for c, n in result.num_groundtruth_per_class.items()
            },
            "num_keyframes": len(self.val_set),
            "num_detections": result.num_detections,
            "skipped_videos": skipped,
            "weights": "last",
        }
        from umt.train.checkpoint import write_outputs

        test_dir = write_outputs(  # all or nothing
            out / "test",
            {
                "results.json": lambda p: p.write_text(json.dumps(summary, indent=1)),
                "detections.csv": lambda p: write_detections_csv(p, detections),
            },
        )
        self.test_result = result
        return [
            f"AVA frame-mAP@0.5 (last weights): {100.0 * result.mean_ap:.2f}% over "
            f"{len(result.average_precision)} classes, {len(self.val_set)} keyframes"
            + (
                ""
                if chance is None
                else f"; random scores on the same boxes: {100.0 * chance:.2f} +- "
                f"{100.0 * chance_std:.2f}% ({CHANCE_SEEDS} draws)"
            )
            + (
                f"; {len(skipped)} unreadable video(s) skipped: "
                + ", ".join(v["path"] for v in skipped[:3])
                + (", ..." if len(skipped) > 3 else "")
                if skipped
                else ""
            ),
            f"test results: {test_dir}",
        ]
