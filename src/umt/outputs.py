"""Check an output path before the work that fills it.

An evaluation or an embedding can take hours; a predictions file or an index folder that cannot
be written must be refused before it starts, in one line naming the path and what to do, not
after it ends (the scores thrown away) nor as a bare "File exists". A leaf (nothing of umt, no
torch): every command and library function that writes a user-chosen path uses it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from umt.errors import InputError

__all__ = ["OutputPathError", "check_writable"]


class OutputPathError(InputError):
    """An output path that cannot be written (a ValueError: a bad argument, exit code 2)."""


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def check_writable(
    path: str | os.PathLike, what: str = "output file", folder: bool = False
) -> Path:
    """Refuse (:class:`OutputPathError`, one line naming ``path`` and the remedy) an output
    that cannot be written, before any work; returns ``path`` as a :class:`Path`.

    ``what`` names the output in the message (``"predictions file"``, ``"index"``).
    ``folder``: ``path`` is a folder to write into (made when missing), else a file (its folder
    made when missing). Refused: a path under a regular file, a file where a folder is wanted
    or the reverse, a folder that cannot be made or written (read-only file system, no
    permission).
    """
    path = Path(path)
    where = path if folder else path.parent
    if folder and path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file, not a folder; choose a folder for the {what}")
    if not folder and path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file path for the {what}")
    blocker = _file_in_the_way(where)
    if blocker is not None:
        raise OutputPathError(
            f"{path}: cannot write the {what}: {blocker} is a file, not a folder; "
            "choose another path"
        )
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(
            f"{path}: cannot create the folder {where} for the {what} ({err.strerror or err}); "
            "choose a writable path"
        ) from None
    # Write something, rather than ask os.access: it answers from the permission bits, which
    # root passes everywhere, while a pseudo file system (/proc, /sys) or an NFS export that
    # squashes root refuses the write all the same. An existing file is opened for appending
    # (its bytes untouched); else an empty file is made and removed beside it.
    try:
        if path.is_file():
            with path.open("ab"):
                pass
        else:
            fd, probe = tempfile.mkstemp(prefix=".umt-write-check-", dir=where)
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise OutputPathError(
            f"{path}: cannot write the {what} here ({err.strerror or err}); choose a writable path"
        ) from None
    return path
