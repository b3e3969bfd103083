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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError

__all__ = ["Answer", "LoadedQA", "QA_SETTINGS", "load_qa_model", "ask"]

QA_SETTINGS = "qa.json"
"""Beside a umt QA checkpoint: the text lengths, eos and k_test it was trained and tested with."""


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


@dataclass
class LoadedQA:
    """A QA model ready to answer: its tokenizer, answer list and text settings."""

    model: nn.Module
    tokenizer: Any
    answers: list[str]
    settings: dict[str, Any]  # question_max_length, answer_max_length, eos, k_test
    notes: list[str]


def _settings(path: Path) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {
        "question_max_length": 25,
        "answer_max_length": 5,
        "eos": "[SEP]",
        "k_test": 128,
    }
    f = (path if path.is_dir() else path.parent) / QA_SETTINGS
    if f.is_file():
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
    """A QA checkpoint (umt's folder, an official QA ``.pth``, or a stage-2 model) with its
    tokenizer, answer list (``answers``, a JSON list, else the ``answer_list.json`` beside the
    checkpoint) and text settings (``qa.json`` beside it, else the official 25 / 5 / [SEP] /
    128). ``sizes``: what an official file does not store (``num_heads``, ``text_num_heads``,
    ``img_size``; :func:`umt.models.video_qa.load_video_qa` warns of those it assumed)."""
    from umt.data.formats.qa import load_answer_list
    from umt.evaluate.retrieval import resolve_tokenizer
    from umt.models.video_qa import load_video_qa, read_answer_list

    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    model, notes = load_video_qa(path, num_frames=num_frames, **sizes)
    if answers is not None:
        answer_list = load_answer_list(answers)
    else:
        found = read_answer_list(path)
        if found is None:
            raise FileNotFoundError(
                f"{path}: no answer_list.json beside the checkpoint; pass --answers FILE (a JSON "
                "list of the candidate answers, e.g. msrvtt_qa_answer_list.json)"
            )
        answer_list = found
    tok = resolve_tokenizer(path, model, tokenizer)
    return LoadedQA(model, tok, answer_list, _settings(path), notes)


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
