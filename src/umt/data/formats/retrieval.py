"""Video-text retrieval test annotations (torch-free).

:func:`load_retrieval_annotations` reads the official retrieval test lists (the VINDLU JSONs of
``multi_modality``): a JSON list of ``{"video": str | [str, ...], "caption": str | [str, ...]}``.
Every caption of an entry matches every video of the entry. One loader covers the test sets:

* MSRVTT-1k, LSMDC: one caption per video, one text per video.
* MSVD: a caption list per video: one text per caption, and video -> text retrieval takes the
  best-ranked of the video's captions (the official multi-text ground truth).
* DiDeMo, ActivityNet (``paragraph=True``): a video's sentence list is joined with ``" "`` into
  one paragraph, one text per video (the official ``is_paragraph_retrieval``). DiDeMo is also
  sampled in its first 30 s only: ``RetrievalVideoDataset(max_seconds=30)``.
* SSv2-label / -template (``multi_vision_gt``, the official ``has_multi_vision_gt``): one
  entry per caption whose ``"video"`` may be a list; entries with equal captions are one text,
  the union of their videos its ground truth. Detected when some ``"video"`` is a list.

A video listed twice (same resolved path) is one video whose texts are the union (the official
loader would score two copies of it). Texts are kept as written; the tokenizer cleans them
(:func:`umt.text.clean_caption`, the official ``pre_text``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umt.data.formats.records import VideoRecord
from umt.errors import InputError
from umt.textfile import read_text

__all__ = ["RetrievalSet", "load_retrieval_annotations"]


@dataclass
class RetrievalSet:
    """A retrieval test set.

    ``videos[v]``: resolved path of video ``v``; ``texts[t]``: query text ``t`` (as written, a
    joined paragraph with ``paragraph=True``); ``text_to_videos[t]``: the videos matching text
    ``t`` (ground truth of text -> video); ``video_to_texts[v]``: the texts matching video ``v``.
    ``listed[v]``: video ``v``'s path as the file writes it; ``source``: the annotation file.
    """

    videos: list[str]
    texts: list[str]
    text_to_videos: list[list[int]]
    video_to_texts: list[list[int]]
    listed: list[str] = field(default_factory=list)
    source: str = ""
    paragraph: bool = False
    multi_vision_gt: bool = False

    @property
    def num_videos(self) -> int:
        return len(self.videos)

    @property
    def num_texts(self) -> int:
        return len(self.texts)

    def records(self) -> list[VideoRecord]:
        """One :class:`VideoRecord` per video, in video order (for :class:`VideoDataset`)."""
        listed = self.listed or self.videos
        return [VideoRecord(path, listed=name) for path, name in zip(self.videos, listed)]


def _strings(value: Any) -> list[str] | None:
    """``value`` as a non-empty list of strings, or None when it is not one."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _read_entries(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, list):
        raise InputError(
            f"{path}: expected a JSON list of {{'video': ..., 'caption': ...}} entries, "
            f"got a JSON {type(data).__name__}"
        )
    if not data:
        raise InputError(f"{path}: the annotation list is empty")
    return data


def load_retrieval_annotations(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    paragraph: bool = False,
    multi_vision_gt: bool | None = None,
    check_files: bool = True,
) -> RetrievalSet:
    """Read a retrieval test list into a :class:`RetrievalSet`.

    ``root`` prefixes relative video paths (default: the annotation file's folder).
    ``paragraph``: join each entry's caption list into one text (DiDeMo, ActivityNet).
    ``multi_vision_gt``: merge entries with equal captions into one text (SSv2); None detects
    it (some entry's ``"video"`` is a list). ``check_files``: every video must exist; a
    missing one is an error, since leaving it out would silently change the metric.
    """
    ann = Path(path)
    entries = _read_entries(ann)
    base = Path(root) if root is not None else ann.parent
    parsed: list[tuple[list[str], list[str]]] = []  # (videos as listed, captions)
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(
                f"{ann}: entry {n} is a JSON {type(entry).__name__}, not an object with "
                "'video' and 'caption'"
            )
        if "video" not in entry:
            raise InputError(f"{ann}: entry {n} has no 'video' (keys: {sorted(entry)})")
        if "caption" not in entry:
            raise InputError(f"{ann}: entry {n} has no 'caption' (keys: {sorted(entry)})")
        videos = _strings(entry["video"])
        if videos is None:
            raise InputError(
                f"{ann}: entry {n}: 'video' must be a path or a non-empty list of paths"
            )
        captions = _strings(entry["caption"])
        if captions is None:
            raise InputError(
                f"{ann}: entry {n}: 'caption' must be a string or a non-empty list of strings"
            )
        parsed.append((videos, captions))
    if multi_vision_gt is None:
        multi_vision_gt = any(isinstance(entry["video"], list) for entry in entries)

    video_ids: dict[str, int] = {}
    videos: list[str] = []
    listed: list[str] = []
    text_ids: dict[str, int] = {}
    texts: list[str] = []
    pairs: set[tuple[int, int]] = set()
    ordered: list[tuple[int, int]] = []
    for names, captions in parsed:
        vids = []
        for name in names:
            resolved = os.fspath(Path(name) if Path(name).is_absolute() else base / name)
            if resolved not in video_ids:
                video_ids[resolved] = len(videos)
                videos.append(resolved)
                listed.append(name)
            vids.append(video_ids[resolved])
        if paragraph:
            captions = [" ".join(captions)]
        tids = []
        for caption in captions:
            if multi_vision_gt and caption in text_ids:
                tids.append(text_ids[caption])
                continue
            text_ids.setdefault(caption, len(texts))
            tids.append(len(texts))
            texts.append(caption)
        for t in tids:
            for v in vids:
                if (t, v) not in pairs:
                    pairs.add((t, v))
                    ordered.append((t, v))
    text_to_videos: list[list[int]] = [[] for _ in texts]
    video_to_texts: list[list[int]] = [[] for _ in videos]
    for t, v in ordered:
        text_to_videos[t].append(v)
        video_to_texts[v].append(t)

    if check_files:
        missing = [name for name, p in zip(listed, videos) if not os.path.exists(p)]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise FileNotFoundError(
                f"{ann}: {len(missing)} of {len(videos)} videos not found under {base} "
                f"(first: {shown}); retrieval needs every listed video, since leaving one out "
                "would silently change the metric: fix the list or --root"
            )
    return RetrievalSet(
        videos=videos,
        texts=texts,
        text_to_videos=text_to_videos,
        video_to_texts=video_to_texts,
        listed=listed,
        source=os.fspath(ann),
        paragraph=paragraph,
        multi_vision_gt=bool(multi_vision_gt),
    )


# --------------------------------------------------------------------------- test videos
