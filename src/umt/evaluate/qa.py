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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.utils.device import maybe_autocast, model_device
from umt.utils.progress import progress_bar

__all__ = [
    "QAResult",
    "exact_match_accuracy",
    "tokenize_answers",
    "answer_questions",
    "evaluate_qa",
    "write_qa_predictions",
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
