"""Stage 2 (video-text pretraining) and retrieval fine-tuning: one task, one model.

One micro-batch, as the official ``multi_modality/models/umt.py`` ``UMT.forward``: clamp the
temperature -> (stage 2) the frozen teacher's class-token attention picks the kept tokens
(video 0.8 / image 0.5 masked) -> the student encodes the kept tokens only; its last K blocks
are aligned with the teacher (UMA) -> captions through the text layers -> VTC over features
gathered from every process -> VTM with one similarity-sampled hard negative per video and per
text -> MLM through the fusion layers, cross-attending to the (masked) video tokens. Every step
is an image batch or a video batch, the same kind on every process, in the official proportions
(:class:`umt.data.video_text.MixedMediaSampler`).

Retrieval fine-tuning (``finetune-retrieval`` recipes) is the same with ``loss.uma`` and
``loss.mlm`` at 0: no teacher, no mask, per-frame pooled features; validation is the official
retrieval evaluation (ITC, then ITM re-ranking of the top ``k_test``), the best ``r_mean`` kept.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import ConfigError
from umt.config.video_text import VideoTextConfig
from umt.errors import InputError
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    DROPOUT_STREAM,
    check_init,
    count_params,
    drop_path_noise,
    drop_path_seeds,
    ensure_synthetic_qa_files,
    fusion_layer_notes,
    has_drop_path,
    load_best_weights,
    mask_seeds,
    plain_model,
    resolve_init,
    resolve_text_weights,
    teacher_targets,
    tower_tokenizer,
    video_encoder_args,
    vocab_source,
    weights_line,
)

VTM_STREAM = 4
MLM_STREAM = 5


# --------------------------------------------------------------------------- the module
class VideoTextTrainModule(nn.Module):
    """Makes one micro-batch's losses the ``forward`` of a module, so DDP / FSDP hooks run.

    Holds the :class:`umt.models.video_text.UMTVideoText` (``model``; its frozen teacher inside
    it, as the official checkpoints hold ``clip_teacher``) and the loss settings.
    """

    state_prefix = "model."  # checkpoints hold the video-text model's own names

    def __init__(self, model: nn.Module, cfg: VideoTextConfig, special_ids: dict[str, int]):
        super().__init__()
        self.model = model
        self.loss_cfg = cfg.loss
        self.mask_cfg = cfg.mask
        self.teacher_img_size = cfg.teacher.img_size
        self.special = special_ids
        self.has_drop_path = has_drop_path(model.vision_encoder)

    def forward(
        self,
        video: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sample_ids: torch.Tensor,
        image: bool,
        seeds: Sequence[int],
        step_seed: int,
        draws: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch: ``video`` [B, 3, T, H, W] (T = 1 for images), captions
        ``input_ids`` / ``attention_mask`` [B, L], ``sample_ids`` [B]; ``seeds`` one per sample
        (mask and drop path), ``step_seed`` for the VTM and MLM draws.

        ``draws`` (optional) gives this step's random draws instead of drawing them, e.g. those
        recorded from another implementation: ``mask`` [B, N] bool (the semantic mask, True =
        dropped), ``neg_video`` / ``neg_text`` [B] (the VTM hard negatives: a video for each
        text, a text for each video), ``mlm_input_ids`` / ``mlm_labels`` [B, L] (the MLM
        masking, labels -100 where not masked). A key left out is drawn as usual."""
        from umt import losses
        from umt.data import sample_seed

        lc = self.loss_cfg
        model = self.model
        given = {k: v.to(video.device) for k, v in (draws or {}).items()}
        model.clamp_temp()
        temp = model.temp
        noise = None
        if self.training and self.has_drop_path:
            noise = drop_path_noise(model.vision_encoder, drop_path_seeds(seeds), video.device)
        parts: dict[str, torch.Tensor] = {}

        # vision: [B, N_vis, C] tokens, [B, T' , C] pooled
        if lc.uma > 0:
            ratio = self.mask_cfg.image_ratio if image else self.mask_cfg.video_ratio
            targets, mask = teacher_targets(
                model.teacher, video, seeds, ratio, self.teacher_img_size, mask=given.get("mask")
            )  # the official stage 2 feeds the teacher the ImageNet-normalised frames
            vision_embeds, pooled, aligned = model.encode_vision_aligned(video, mask, noise)
            parts["uma"] = losses.uma_loss(
                aligned.float(), targets.float(), kind=lc.uma_kind, normalize=True
            )
        else:
            vision_embeds, pooled = model.encode_vision(video, None, drop_path_noise=noise)
        b = input_ids.shape[0]
        if lc.mlm > 0:  # the MLM draw first: its caption joins the ITC one in one text pass
            if "mlm_input_ids" in given:
                masked_ids, labels = given["mlm_input_ids"], given["mlm_labels"]
            else:
                gen = torch.Generator().manual_seed(sample_seed(step_seed, 0, 0, MLM_STREAM))
                masked_ids, labels = losses.mask_tokens(
                    input_ids.cpu(),
                    vocab_size=model.text_encoder.vocab_size,
                    mask_id=self.special["mask"],
                    pad_id=self.special["pad"],
                    cls_id=self.special["cls"],
                    prob=lc.mlm_prob,
                    generator=gen,
                )
            # One pass of the text-only layers over [captions; masked captions]: larger
            # products, and one dense word-embedding gradient instead of two.
            both_embeds, both_pooled = model.encode_text(
                torch.cat([input_ids, masked_ids.to(input_ids.device)]),
                torch.cat([attention_mask, attention_mask]),
            )  # [2B, L, C], [2B, C]
            text_embeds, text_pooled = both_embeds[:b], both_pooled[:b]
            mlm_text = both_embeds[b:]
        else:
            text_embeds, text_pooled = model.encode_text(input_ids, attention_mask)  # [B, L, C]
        vision_feat = model.vision_features(pooled)  # [B, T', D]
        text_feat = model.text_features(text_pooled)  # [B, D]

        if lc.vtc > 0:
            parts["vtc"] = losses.vtc_loss(
                vision_feat.float(), text_feat.float(), sample_ids, temp, gather=True
            )
        if lc.vtm > 0:
            gen = torch.Generator().manual_seed(sample_seed(step_seed, 0, 0, VTM_STREAM))
            if "neg_video" in given:
                neg_video, neg_text = given["neg_video"], given["neg_text"]
            elif lc.vtm_hard_negatives:
                with torch.no_grad():
                    sim = losses.video_text_similarity(vision_feat.float(), text_feat.float(), temp)
                neg_video, neg_text = losses.hard_negatives(sim.cpu(), sample_ids.cpu(), gen)
            else:
                neg_video, neg_text = losses.random_negatives(sample_ids.cpu(), gen)
            v3, t3, m3 = losses.vtm_pairs(
                vision_embeds.shape[0],
                text_embeds,
                attention_mask,
                neg_video.to(video.device),
                neg_text.to(video.device),
            )
            itm = model.itm_logits(t3, m3, vision_embeds, vision_index=v3)  # [3B, 2]
            parts["vtm"] = losses.vtm_loss(itm.float())
        if lc.mlm > 0:
            labels = labels.to(video.device)
            masked = labels != -100  # the head runs on the masked tokens only: same loss
            logits = model.mlm_logits(
                mlm_text, attention_mask, vision_embeds, positions=masked
            )  # [M, V]
            parts["mlm"] = losses.mlm_loss(logits.float(), labels[masked])
        weights = {"uma": lc.uma, "vtc": lc.vtc, "vtm": lc.vtm, "mlm": lc.mlm}
        parts["loss"] = sum(weights[k] * v for k, v in parts.items())
        return parts


