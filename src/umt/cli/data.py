"""``umt data``: check annotation files, pack tar shards, write the synthetic set."""

from __future__ import annotations

import argparse
import sys

from umt.cli._common import no_subcommand

__all__ = ["add_data"]


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="check annotation files, pack them into tar shards, make the synthetic dataset"
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    chk = data_sub.add_parser(
        "check",
        help="decode every video of an annotation file; list the unreadable / too-short ones",
        description=(
            "Probe each video of the annotation files (or each video named), decode a training "
            "view, the test view and the last frames (--thorough: every frame). Exit status 1 "
            "when any video is bad, 2 on a usage error."
        ),
    )
    chk.add_argument(
        "list",
        nargs="+",
        metavar="LIST_OR_VIDEO",
        help="annotation files (.txt/.csv list, SSv2/video-text/image-text JSON) or videos "
        "(by their extension: checked themselves), one or more",
    )
    chk.add_argument(
        "--format", default="auto", choices=["auto", "list", "ssv2", "video_text", "image_text"]
    )
    chk.add_argument(
        "--root", default=None, help="prefix for relative paths (default: the list's folder)"
    )
    chk.add_argument("--num-frames", type=int, default=8)
    chk.add_argument(
        "--sampling",
        default="sparse",
        help="segments (pretraining), sparse (fine-tuning) or dense (default: sparse)",
    )
    chk.add_argument("--frame-stride", type=int, default=4)
    chk.add_argument("--min-frames", type=int, default=None, help="shortest usable video")
    chk.add_argument("--backend", default="pyav")
    chk.add_argument("--workers", type=int, default=4)
    chk.add_argument("--processes", action="store_true", help="use processes instead of threads")
    chk.add_argument("--no-progress", action="store_true")
    chk.add_argument(
        "--thorough", action="store_true", help="decode every frame of every video (slow)"
    )
    chk.set_defaults(handler=run_data_check)
    syn = data_sub.add_parser("synth", help="write the built-in synthetic dataset (mp4 + lists)")
    syn.add_argument("out", help="output folder")
    syn.add_argument("--train", type=int, default=1200, help="training clips (default 1200)")
    syn.add_argument("--val", type=int, default=600, help="validation clips (default 600)")
    syn.add_argument("--test", type=int, default=600, help="test clips (default 600)")
    syn.add_argument("--frames", type=int, default=8)
    syn.add_argument("--size", type=int, default=112)
    syn.add_argument("--fps", type=int, default=8)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--workers", type=int, default=None)
    syn.set_defaults(handler=run_data_synth)
    shd = data_sub.add_parser(
        "shards",
        help="pack the files of an annotation file into WebDataset tar shards",
        description=(
            "Write every video/image of LIST with its label and caption into OUT/PREFIX-000000.tar, "
            "... (at most --per-shard samples each) and print the brace pattern to train on. "
            "All files are checked first; nothing is written when one is missing."
        ),
    )
    shd.add_argument(
        "list", help="annotation file (.txt/.csv list, SSv2/video-text/image-text JSON)"
    )
    shd.add_argument("out", help="output folder (must not hold PREFIX-*.tar shards yet)")
    shd.add_argument("--per-shard", type=int, default=1000, metavar="N", help="samples per shard")
    shd.add_argument(
        "--root", default=None, help="prefix for relative paths (default: the list's folder)"
    )
    shd.add_argument(
        "--format", default="auto", choices=["auto", "list", "ssv2", "video_text", "image_text"]
    )
    shd.add_argument("--prefix", default="shard", help="shard file name prefix (default: shard)")
    shd.set_defaults(handler=run_data_shards)
    p.set_defaults(handler=lambda args: no_subcommand(p))


def run_data_check(args: argparse.Namespace) -> int:
    from umt.data.check import (
        CheckOptionError,
        check_annotations,
        format_report,
        validate_check_options,
    )

    try:
        validate_check_options(
            args.num_frames,
            args.sampling,
            args.frame_stride,
            args.min_frames,
            args.backend,
            args.workers,
        )
    except CheckOptionError as err:
        option = "--" + err.option.replace("_", "-")
        print(f"umt data check: error: {option}: {err.problem}", file=sys.stderr)
        return 2
    report = check_annotations(
        args.list,
        format=args.format,
        root=args.root,
        num_frames=args.num_frames,
        sampling=args.sampling,
        frame_stride=args.frame_stride,
        min_frames=args.min_frames,
        backend=args.backend,
        workers=args.workers,
        processes=args.processes,
        progress=not args.no_progress,
        thorough=args.thorough,
    )
    format_report(report, out=sys.stdout)
    return 0 if report.ok else 1


def run_data_synth(args: argparse.Namespace) -> int:
    from umt.data.synth import ensure_synthetic_dataset

    root = ensure_synthetic_dataset(
        args.out,
        train=args.train,
        val=args.val,
        test=args.test,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"synthetic dataset ready in {root}")
    return 0


def run_data_shards(args: argparse.Namespace) -> int:
    from umt.data.formats.annotations import load_annotations
    from umt.data.shards import shard_pattern, write_shards

    records = load_annotations(args.list, format=args.format, root=args.root)
    paths = write_shards(records, args.out, per_shard=args.per_shard, prefix=args.prefix)
    count = len(records)
    pattern = shard_pattern(paths)
    print(f"wrote {count} samples in {len(paths)} shard(s) to {args.out}")
    print(f"train on them with: data.train_list={pattern}")
    print(f"pretraining on shards also needs data.num_samples={count} (samples per epoch)")
    return 0
