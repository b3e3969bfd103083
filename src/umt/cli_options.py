"""Command-line pieces shared by the ``umt`` command modules (:mod:`umt.cli`, :mod:`umt.cli_qa`):
argument types and option groups. A leaf of the CLI: it imports neither."""

from __future__ import annotations

import argparse

__all__ = ["count_at_least", "model_sizes", "size_options"]


def count_at_least(minimum: int):
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


def size_options(p: argparse.ArgumentParser) -> None:
    """The sizes an official multimodal or QA file does not store (as ``umt convert`` takes
    them); umt's own checkpoints store them."""
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
    """The :func:`size_options` given on the command line."""
    names = ("num_heads", "text_num_heads", "img_size")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
