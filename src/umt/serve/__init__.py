"""``umt serve``: a small local web page over a ``umt embed`` index and a checkpoint.

Search the index by text (thumbnails, playable results), classify an uploaded clip (top 5: a
fine-tuned classifier, or zero-shot over class names with the video-text model) and draw a
clip's semantic mask (the teacher's, as ``umt visualize-mask``). FastAPI serves one static page
(plain JavaScript, nothing fetched from the internet) and a JSON API (:mod:`umt.serve.app`).

Needs the ``serve`` extra (``pip install -e ".[serve]"``: FastAPI, uvicorn, python-multipart).
The library (models, data, ...) never imports this package.
"""

from __future__ import annotations

from umt.serve.app import (
    SEARCH_TOP_K,
    Services,
    UploadClassifier,
    create_app,
    fine_tuned_classifier,
    zero_shot_classifier,
)

__all__ = [
    "SEARCH_TOP_K",
    "Services",
    "UploadClassifier",
    "create_app",
    "fine_tuned_classifier",
    "zero_shot_classifier",
]
