"""What the ``umt`` command modules share, declared once: argument types, the device / amp /
frames / views / size options and their resolution, stderr notes, and parsing helpers.

Torch-free: the parsers are built from it without importing torch (resolution imports it
inside the functions that need it)."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from umt.utils.cpu import usable_cores

__all__ = [
    "UmtParser",
    "add_amp",
    "add_classifier_sizes",
    "add_device",
    "add_evaluation_run",
    "add_num_frames",
    "add_qa_text_options",
    "add_size_options",
    "add_tokenizer",
    "count_at_least",
    "device_and_amp",
    "model_sizes",
    "no_subcommand",
    "noted_warnings",
    "qa_text_settings",
    "stderr_note",
    "views",
    "warnings_as_notes",
    "with_trailing_options",
]

Note = Callable[[str], None]


class UmtParser(argparse.ArgumentParser):
    """The parser of ``umt`` and its subcommands: an epilog may be given as ``epilog_factory``,
    a function called only when the help is shown (the training commands list the recipes,
    which takes reading them all)."""

    def __init__(
        self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog, self.epilog_factory = self.epilog_factory(), None
        return super().format_help()


def count_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_VIEWS = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def views(text: str) -> tuple[int, int]:
    """An argparse ``type``: ``CLIPSxCROPS`` such as ``4x3`` -> (4 temporal clips, 3 crops)."""
    match = _VIEWS.fullmatch(text)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(
            f"expected CLIPSxCROPS with positive counts, such as 4x3; got {text!r}"
        )
    return int(match[1]), int(match[2])


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: where the model runs."""
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")


def add_amp(p: argparse.ArgumentParser) -> None:
    """``--amp``: the autocast dtype of inference and evaluation."""
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="autocast dtype (auto: fp16 on CUDA as the official test, none on CPU)",
    )


def device_and_amp(args: argparse.Namespace) -> tuple[Any, Any]:
    """The torch device of ``--device`` and the autocast dtype of ``--amp`` (None: no
    autocast) on it."""
    from umt.utils.device import resolve_amp, resolve_device

    device = resolve_device(args.device)
    return device, resolve_amp(args.amp, device)


def add_num_frames(
    p: argparse.ArgumentParser,
    default: int | None = None,
    help: str = "frames (default: the checkpoint's)",  # noqa: A002 - argparse's own name
) -> None:
    """``--num-frames``: frames per clip, at least 1."""
    p.add_argument("--num-frames", type=count_at_least(1), default=default, help=help)


def add_classifier_sizes(p: argparse.ArgumentParser) -> None:
    """``--num-frames``, ``--input-size``, ``--num-heads``: the sizes of a video classifier
    (default: the checkpoint's config, else the official ones)."""
    p.add_argument(
        "--num-frames",
        type=count_at_least(1),
        default=None,
        help="frames per clip (default: the checkpoint's config, else the official 8)",
    )
    p.add_argument(
        "--input-size",
        type=count_at_least(1),
        default=None,
        help="input resolution / img_size (default: the checkpoint's config, else the official "
        "224)",
    )
    p.add_argument(
        "--num-heads",
        type=count_at_least(1),
        default=None,
        help="attention heads when the checkpoint does not store them (default: width / 64)",
    )


def add_evaluation_run(p: argparse.ArgumentParser, backend: bool = False) -> None:
    """How an evaluation runs: ``--workers`` (decoding processes: the usable cores, at most 4),
    ``--backend`` (the video decoder; with ``backend``), ``--device``, ``--amp``,
    ``--no-progress``."""
    p.add_argument(
        "--workers",
        type=count_at_least(0),
        default=min(usable_cores(), 4),
        help="decoding processes (default: the usable cores, at most 4)",
    )
    if backend:
        p.add_argument(
            "--backend", default="auto", choices=["auto", "pyav", "torchcodec", "decord"]
        )
    add_device(p)
    add_amp(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_tokenizer(p: argparse.ArgumentParser) -> None:
    """``--tokenizer``: the vocabulary of a video-text or QA model's text tower (as
    :func:`umt.evaluate.retrieval.resolve_tokenizer` finds it when not given)."""
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="PATH",
        help="vocab.txt / tokenizer.json (or their folder); default: beside the checkpoint, "
        "else the bert-base-uncased vocabulary",
    )


def add_qa_text_options(p: argparse.ArgumentParser) -> None:
    """How questions and answers are written and ranked (default: the checkpoint's ``qa.json``,
    else the official 128 / 25 / 5). Read back with :func:`qa_text_settings`."""
    p.add_argument("--k-test", type=count_at_least(1), default=None, help="re-ranked answers (128)")
    p.add_argument("--max-question-len", type=count_at_least(3), default=None, help="tokens (25)")
    p.add_argument("--max-answer-len", type=count_at_least(3), default=None, help="tokens (5)")


def qa_text_settings(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's QA settings with :func:`add_qa_text_options` given on the command line."""
    given = {
        "k_test": args.k_test,
        "question_max_length": args.max_question_len,
        "answer_max_length": args.max_answer_len,
    }
    return {**saved, **{k: v for k, v in given.items() if v is not None}}


def add_size_options(p: argparse.ArgumentParser) -> None:
    """The sizes an official multimodal or QA file does not store (as ``umt convert`` takes
    them); umt's own checkpoints store them. Read back with :func:`model_sizes`."""
    g = p.add_argument_group(
        "sizes an official file does not store (umt checkpoints keep theirs; assumed sizes are "
        "said on stderr)"
    )
    g.add_argument(
        "--num-heads",
        type=count_at_least(1),
        default=None,
        help="video attention heads (width / 64)",
    )
    g.add_argument(
        "--text-num-heads",
        type=count_at_least(1),
        default=None,
        help="text attention heads (width / 64)",
    )
    g.add_argument(
        "--img-size", type=count_at_least(1), default=None, help="input resolution (official: 224)"
    )


def model_sizes(args: argparse.Namespace) -> dict[str, int]:
    """The :func:`add_size_options` given on the command line."""
    names = ("num_heads", "text_num_heads", "img_size")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def stderr_note(command: str) -> Note:
    """A function printing ``umt COMMAND: MESSAGE`` on stderr."""

    def note(message: str) -> None:
        print(f"umt {command}: {message}", file=sys.stderr)

    return note


@contextmanager
def noted_warnings(note: Note) -> Iterator[None]:
    """Record the warnings raised inside (assumed sizes, ...) and, when the block ends without
    an error, note each as ``warning: MESSAGE``."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        yield
    for caught in said:
        note(f"warning: {caught.message}")


@contextmanager
def warnings_as_notes(note: Note) -> Iterator[None]:
    """Inside, every warning shown is noted as ``warning: MESSAGE`` (one line, no source)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        note(f"warning: {message}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def with_trailing_options(
    args: argparse.Namespace,
    add_options: Callable[[argparse.ArgumentParser], None],
    overrides: list[str],
) -> argparse.Namespace:
    """Options may also come after the overrides: parse the remainder again, intermixed."""
    again = argparse.ArgumentParser(prog=f"umt {args.command}", add_help=False)
    add_options(again)
    again.add_argument("overrides", nargs="*")
    extra = again.parse_intermixed_args(overrides)
    for key, value in vars(extra).items():
        if key != "overrides" and value != again.get_default(key):
            setattr(args, key, value)
    args.overrides = extra.overrides
    return args


def no_subcommand(parser: argparse.ArgumentParser) -> int:
    """A command group given without its subcommand: the help on stderr, exit code 2 (a usage
    error, as argparse's own), so scripts do not take it for success."""
    parser.print_help(sys.stderr)
    return 2
