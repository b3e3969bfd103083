"""What every annotation reader yields: :class:`VideoRecord`, the media extensions, and the
pieces the readers share (JSON lists, relative paths, an entry's caption and label)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umt.errors import InputError
from umt.textfile import read_text

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoRecord",
    "entry_caption",
    "entry_label",
    "is_int",
    "read_json_list",
    "resolve_path",
]

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".webm",
    ".mkv",
    ".mov",
    ".m4v",
    ".flv",
    ".mpg",
    ".mpeg",
    ".gif",
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class VideoRecord:
    """One annotated sample: resolved path, optional label / caption(s), frame-count hint."""

    path: str
    label: int | None = None
    caption: str | list[str] | None = None
    num_frames: int | None = None  # for extracted-frame folders listed TSN style
    listed: str | None = None  # the path exactly as the annotation file writes it

    @property
    def is_image(self) -> bool:
        return self.path.lower().endswith(IMAGE_EXTENSIONS)


def is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def resolve_path(path: str, root: Path) -> str:
    p = Path(path)
    return os.fspath(p if p.is_absolute() else root / p)


def read_json_list(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    raw = read_text(path)
    try:
        if path.suffix.lower() == ".jsonl":
            data = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict):
        for key in ("annotations", "data", "videos", "items"):
            if isinstance(data.get(key), list):
                return data[key]
        raise InputError(f"{path}: expected a JSON list (or a dict with an 'annotations' list)")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data


def entry_caption(entry: dict, path: Path, n: int) -> str | list[str] | None:
    for key in ("caption", "captions", "text", "txt"):
        if key in entry:
            value = entry[key]
            if isinstance(value, str) or (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            ):
                return value
            raise InputError(f"{path}: entry {n}: '{key}' must be a string or a list of strings")
    return None


def entry_label(entry: dict, mapping: dict[str, int] | None, path: Path, n: int) -> int | None:
    value = entry.get("label", entry.get("template"))
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and is_int(value):
        return int(value)
    name = str(value).replace("[", "").replace("]", "")
    if mapping is None:
        raise InputError(
            f"{path}: entry {n}: label {value!r} is a name but no label mapping was found"
        )
    if name not in mapping:
        raise InputError(f"{path}: entry {n}: label {name!r} is not in the label mapping")
    return mapping[name]
