"""Open-ended video QA evaluation: answer-list ranking and exact-match accuracy.

As the official ``multi_modality/tasks/vqa.py`` ``evaluation`` and ``vqa_utils.eval_simple_qa_acc``:
every answer of the fixed list is tokenised as ``answer + " " + eos`` through the official tokenizer
(``[CLS] answer [SEP] [PAD]...``, cut to ``answer_max_length``: :func:`tokenize_answers`); each question's ``k_test`` likeliest answers by their
first token are re-scored by the answer decoder (:meth:`umt.models.video_qa.UMTVideoQA.rank_answers`)
and the best is the prediction; accuracy is the share of questions whose prediction equals the
ground-truth answer string exactly (a question without a prediction counts as wrong).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.utils.device import maybe_autocast, model_device
from umt.utils.progress import progress_bar

__all__ = [
    "QA_SETTINGS",
    "LoadedQA",
    "QARun",
    "QAResult",
    "exact_match_accuracy",
    "tokenize_answers",
    "answer_questions",
    "evaluate_qa",
    "write_qa_predictions",
    "load_qa_model",
    "run_qa",
]


def exact_match_accuracy(predictions: Mapping[Any, str], ground_truth: Mapping[Any, str]) -> float:
    """Percentage of ``ground_truth`` questions (``question_id -> answer``) whose prediction is
    the same string; a missing prediction is wrong (``eval_simple_qa_acc``)."""
    if not ground_truth:
        raise InputError("no questions to score")
    hits = sum(int(predictions.get(q) == a) for q, a in ground_truth.items())
    return 100.0 * hits / len(ground_truth)


def tokenize_answers(
    tokenizer: Any, answers: Sequence[str], max_length: int, eos: str = "[SEP]"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official answer input, ``[A, max_length]`` ids and mask: ``answer + " " + eos``, not
    cleaned, through the official tokenizer, so ``[CLS] pieces [SEP] [PAD]...`` (``"cooking"``
    -> ``[CLS] cooking [SEP] [PAD] [PAD]``), and an answer of ``max_length - 1`` pieces or more
    is cut to its first ``max_length - 1`` tokens, losing the ``[SEP]``. A tokenizer that ends
    every text with ``[SEP]`` itself (a tower trained so) is given the bare answer instead of a
    second ``[SEP]``."""
    if getattr(tokenizer, "sep_after_text", False) and eos == "[SEP]":
        texts = list(answers)
    else:
        texts = [f"{a} {eos}" for a in answers]
    return tokenizer(texts, max_length=max_length, clean=False)


@dataclass
class QAResult:
    """Predictions and accuracy of one QA evaluation."""

    accuracy: float  # exact match, % of scored questions
    num_questions: int
    predictions: list[dict[str, Any]]  # {"question_id", "question", "answer", "prediction", ...}
    per_type: dict[str, float] = field(default_factory=dict)  # accuracy per answer_type
    faults: list[tuple[int, str, str]] = field(default_factory=list)  # unusable videos
    source: str = ""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accuracy": round(self.accuracy, 2),
            "num_questions": self.num_questions,
            "unusable_videos": len(self.faults),
            "source": self.source,
        }
        if self.per_type:
            out["per_type"] = {k: round(v, 2) for k, v in self.per_type.items()}
        return out


RANKED_SHOWN = 5
"""Re-ranked candidates kept per question in the predictions (best first, with probabilities)."""


