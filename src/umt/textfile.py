"""Read a user's text file (lists, captions, labels) as UTF-8, and say where it is not.

A file that does not decode is refused in one line naming the file, the line and the byte,
and what to do (save it as UTF-8), instead of Python's bare "'utf-8' codec can't decode byte
0xff in position N". A leaf (no torch, nothing of umt): every reader of user text files,
the torch-free ones included, uses it.
"""

from __future__ import annotations

import os
from pathlib import Path

from umt.errors import InputError

__all__ = ["NotUtf8Error", "read_text"]


class NotUtf8Error(InputError):
    """A text file that is not UTF-8 (a ValueError: a bad input file, exit code 2)."""


def read_text(path: str | os.PathLike, newline: str | None = None) -> str:
    """The text of ``path`` decoded as UTF-8 (a leading byte-order mark dropped).

    ``newline=None`` translates ``\\r\\n`` and ``\\r`` to ``\\n`` as :meth:`Path.read_text`
    does; ``newline=""`` keeps line endings as they are (for :mod:`csv`). Raises
    :class:`NotUtf8Error` naming the file, line and column of the first undecodable byte.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise NotUtf8Error(
            f"{path}: line {line}, column {column}: byte 0x{data[start]:02x} is not UTF-8 text; "
            "save the file as UTF-8"
        ) from None
    if newline is None:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
