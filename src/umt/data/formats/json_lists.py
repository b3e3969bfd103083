"""JSON annotation lists: Something-Something-v2 (``[{"id": "123", "label": "...", "template":
"... [something] ..."}]`` with a ``labels.json`` ``{"name": "index"}`` next to it, or
``labels=``), and the caption corpora, WebVid style ``[{"video": path, "caption": str | [str]}]``
and CC3M style ``[{"image": path, "caption": str | [str]}]``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from umt.data.formats.records import (
    VIDEO_EXTENSIONS,
    VideoRecord,
    entry_caption,
    entry_label,
    is_int,
    read_json_list,
    resolve_path,
)
from umt.errors import InputError
from umt.textfile import read_text

__all__ = ["read_json_annotations", "read_label_mapping"]


def read_label_mapping(
    labels: str | os.PathLike | dict | None, path: Path
) -> dict[str, int] | None:
    """SSv2 label name -> index from ``labels`` (file or dict), or from a ``labels.json`` beside
    ``path``; None when there is none."""
    if isinstance(labels, dict):
        return {str(k): int(v) for k, v in labels.items()}
    candidates = (
        [Path(labels)]
        if labels is not None
        else [
            path.parent / "labels.json",
            path.parent / "something-something-v2-labels.json",
        ]
    )
    for cand in candidates:
        if cand.is_file():
            data = json.loads(read_text(cand))
            if isinstance(data, list):  # a list of names: index = position
                return {str(name): i for i, name in enumerate(data)}
            return {str(k): int(v) for k, v in data.items()}
        if labels is not None:
            raise FileNotFoundError(f"{cand}: label mapping file not found")
    return None


def read_json_annotations(
    path: Path, root: Path, fmt: str, labels: Any, video_ext: str | None
) -> list[VideoRecord]:
    """The records of an SSv2 (``fmt="ssv2"``), video-text or image-text JSON list."""
    entries = read_json_list(path)
    mapping = read_label_mapping(labels, path) if fmt == "ssv2" else None
    if fmt == "ssv2" and mapping is None:
        names = sorted(
            {
                str(e.get("label", e.get("template", ""))).replace("[", "").replace("]", "")
                for e in entries
                if isinstance(e, dict)
            }
            - {""}
        )
        if names and not all(is_int(n) for n in names):
            warnings.warn(
                f"{path}: no labels.json found; numbering {len(names)} label names alphabetically",
                stacklevel=3,
            )
            mapping = {name: i for i, name in enumerate(names)}
    ext = video_ext
    records = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: entry {n} is not a JSON object")
        if fmt == "ssv2":
            if "id" not in entry:
                raise InputError(f"{path}: entry {n} has no 'id'")
            vid = str(entry["id"])
            if ext is None:
                ext = next(
                    (e for e in (".webm", ".mp4", ".mkv", ".avi") if (root / (vid + e)).exists()),
                    ".webm",
                )
            rel = vid if Path(vid).suffix.lower() in VIDEO_EXTENSIONS else vid + ext
        else:
            key = "video" if fmt == "video_text" else "image"
            rel = entry.get(key) or entry.get("video") or entry.get("image") or entry.get("path")
            if not isinstance(rel, str):
                raise InputError(f"{path}: entry {n} has no '{key}' path")
        records.append(
            VideoRecord(
                resolve_path(rel, root),
                entry_label(entry, mapping, path, n),
                entry_caption(entry, path, n),
                listed=rel,
            )
        )
    return records
