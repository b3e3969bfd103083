"""How the ``umt`` command reports an error: a :class:`umt.errors.UmtError` or an OSError (a
user's or the machine's fault) as one line and an exit code; anything else is a bug and keeps
its traceback."""

from __future__ import annotations

import builtins
import re

from umt.errors import StoppedError, UmtError, error_class

__all__ = ["exit_code", "one_line", "stderr_line"]

_OS_ERROR_CODES = {
    **dict.fromkeys(
        ("FileNotFoundError", "FileExistsError", "IsADirectoryError", "NotADirectoryError"), 2
    ),
    "OSError": 1,
}
"""Exit codes of OSErrors (2: a path given wrong; 1: any other, such as no permission or a full
disk), by the name of the class or its nearest listed base."""
_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\s")
_ERRNO_TEXT = re.compile(r"\[Errno \d+\] (?P<strerror>[^:]+): '(?P<filename>.*)'$")


def _os_error_code(cls: type[BaseException]) -> int | None:
    return next(
        (_OS_ERROR_CODES[c.__name__] for c in cls.__mro__ if c.__name__ in _OS_ERROR_CODES), None
    )


def _code_of_class(cls: type[BaseException]) -> int | None:
    if issubclass(cls, UmtError):
        return cls.exit_code
    if issubclass(cls, OSError):
        return _os_error_code(cls)
    return None


def _worker_class(name: str) -> type[BaseException] | None:
    """The error class a DataLoader worker raised, from its name: a UmtError or an OSError."""
    found = error_class(name)
    if found is not None:
        return found
    cls = getattr(builtins, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, OSError) else None


def exit_code(err: BaseException) -> int | None:
    """The exit code of an error a user or the machine caused: a UmtError's own, an OSError's
    (2: a missing or misplaced path, 1: any other); None for a bug (let it raise). An error a
    DataLoader worker raised reaches here as "Caught X in DataLoader worker process N" (a
    RuntimeError when torch cannot rebuild X) and is judged by X."""
    caught = _WORKER_ERROR.match(str(err.args[0])) if err.args else None
    if caught is not None:
        cls = _worker_class(caught.group(1))
        if cls is not None:
            return _code_of_class(cls)
    if isinstance(err, UmtError):
        return err.exit_code
    return _code_of_class(type(err))


def _worker_error_text(err: BaseException) -> str | None:
    """The original message of an exception a DataLoader worker raised (torch re-raises it in
    the main process with "Caught X in DataLoader worker process N. Original Traceback ..." as
    its message); None when ``err`` did not come from a worker."""
    text = str(err.args[0]) if err.args else ""
    if not _WORKER_ERROR.match(text):
        return None
    block = text.rsplit("Traceback (most recent call last):", 1)[-1].splitlines()
    rest = [line for line in block if line.strip()]
    start = next((i for i, line in enumerate(rest) if not line[:1].isspace()), None)
    if start is None:
        return None
    name, _, message = "\n".join(rest[start:]).partition(": ")
    message = message.strip()
    errno_text = _ERRNO_TEXT.match(message)
    if errno_text:  # an OSError: "FILE: reason", as for one raised in this process
        message = f"{errno_text['filename']}: {errno_text['strerror']}"
    return message or name.rsplit(".", 1)[-1]


def one_line(err: BaseException) -> str:
    """The error as one printable line (control characters escaped); an error raised in a
    DataLoader worker reads as it would have without workers."""
    text = str(err)
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    text = _worker_error_text(err) or text
    text = " ".join(text.split()) or type(err).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def stderr_line(command: str, err: BaseException) -> str:
    """What ``umt COMMAND`` prints for ``err``: ``umt COMMAND: MESSAGE`` when it was stopped
    (Ctrl-C / SIGTERM), else ``umt COMMAND: error: MESSAGE``."""
    if isinstance(err, StoppedError):
        return f"umt {command}: {one_line(err)}"
    return f"umt {command}: error: {one_line(err)}"
