"""Write an annotation list as WebDataset tar shards that :class:`ShardDataset` streams.

Each record becomes one sample: ``KEY.<ext>`` (the file's bytes under its lower-case
extension), ``KEY.cls`` (the label) and ``KEY.txt`` (one caption) or ``KEY.json``
(``{"caption": [...], "label": ...}`` for a list of captions, or a caption that a ``.txt``
member would not give back unchanged). ``KEY`` is a zero-padded running number. With
``meta`` (one dict per record) every sample gets a ``KEY.json`` holding the caption, the label
and that record's extra fields (e.g. ``sample_id`` and ``media`` of
:func:`umt.data.video_text.write_caption_shards`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from umt.data.formats.annotations import load_annotations
from umt.data.formats.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoRecord
from umt.errors import InputError

__all__ = ["write_shards", "shard_pattern"]

_MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


def _check_sources(records: list[VideoRecord]) -> None:
    """Raise before writing anything when a source is missing, unreadable or unsupported."""
    missing: list[str] = []
    for rec in records:
        path = Path(rec.path)
        if path.is_dir():
            raise InputError(
                f"{rec.path}: a folder of extracted frames cannot go into a tar shard; "
                "list the video or image files instead"
            )
        if path.suffix.lower() not in _MEDIA_EXTENSIONS:
            raise InputError(
                f"{rec.path}: extension {path.suffix or '(none)'!r} is not a video or image "
                f"extension ShardDataset reads ({', '.join(_MEDIA_EXTENSIONS)})"
            )
        if not path.is_file() or not os.access(path, os.R_OK):
            missing.append(rec.path)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileNotFoundError(
            f"{len(missing)} source file(s) missing or unreadable: {shown}; no shard written"
        )


def _sample(key: str, rec: VideoRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The WebDataset sample of one record (values already bytes/str/int for ShardWriter)."""
    sample: dict[str, Any] = {"__key__": key}
    sample[Path(rec.path).suffix.lower()[1:]] = Path(rec.path).read_bytes()
    if rec.label is not None:
        sample["cls"] = int(rec.label)
    caption = rec.caption
    if extra is not None:
        meta_all: dict[str, Any] = dict(extra)
        if caption is not None:
            meta_all["caption"] = caption
        if rec.label is not None:
            meta_all["label"] = int(rec.label)
        sample["json"] = meta_all
    elif isinstance(caption, list) or (isinstance(caption, str) and caption != caption.strip()):
        # ShardDataset strips .txt captions; JSON keeps lists and surrounding spaces exactly.
        meta: dict[str, Any] = {"caption": caption}
        if rec.label is not None:
            meta["label"] = int(rec.label)
        sample["json"] = meta
    elif caption is not None:
        sample["txt"] = caption
    return sample


def write_shards(
    annotations: str | os.PathLike | Sequence[VideoRecord],
    out_dir: str | os.PathLike,
    per_shard: int = 1000,
    root: str | None = None,
    format: str = "auto",
    prefix: str = "shard",
    meta: Sequence[dict[str, Any]] | None = None,
) -> list[Path]:
    """Write the records of ``annotations`` into ``out_dir/{prefix}-000000.tar``, ... .

    ``annotations`` is an annotation file (``root`` and ``format`` are passed to
    :func:`load_annotations`) or its already loaded records; each shard holds at most
    ``per_shard`` samples. ``meta``, one JSON-serialisable dict per record, adds those fields
    to each sample's ``.json`` member. Every source file is checked before anything is
    written. Returns the shard paths in order; :func:`shard_pattern` turns them into the
    brace pattern to train on, e.g. ``data.train_list=out/shard-{000000..000003}.tar``.

    Raises ``FileNotFoundError`` naming missing/unreadable sources, ``ValueError`` for a bad
    ``per_shard``/prefix or a record that cannot be sharded, and ``FileExistsError`` when
    ``out_dir`` already holds ``{prefix}-*.tar`` files.
    """
    from webdataset import ShardWriter

    if int(per_shard) < 1:
        raise InputError(f"per_shard must be at least 1, got {per_shard}")
    if not prefix or "/" in prefix or os.sep in prefix:
        raise InputError(f"prefix must be a plain file name part, got {prefix!r}")
    if isinstance(annotations, (str, os.PathLike)):
        records = load_annotations(annotations, format=format, root=root)
    else:
        records = list(annotations)
    if meta is not None and len(meta) != len(records):
        raise InputError(f"meta has {len(meta)} entries for {len(records)} records; need one each")
    _check_sources(records)
    out = Path(out_dir)
    if out.is_dir() and glob.glob(
        os.path.join(glob.escape(os.fspath(out)), f"{glob.escape(prefix)}-*.tar")
    ):
        raise FileExistsError(f"{out}: already holds {prefix}-*.tar shards; choose another folder")
    out.mkdir(parents=True, exist_ok=True)

    width = max(6, len(str(len(records) - 1)))
    written: list[Path] = []
    pattern = os.fspath(out / f"{prefix}-%06d.tar")
    writer = ShardWriter(
        pattern, maxcount=int(per_shard), verbose=0, post=lambda name: written.append(Path(name))
    )
    try:
        for i, rec in enumerate(records):
            writer.write(_sample(f"{i:0{width}d}", rec, None if meta is None else meta[i]))
        writer.close()
    except BaseException:
        # Leave no partial shard behind (e.g. a source removed after the check).
        with contextlib.suppress(Exception):
            writer.finish()
        for path in {*written, Path(writer.fname)}:
            path.unlink(missing_ok=True)
        raise
    return written


def shard_pattern(paths: list[Path]) -> str:
    """The brace pattern naming ``paths`` (consecutive numbered shards in one folder).

    ``[/x/shard-000000.tar, ..., /x/shard-000003.tar]`` -> ``/x/shard-{000000..000003}.tar``;
    a single shard gives its plain path.
    """
    if not paths:
        raise InputError("shard_pattern: no shards given")
    texts = [os.fspath(p) for p in paths]
    if len(texts) == 1:
        return texts[0]
    matches = [re.fullmatch(r"(.*?)(\d+)(\.tar)", t) for t in texts]
    if any(m is None for m in matches):
        raise InputError(f"shard_pattern: not numbered .tar shards: {texts[:3]}")
    heads = {m.group(1) for m in matches if m}
    numbers = [m.group(2) for m in matches if m]
    width = len(numbers[0])
    if (
        len(heads) != 1
        or any(len(n) != width for n in numbers)
        or [int(n) for n in numbers] != list(range(int(numbers[0]), int(numbers[0]) + len(numbers)))
    ):
        raise InputError(f"shard_pattern: shards are not consecutive in one folder: {texts[:3]}")
    return f"{heads.pop()}{{{numbers[0]}..{numbers[-1]}}}.tar"
