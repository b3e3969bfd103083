"""Evaluation: the official multi-view classification test, single-view validation and the
video-text retrieval test.

::

    from umt.evaluate import evaluate_classification, validate, ClassificationResult
    from umt.evaluate import evaluate_retrieval, retrieval_metrics, run_retrieval, RetrievalResult

``umt.evaluate`` imports no trainer; the data side comes from ``umt.data``. The retrieval names
are loaded on first use (``umt.evaluate.retrieval``); its predictions writer is exported here
as ``write_retrieval_predictions``.
"""

from __future__ import annotations

import importlib
from typing import Any

from umt.evaluate.classification import (
    ClassificationResult,
    ValidationResult,
    evaluate_classification,
    validate,
    write_confusion_png,
    write_per_class_csv,
    write_predictions,
)

_RETRIEVAL = {
    "RetrievalResult": "RetrievalResult",
    "evaluate_retrieval": "evaluate_retrieval",
    "retrieval_metrics": "retrieval_metrics",
    "run_retrieval": "run_retrieval",
    "write_retrieval_predictions": "write_predictions",
}

__all__ = [
    "ClassificationResult",
    "ValidationResult",
    "evaluate_classification",
    "validate",
    "write_confusion_png",
    "write_per_class_csv",
    "write_predictions",
    *_RETRIEVAL,
]


def __getattr__(name: str) -> Any:
    attr = _RETRIEVAL.get(name)
    if attr is None:
        raise AttributeError(f"module 'umt.evaluate' has no attribute {name!r}")
    value = getattr(importlib.import_module("umt.evaluate.retrieval"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
