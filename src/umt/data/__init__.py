"""Video data for UMT: decoding, frame sampling, augmentation, datasets, faults, synthetic data.

Public API (imported lazily; ``import umt.data`` loads neither torch nor av)::

    from umt.data import (
        build_dataset,          # build_dataset("train.csv" | "x.json" | "shards-{000..009}.tar" | "synthetic", **kw)
        ClipSpec,               # how a clip is sampled and transformed (frames, size, views, ...)
        VideoDataset,           # map-style; dict(video [3,T,H,W], label, caption, index, path, faults)
        MultiViewDataset,       # all test views of a video: video [V,3,T,S,S] (official multi-view test)
        ShardDataset,           # WebDataset tar shards, split by rank and worker
        collate_videos,         # -> video [B,3,T,H,W], index long [B], label long [B], skipped, faults
        FaultCounter, fault_summary, TooManyFaultsError,
        ensure_synthetic_dataset, write_synthetic_dataset,
        sample_seed, make_generator,
        segment_indices, sparse_indices, ssv2_indices, dense_indices, eval_views, ClipView,
        interval_indices,
        # sampling="segments" (pretraining) | "sparse" (fine-tuning) | "ssv2" | "dense"
        #   | "rand" / "middle" (official multi-modality train / test)
        read_frames, probe_video, decode_to_end, get_decoder, VideoDecodeError,
        build_pretrain_transform, build_finetune_transform, build_eval_transform, Mixup,
        IMAGENET_MEAN, IMAGENET_STD, CLIP_MEAN, CLIP_STD,
        check_annotations, check_video, validate_check_options, CheckOptionError,
        write_shards, shard_pattern,  # annotation list -> tar shards -> "shard-{000000..000003}.tar"
        class_names, load_class_names, guess_class_names,  # Kinetics / SSv2 / MiT class names
        # video-text / image-text (stage 2, retrieval fine-tuning):
        CaptionDataset, CaptionCorpus, CaptionShardDataset, MixedMediaSampler,
        collate_captions, build_caption_transform, write_caption_shards, media_order,
    )

Per-sample randomness comes from ``make_generator(sample_seed(seed, epoch, index))``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "decode": [
        "VideoDecodeError",
        "VideoInfo",
        "get_decoder",
        "probe_video",
        "read_frames",
        "decode_to_end",
        "available_backends",
        "PyAVDecoder",
    ],
    "sampling": [
        "make_generator",
        "sample_seed",
        "SAMPLING_NAMES",
        "segment_indices",
        "sparse_indices",
        "ssv2_indices",
        "dense_indices",
        "dense_test_indices",
        "interval_indices",
        "ClipView",
        "sample_indices",
        "eval_views",
        "min_frames_needed",
    ],
    "transforms.video": ["IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD"],
    "transforms.mixup": ["Mixup"],
    "transforms.recipes": [
        "build_pretrain_transform",
        "build_finetune_transform",
        "build_eval_transform",
        "build_caption_transform",
    ],
    "faults": ["FaultCounter", "TooManyFaultsError", "VideoFault"],
    "clip_spec": ["ClipSpec"],
    "datasets": [
        "VideoDataset",
        "MultiViewDataset",
        "ShardDataset",
        "collate_videos",
        "collate_views",
        "build_dataset",
        "fault_summary",
    ],
    "formats.annotations": ["load_annotations", "detect_format"],
    "formats.records": ["VideoRecord"],
    "formats.labels": ["class_names", "load_class_names", "guess_class_names"],
    "synth": ["ensure_synthetic_dataset", "write_synthetic_dataset", "CLASSES"],
    "check": [
        "check_annotations",
        "check_video",
        "validate_check_options",
        "CheckOptionError",
        "CheckReport",
    ],
    "shards": ["write_shards", "shard_pattern"],
    "video_text": [
        "CaptionDataset",
        "CaptionCorpus",
        "CaptionShardDataset",
        "MixedMediaSampler",
        "collate_captions",
        "write_caption_shards",
        "media_order",
    ],
    "formats.qa": [
        "QAEntry",
        "MCEntry",
        "load_qa_annotations",
        "load_answer_list",
        "answers_with_weights",
        "load_mc_annotations",
    ],
    "qa": [
        "QADataset",
        "collate_qa",
        "MCDataset",
        "collate_mc",
    ],
    "synth_qa": ["write_synthetic_qa", "ensure_synthetic_qa", "synthetic_qa_chance"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'umt.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"umt.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
