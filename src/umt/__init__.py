"""umt: Unmasked Teacher video foundation models (Li et al., ICCV 2023).

The public face: ``create_model``, ``load_checkpoint`` and the registry's names, imported on
first use (PEP 562), so ``import umt`` (and ``umt --help``) does not pay for torch. Training
and the command line live in ``umt.train`` and ``umt.cli`` and are not imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from umt.models import (
        BertTextEncoder,
        CLIPTeacher,
        UMTVideoQA,
        UMTVideoText,
        VideoViT,
        create_model,
        list_models,
        load_checkpoint,
        load_student,
        load_teacher,
        save_pretrained,
    )
    from umt.text import Tokenizer

__version__ = "0.1.0"

_PUBLIC = {
    "BertTextEncoder": "umt.models",
    "CLIPTeacher": "umt.models",
    "Tokenizer": "umt.text",
    "UMTVideoQA": "umt.models",
    "UMTVideoText": "umt.models",
    "VideoViT": "umt.models",
    "create_model": "umt.models",
    "list_models": "umt.models",
    "load_checkpoint": "umt.models",
    "load_student": "umt.models",
    "load_teacher": "umt.models",
    "save_pretrained": "umt.models",
}
"""Each public name and the module that defines it."""

__all__ = [
    "BertTextEncoder",
    "CLIPTeacher",
    "Tokenizer",
    "UMTVideoQA",
    "UMTVideoText",
    "VideoViT",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_student",
    "load_teacher",
    "save_pretrained",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'umt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
