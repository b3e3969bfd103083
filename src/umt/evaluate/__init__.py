"""Evaluation: the official multi-view classification test and single-view validation.

::

    from umt.evaluate import evaluate_classification, validate, ClassificationResult

``umt.evaluate.classification`` imports no trainer; the data side comes from ``umt.data``.
"""

from umt.evaluate.classification import (
    ClassificationResult,
    ValidationResult,
    evaluate_classification,
    validate,
    write_confusion_png,
    write_per_class_csv,
    write_predictions,
)

__all__ = [
    "ClassificationResult",
    "ValidationResult",
    "evaluate_classification",
    "validate",
    "write_confusion_png",
    "write_per_class_csv",
    "write_predictions",
]
