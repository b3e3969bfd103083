"""``umt convert``: an official UMT / CLIP checkpoint into umt's format."""

from __future__ import annotations

import argparse

__all__ = ["add_convert"]


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official UMT / CLIP checkpoint into umt's format (safetensors + config.json)",
        description=(
            "Recognise a checkpoint by its tensor names (official UMT pretraining, fine-tuning or "
            "multimodal files; OpenAI / open_clip / HuggingFace CLIP), convert it and write "
            "OUT/model.safetensors and OUT/config.json. Nothing in IN is unpickled beyond tensors."
        ),
    )
    p.add_argument("input", help="checkpoint file (.pth/.pt/.bin/.safetensors)")
    p.add_argument("output", help="output folder")
    p.add_argument(
        "--part",
        choices=["auto", "video-text", "student", "teacher"],
        default="auto",
        help="for multimodal files, which model to write (default: all of it, the video-text "
        "model; student: its video encoder; teacher: its CLIP teacher)",
    )
    p.add_argument("--num-frames", type=int, default=None, help="frames the model is meant for")
    p.add_argument(
        "--img-size", type=int, default=None, help="input resolution the model is meant for"
    )
    p.add_argument(
        "--num-heads", type=int, default=None, help="attention heads (default: width / 64)"
    )
    p.add_argument(
        "--text-num-heads",
        type=int,
        default=None,
        help="video-text files: the text tower's attention heads (default: width / 64)",
    )
    p.add_argument(
        "--teacher-heads",
        type=int,
        default=None,
        help="video-text files: the CLIP teacher's attention heads (default: width / 64)",
    )
    p.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from umt.models import convert_checkpoint

    extra = {
        key: value
        for key, value in (
            ("text_num_heads", args.text_num_heads),
            ("teacher_heads", args.teacher_heads),
        )
        if value is not None
    }
    report = convert_checkpoint(
        args.input,
        args.output,
        part=args.part,
        num_frames=args.num_frames,
        img_size=args.img_size,
        num_heads=args.num_heads,
        **extra,
    )
    print(report)
    return 0
