"""The annotation files of the clip datasets, by format (``load_annotations(path,
format="auto")``): ``"list"`` (:mod:`.kinetics`), ``"ssv2"``, ``"video_text"``,
``"image_text"`` (:mod:`.json_lists`); ``"wds"`` (tar shards) is streamed, not listed.

Relative paths are resolved against ``root`` (default: the annotation file's folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from umt.data.formats.json_lists import read_json_annotations
from umt.data.formats.kinetics import read_kinetics_list
from umt.data.formats.records import VideoRecord, read_json_list
from umt.errors import InputError

__all__ = ["FORMATS", "detect_format", "load_annotations"]

FORMATS = ("list", "ssv2", "video_text", "image_text", "wds")


def detect_format(path: str | os.PathLike) -> str:
    """The annotation format of ``path`` (by extension, then by JSON content)."""
    text = os.fspath(path)
    if text.endswith(".tar") or (".tar" in text and "{" in text):
        return "wds"
    if text.lower().endswith((".json", ".jsonl")):
        entries = read_json_list(Path(text))
        if not entries:
            raise InputError(f"{text}: the JSON annotation list is empty")
        first = entries[0]
        if not isinstance(first, dict):
            raise InputError(f"{text}: expected a JSON list of objects, got {type(first).__name__}")
        if "video" in first:
            return "video_text"
        if "image" in first:
            return "image_text"
        if "id" in first:
            return "ssv2"
        raise InputError(
            f"{text}: cannot tell the JSON format from keys {sorted(first)}; expected "
            "'video' (video-text), 'image' (image-text) or 'id' (SSv2)"
        )
    return "list"


def load_annotations(
    path: str | os.PathLike,
    format: str = "auto",
    root: str | os.PathLike | None = None,
    labels: str | os.PathLike | dict | None = None,
    video_ext: str | None = None,
) -> list[VideoRecord]:
    """Parse an annotation file into records with resolved paths.

    ``root`` prefixes relative paths (default: the annotation file's folder); ``labels`` is the
    SSv2 name->index mapping (file or dict); ``video_ext`` the SSv2 file extension (default:
    detected from the first id found on disk, else ``.webm``).
    """
    ann = Path(path)
    fmt = detect_format(ann) if format == "auto" else format
    if fmt not in FORMATS:
        raise InputError(
            f"unknown annotation format {format!r}; choose from auto, {', '.join(FORMATS)}"
        )
    if fmt == "wds":
        raise InputError(f"{ann}: tar shards are streamed with ShardDataset, not listed")
    base = Path(root) if root is not None else ann.parent
    if fmt == "list":
        records = read_kinetics_list(ann, base)
    else:
        records = read_json_annotations(ann, base, fmt, labels, video_ext)
    if not records:
        raise InputError(f"{ann}: no samples in the annotation file")
    return records
