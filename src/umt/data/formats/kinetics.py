"""Kinetics-style video lists: one video per line, ``path label``, ``path,label``, ``path`` or
(extracted frames, TSN style) ``folder num_frames label``; ``.txt``/``.csv``, header optional.

A file whose every line has a comma (or a ``.csv`` file with commas) is comma-separated (CSV
quoting allowed), so paths keep their spaces. In a space-separated list the last token is the
label (the last two for TSN lines) and the rest of the line, spaces kept, is the path.
"""

from __future__ import annotations

import csv
from pathlib import Path

from umt.data.formats.records import VideoRecord, is_int, resolve_path
from umt.errors import InputError
from umt.textfile import read_text

__all__ = ["read_kinetics_list"]


def _split_list_line(line: str, comma_separated: bool) -> tuple[str, list[str], bool]:
    """``(path, trailing fields, tsn)`` of one stripped list line; spaces inside the path kept.

    Comma-separated: CSV fields, the last one the label, the rest (re-joined with commas) the
    path. Space-separated: ``folder num_frames label`` when the last two tokens are integers
    (``tsn``), else the last token is the label and the rest of the line is the path.
    """
    if comma_separated:
        fields = [f.strip() for f in next(csv.reader([line]), [""])]
        if len(fields) == 1:
            return fields[0], [], False
        return ",".join(fields[:-1]), fields[-1:], False
    tokens = line.rsplit(None, 2)
    if len(tokens) == 3 and is_int(tokens[1]) and is_int(tokens[2]):
        return tokens[0], tokens[1:], True
    tokens = line.rsplit(None, 1)
    return tokens[0], tokens[1:], False


def read_kinetics_list(path: Path, root: Path) -> list[VideoRecord]:
    """The records of a video list, paths resolved against ``root``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation file not found")
    records = []
    lines = read_text(path).splitlines()
    data_lines = [
        (n, line.strip())
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    with_comma = sum("," in line for _, line in data_lines)
    comma_separated = with_comma > 0 and (
        with_comma == len(data_lines) or path.suffix.lower() == ".csv"
    )
    for pos, (lineno, line) in enumerate(data_lines):
        rel, rest, tsn = _split_list_line(line, comma_separated)
        if tsn:  # TSN frame-folder style: folder num_frames label
            records.append(
                VideoRecord(
                    resolve_path(rel, root), int(rest[1]), num_frames=int(rest[0]), listed=rel
                )
            )
            continue
        if not rest:
            records.append(VideoRecord(resolve_path(rel, root), listed=rel))
            continue
        if not is_int(rest[0]):
            if pos == 0:
                continue  # a header line
            raise InputError(f"{path}:{lineno}: label {rest[0]!r} is not an integer")
        records.append(VideoRecord(resolve_path(rel, root), int(rest[0]), listed=rel))
    return records
