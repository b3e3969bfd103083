"""The ``umt`` command: build the parser from the command modules, parse, dispatch.

One module per command group registers its subcommands (:mod:`.convert`, :mod:`.data`,
:mod:`.demo`, :mod:`.evaluate`, :mod:`.infer`, :mod:`.models`, :mod:`.serve`, :mod:`.teacher`,
:mod:`.train`, :mod:`.visualize`); the options they share are declared once in :mod:`._common`.
Building the parser imports no torch: each handler imports what it runs. An error a user or the machine
caused (:class:`umt.errors.UmtError`, an OSError) ends as one line on stderr and its exit code
(:mod:`._errors`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

from umt.cli._common import UmtParser, no_subcommand
from umt.cli._errors import exit_code, stderr_line
from umt.cli.convert import add_convert
from umt.cli.data import add_data
from umt.cli.demo import add_demo
from umt.cli.evaluate import add_evaluate
from umt.cli.infer import add_ask, add_classify, add_embed, add_search
from umt.cli.models import add_models
from umt.cli.serve import add_serve
from umt.cli.teacher import add_teacher
from umt.cli.train import add_train_command
from umt.cli.visualize import add_visualize_mask

__all__ = ["build_parser", "main"]


def build_parser() -> UmtParser:
    """The ``umt`` parser with every subcommand; each sets ``handler`` (args -> exit code)."""
    parser = UmtParser(
        prog="umt",
        description="Unmasked Teacher: train and use training-efficient video foundation models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_ask(sub)
    add_classify(sub)
    add_convert(sub)
    add_data(sub)
    add_demo(sub)
    add_embed(sub)
    add_evaluate(sub)
    add_train_command(sub, "finetune")
    add_models(sub)
    add_train_command(sub, "pretrain")
    add_search(sub)
    add_serve(sub)
    add_teacher(sub)
    add_visualize_mask(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``umt ARGV`` (default: ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "handler", None) is None:
        return no_subcommand(parser)
    try:
        code = int(args.handler(args) or 0)
    except Exception as err:
        known = exit_code(err)
        if known is None:
            raise  # a bug: its traceback is what a report needs
        print(stderr_line(args.command, err), file=sys.stderr)
        code = known
    if args.command in ("pretrain", "finetune") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker: end without the interpreter teardown that can abort gloo runs.
        from umt.train.distributed import exit_process

        exit_process(code)
    return code
