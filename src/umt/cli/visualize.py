"""``umt visualize-mask``: a clip with the tokens semantic masking keeps."""

from __future__ import annotations

import argparse

from umt.cli._common import with_trailing_options

__all__ = ["add_visualize_mask"]


def _visualize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--teacher",
        default=None,
        metavar="PATH|NAME",
        help="CLIP teacher weights, or a released stage-2 checkpoint (its teacher)",
    )
    p.add_argument("--config", default=None, metavar="FILE|RECIPE", help="recipe for sizes")
    p.add_argument("--mask-ratio", type=float, default=None, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask draw")
    p.add_argument("-o", "--output", default="mask.png", help="PNG to write (default: mask.png)")


def add_visualize_mask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize-mask",
        help="draw a clip's frames with the tokens semantic masking keeps",
        description=(
            "Run the teacher on one clip, draw the kept tokens of the semantic mask over its "
            "frames (dropped tokens dimmed) with the teacher's class-token attention below, and "
            "write a PNG. Default input: the first clip of the synthetic set; default teacher: "
            "the tiny recipe's built-in one (trained first if not cached; --teacher for real "
            "CLIP weights)."
        ),
    )
    p.add_argument("video", nargs="?", default=None, help="video file (default: synthetic clip 0)")
    _visualize_options(p)
    p.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides"
    )
    p.set_defaults(handler=run_visualize_mask)


def run_visualize_mask(args: argparse.Namespace) -> int:
    from pathlib import Path

    from umt.config import load_config
    from umt.train.visualize import visualize_mask

    args = with_trailing_options(args, _visualize_options, list(args.overrides))
    if args.video is not None and "=" in args.video and not Path(args.video).exists():
        args.overrides.insert(0, args.video)  # an override, not a video path
        args.video = None
    overrides = list(args.overrides)
    if args.teacher is not None:
        overrides.append(f"teacher.weights={args.teacher}")
    if args.mask_ratio is not None:
        overrides.append(f"mask.ratio={args.mask_ratio}")
    cfg = load_config(args.config, overrides)
    out = visualize_mask(cfg, video=args.video, output=args.output, seed=args.seed)
    print(f"wrote {out}")
    return 0
