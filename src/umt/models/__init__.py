"""UMT models: the video ViT student, the CLIP teacher, the BERT text encoder, the stage-2
video-text model, the video QA model, the VideoMAE pretraining model, the registry and checkpoint loading.

Importing this package pulls in no trainer and no video decoder.
"""

from umt.models.checkpoints import (
    convert_checkpoint,
    detect_checkpoint,
    load_checkpoint,
    load_student,
    load_teacher,
    read_state_dict,
    save_pretrained,
)
from umt.models.clip_teacher import CLIPTeacher
from umt.models.detection import VideoDetector
from umt.models.registry import create_model, list_models, model_config, register_model
from umt.models.text_bert import BertTextEncoder, load_bert
from umt.models.video_qa import UMTVideoQA, load_video_qa
from umt.models.video_text import UMTVideoText
from umt.models.video_vit import VideoViT
from umt.models.videomae import VideoMAE

__all__ = [
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
]
