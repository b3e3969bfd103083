"""Ask questions about your own videos with a fine-tuned QA model (``umt ask``).

The clip is the official test input (``T`` frames, the middle of each of ``T`` equal segments,
resized to the model's resolution, ImageNet-normalised); the model ranks its answer list (saved
beside a umt QA checkpoint as ``answer_list.json``, or given) for each question, as
:mod:`umt.evaluate.qa` does, and the ``top_k`` answers with their probabilities are returned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from umt.errors import InputError
from umt.evaluate.qa import QA_SETTINGS, LoadedQA, load_qa_model  # exported here too

__all__ = ["Answer", "LoadedQA", "QA_SETTINGS", "load_qa_model", "ask"]


@dataclass
class Answer:
    """The ranked answers to one question about one video (``error`` when the video failed)."""

    path: str
    question: str
    answers: list[tuple[str, float]]  # (answer, probability), best first
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "question": self.question, "error": self.error}
        return {
            "path": self.path,
            "question": self.question,
            "answers": [{"answer": a, "probability": round(p, 6)} for a, p in self.answers],
        }


@torch.no_grad()
def ask(
    model: nn.Module,
    tokenizer: Any,
    videos: Sequence[str | os.PathLike],
    questions: Sequence[str],
    answer_list: Sequence[str],
    top_k: int = 5,
    k_test: int = 128,
    question_max_length: int = 25,
    answer_max_length: int = 5,
    eos: str = "[SEP]",
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> list[Answer]:
    """Every question about every video: one :class:`Answer` per (video, question), video-major.
    A video that cannot be read gives answers with ``error`` set, never an exception."""
    from umt.data.retrieval import RetrievalVideoDataset
    from umt.evaluate.qa import answer_questions, tokenize_answers

    if not questions:
        raise InputError("no question given")
    if not answer_list:
        raise InputError("the answer list is empty")
    device = torch.device(device)
    model = model.to(device).eval()
    enc = model.vision_encoder
    a_ids, a_mask = tokenize_answers(tokenizer, answer_list, answer_max_length, eos)
    dataset = RetrievalVideoDataset(
        [os.fspath(v) for v in videos],
        num_frames=enc.num_frames,
        input_size=enc.img_size,
        normalize=True,
    )
    out: list[Answer] = []
    for i in range(len(dataset)):
        sample = dataset[i]
        if "fault" in sample:
            out += [Answer(sample["path"], q, [], error=sample["fault"]) for q in questions]
            continue
        clip = sample["video"][None].expand(len(questions), *sample["video"].shape)
        top_ids, top_prob = answer_questions(
            model,
            clip,
            questions,
            tokenizer,
            a_ids,
            a_mask,
            k_test=max(k_test, top_k),
            question_max_length=question_max_length,
            amp_dtype=amp_dtype,
        )
        k = min(top_k, top_ids.shape[1])
        for j, q in enumerate(questions):
            ranked = [(answer_list[int(top_ids[j, r])], float(top_prob[j, r])) for r in range(k)]
            out.append(Answer(sample["path"], q, ranked))
    return out
