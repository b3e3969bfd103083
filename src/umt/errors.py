"""The errors a user or the machine causes, each carrying its exit code.

The command line turns a :class:`UmtError` into one line on stderr and its ``exit_code``; any
other exception is a bug and keeps its traceback. The subclasses also derive from the built-in
type a library caller would catch (``ValueError`` for bad input, ``RuntimeError`` for the run or
the machine), so ``except ValueError`` keeps working.

Exit codes: 2 a bad argument, config or input file; 1 the data or the machine (unreadable data,
a full disk, an unwritable folder); 3 training diverged; 130 / 143 stopped by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = [
    "DivergenceError",
    "InputError",
    "MachineError",
    "StoppedError",
    "UmtError",
    "error_class",
]


class UmtError(Exception):
    """An error a user or the machine caused; the message says what and what to do."""

    exit_code: int = 1


class InputError(UmtError, ValueError):
    """A bad argument, config value or input file (exit code 2); the message names it."""

    exit_code = 2


class MachineError(UmtError, RuntimeError):
    """The data or the machine failed the run: unreadable data, a full disk, an unwritable
    folder, an unusable checkpoint (exit code 1)."""

    exit_code = 1


class DivergenceError(UmtError, RuntimeError):
    """Training diverged (a NaN or infinite loss); exit code 3."""

    exit_code = 3


class StoppedError(UmtError, RuntimeError):
    """Ctrl-C or SIGTERM stopped the work; the message says what is kept. Exit code 130 / 143."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 130 if signum == signal.SIGINT else 143

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker process (``umt demo --jobs``), it reaches the parent pickled.
        return type(self), (str(self), self.signum)


def error_class(name: str) -> type[UmtError] | None:
    """The :class:`UmtError` subclass called ``name`` (an error a DataLoader worker raised
    reaches the main process as text naming its class), or None."""
    todo: list[type[UmtError]] = [UmtError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None
