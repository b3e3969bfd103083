"""Multiple-choice video-text evaluation (MSRVTT-MC): pick the caption that matches the video.

As the official ``multi_modality/tasks/retrieval_mc.py``: each of a video's options (5 for
MSRVTT-MC) is scored ``0.7 * softmax(itm_head(fused [CLS]))[match] + 0.3 * softmax over the
options of (mean over frames of cos(video frame, option) / temperature)``, with the model's
learnt temperature; the prediction is the best-scored option and the metric its accuracy (%).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from umt.errors import InputError
from umt.utils.device import maybe_autocast, model_device
from umt.utils.progress import progress_bar

__all__ = [
    "MCResult",
    "mc_option_scores",
    "score_options",
    "evaluate_mc",
    "write_mc_predictions",
    "run_mc",
]

ITM_WEIGHT = 0.7  # the official weight of the matching head (the contrastive part has 0.3)


def mc_option_scores(
    itm_logits: torch.Tensor,
    vision_feat: torch.Tensor,
    text_feat: torch.Tensor,
    temp: float | torch.Tensor,
    itm_weight: float = ITM_WEIGHT,
) -> torch.Tensor:
    """Official option scores.

    Args:
        itm_logits: ``[Q, O, 2]`` matching-head logits of each (video, option) pair.
        vision_feat: ``[Q, T, D]`` projected per-frame video features (``vision_proj``).
        text_feat: ``[Q, O, D]`` projected option features (``text_proj``).
        temp: the contrastive temperature.

    Returns:
        ``[Q, O]``: ``itm_weight * p(match) + (1 - itm_weight) * softmax_O(mean_T cos / temp)``.
    """
    match = itm_logits.float().softmax(-1)[..., 1]  # [Q, O]
    v = F.normalize(vision_feat.float(), dim=-1)
    t = F.normalize(text_feat.float(), dim=-1)
    sim = torch.einsum("qtd,qod->qto", v, t).mean(1) / temp  # [Q, O]
    return itm_weight * match + (1.0 - itm_weight) * sim.softmax(-1)


@torch.no_grad()
def score_options(
    model: nn.Module,
    video: torch.Tensor,
    options: Sequence[Sequence[str]],
    tokenizer: Any,
    max_text_len: int = 32,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Scores ``[Q, O]`` of ``options`` (``Q`` lists of ``O`` captions) for ``video [Q, 3, T,
    H, W]`` with a :class:`umt.models.video_text.UMTVideoText`."""
    device = model_device(model)
    q = len(options)
    o = len(options[0])
    if any(len(opts) != o for opts in options):
        raise InputError("every question of a batch needs the same number of options")
    flat = [text for opts in options for text in opts]
    ids, mask = tokenizer(flat, max_length=max_text_len)
    ids, mask = ids.to(device), mask.to(device)
    with maybe_autocast(device, amp_dtype):
        vision_embeds, pooled = model.encode_vision(video.to(device))  # [Q, N, C], [Q, T, C]
        vision_feat = model.vision_features(pooled)  # [Q, T, D]
        text_embeds, text_pooled = model.encode_text(ids, mask)  # [Q*O, L, C], [Q*O, C]
        text_feat = model.text_features(text_pooled).view(q, o, -1)  # [Q, O, D]
        which = torch.arange(q, device=device).repeat_interleave(o)  # [Q*O]: option -> video
        itm = model.itm_logits(text_embeds, mask, vision_embeds, vision_index=which).view(q, o, 2)
    return mc_option_scores(itm, vision_feat, text_feat, model.temp.detach().float())


@dataclass
class MCResult:
    """Multiple-choice predictions and accuracy."""

    accuracy: float  # % of the questions (an unreadable video counts as wrong)
    num_questions: int
    predictions: list[dict[str, Any]]  # {"video", "answer", "prediction", "scores"}
    faults: list[tuple[int, str, str]] = field(default_factory=list)
    source: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 2),
            "num_questions": self.num_questions,
            "unusable_videos": len(self.faults),
            "source": self.source,
        }