@torch.no_grad()
def answer_questions(
    model: nn.Module,
    video: torch.Tensor,
    questions: Sequence[str],
    tokenizer: Any,
    answer_ids: torch.Tensor,
    answer_mask: torch.Tensor,
    k_test: int = 128,
    question_max_length: int = 25,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank the answer list for ``Q`` questions about ``video [Q, 3, T, H, W]`` (one clip per
    question): ``(answer indices [Q, k], probabilities [Q, k])``, best first."""
    device = model_device(model)
    q_ids, q_mask = tokenizer(list(questions), max_length=question_max_length)
    q_ids, q_mask = q_ids.to(device), q_mask.to(device)
    with maybe_autocast(device, amp_dtype):
        vision = model.encode_vision(video.to(device))  # [Q, N, C]
        states = model.encode_question(q_ids, q_mask, vision)  # [Q, Lq, C]
    return model.rank_answers(
        states.float(),
        q_mask,
        answer_ids.to(device),
        answer_mask.to(device),
        k_test,
        tokenizer.pad_id,
    )


def evaluate_qa(
    model: nn.Module,
    dataset: Any,
    tokenizer: Any,
    answer_list: Sequence[str],
    k_test: int = 128,
    question_max_length: int = 25,
    answer_max_length: int = 5,
    eos: str = "[SEP]",
    batch_size: int = 16,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> QAResult:
    """Answer every question of ``dataset`` (a :class:`umt.data.qa.QADataset` built with
    ``train=False``) by ranking ``answer_list``; exact-match accuracy against each entry's
    first answer. Questions whose video cannot be read count as wrong and are listed in
    ``faults``."""
    from umt.data.qa import collate_qa

    if not answer_list:
        raise InputError("the answer list is empty")
    model.eval()
    device = model_device(model)
    a_ids, a_mask = tokenize_answers(tokenizer, answer_list, answer_max_length, eos)
    a_ids, a_mask = a_ids.to(device), a_mask.to(device)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_qa,
    )
    predictions: list[dict[str, Any]] = []
    faults: list[tuple[int, str, str]] = []
    bar = progress_bar(len(dataset), "questions", "q", progress)
    for batch in loader:
        faults.extend(batch["faults"])
        if batch["video"] is not None:
            top_ids, top_prob = answer_questions(
                model,
                batch["video"],
                batch["question"],
                tokenizer,
                a_ids,
                a_mask,
                k_test,
                question_max_length,
                amp_dtype,
            )
            for i in range(len(batch["question"])):
                best = int(top_ids[i, 0])
                ranked = [
                    {"answer": answer_list[int(a)], "probability": round(float(p), 6)}
                    for a, p in zip(top_ids[i, :RANKED_SHOWN], top_prob[i, :RANKED_SHOWN])
                ]
                predictions.append(
                    {
                        "question_id": batch["question_id"][i],
                        "question": batch["question"][i],
                        "answer": batch["answer"][i],
                        "prediction": answer_list[best],
                        "probability": float(top_prob[i, 0]),
                        "ranked": ranked,
                        "path": batch["path"][i],
                    }
                )
        bar.update(len(batch["question"]) + len(batch["faults"]))
    bar.close()
    entries = getattr(dataset, "entries", None)
    truth: dict[Any, str] = {}
    types: dict[Any, str | None] = {}
    if entries is not None:
        for e in entries:
            truth[e.question_id] = e.answers[0]
            types[e.question_id] = e.answer_type
    else:
        truth = {p["question_id"]: p["answer"] for p in predictions}
    predicted = {p["question_id"]: p["prediction"] for p in predictions}
    accuracy = exact_match_accuracy(predicted, truth)
    per_type: dict[str, float] = {}
    groups: dict[str, dict[Any, str]] = defaultdict(dict)
    for q, t in types.items():
        if t is not None:
            groups[t][q] = truth[q]
    for t, gt in sorted(groups.items()):
        per_type[t] = exact_match_accuracy(predicted, gt)
    return QAResult(
        accuracy=accuracy,
        num_questions=len(truth),
        predictions=predictions,
        per_type=per_type,
        faults=faults,
        source=str(getattr(dataset, "source", "")),
    )


def write_qa_predictions(path: str | os.PathLike, result: QAResult) -> Path:
    """One JSON object per line: question id, question, ground truth, prediction, probability
    and the best :data:`RANKED_SHOWN` re-ranked answers with their probabilities (the official
    result file holds ``{"question_id", "answer"}``; these are a superset)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in result.predictions:
            f.write(json.dumps(p) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- a whole test
QA_SETTINGS = "qa.json"
"""Beside a umt QA checkpoint: the text lengths, eos and k_test it was trained and tested with."""


@dataclass
class LoadedQA:
    """A QA model ready to answer: its tokenizer, answer list and text settings."""

    model: nn.Module
    tokenizer: Any
    answers: list[str]
    settings: dict[str, Any]  # question_max_length, answer_max_length, eos, k_test
    notes: list[str]


def _settings(path: Path) -> dict[str, Any]:
    """The text settings saved beside a QA checkpoint (``qa.json``), else the official ones."""
    out: dict[str, Any] = {
        "question_max_length": 25,
        "answer_max_length": 5,
        "eos": "[SEP]",
        "k_test": 128,
    }
    f = (path if path.is_dir() else path.parent) / QA_SETTINGS
    if path.exists() and f.is_file():
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{f}: invalid JSON ({err})") from None
        if not isinstance(data, dict):
            raise InputError(f"{f}: not a JSON object")
        out.update({k: data[k] for k in out if k in data})
    return out


def load_qa_model(
    checkpoint: str | os.PathLike,
    num_frames: int | None = None,
    answers: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    **sizes: int,
) -> LoadedQA:
    """A QA checkpoint (umt's folder, an official QA ``.pth``, a stage-2 model, or a released
    name: :mod:`umt.models.released`) with its tokenizer, answer list (``answers``, a JSON list,
    else the ``answer_list.json`` beside the checkpoint) and text settings (``qa.json`` beside it, else the official 25 / 5 / [SEP] /
    128). ``sizes``: what an official file does not store (``num_heads``, ``text_num_heads``,
    ``img_size``; :func:`umt.models.video_qa.load_video_qa` warns of those it assumed)."""
    from umt.data.formats.qa import load_answer_list
    from umt.evaluate.retrieval import resolve_tokenizer
    from umt.models.released import checkpoint_exists, release_hint
    from umt.models.video_qa import load_video_qa, read_answer_list

    path = Path(checkpoint)
    if not checkpoint_exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found{release_hint(path)}")
    model, notes = load_video_qa(path, num_frames=num_frames, **sizes)
    if answers is not None:
        answer_list = load_answer_list(answers)
    else:
        found = read_answer_list(path) if path.exists() else None
        if found is None:
            what = (
                "no answer_list.json beside the checkpoint"
                if path.exists()
                else "a released QA model comes without its answer list"
            )
            raise FileNotFoundError(
                f"{path}: {what}; pass --answers FILE (a JSON list of the candidate answers, "
                "e.g. msrvtt_qa_answer_list.json)"
            )
        answer_list = found
    tok = resolve_tokenizer(path, model, tokenizer)
    return LoadedQA(model, tok, answer_list, _settings(path), notes)


@dataclass
class QARun:
    """What :func:`run_qa` measured (``result``) and how many candidate answers it ranked."""

    result: QAResult
    num_answers: int


def run_qa(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    *,
    answer_list: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    format: str = "auto",  # noqa: A002 - the annotation format, as load_qa_annotations names it
    num_frames: int | None = None,
    k_test: int | None = None,
    question_max_length: int | None = None,
    answer_max_length: int | None = None,
    tokenizer: str | os.PathLike | None = None,
    batch_size: int = 16,
    num_workers: int = 4,
    device: str = "auto",
    amp: str = "auto",
    predictions: str | os.PathLike | None = None,
    progress: bool = True,
    sizes: dict[str, int] | None = None,
    load_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> QARun:
    """``umt evaluate qa``: load the QA model of ``checkpoint`` (:func:`load_qa_model`: its
    answer list, tokenizer and ``qa.json`` settings) and test it on ``annotations``
    (:func:`umt.data.formats.qa.load_qa_annotations` reads them in ``format``).

    ``k_test``, ``question_max_length``, ``answer_max_length``: None keeps the checkpoint's
    settings. ``amp``: ``auto`` (float16 on CUDA), ``fp16``, ``bf16`` or ``none``. ``sizes``:
    what an official file does not store (``num_heads``, ``text_num_heads``, ``img_size``).
    ``predictions`` is only checked to be writable, before any work (write it with
    :func:`write_qa_predictions`). ``load_context()``: the context the model is loaded in (the
    command line notes the sizes assumed for an official file with it); default: none.
    """
    from umt.data.formats.qa import load_qa_annotations
    from umt.data.qa import QADataset
    from umt.outputs import check_writable
    from umt.utils.device import resolve_amp, resolve_device

    if predictions:  # before the (long) evaluation, not after it
        check_writable(predictions, "predictions file")
    entries = load_qa_annotations(annotations, root=root, fmt=format)
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    with (load_context or nullcontext)():
        loaded = load_qa_model(checkpoint, num_frames, answer_list, tokenizer, **(sizes or {}))
    given = {
        "k_test": k_test,
        "question_max_length": question_max_length,
        "answer_max_length": answer_max_length,
    }
    s = {**loaded.settings, **{k: v for k, v in given.items() if v is not None}}
    enc = loaded.model.vision_encoder
    dataset = QADataset(entries, num_frames=enc.num_frames, input_size=enc.img_size, train=False)
    dataset.source = str(annotations)
    result = evaluate_qa(
        loaded.model.to(dev),
        dataset,
        loaded.tokenizer,
        loaded.answers,
        k_test=int(s["k_test"]),
        question_max_length=int(s["question_max_length"]),
        answer_max_length=int(s["answer_max_length"]),
        eos=str(s["eos"]),
        batch_size=batch_size,
        num_workers=num_workers,
        amp_dtype=amp_dtype,
        progress=progress,
    )
    return QARun(result, len(loaded.answers))
