"""The ``umt`` command as a package: help without torch, errors a user or the machine causes as
one line and their exit code, any other exception as a bug with its traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from umt.cli import build_parser, main
from umt.cli._errors import exit_code, one_line
from umt.errors import DivergenceError, InputError, MachineError, StoppedError


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def test_import_umt_and_building_the_parser_leave_torch_out():
    done = _run_python(
        """
        import sys
        import umt
        from umt.cli import build_parser
        build_parser()
        print("torch" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "classification", "--help"]])
def test_help_leaves_torch_out(argv):
    done = _run_python(
        f"""
        import sys
        from umt.cli import main
        try:
            main({argv!r})
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        print("torch" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_the_public_names_load_on_first_use():
    import umt

    assert callable(umt.create_model) and callable(umt.load_checkpoint)
    assert "load_checkpoint" in dir(umt)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        umt.not_a_name  # noqa: B018


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(
        "ask classify convert data demo embed evaluate finetune models pretrain search serve "
        "teacher visualize-mask".split()
    )


@pytest.mark.parametrize(
    ("err", "code"),
    [
        (InputError("bad"), 2),
        (MachineError("disk"), 1),
        (DivergenceError("nan"), 3),
        (StoppedError("stopped", 15), 143),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.mp4"), 2),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "x"), 2),
        (PermissionError(errno.EACCES, "Permission denied", "x"), 1),
        (OSError(errno.ENOSPC, "No space left on device"), 1),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
        (TypeError("a bug"), None),
        (RuntimeError("a bug"), None),
    ],
)
def test_exit_codes(err, code):
    assert exit_code(err) == code


def test_worker_errors_are_judged_by_the_class_the_worker_raised():
    import umt.data.check  # noqa: F401 - the classes a worker raised are imported where it ran
    import umt.data.decode  # noqa: F401

    def worker(name: str, message: str) -> RuntimeError:
        return RuntimeError(
            f"Caught {name} in DataLoader worker process 0.\nOriginal Traceback (most recent "
            f'call last):\n  File "x.py", line 1, in f\n    g()\n{name}: {message}\n'
        )

    assert exit_code(worker("VideoDecodeError", "clip.mp4: bad")) == 1
    assert exit_code(worker("CheckOptionError", "--num-frames: bad")) == 2
    assert exit_code(worker("PermissionError", "[Errno 13] Permission denied: 'a'")) == 1
    assert one_line(worker("PermissionError", "[Errno 13] Permission denied: 'a'")) == (
        "a: Permission denied"
    )
    assert exit_code(worker("ZeroDivisionError", "division by zero")) is None


def _raising(error: BaseException):
    def handler(args):
        raise error

    return handler


def test_a_user_error_is_one_line_and_its_code(monkeypatch, capsys):
    import umt.cli.convert as convert

    monkeypatch.setattr(convert, "run_convert", _raising(InputError("x.pth: not\na checkpoint")))
    assert main(["convert", "x.pth", "out"]) == 2
    assert capsys.readouterr().err == "umt convert: error: x.pth: not a checkpoint\n"


def test_a_stop_is_one_line_without_error(monkeypatch, capsys):
    import umt.cli.convert as convert

    monkeypatch.setattr(convert, "run_convert", _raising(StoppedError("stopped; kept", 2)))
    assert main(["convert", "x.pth", "out"]) == 130
    assert capsys.readouterr().err == "umt convert: stopped; kept\n"


@pytest.mark.parametrize("bug", [ValueError("bug"), KeyError("bug"), AttributeError("bug")])
def test_a_bug_keeps_its_traceback(monkeypatch, bug):
    import umt.cli.convert as convert

    monkeypatch.setattr(convert, "run_convert", _raising(bug))
    with pytest.raises(type(bug)):
        main(["convert", "x.pth", "out"])
