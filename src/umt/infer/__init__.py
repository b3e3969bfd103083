"""Inference on a user's own videos: top-k classification with a fine-tuned classifier."""

from umt.infer.classify import (
    ClassNames,
    Prediction,
    VideoResult,
    classify_videos,
    format_result,
    load_classifier,
    parse_views,
    resolve_class_names,
    resolve_device,
)

__all__ = [
    "ClassNames",
    "Prediction",
    "VideoResult",
    "classify_videos",
    "format_result",
    "load_classifier",
    "parse_views",
    "resolve_class_names",
    "resolve_device",
]
