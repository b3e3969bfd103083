"""umt: Unmasked Teacher video foundation models (Li et al., ICCV 2023).

The public face: ``create_model``, ``load_checkpoint`` and the registry's names. Training and the
command line live in ``umt.train`` and ``umt.cli`` and are not imported here.
"""

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
