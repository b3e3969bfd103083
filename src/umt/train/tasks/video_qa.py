"""Open-ended video QA fine-tuning (``umt finetune`` with a ``finetune-qa`` recipe).

One micro-batch, as the official ``multi_modality/tasks/vqa.py`` ``train`` and ``UMT_QA.forward``:
the clip's every token -> the question through the BERT (fusion layers cross-attending to the
video) -> each question's states repeated once per distinct answer -> the answer decoder,
teacher-forced on ``[CLS] answer [SEP] [PAD]...`` -> per-answer summed NLL, weighted by the share of
annotators who gave that answer, summed and divided by the number of questions. Validation and
test rank the answer list (``eval.k_test``) and score exact-match accuracy
(:mod:`umt.evaluate.qa`); the best validation accuracy is kept.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.config import ConfigError
from umt.config.video_qa import QAConfig
from umt.train.tasks.base import Task
from umt.train.tasks.common import (
    DROPOUT_STREAM,
    check_init,
    count_params,
    ensure_synthetic_qa_files,
    fusion_layer_notes,
    load_best_weights,
    plain_model,
    resolve_init,
    resolve_text_weights,
    tower_tokenizer,
    video_encoder_args,
    vocab_source,
    weights_line,
)


class QATrainModule(nn.Module):
    """The QA model and its loss as one ``forward`` (so DDP / FSDP hooks run)."""

    state_prefix = "model."

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = int(pad_id)

    def forward(
        self,
        video: torch.Tensor,
        question_ids: torch.Tensor,
        question_mask: torch.Tensor,
        answer_ids: torch.Tensor,
        answer_mask: torch.Tensor,
        counts: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """``video [B, 3, T, H, W]``, questions ``[B, Lq]``, answers ``[N, La]`` with ``counts
        [B]`` and ``weights [N]`` -> the weighted answer loss (a scalar)."""
        from umt.losses import qa_answer_loss

        nll = self.model(
            video, question_ids, question_mask, answer_ids, answer_mask, counts, self.pad_id
        )  # [N]
        return qa_answer_loss(nll, weights, video.shape[0])


class QACollate:
    """Batches of QA items with questions and answers tokenised (in the loader workers)."""

    def __init__(self, tokenizer: Any, max_length: int, answer_max_length: int, eos: str) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.answer_max_length = answer_max_length
        self.eos = eos

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from umt.data.qa import collate_qa
        from umt.evaluate.qa import tokenize_answers

        batch = collate_qa(samples)
        batch["question_ids"], batch["question_mask"] = self.tokenizer(
            batch["question"], max_length=self.max_length
        )
        batch["answer_ids"], batch["answer_mask"] = tokenize_answers(
            self.tokenizer, batch["answers"], self.answer_max_length, self.eos
        )
        return batch


class QATask(Task):
    """``umt finetune`` with a QA recipe."""

    name = "finetune-qa"
    loss_name = "loss"
    best_metric = "val_acc"
    resume_sections = ("model", "text", "data")
    resume_ignored = Task.resume_ignored | {
        "model.init",
        "model.init_recipe",
        "text.weights",
        "text.grad_checkpointing",
        "data.val_list",
        "data.val_root",
        "data.test_list",
        "data.test_root",
    }

    cfg: QAConfig

    # ---------------------------------------------------------------- building
    def check(self) -> None:
        cfg, d = self.cfg, self.cfg.data
        self.text_path = resolve_text_weights(cfg.text.weights, cfg.recipe)
        if self.reads_init and cfg.model.init is None:
            raise ConfigError(
                f"recipe '{cfg.recipe}' needs model.init: the stage-2 checkpoint to fine-tune "
                "(umt's or an official multimodal file; an official or umt QA checkpoint also "
                "works); pass --init PATH, or --init scratch for random weights"
            )
        init = cfg.model.init
        if self.reads_init:
            check_init(init)
        for key in ("train_list", "val_list", "test_list", "answer_list"):
            value = getattr(d, key)
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"data.{key}: no such file {value}")
        if d.train_list is not None and d.answer_list is None and (d.val_list or d.test_list):
            raise ConfigError(
                "data.answer_list: the JSON list of candidate answers is needed to evaluate "
                "(the official msrvtt_qa_answer_list.json / anet_qa_answer_list.json / "
                "msvd_qa_answer_list.json)"
            )

    def _entries(self, path: str, root: str) -> list[Any]:
        from umt.data.formats.qa import load_qa_annotations

        return load_qa_annotations(path, root=root or None, fmt=self.cfg.data.format)

    def build_data(self) -> Any:
        from umt.data.formats.qa import load_answer_list
        from umt.data.qa import QADataset

        cfg, d = self.cfg, self.cfg.data
        train_list, root = d.train_list, d.root
        self.val_list, self.val_root = d.val_list, d.val_root
        answers = d.answer_list
        if train_list is None:
            files = ensure_synthetic_qa_files(cfg, self.ctx.info)
            train_list, root = str(files["train"]), ""
            if self.val_list is None:
                self.val_list, self.val_root = str(files["val"]), ""
            answers = answers or str(files["answer_list"])
        self.test_list = d.test_list or self.val_list
        self.test_root = d.test_root if d.test_list else self.val_root
        self.answer_list = load_answer_list(answers) if answers else None
        self.answer_source = answers
        entries = self._entries(train_list, root)
        self.num_train = len(entries)
        return QADataset(
            entries,
            num_frames=d.num_frames,
            sampling=d.sampling,
            input_size=d.input_size,
            train=True,
            rrc_scale=tuple(d.rrc_scale),
            flip=d.flip,
            mean=d.mean_std,
            seed=cfg.train.seed,
        )

    def collate(self) -> Any:
        t = self.cfg.text
        return QACollate(self.tokenizer, t.max_length, t.answer_max_length, t.eos)

    def _scratch_model(self) -> tuple[nn.Module, list[str]]:
        """A QA model from the registry's video sizes and the BERT tower's weights (its
        masked-LM head, if the file has one, starts the decoder's LM head)."""
        from umt.models.text_bert import load_bert
        from umt.models.video_text import UMTVideoText

        cfg, m = self.cfg, self.cfg.model
        vision = {**video_encoder_args(cfg), "align_layers": 0}
        notes: list[str] = []
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            torch.manual_seed(cfg.train.seed)
            bert = load_bert(
                self.text_path,
                fusion_layer=cfg.text.fusion_layer,
                encoder_width=int(vision.get("embed_dim", 768)),
            )
            vt = UMTVideoText(vision=vision, text=dict(bert._hub_mixin_config))
            vt.text_encoder.load_state_dict(bert.state_dict())
            from umt.models.video_qa import UMTVideoQA

            model, dec_notes = UMTVideoQA.from_video_text(vt, decoder_layers=m.decoder_layers)
        notes += [str(w.message).split(": ", 1)[-1] for w in said]
        notes += [f"newly initialised: {n}" for n in dec_notes]
        return model, notes

    def build_model(self) -> nn.Module:
        from umt.models.video_qa import load_video_qa

        cfg, m, d = self.cfg, self.cfg.model, self.cfg.data
        path, self.init_desc = resolve_init(cfg, self.ctx.resume_from)
        if path is None:
            model, self.notes = self._scratch_model()
        else:
            model, self.notes = load_video_qa(
                path,
                num_frames=d.num_frames,
                img_size=d.input_size,
                decoder_layers=m.decoder_layers,
                drop_path_rate=m.drop_path_rate,
            )
            self.notes += fusion_layer_notes(cfg.text.fusion_layer, model.text_encoder)
        if m.grad_checkpointing:
            model.vision_encoder.set_grad_checkpointing(m.grad_checkpointing)
        if cfg.text.grad_checkpointing:
            model.text_encoder.set_grad_checkpointing(True)
            model.text_decoder.set_grad_checkpointing(True)
        tok = self.tokenizer = tower_tokenizer(self.text_path, model.text_encoder)
        return QATrainModule(model, tok.pad_id).to(self.ctx.device)

    def export_model(self, model: nn.Module) -> nn.Module:
        return plain_model(model, "model")

    def export_files(self) -> dict[str, bytes]:
        """The vocabulary and the answer list beside the weights: ``umt ask`` needs both."""
        files: dict[str, bytes] = {}
        folder = vocab_source(self.text_path)
        for name in ("vocab.txt", "tokenizer.json"):
            if (folder / name).is_file():
                files[name] = (folder / name).read_bytes()
                break
        if self.answer_list is not None:
            files["answer_list.json"] = json.dumps(self.answer_list, indent=0).encode()
        t = self.cfg.text
        settings = {
            "question_max_length": t.max_length,
            "answer_max_length": t.answer_max_length,
            "eos": t.eos,
            "k_test": self.cfg.eval.k_test,
        }
        files["qa.json"] = json.dumps(settings, indent=1).encode()
        return files

    def describe(self, model: nn.Module) -> list[str]:
        net = self.export_model(model)
        cfg, d = self.cfg, self.cfg.data
        v, t = net.vision_encoder, net.text_encoder
        n = count_params(net, trainable_only=True)
        lines = [
            f"video {cfg.model.name} ({v.embed_dim} wide x {len(v.blocks)} deep) + question "
            f"encoder ({t.hidden_size} wide, fusion from layer {t.fusion_layer}) + answer "
            f"decoder ({net.text_decoder.num_layers} layers): {n / 1e6:.2f}M trainable params; "
            f"{d.num_frames} frames of {d.input_size}px; questions of {cfg.text.max_length} "
            f"tokens, answers of {cfg.text.answer_max_length}",
            weights_line(self.init_desc, self.notes),
            f"training questions: {self.num_train}",
        ]
        if self.answer_list is not None:
            lines.append(
                f"answer list: {len(self.answer_list)} answers ({self.answer_source}); "
                f"k_test {cfg.eval.k_test}"
            )
        return lines

    # ---------------------------------------------------------------- training
    def loss(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> torch.Tensor:
        from umt.data import sample_seed

        indices = batch["index"]
        first = int(indices[0]) if len(indices) else 0
        step_seed = sample_seed(self.cfg.train.seed, epoch, first, len(indices))
        torch.manual_seed(sample_seed(step_seed, 0, 0, DROPOUT_STREAM))  # exact resumes
        return model(
            batch["video"],
            batch["question_ids"],
            batch["question_mask"],
            batch["answer_ids"],
            batch["answer_mask"],
            batch["counts"],
            batch["weights"],
        )

    # ---------------------------------------------------------------- evaluation
    def evaluates(self, epoch: int | None) -> bool:
        if self.val_list is None or self.answer_list is None:
            return False
        return self.validation_due(epoch)

    def _evaluate(self, net: nn.Module, anno: str, root: str) -> Any:
        from umt.data.qa import QADataset
        from umt.evaluate.qa import evaluate_qa

        cfg, d = self.cfg, self.cfg.data
        dataset = QADataset(
            self._entries(anno, root),
            num_frames=cfg.eval.num_frames or d.num_frames,
            input_size=d.input_size,
            train=False,
            mean=d.mean_std,
        )
        return evaluate_qa(
            net,
            dataset,
            self.tokenizer,
            self.answer_list,
            k_test=cfg.eval.k_test,
            question_max_length=cfg.text.max_length,
            answer_max_length=cfg.text.answer_max_length,
            eos=cfg.text.eos,
            batch_size=cfg.eval.batch_size or cfg.train.batch_size,
            num_workers=d.num_workers,
            amp_dtype=self.ctx.amp_dtype,
        )

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        """Exact-match accuracy on ``data.val_list``, a whole-set protocol (the loop runs it on
        rank 0 and hands every rank the numbers)."""
        res = self._evaluate(self.export_model(model), self.val_list, self.val_root)
        out = {"val_acc": float(res.accuracy)}
        out.update({f"val_acc_{k}": float(v) for k, v in res.per_type.items()})
        return out

    def finish(self, model: nn.Module, out: Path, best: Path | None) -> list[str]:
        """Accuracy on ``data.test_list`` with the best-validation weights (``eval.test_best``)."""
        if self.test_list is None or self.answer_list is None:
            return ["no QA test list (data.test_list / data.val_list) or answer list: no test"]
        from umt.evaluate.qa import write_qa_predictions
        from umt.train.distributed import barrier
        from umt.train.validate import evaluating

        lines: list[str] = []
        if self.ctx.info.is_main:
            net = self.export_model(model)
            which = load_best_weights(net, best, self.cfg.eval.test_best, strict=False)
            with evaluating(net):
                result = self._evaluate(net, self.test_list, self.test_root)
            from umt.train.checkpoint import write_outputs

            test_dir = write_outputs(  # all or nothing
                out / "test",
                {
                    "results.json": lambda p: p.write_text(json.dumps(result.summary(), indent=1)),
                    "predictions.jsonl": lambda p: write_qa_predictions(p, result),
                },
            )
            types = ", ".join(f"{k} {v:.1f}" for k, v in result.per_type.items())
            lines.append(
                f"QA test ({which}) on {self.test_list}: exact-match accuracy "
                f"{result.accuracy:.2f}% of {result.num_questions} questions"
                + (f" ({types})" if types else "")
                + (f"; {len(result.faults)} unreadable videos" if result.faults else "")
            )
            lines.append(f"test results: {test_dir}")
            self.test_result = result
        barrier()
        return lines
