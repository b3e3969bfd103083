"""Video-text retrieval: the official zero-shot / fine-tuned test (``MM/tasks/retrieval_utils.py``).

:func:`evaluate_retrieval` follows the official ``evaluation``:

1. text features of every test text (``encode_text`` -> ``text_features``), the text-layer
   states and attention masks kept for re-ranking;
2. video features of every test video without a mask (``encode_vision``): all ``T * HW``
   tokens kept for re-ranking (on the CPU, like the official ``eval_offload``) and the per-frame
   pooled features -> ``vision_features``;
3. the ITC matrix ``[videos, texts]``: mean over frames of the frame-text cosine, temperature 1
   (:func:`umt.losses.video_text_similarity`);
4. ITM re-ranking in each direction separately: for each query the ``k_test`` best candidates
   by ITC are scored by the fusion layers + ``itm_head`` (score = the raw "match" logit
   ``itm_logits[:, 1]``), every other candidate gets -100. A pair wanted by both directions
   is scored once (the score of a pair does not depend on the direction).

Two result sets come back, as in the official code: the re-ranked one (plain keys) and the
ITC-only one (keys ending in ``_itc``). :func:`retrieval_metrics` is the official ``itm_eval``
(a query's rank is that of its best-ranked ground truth; R@1/5/10 in percent, their means,
``r_mean``) plus the median and mean rank (1-based), which the official code lacks. Ties are
broken by the ITC score when given (the re-ranked matrices: candidates outside the top-k keep
their ITC order below the re-ranked ones), then by the lower index.

:func:`run_retrieval` is the ``umt evaluate retrieval`` command: checkpoint + annotation file
-> printed tables and the metrics dict. One process (no ``torch.distributed`` sharding).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.data.formats.retrieval import RetrievalSet
from umt.errors import InputError
from umt.outputs import check_writable
from umt.utils.device import maybe_autocast, model_device, resolve_amp
from umt.utils.progress import progress_bar

__all__ = [
    "METRIC_KEYS",
    "RetrievalResult",
    "best_ranks",
    "ranking_order",
    "retrieval_metrics",
    "metrics_from_ranks",
    "evaluate_retrieval",
    "write_predictions",
    "format_tables",
    "run_retrieval",
    "resolve_tokenizer",
    "TOKENIZER_FILES",
]

FILL = -100.0
"""Score of the candidates outside a query's top-k in the re-ranked matrices (official)."""

TEXT_BATCH = 256
"""Texts per ``encode_text`` call (the official ``extract_text_feats``)."""

METRIC_KEYS = tuple(
    f"{d}_{m}" for d in ("t2v", "v2t") for m in ("r1", "r5", "r10", "r_mean", "medr", "meanr")
) + ("r_mean",)
"""Keys of :func:`retrieval_metrics` (``t2v`` = text -> video, the official ``img_r*``;
``v2t`` = video -> text, the official ``txt_r*``)."""


# --------------------------------------------------------------------------- ranking
def ranking_order(scores: torch.Tensor, tiebreak: torch.Tensor | None = None) -> torch.Tensor:
    """long ``[Q, M]``: each row's candidates best first: by ``scores [Q, M]`` descending,
    ties by ``tiebreak [Q, M]`` descending (when given), then by the lower index."""
    scores = scores.float()
    if tiebreak is None:
        return torch.sort(scores, dim=1, descending=True, stable=True).indices
    first = torch.sort(tiebreak.float(), dim=1, descending=True, stable=True).indices
    second = torch.sort(scores.gather(1, first), dim=1, descending=True, stable=True).indices
    return first.gather(1, second)


