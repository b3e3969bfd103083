"""UMT models: the video ViT student, the CLIP teacher, the BERT text encoder, the stage-2
video-text model, the video QA model, the VideoMAE pretraining model and the AVA detector; the
registry; one way to load, save and convert them (:mod:`umt.models.hub`).

Each family module owns its model and its foreign checkpoint formats and registers itself;
importing this package imports every family. It pulls in no trainer and no video decoder.
"""

from umt.models._io import AssumedSizeWarning, read_state_dict, warn_assumed
from umt.models.registry import list_models, model_config, register_model

# The families register their variants and formats on import (hub first: some families use it).
from umt.models.hub import (  # isort: skip
    convert_checkpoint,
    create_model,
    detect_checkpoint,
    load_checkpoint,
    load_student,
    load_teacher,
    save_pretrained,
)
from umt.models.video_vit import VideoViT  # isort: skip
from umt.models.clip_teacher import CLIPTeacher  # isort: skip
from umt.models.text_bert import BertTextEncoder, load_bert  # isort: skip
from umt.models.video_text import UMTVideoText  # isort: skip
from umt.models.video_qa import UMTVideoQA, load_video_qa  # isort: skip
from umt.models.videomae import VideoMAE  # isort: skip
from umt.models.detection import VideoDetector  # isort: skip

__all__ = [
    "AssumedSizeWarning",
    "BertTextEncoder",
    "CLIPTeacher",
    "UMTVideoQA",
    "UMTVideoText",
    "VideoDetector",
    "VideoMAE",
    "VideoViT",
    "convert_checkpoint",
    "create_model",
    "detect_checkpoint",
    "list_models",
    "load_bert",
    "load_checkpoint",
    "load_student",
    "load_teacher",
    "load_video_qa",
    "model_config",
    "read_state_dict",
    "register_model",
    "save_pretrained",
    "warn_assumed",
]