# --------------------------------------------------------------------------- collate
class CaptionCollate:
    """Batches of video-text items with their captions tokenised (in the loader workers)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from umt.data.video_text import collate_captions

        batch = collate_captions(samples)
        ids, mask = self.tokenizer(batch["caption"], max_length=self.max_length)
        batch["input_ids"], batch["attention_mask"] = ids, mask
        return batch


# --------------------------------------------------------------------------- the task
class VideoTextTask(Task):
    """``umt pretrain`` with a stage-2 recipe; ``umt finetune`` with a retrieval recipe."""

    loss_name = "loss"
    resume_sections = ("model", "text", "data", "teacher", "mask", "loss")
    resume_ignored = Task.resume_ignored | {
        "model.init",
        "model.init_recipe",
        "teacher.weights",
        "text.weights",
        "text.grad_checkpointing",
        "data.val_list",
        "data.val_root",
        "data.test_list",
        "data.test_root",
    }

    cfg: VideoTextConfig

    def __init__(self, cfg: VideoTextConfig, ctx: Any) -> None:
        super().__init__(cfg, ctx)
        self.name = cfg.task
        self.last_parts: dict[str, torch.Tensor | float] = {}

    @property
    def stage2(self) -> bool:
        return self.cfg.task == "stage2"

    @property
    def multiple_choice(self) -> bool:
        """Validation / test by multiple choice (MSRVTT-MC) instead of retrieval."""
        return self.cfg.eval.protocol == "mc"

    @property
    def best_metric(self) -> str:  # type: ignore[override]
        return "val_mc_acc" if self.multiple_choice else "val_r_mean"

    # ---------------------------------------------------------------- building
    def check(self) -> None:
        cfg = self.cfg
        self.text_path = resolve_text_weights(cfg.text.weights, cfg.recipe)
        if cfg.loss.uma > 0:
            from umt.train.tasks.common import check_teacher_setting

            check_teacher_setting(cfg)
        init = cfg.model.init
        if self.reads_init and init is None:
            what = (
                "the stage-1 checkpoint its video encoder starts from (umt's or the official "
                "b16_ptk710_f8_res224.pth)"
                if self.stage2
                else "the stage-2 checkpoint to fine-tune (umt's or an official multimodal file)"
            )
            raise ConfigError(
                f"recipe '{cfg.recipe}' needs model.init: {what}; pass --init PATH, or "
                "--init scratch for random weights"
            )
        if self.reads_init:
            check_init(init)
        for key in ("val_list", "test_list"):
            value = getattr(cfg.data, key)
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"data.{key}: no such file {value}")
        for i, corpus in enumerate(cfg.data.corpora):
            if not Path(corpus.anno).is_file():
                raise FileNotFoundError(f"data.corpora[{i}].anno: no such file {corpus.anno}")

    def build_data(self) -> Any:
        from umt.data.video_text import CaptionCorpus

        cfg, d = self.cfg, self.cfg.data
        self.val_list, self.val_root = d.val_list, d.val_root
        if d.corpora:
            sources = [dict(anno=c.anno, root=c.root, media=c.media) for c in d.corpora]
        elif d.train_list is not None:
            sources = [dict(anno=d.train_list, root=d.root, media="auto")]
        else:  # the built-in synthetic set's captions
            from umt.train.data import ensure_synthetic

            root = ensure_synthetic(cfg, self.ctx.info)
            sources = [dict(anno=str(root / "train.json"), root=str(root), media="video")]
            if self.val_list is None and self.multiple_choice:
                mc_val = ensure_synthetic_qa_files(cfg, self.ctx.info)["mc_val"]
                self.val_list, self.val_root = str(mc_val), ""
            elif self.val_list is None:
                self.val_list, self.val_root = str(root / "val.json"), str(root)
        self.test_list = d.test_list or self.val_list
        self.test_root = d.test_root if d.test_list else self.val_root
        options = dict(
            num_frames=d.num_frames,
            sampling=d.sampling,
            input_size=d.input_size,
            train=True,
            rrc_scale=tuple(d.rrc_scale),
            flip=d.flip,
            mean=d.mean_std,
            id_by=d.id_by,
            max_seconds=d.max_seconds,
            seed=cfg.train.seed,
        )
        from umt.data import detect_format

        shards = [s for s in sources if detect_format(s["anno"]) == "wds"]
        if shards:
            # Tar shards stream one medium (one shard set) per run: every step then has the
            # same medium everywhere. Several media in shards would need one stream per medium.
            if len(sources) > 1:
                raise InputError(
                    f"data: tar shards ({shards[0]['anno']}) stream one shard set per run; "
                    "give one set of shards, or annotation lists for several datasets"
                )
            from umt.data.video_text import CaptionShardDataset
            from umt.train.data import build_shard_dataset

            media = sources[0]["media"]
            options.update(media=None if media == "auto" else media)
            return build_shard_dataset(
                cfg, self.ctx.info, sources[0]["anno"], options, cls=CaptionShardDataset
            )
        return CaptionCorpus(sources, paragraph=d.paragraph, **options)

    def build_sampler(
        self, dataset: Any, batch_size: int, world_size: int, rank: int, seed: int
    ) -> Any:
        """Each step all images or all videos, the same on every process, in the official
        proportions (the number of batches of each medium)."""
        from umt.data.video_text import MixedMediaSampler

        return MixedMediaSampler(
            dataset.media_sizes, batch_size, world_size, rank, seed=seed, with_epoch=True
        )

    def collate(self) -> Any:
        return CaptionCollate(self.tokenizer, self.cfg.text.max_length)

    def _new_model(self, teacher: nn.Module | None) -> nn.Module:
        """A video-text model with the registry's vision sizes and the BERT tower's weights."""
        from umt.models.text_bert import load_bert
        from umt.models.video_text import UMTVideoText

        cfg, m = self.cfg, self.cfg.model
        vision = video_encoder_args(cfg)
        if teacher is not None:
            vision.update(
                align_layers=cfg.teacher.return_layers,
                align_dim=int(teacher.output_dim),
                align_l2=False,
                align_ln_eps=1e-5,
            )
        else:
            vision["align_layers"] = 0
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            torch.manual_seed(cfg.train.seed)
            bert = load_bert(
                self.text_path,
                fusion_layer=cfg.text.fusion_layer,
                encoder_width=int(vision.get("embed_dim", 768)),
                mlm_head=cfg.loss.mlm > 0,
            )
            model = UMTVideoText(
                vision=vision,
                text=dict(bert._hub_mixin_config),
                embed_dim=m.proj_dim,
                temp=m.temp,
                teacher=dict(teacher._hub_mixin_config) if teacher is not None else None,
                text_pool=cfg.text.pooling,
            )
        for w in said:  # e.g. "newly initialised: cross-attention of layers 9-11"
            self.text_notes.append(str(w.message).split(": ", 1)[-1])
        model.text_encoder.load_state_dict(bert.state_dict())
        if teacher is not None:
            model.teacher.load_state_dict(teacher.state_dict())
        return model

    @classmethod
    def prepare(cls, cfg: Any, say: Callable[[str], None] | None) -> None:
        if cfg.loss.uma > 0:
            from umt.train.builtin_teacher import prepare_for_run

            prepare_for_run(cfg, say)  # the built-in teacher, made before the run starts

    def build_model(self) -> nn.Module:
        cfg, m = self.cfg, self.cfg.model
        self.notes: list[str] = []
        self.text_notes: list[str] = []
        teacher = None
        self.teacher_desc = "no teacher (loss.uma = 0)"
        if cfg.loss.uma > 0:
            from umt.train.tasks.common import build_teacher

            teacher, self.teacher_desc = build_teacher(cfg, "cpu")
        path, self.init_desc = resolve_init(cfg, self.ctx.resume_from)
        if self.stage2 or path is None:
            model = self._new_model(teacher)
            if path is not None:
                self.notes.append(self._load_vision(model, path))
        else:
            model = self._load_video_text(path)
        if m.grad_checkpointing:
            model.vision_encoder.set_grad_checkpointing(m.grad_checkpointing)
        if cfg.text.grad_checkpointing:
            model.text_encoder.set_grad_checkpointing(True)
        tok = self.tokenizer = tower_tokenizer(self.text_path, model.text_encoder)
        if tok.vocab_size != model.text_encoder.vocab_size:
            raise InputError(
                f"{self.text_path}: its vocabulary has {tok.vocab_size} tokens but the text "
                f"tower {model.text_encoder.vocab_size}; give the tokenizer of that model"
            )
        special = {"pad": tok.pad_id, "cls": tok.cls_id, "sep": tok.sep_id, "mask": tok.mask_id}
        return VideoTextTrainModule(model, cfg, special).to(self.ctx.device)

    def _load_vision(self, model: nn.Module, path: str) -> str:
        """Stage 2 starts its video encoder (and alignment heads) from a stage-1 checkpoint."""
        from umt.models.video_vit import read_student_weights

        weights, kind = read_student_weights(path, encoder_only=False)
        vision = model.vision_encoder
        weights = {k: v for k, v in weights.items() if k != "pos_embed"}  # the fixed table here
        if vision.align_heads is None:
            weights = {k: v for k, v in weights.items() if not k.startswith("align_heads.")}
        own = vision.state_dict()
        wrong = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
        if wrong:
            raise InputError(
                f"{path}: its encoder does not fit this model ({wrong[0]}: "
                f"{tuple(weights[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}); set "
                "model.name / model.embed_dim / model.depth to match"
            )
        missing, unexpected = vision.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.startswith("pool_norm.")]
        if missing or unexpected:
            raise InputError(
                f"{path}: weights do not fit the video encoder (missing {missing[:4]}, "
                f"unexpected {unexpected[:4]})"
            )
        heads = "with" if any(k.startswith("align_heads.") for k in weights) else "without"
        return f"video encoder from a {kind} checkpoint ({heads} its alignment heads)"

    def _load_video_text(self, path: str) -> nn.Module:
        """Retrieval fine-tuning starts from a whole stage-2 model (no teacher, no MLM head)."""
        from umt.models import load_checkpoint
        from umt.models.video_text import UMTVideoText

        cfg, d = self.cfg, self.cfg.data
        model = load_checkpoint(
            path,
            part="video-text",
            num_frames=d.num_frames,
            img_size=d.input_size,
            drop_path_rate=cfg.model.drop_path_rate,
        )
        if not isinstance(model, UMTVideoText):
            raise InputError(f"{path}: not a video-text (stage-2) checkpoint")
        model.drop_pretraining_parts()
        self.notes.append("a stage-2 model (teacher, alignment heads and MLM head dropped)")
        self.notes += fusion_layer_notes(cfg.text.fusion_layer, model.text_encoder)
        return model

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model, "model")

    def export_files(self) -> dict[str, bytes]:
        """The tokenizer's vocabulary beside the weights: a checkpoint evaluates on its own."""
        folder = vocab_source(self.text_path)
        for name in ("vocab.txt", "tokenizer.json"):
            if (folder / name).is_file():
                return {name: (folder / name).read_bytes()}
        return {}

    def describe(self, model: nn.Module) -> list[str]:
        net = self.export_model(model)
        cfg, d = self.cfg, self.cfg.data
        v, t = net.vision_encoder, net.text_encoder
        trainable = count_params(net, trainable_only=True)
        losses = ", ".join(
            f"{k} {w:g}"
            for k, w in (
                ("UMA", cfg.loss.uma),
                ("VTC", cfg.loss.vtc),
                ("VTM", cfg.loss.vtm),
                ("MLM", cfg.loss.mlm),
            )
            if w
        )
        lines = [
            f"video {cfg.model.name} ({v.embed_dim} wide x {len(v.blocks)} deep) + text "
            f"({t.hidden_size} wide, fusion from layer {t.fusion_layer}): "
            f"{trainable / 1e6:.2f}M trainable params; {d.num_frames} frames of "
            f"{d.input_size}px; captions of {cfg.text.max_length} tokens",
            f"losses: {losses}"
            + (
                f"; mask ratio video {cfg.mask.video_ratio} / image {cfg.mask.image_ratio}"
                if cfg.loss.uma
                else ""
            ),
            weights_line(self.init_desc, self.notes),
            f"text tower from {self.text_path}"
            + (f" ({'; '.join(self.text_notes)})" if self.text_notes else ""),
            self.teacher_desc,
        ]
        sizes = self._train_sizes()
        if sizes:
            lines.append(f"training pairs: {sizes}")
        return lines

    def _mc_test(self, net: nn.Module, which: str, out: Path) -> list[str]:
        from umt.evaluate.multiple_choice import write_mc_predictions
        from umt.train.checkpoint import write_outputs
        from umt.train.validate import evaluating

        with evaluating(net):
            result = self._mc(net, self.test_list, self.test_root)

        test_dir = write_outputs(  # all or nothing
            out / "test",
            {
                "results.json": lambda p: p.write_text(json.dumps(result.summary(), indent=1)),
                "predictions.jsonl": lambda p: write_mc_predictions(p, result),
            },
        )
        self.test_result = result
        return [
            f"multiple-choice test ({which}) on {self.test_list}: accuracy "
            f"{result.accuracy:.2f}% of {result.num_questions} questions (0.7 ITM + 0.3 ITC)"
            + (f"; {len(result.faults)} unreadable videos" if result.faults else ""),
            f"test results: {test_dir}",
        ]

    def _train_sizes(self) -> str:
        return ""

    # ---------------------------------------------------------------- training
    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        from umt.data import sample_seed

        seed = self.cfg.train.seed
        indices = batch["index"]
        seeds = mask_seeds(seed, epoch, indices)
        first = int(indices[0]) if len(indices) else 0
        step_seed = sample_seed(seed, epoch, first, len(indices))  # this micro-batch's draws
        # Dropout draws from the global generator: seed it from the micro-batch, so a resume
        # (or a different loader) repeats them exactly.
        torch.manual_seed(sample_seed(step_seed, 0, 0, DROPOUT_STREAM))
        parts = model(
            batch["video"],
            batch["input_ids"],
            batch["attention_mask"],
            batch["sample_ids"],
            batch["media"] == "image",
            seeds,
            step_seed,
            draws=batch.get("draws"),  # given draws (tests): see VideoTextTrainModule
        )
        # Kept as tensors: read (a device sync) only when a step is logged.
        self.last_parts = {k: v.detach() for k, v in parts.items() if k != "loss"}
        self.last_parts["temp"] = self.export_model(model).temp.detach().clone()
        self.last_parts["image_batch"] = float(batch["media"] == "image")
        return parts["loss"]

    def step_metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.last_parts.items()}

    # ---------------------------------------------------------------- evaluation
    def evaluates(self, epoch: int | None) -> bool:
        if self.val_list is None:
            return False
        return self.validation_due(epoch)

    def _retrieval(self, net: nn.Module, anno: str, root: str) -> Any:
        from umt.data.formats.retrieval import load_retrieval_annotations
        from umt.evaluate.retrieval import evaluate_retrieval

        cfg, d = self.cfg, self.cfg.data
        rset = load_retrieval_annotations(anno, root=root or None, paragraph=d.paragraph)
        return evaluate_retrieval(
            net,
            rset,
            self.tokenizer,
            num_frames=cfg.eval.num_frames or d.num_frames,
            k_test=cfg.eval.k_test,
            max_text_len=cfg.text.max_length,
            batch_size=cfg.eval.batch_size or cfg.train.batch_size,
            device=self.ctx.device,
            amp_dtype=self.ctx.amp_dtype,
            num_workers=d.num_workers,
            input_size=d.input_size,
            max_seconds=d.max_seconds,
            progress=False,
        )

    def _mc(self, net: nn.Module, anno: str, root: str) -> Any:
        from umt.data.qa import MCDataset
        from umt.evaluate.multiple_choice import evaluate_mc

        cfg, d = self.cfg, self.cfg.data
        dataset = MCDataset(
            anno,
            root=root or None,
            num_frames=cfg.eval.num_frames or d.num_frames,
            input_size=d.input_size,
            mean=d.mean_std,
        )
        return evaluate_mc(
            net,
            dataset,
            self.tokenizer,
            max_text_len=cfg.text.max_length,
            batch_size=cfg.eval.batch_size or cfg.train.batch_size,
            num_workers=d.num_workers,
            amp_dtype=self.ctx.amp_dtype,
        )

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        """Retrieval (or multiple choice) on ``data.val_list``, a whole-set protocol (the loop
        runs it on rank 0 and hands every rank the numbers)."""
        net = self.export_model(model)
        if self.multiple_choice:
            res = self._mc(net, self.val_list, self.val_root)
            return {"val_mc_acc": float(res.accuracy)}
        metrics = self._retrieval(net, self.val_list, self.val_root).metrics
        keys = ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10", "r_mean")
        out = {f"val_{k}": float(metrics[k]) for k in keys if k in metrics}
        if "t2v_r1_itc" in metrics:
            out["val_t2v_r1_itc"] = float(metrics["t2v_r1_itc"])
        return out

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """Retrieval on ``data.test_list`` with the best-validation weights (``eval.test_best``)."""
        if self.test_list is None:
            return ["no retrieval test list (data.test_list / data.val_list): no test"]
        from umt.train.distributed import barrier
        from umt.train.validate import evaluating

        lines: list[str] = []
        if self.ctx.info.is_main:
            net = self.export_model(model)
            which = load_best_weights(net, best, self.cfg.eval.test_best, strict=False)
            if self.multiple_choice:
                lines += self._mc_test(net, which, out)
                barrier()
                return lines
            from umt.evaluate.retrieval import write_predictions

            with evaluating(net):
                result = self._retrieval(net, self.test_list, self.test_root)
            res = result.metrics
            from umt.train.checkpoint import write_outputs

            test_dir = write_outputs(  # all or nothing
                out / "test",
                {
                    "results.json": lambda p: p.write_text(json.dumps(result.summary(), indent=1)),
                    "predictions.jsonl": lambda p: write_predictions(p, result),
                },
            )
            lines.append(
                f"retrieval test ({which}) on {self.test_list}: text->video R@1/5/10 "
                f"{res['t2v_r1']:.2f}/{res['t2v_r5']:.2f}/{res['t2v_r10']:.2f}, video->text "
                f"{res['v2t_r1']:.2f}/{res['v2t_r5']:.2f}/{res['v2t_r10']:.2f} (ITM re-ranked); "
                f"ITC only: text->video R@1 {res['t2v_r1_itc']:.2f}"
            )
            lines.append(f"test results: {test_dir}")
            self.test_result = result
        barrier()
        return lines