def best_ranks(
    scores: torch.Tensor,
    ground_truth: Sequence[Sequence[int]],
    tiebreak: torch.Tensor | None = None,
) -> torch.Tensor:
    """long ``[Q]``: 0-based rank of each query's best-ranked ground truth.

    ``scores [Q, M]``: one row per query, one column per candidate; ``ground_truth[q]``: the
    candidates matching query ``q`` (at least one). Ordering as :func:`ranking_order`.
    """
    scores = torch.as_tensor(scores).detach().cpu()
    if scores.ndim != 2:
        raise InputError(f"scores must be [queries, candidates], got {tuple(scores.shape)}")
    q, m = scores.shape
    if len(ground_truth) != q:
        raise InputError(f"{len(ground_truth)} ground-truth lists for {q} queries")
    if tiebreak is not None:
        tiebreak = torch.as_tensor(tiebreak).detach().cpu()
        if tiebreak.shape != scores.shape:
            raise InputError(
                f"tiebreak {tuple(tiebreak.shape)} and scores {tuple(scores.shape)} differ"
            )
    counts = torch.tensor([len(g) for g in ground_truth], dtype=torch.long)
    if q and int(counts.min()) == 0:
        raise InputError(f"query {int((counts == 0).nonzero()[0])} has no ground truth")
    flat_q = torch.repeat_interleave(torch.arange(q), counts)  # (query, truth) pairs
    flat_g = torch.tensor([int(x) for g in ground_truth for x in g], dtype=torch.long)
    bad = (flat_g < 0) | (flat_g >= m)
    if bool(bad.any()):
        query = int(flat_q[bad.nonzero()[0]])
        raise InputError(
            f"query {query}: ground truth {list(ground_truth[query])} out of range for "
            f"{m} candidates"
        )
    bounds = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    out = torch.full((q,), m, dtype=torch.long)
    rows = max(1, (1 << 22) // max(m, 1))
    for start in range(0, q, rows):
        stop = min(q, start + rows)
        order = ranking_order(
            scores[start:stop], None if tiebreak is None else tiebreak[start:stop]
        )
        position = torch.empty_like(order)
        position.scatter_(1, order, torch.arange(m).expand_as(order).contiguous())
        lo, hi = int(bounds[start]), int(bounds[stop])
        local = flat_q[lo:hi] - start
        found = position[local, flat_g[lo:hi]]
        out[start:stop] = torch.full((stop - start,), m, dtype=torch.long).scatter_reduce(
            0, local, found, reduce="amin"
        )
    return out


def _rank_summary(ranks: torch.Tensor) -> dict[str, float]:
    """R@1/5/10 (percent), their mean, median and mean rank (1-based) of 0-based ranks."""
    r = ranks.double()
    out = {f"r{k}": float((r < k).double().mean() * 100.0) for k in (1, 5, 10)}
    out["r_mean"] = (out["r1"] + out["r5"] + out["r10"]) / 3.0
    out["medr"] = _median(r) + 1.0
    out["meanr"] = float(r.mean() + 1.0)
    return out


def _median(values: torch.Tensor) -> float:
    """numpy's median: the middle value, or the mean of the two middle ones."""
    ordered = values.sort().values
    mid = ordered.numel() // 2
    if ordered.numel() % 2:
        return float(ordered[mid])
    return float((ordered[mid - 1] + ordered[mid]) / 2.0)


def retrieval_metrics(
    scores_v2t: torch.Tensor,
    video_to_texts: Sequence[Sequence[int]],
    text_to_videos: Sequence[Sequence[int]],
    *,
    scores_t2v: torch.Tensor | None = None,
    tiebreak: torch.Tensor | None = None,
) -> dict[str, float]:
    """The official ``itm_eval`` plus median / mean rank.

    ``scores_v2t [Nv, Nt]`` ranks texts for each video; ``scores_t2v [Nt, Nv]`` ranks videos for
    each text (default ``scores_v2t.T``; the re-ranked results have one matrix per direction).
    ``tiebreak [Nv, Nt]`` (e.g. the ITC matrix) orders equal scores (its transpose for text ->
    video). Returns :data:`METRIC_KEYS`: R@K in percent, ``*_r_mean`` = mean of R@1/5/10,
    ``r_mean`` = mean of both directions' ``r_mean``, ``*_medr`` / ``*_meanr`` 1-based; all
    rounded to 2 decimals like the official code.
    """
    scores_v2t = torch.as_tensor(scores_v2t).detach().cpu()
    if scores_v2t.ndim != 2:
        raise InputError(f"scores_v2t must be [videos, texts], got {tuple(scores_v2t.shape)}")
    nv, nt = scores_v2t.shape
    if len(video_to_texts) != nv or len(text_to_videos) != nt:
        raise InputError(
            f"scores_v2t is {nv} videos x {nt} texts but the ground truth has "
            f"{len(video_to_texts)} videos and {len(text_to_videos)} texts"
        )
    t2v = scores_v2t.t() if scores_t2v is None else torch.as_tensor(scores_t2v).detach().cpu()
    if tuple(t2v.shape) != (nt, nv):
        raise InputError(f"scores_t2v must be [{nt}, {nv}], got {tuple(t2v.shape)}")
    tb_t2v = None if tiebreak is None else torch.as_tensor(tiebreak).detach().cpu().t()
    return metrics_from_ranks(
        best_ranks(t2v, text_to_videos, tb_t2v),
        best_ranks(scores_v2t, video_to_texts, tiebreak),
    )


def metrics_from_ranks(t2v_ranks: torch.Tensor, v2t_ranks: torch.Tensor) -> dict[str, float]:
    """:data:`METRIC_KEYS` from the 0-based best ranks of every text (``[Nt]``) and video
    (``[Nv]``) query (see :func:`retrieval_metrics`)."""
    t2v, v2t = _rank_summary(t2v_ranks), _rank_summary(v2t_ranks)
    out: dict[str, float] = {}
    for name, part in (("t2v", t2v), ("v2t", v2t)):
        for key in ("r1", "r5", "r10", "r_mean", "medr", "meanr"):
            out[f"{name}_{key}"] = part[key]
    out["r_mean"] = (t2v["r_mean"] + v2t["r_mean"]) / 2.0
    return {key: round(value, 2) for key, value in out.items()}


# --------------------------------------------------------------------------- evaluation
@dataclass
class RetrievalResult:
    """Everything one retrieval test produced.

    ``metrics``: the re-ranked metrics (:data:`METRIC_KEYS`) and the ITC-only ones (the same
    keys + ``_itc``); with ``k_test == 0`` (ITC only) the plain keys repeat the ITC numbers.
    ``itc [Nv, Nt]`` float32: the ITC matrix (temperature 1). ``itm_v2t [Nv, Nt]`` /
    ``itm_t2v [Nt, Nv]``: the re-ranked matrices (ITM match logit inside each query's top-k,
    -100 elsewhere), None with ``k_test == 0``. ``ranks``: 0-based best ranks per query,
    ``"t2v"`` ``[Nt]``, ``"v2t"`` ``[Nv]``, ``"t2v_itc"``, ``"v2t_itc"``. ``itm_pairs``: pairs
    the fusion layers scored; ``texts_at_max_len``: texts that filled ``max_text_len`` tokens
    (cut there, or exactly that long); ``timings``: seconds per stage.
    """

    rset: RetrievalSet
    metrics: dict[str, float]
    itc: torch.Tensor
    itm_v2t: torch.Tensor | None
    itm_t2v: torch.Tensor | None
    ranks: dict[str, torch.Tensor]
    k_test: int
    num_frames: int
    itm_pairs: int = 0
    texts_at_max_len: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def reranked(self) -> bool:
        return self.itm_v2t is not None

    def summary(self) -> dict[str, Any]:
        """The JSON-able summary: every metric plus the sizes of the test."""
        return {
            **self.metrics,
            "videos": self.rset.num_videos,
            "texts": self.rset.num_texts,
            "num_frames": self.num_frames,
            "k_test": self.k_test,
            "reranked": self.reranked,
            "itm_pairs": self.itm_pairs,
            "texts_at_max_len": self.texts_at_max_len,
            **{key: round(value, 3) for key, value in self.timings.items()},
        }


def _encode_texts(
    net: nn.Module,
    texts: Sequence[str],
    tokenizer: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    max_text_len: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(text_embeds [Nt, L, C], attention_mask [Nt, L], text_feat [Nt, D] float32)`` on
    ``device`` (L = ``max_text_len``)."""
    embeds, masks, feats = [], [], []
    with progress_bar(len(texts), "texts", "text", progress) as bar:
        for start in range(0, len(texts), TEXT_BATCH):
            chunk = list(texts[start : start + TEXT_BATCH])
            ids, mask = tokenizer(chunk, max_length=max_text_len)
            ids, mask = ids.to(device), mask.to(device)
            with maybe_autocast(device, amp_dtype):
                text_embeds, pooled = net.encode_text(ids, mask)
                feat = net.text_features(pooled)
            embeds.append(text_embeds)
            masks.append(mask)
            feats.append(feat.float())
            bar.update(len(chunk))
    return torch.cat(embeds), torch.cat(masks), torch.cat(feats)


def _encode_videos(
    net: nn.Module,
    rset: RetrievalSet,
    dataset: Any,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    offload: bool,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vision_embeds [Nv, N, C] (CPU when offload), vision_feat [Nv, T, D] float32 on
    device)``. Every video must be readable: the faults are listed in one error."""
    from torch.utils.data import DataLoader

    from umt.data.retrieval import collate_retrieval

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_retrieval,
        pin_memory=device.type == "cuda",
    )
    mean = torch.tensor(dataset.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float32, device=device).view(1, 3, 1, 1, 1)
    nv = len(dataset)
    embeds: torch.Tensor | None = None
    feats: torch.Tensor | None = None
    faults: list[tuple[int, str, str]] = []
    with progress_bar(nv, "videos", "video", progress) as bar:
        for batch in loader:
            faults.extend(batch["faults"])
            if batch["video"] is not None:
                video = batch["video"].to(device, non_blocking=True)
                if video.dtype == torch.uint8:
                    video = (video.to(torch.float32) / 255.0 - mean) / std
                index = batch["index"]
                with maybe_autocast(device, amp_dtype):
                    vision_embeds, pooled = net.encode_vision(video)
                    feat = net.vision_features(pooled)
                if amp_dtype is not None:  # the fusion layers' K/V projections cast to it anyway
                    vision_embeds = vision_embeds.to(amp_dtype)
                if embeds is None:
                    embeds = torch.empty(
                        (nv, *vision_embeds.shape[1:]),
                        dtype=vision_embeds.dtype,
                        device="cpu" if offload else device,
                        pin_memory=offload and device.type == "cuda",
                    )
                    feats = torch.empty((nv, *feat.shape[1:]), dtype=torch.float32, device=device)
                embeds[index.to(embeds.device)] = vision_embeds.to(embeds.device)
                feats[index.to(device)] = feat.float()
            bar.update(len(batch["index"]) + len(batch["faults"]))
    if faults:
        faults.sort()
        shown = "; ".join(f"{rset.listed[i] if rset.listed else p}: {r}" for i, p, r in faults[:3])
        raise InputError(
            f"{rset.source or 'retrieval set'}: {len(faults)} of {nv} videos could not be read "
            f"({shown}{'; ...' if len(faults) > 3 else ''}); retrieval needs every listed video, "
            "since leaving one out would silently change the metric: fix or remove them from "
            "the list"
        )
    if embeds is None or feats is None:
        raise InputError(f"{rset.source or 'retrieval set'}: no videos")
    return embeds, feats


def _itc_matrix(vision_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """float32 ``[Nv, Nt]`` on the CPU: mean over frames of the cosine, temperature 1."""
    from umt.losses import video_text_similarity

    rows = max(1, (1 << 26) // max(1, vision_feat.shape[1] * text_feat.shape[0]))
    parts = [
        video_text_similarity(vision_feat[s : s + rows].float(), text_feat.float(), 1.0).cpu()
        for s in range(0, vision_feat.shape[0], rows)
    ]
    return torch.cat(parts)


def _itm_scores(
    net: nn.Module,
    keys: torch.Tensor,
    num_texts: int,
    vision_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_mask: torch.Tensor,
    itm_batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
) -> torch.Tensor:
    """float32 ``[P]``: ``itm_logits[:, 1]`` of the pairs ``keys = video * num_texts + text``
    (sorted, so a batch holds few distinct videos: each crosses to the device and has its
    tokens projected to keys and values once)."""
    out = torch.empty(keys.numel(), dtype=torch.float32)
    with progress_bar(keys.numel(), "re-ranking", "pair", progress) as bar:
        for start in range(0, keys.numel(), itm_batch_size):
            chunk = keys[start : start + itm_batch_size]
            vids, texts = chunk // num_texts, chunk % num_texts
            uniq, inverse = torch.unique(vids, return_inverse=True)
            memory = vision_embeds[uniq.to(vision_embeds.device)].to(device, non_blocking=True)
            rows = texts.to(text_embeds.device)
            with maybe_autocast(device, amp_dtype):  # memory [U, N, C], once per video
                logits = net.itm_logits(
                    text_embeds[rows], text_mask[rows], memory, vision_index=inverse.to(device)
                )
            out[start : start + chunk.numel()] = logits[:, 1].float().cpu()
            bar.update(chunk.numel())
    return out


def evaluate_retrieval(
    model: nn.Module,
    rset: RetrievalSet,
    tokenizer: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    *,
    num_frames: int = 4,
    k_test: int = 128,
    max_text_len: int = 32,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 4,
    progress: bool = True,
    input_size: int | None = None,
    max_seconds: float | None = None,
    itm_batch_size: int = 32,
    offload: bool = True,
    backend: str = "auto",
    dataset: Any = None,
) -> RetrievalResult:
    """The official retrieval test of a :class:`umt.models.video_text.UMTVideoText` on ``rset``.

    ``tokenizer(texts, max_length=) -> (input_ids [B, L], attention_mask [B, L])`` (a
    :class:`umt.text.Tokenizer`; it cleans the texts). Videos: ``num_frames`` frames by middle
    sampling at ``input_size`` (default: the model's), only the first ``max_seconds`` of each
    video when given (DiDeMo: 30), decoded by ``num_workers`` processes in batches of
    ``batch_size`` videos (or ``dataset``, a prepared :class:`RetrievalVideoDataset` in video
    order). ``k_test``: candidates re-ranked per query (official 128); ``k_test <= 0`` is ITC
    only. ``itm_batch_size`` pairs per fusion call. ``amp_dtype`` (e.g. ``torch.float16``,
    the official test) runs the model under autocast. ``offload`` keeps the video tokens on
    the CPU. Runs under ``torch.no_grad`` in eval mode; one process.
    """
    import time

    from umt.data.retrieval import RetrievalVideoDataset

    if batch_size < 1 or itm_batch_size < 1:
        raise InputError(f"batch sizes must be at least 1, got {batch_size}, {itm_batch_size}")
    if rset.num_videos == 0 or rset.num_texts == 0:
        raise InputError(f"{rset.source or 'retrieval set'}: no videos or no texts")
    positions = getattr(model.text_encoder, "max_position_embeddings", None)
    if positions is not None and max_text_len > positions:
        raise InputError(
            f"max_text_len {max_text_len} exceeds the text encoder's {positions} positions"
        )
    device = torch.device(device) if device is not None else model_device(model)
    if dataset is None:
        size = input_size or int(getattr(model.vision_encoder, "img_size", 224))
        dataset = RetrievalVideoDataset(
            rset, num_frames=num_frames, input_size=size, max_seconds=max_seconds, backend=backend
        )
    if len(dataset) != rset.num_videos:
        raise InputError(f"the dataset has {len(dataset)} videos, the set {rset.num_videos}")
    timings: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            text_embeds, text_mask, text_feat = _encode_texts(
                model, rset.texts, tokenizer, max_text_len, device, amp_dtype, progress
            )
            timings["texts_s"] = time.perf_counter() - t0
            at_max = int((text_mask.sum(1) >= text_mask.shape[1]).sum())
            t0 = time.perf_counter()
            vision_embeds, vision_feat = _encode_videos(
                model,
                rset,
                dataset,
                batch_size,
                num_workers,
                device,
                amp_dtype,
                offload,
                progress,
            )
            timings["videos_s"] = time.perf_counter() - t0
            itc = _itc_matrix(vision_feat, text_feat)  # [Nv, Nt]
            nv, nt = itc.shape
            itm_v2t = itm_t2v = None
            pairs = 0
            if k_test > 0:
                t0 = time.perf_counter()
                k_v2t, k_t2v = min(k_test, nt), min(k_test, nv)
                top_texts = itc.topk(k_v2t, dim=1).indices  # [Nv, k]
                top_videos = itc.t().topk(k_t2v, dim=1).indices  # [Nt, k]
                v2t_keys = torch.arange(nv).repeat_interleave(k_v2t) * nt + top_texts.flatten()
                t2v_keys = top_videos.flatten() * nt + torch.arange(nt).repeat_interleave(k_t2v)
                keys = torch.unique(torch.cat([v2t_keys, t2v_keys]))  # sorted
                pairs = int(keys.numel())
                scores = _itm_scores(
                    model,
                    keys,
                    nt,
                    vision_embeds,
                    text_embeds,
                    text_mask,
                    itm_batch_size,
                    device,
                    amp_dtype,
                    progress,
                )
                itm_v2t = torch.full((nv, nt), FILL)
                itm_v2t.view(-1)[v2t_keys] = scores[torch.searchsorted(keys, v2t_keys)]
                itm_t2v_vt = torch.full((nv, nt), FILL)
                itm_t2v_vt.view(-1)[t2v_keys] = scores[torch.searchsorted(keys, t2v_keys)]
                itm_t2v = itm_t2v_vt.t().contiguous()  # [Nt, Nv]
                timings["rerank_s"] = time.perf_counter() - t0
    finally:
        model.train(was_training)

    ranks = {
        "t2v_itc": best_ranks(itc.t(), rset.text_to_videos),
        "v2t_itc": best_ranks(itc, rset.video_to_texts),
    }
    itc_metrics = metrics_from_ranks(ranks["t2v_itc"], ranks["v2t_itc"])
    if itm_v2t is not None and itm_t2v is not None:  # ties (the -100 fill) in ITC order
        ranks["t2v"] = best_ranks(itm_t2v, rset.text_to_videos, itc.t())
        ranks["v2t"] = best_ranks(itm_v2t, rset.video_to_texts, itc)
        metrics = metrics_from_ranks(ranks["t2v"], ranks["v2t"])
    else:
        metrics = dict(itc_metrics)
        ranks["t2v"], ranks["v2t"] = ranks["t2v_itc"], ranks["v2t_itc"]
    metrics.update({f"{key}_itc": value for key, value in itc_metrics.items()})
    return RetrievalResult(
        rset=rset,
        metrics=metrics,
        itc=itc,
        itm_v2t=itm_v2t,
        itm_t2v=itm_t2v,
        ranks=ranks,
        k_test=max(0, int(k_test)),
        num_frames=int(num_frames),
        itm_pairs=pairs,
        texts_at_max_len=at_max,
        timings=timings,
    )


# --------------------------------------------------------------------------- outputs
def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(float(value), 6)


def write_predictions(path: str | os.PathLike, result: RetrievalResult, top: int = 10) -> Path:
    """One JSON line per query: first every text (``"query": "text"``), then every video
    (``"query": "video"``).

    A text line: ``index``, ``text``, ``gt_videos`` (paths as listed), ``rank`` (1-based, of
    the best ground truth in the final ranking), ``rank_itc`` and ``top``: the ``top`` best
    videos of the final ranking, each ``{"index", "video", "itc", "itm"}`` (``itm`` None where
    not re-ranked). A video line likewise with ``video``, ``gt_texts`` (indices) and ``top``
    texts ``{"index", "text", "itc", "itm"}``. Refuses (ValueError) a folder it cannot write.
    """
    out = Path(path)
    rset = result.rset
    names = rset.listed or rset.videos
    itc = result.itc
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle = out.open("w", encoding="utf-8")
    except OSError as err:
        raise InputError(
            f"{out}: cannot write the predictions file ({err.strerror or err}); "
            "choose a writable folder"
        ) from None
    directions = (
        ("text", itc.t(), result.itm_t2v, rset.text_to_videos, result.ranks),
        ("video", itc, result.itm_v2t, rset.video_to_texts, result.ranks),
    )
    with handle:
        for query, itc_rows, itm_rows, truth, ranks in directions:
            key = "t2v" if query == "text" else "v2t"
            final = itm_rows if itm_rows is not None else itc_rows
            k = min(top, final.shape[1])
            chunk = max(1, (1 << 22) // max(1, final.shape[1]))
            for start in range(0, final.shape[0], chunk):
                order = ranking_order(
                    final[start : start + chunk], itc_rows[start : start + chunk]
                )[:, :k]
                for row, q in enumerate(range(start, min(start + chunk, final.shape[0]))):
                    best = []
                    for c in order[row].tolist():
                        score = None
                        if itm_rows is not None and float(itm_rows[q, c]) != FILL:
                            score = _number(float(itm_rows[q, c]))
                        item: dict[str, Any] = {"index": c}
                        if query == "text":
                            item["video"] = names[c]
                        else:
                            item["text"] = rset.texts[c]
                        item["itc"] = _number(float(itc_rows[q, c]))
                        item["itm"] = score
                        best.append(item)
                    line: dict[str, Any] = {"query": query, "index": q}
                    if query == "text":
                        line["text"] = rset.texts[q]
                        line["gt_videos"] = [names[v] for v in truth[q]]
                    else:
                        line["video"] = names[q]
                        line["gt_texts"] = list(truth[q])
                    line["rank"] = int(ranks[key][q]) + 1
                    line["rank_itc"] = int(ranks[f"{key}_itc"][q]) + 1
                    line["top"] = best
                    handle.write(json.dumps(line) + "\n")
    return out


def format_tables(metrics: dict[str, float], reranked: bool = True) -> str:
    """Human-readable tables: the re-ranked and the ITC-only results (R@1/5/10, their mean,
    MdR, MnR per direction, and ``r_mean``)."""
    lines = []
    header = f"{'':16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'mean':>8}{'MdR':>8}{'MnR':>9}"
    parts = [("ITM re-ranked", ""), ("ITC only", "_itc")] if reranked else [("ITC only", "")]
    for title, suffix in parts:
        lines.append(f"{title} (r_mean {metrics['r_mean' + suffix]:.2f})")
        lines.append(header)
        for name, label in (("t2v", "text -> video"), ("v2t", "video -> text")):
            values = [metrics[f"{name}_{m}{suffix}"] for m in ("r1", "r5", "r10", "r_mean")]
            medr, meanr = metrics[f"{name}_medr{suffix}"], metrics[f"{name}_meanr{suffix}"]
            lines.append(
                f"  {label:14}" + "".join(f"{v:8.2f}" for v in values) + f"{medr:8.1f}{meanr:9.2f}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command
def run_retrieval(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    root: str | os.PathLike | None = None,
    num_frames: int = 4,
    k_test: int = 128,
    max_text_len: int = 32,
    paragraph: bool = False,
    batch_size: int = 32,
    predictions: str | os.PathLike | None = None,
    *,
    tokenizer: str | os.PathLike | None = None,
    max_seconds: float | None = None,
    multi_vision_gt: bool | None = None,
    device: str | torch.device = "auto",
    amp: str = "auto",
    num_workers: int = 4,
    itm_batch_size: int = 32,
    backend: str = "auto",
    progress: bool = True,
    out: Callable[[str], None] | None = print,
    sizes: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``umt evaluate retrieval CHECKPOINT ANNOTATIONS.json``: load, evaluate, print, return.

    ``checkpoint``: an official multimodal file or umt's own saved UMTVideoText (loaded with
    :func:`umt.load_checkpoint`, its position table built for ``num_frames``; the teacher is
    dropped). ``tokenizer``: a vocab folder / file (default: see :func:`resolve_tokenizer`). ``amp``: ``auto`` (float16 on CUDA, as
    the official test; none on CPU), ``fp16``, ``bf16`` or ``none``. ``out`` prints the tables
    (None: silent). ``sizes``: what an official file does not store (``num_heads``,
    ``text_num_heads``, ``img_size``; see :func:`load_video_text`). Returns
    :meth:`RetrievalResult.summary` plus ``checkpoint``, ``annotations`` and ``predictions``
    (the file written or None).
    """
    from umt.data.formats.retrieval import load_retrieval_annotations
    from umt.models.released import checkpoint_exists, release_hint

    if not checkpoint_exists(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found{release_hint(checkpoint)}")
    if num_frames < 1:
        raise InputError(f"num_frames must be at least 1, got {num_frames}")
    if max_text_len < 2:
        raise InputError(f"max_text_len must be at least 2 ([CLS] and a token), got {max_text_len}")
    rset = load_retrieval_annotations(
        annotations, root=root, paragraph=paragraph, multi_vision_gt=multi_vision_gt
    )
    if predictions is not None:
        check_writable(predictions, "predictions file")
    if str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    amp_dtype = resolve_amp(amp, dev)
    model = load_video_text(checkpoint, num_frames, **(sizes or {}))
    tok = resolve_tokenizer(checkpoint, model, tokenizer)
    model.to(dev)
    result = evaluate_retrieval(
        model,
        rset,
        tok,
        num_frames=num_frames,
        k_test=k_test,
        max_text_len=max_text_len,
        batch_size=batch_size,
        device=dev,
        amp_dtype=amp_dtype,
        num_workers=num_workers,
        progress=progress,
        max_seconds=max_seconds,
        itm_batch_size=itm_batch_size,
        backend=backend,
    )
    written = write_predictions(predictions, result) if predictions is not None else None
    if out is not None:
        mode = f"k_test {result.k_test}" if result.reranked else "ITC only"
        out(
            f"{rset.source}: {rset.num_videos} videos, {rset.num_texts} texts; "
            f"{num_frames} frames, max text length {max_text_len}, {mode}"
        )
        if result.texts_at_max_len:
            out(
                f"note: {result.texts_at_max_len} of {rset.num_texts} texts fill the "
                f"{max_text_len} tokens of max_text_len (longer ones are cut; the official "
                "settings: 32 MSRVTT, 64 DiDeMo / MSVD, 96 LSMDC, 150 ActivityNet, 25 SSv2)"
            )
        out(format_tables(result.metrics, result.reranked))
        if written is not None:
            out(f"wrote {written}")
    return {
        **result.summary(),
        "checkpoint": os.fspath(checkpoint),
        "annotations": os.fspath(annotations),
        "predictions": None if written is None else os.fspath(written),
    }


def load_video_text(
    checkpoint: str | os.PathLike, num_frames: int | None = None, **sizes: int
) -> nn.Module:
    """The UMTVideoText of ``checkpoint`` with its position table for ``num_frames`` frames
    (None: the checkpoint's), without its CLIP teacher (retrieval, search and zero-shot
    classification never use it); refuses other models in one line. ``sizes``: what an official
    file does not store (``num_heads``, ``text_num_heads``, ``img_size``; assumed sizes are
    reported with an :class:`umt.models.AssumedSizeWarning`); umt's own
    checkpoints store them and refuse other values."""
    from umt.models import AssumedSizeWarning, load_checkpoint, warn_assumed

    if num_frames is not None:
        sizes["num_frames"] = num_frames
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model = load_checkpoint(checkpoint, **sizes)
    for caught in said:
        warning = caught.message
        if isinstance(warning, AssumedSizeWarning) and warning.assumed:
            # The teacher is dropped below: what was assumed of it does not matter.
            kept = [a for a in warning.assumed if not a.startswith("teacher_")]
            warn_assumed(warning.path, warning.kind, kept)
        else:
            warnings.warn(warning, stacklevel=2)
    if not all(hasattr(model, name) for name in ("encode_text", "encode_vision", "itm_logits")):
        raise InputError(
            f"{checkpoint}: not a video-text model ({type(model).__name__}); this needs a "
            "stage-2 (multimodal) checkpoint with a text encoder and an ITM head"
        )
    if getattr(model, "teacher", None) is not None:
        model.teacher = None  # frees its memory before the model moves to the device
    return model


TOKENIZER_FILES = ("tokenizer", "vocab.txt", "tokenizer.json")
"""Looked for beside a checkpoint (in its folder), in this order."""


def resolve_tokenizer(
    checkpoint: str | os.PathLike | None,
    model: nn.Module | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> Any:
    """The :class:`umt.text.Tokenizer` for a video-text checkpoint.

    ``tokenizer`` (a folder with ``vocab.txt`` / ``tokenizer.json``, or such a file) when given;
    else :data:`TOKENIZER_FILES` in the checkpoint's folder (a checkpoint path; a released name
    has none); else the bundled
    ``bert-base-uncased`` vocabulary (:func:`umt.text.minilm_dir`, the official one). Refuses
    a vocabulary larger than ``model``'s text encoder's. Texts are written as the model's text
    tower reads them (its ``sep_after_text``; the official ``[CLS] X`` without a model).
    """
    from umt.text import Tokenizer, minilm_dir

    source: Path | None = None
    if tokenizer is not None:
        source = Path(tokenizer)
    elif checkpoint is not None and Path(checkpoint).exists():
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        source = next((folder / n for n in TOKENIZER_FILES if (folder / n).exists()), None)
    if source is None:
        source = minilm_dir()
    if source is None:
        raise InputError(
            f"{checkpoint}: no tokenizer vocabulary found (none beside the checkpoint and the "
            "bundled bert-base-uncased vocab is not installed); pass --tokenizer DIR_OR_VOCAB"
        )
    text_encoder = getattr(model, "text_encoder", None)
    tok = Tokenizer.from_pretrained(
        source, sep_after_text=bool(getattr(text_encoder, "sep_after_text", False))
    )
    vocab = getattr(text_encoder, "vocab_size", None)
    if vocab is not None and tok.vocab_size > vocab:
        raise InputError(
            f"{source}: the tokenizer has {tok.vocab_size} tokens but the model's text encoder "
            f"only {vocab}: not this model's vocabulary; pass its vocab with --tokenizer"
        )
    if vocab is not None and tok.vocab_size != vocab:
        warnings.warn(
            f"{source}: the tokenizer has {tok.vocab_size} tokens, the model's text encoder "
            f"{vocab}; check that it is the model's vocabulary",
            stacklevel=2,
        )
    return tok