def evaluate_mc(
    model: nn.Module,
    dataset: Any,
    tokenizer: Any,
    max_text_len: int = 32,
    batch_size: int = 8,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> MCResult:
    """Accuracy of ``model`` on an :class:`umt.data.qa.MCDataset`."""
    from umt.data.qa import collate_mc

    model.eval()
    device = model_device(model)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_mc,
    )
    mean = getattr(dataset, "mean", None)
    std = getattr(dataset, "std", None)
    predictions: list[dict[str, Any]] = []
    faults: list[tuple[int, str, str]] = []
    bar = progress_bar(len(dataset), "questions", "q", progress)
    for batch in loader:
        faults.extend(batch["faults"])
        if batch["video"] is not None:
            video = batch["video"].to(device)
            if video.dtype == torch.uint8:
                m = torch.tensor(mean, device=device).view(1, 3, 1, 1, 1)
                s = torch.tensor(std, device=device).view(1, 3, 1, 1, 1)
                video = (video.float() / 255.0 - m) / s
            scores = score_options(
                model, video, batch["options"], tokenizer, max_text_len, amp_dtype
            ).cpu()
            for i in range(scores.shape[0]):
                predictions.append(
                    {
                        "video": batch["path"][i],
                        "options": list(batch["options"][i]),
                        "answer": int(batch["answer"][i]),
                        "prediction": int(scores[i].argmax()),
                        "scores": [round(float(x), 6) for x in scores[i]],
                    }
                )
        bar.update(len(batch["path"]) + len(batch["faults"]))
    bar.close()
    total = len(predictions) + len(faults)
    if total == 0:
        raise InputError(f"{getattr(dataset, 'source', 'MC set')}: no questions")
    hits = sum(int(p["prediction"] == p["answer"]) for p in predictions)
    return MCResult(
        accuracy=100.0 * hits / total,
        num_questions=total,
        predictions=predictions,
        faults=faults,
        source=str(getattr(dataset, "source", "")),
    )


def write_mc_predictions(path: str | os.PathLike, result: MCResult) -> Path:
    """One JSON object per line: video, options, right option, predicted option, scores."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for p in result.predictions:
            f.write(json.dumps(p) + "\n")
    os.replace(tmp, path)
    return path


def run_mc(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    num_frames: int = 12,
    max_text_len: int = 32,
    tokenizer: str | os.PathLike | None = None,
    batch_size: int = 8,
    num_workers: int = 4,
    device: str = "auto",
    amp: str = "auto",
    predictions: str | os.PathLike | None = None,
    progress: bool = True,
    sizes: dict[str, int] | None = None,
    load_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> MCResult:
    """``umt evaluate mc``: load the video-text model of ``checkpoint``
    (:func:`umt.evaluate.retrieval.load_video_text`, its position table built for
    ``num_frames``) and its tokenizer, and test it on the multiple-choice ``annotations`` (a
    JSON list of ``{"video", "caption": [options], "answer": index}``).

    ``amp``: ``auto`` (float16 on CUDA), ``fp16``, ``bf16`` or ``none``. ``sizes``: what an
    official file does not store (``num_heads``, ``text_num_heads``, ``img_size``).
    ``predictions`` is only checked to be writable, before any work (write it with
    :func:`write_mc_predictions`). ``load_context()``: the context the model is loaded in (the
    command line notes the sizes assumed for an official file with it); default: none.
    """
    from umt.data.qa import MCDataset
    from umt.evaluate.retrieval import load_video_text, resolve_tokenizer
    from umt.outputs import check_writable
    from umt.utils.device import resolve_amp, resolve_device

    if not Path(annotations).is_file():
        raise FileNotFoundError(f"{annotations}: no such annotation file")
    if predictions:  # before the (long) evaluation, not after it
        check_writable(predictions, "predictions file")
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    with (load_context or nullcontext)():
        model = load_video_text(checkpoint, num_frames, **(sizes or {}))
    tok = resolve_tokenizer(checkpoint, model, tokenizer)
    dataset = MCDataset(
        annotations,
        root=root,
        num_frames=num_frames,
        input_size=model.vision_encoder.img_size,
    )
    return evaluate_mc(
        model.to(dev),
        dataset,
        tok,
        max_text_len=max_text_len,
        batch_size=batch_size,
        num_workers=num_workers,
        amp_dtype=amp_dtype,
        progress=progress,
    )
