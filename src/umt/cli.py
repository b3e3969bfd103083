"""The ``umt`` command. Each subcommand parses its arguments and calls one library function.

Heavy imports happen inside the handlers so that ``umt --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys


# --------------------------------------------------------------------------- convert
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official UMT / CLIP checkpoint into umt's format (safetensors + config.json)",
        description=(
            "Recognise a checkpoint by its tensor names (official UMT pretraining, fine-tuning or "
            "multimodal files; OpenAI / open_clip / HuggingFace CLIP), convert it and write "
            "OUT/model.safetensors and OUT/config.json. Nothing in IN is unpickled beyond tensors."
        ),
    )
    p.add_argument("input", help="checkpoint file (.pth/.pt/.bin/.safetensors)")
    p.add_argument("output", help="output folder")
    p.add_argument(
        "--part",
        choices=["auto", "student", "teacher"],
        default="auto",
        help="for multimodal files holding both, which model to write (default: the student)",
    )
    p.add_argument("--num-frames", type=int, default=None, help="frames the model is meant for")
    p.add_argument(
        "--img-size", type=int, default=None, help="input resolution the model is meant for"
    )
    p.add_argument(
        "--num-heads", type=int, default=None, help="attention heads (default: width / 64)"
    )
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from umt.models.checkpoints import convert_checkpoint

    report = convert_checkpoint(
        args.input,
        args.output,
        part=args.part,
        num_frames=args.num_frames,
        img_size=args.img_size,
        num_heads=args.num_heads,
    )
    print(report)
    return 0


# --------------------------------------------------------------------------- pretrain
_PRETRAIN_EPILOG = """\
recipes (packaged; or give a YAML file path):
{recipes}

overrides: any config key as section.key=value (YAML values), e.g.
  umt pretrain optim.lr=3e-4 data.num_frames=4 train.batch_size=16
  umt pretrain --config umt-b16-k710 data.train_list=k710/train.csv data.root=/videos
  umt pretrain --config umt-b16-k710 data.num_samples=660000 \\
      data.train_list='k710/shard-{{000000..000659}}.tar'   # tar shards: see umt data shards
  umt pretrain --config my_recipe.yaml train.max_steps=100 --output-dir runs/try1
  umt pretrain --resume auto                 # continue the latest run of the recipe
  umt pretrain --output-dir runs/try1 --overwrite   # replace the run in that folder
  umt pretrain --print-config                # show every key and its value, then exit

many GPUs / nodes: launch the same command with torchrun, e.g.
  torchrun --nproc_per_node 8 -m umt pretrain --config umt-b16-k710 ...
(DDP by default; dist.strategy=fsdp shards large models with FSDP2.)

outputs in the run folder: config.yaml, metrics.jsonl, loss_curve.png,
checkpoints/step_NNNNNN/ (safetensors + JSON, keep-last-N; each loads with umt.load_checkpoint),
tensorboard/ when installed. A new run never reuses a folder that holds a run (--resume or
--overwrite say what to do with it).

SIGTERM or Ctrl-C: the run finishes its step, writes a checkpoint and exits with 143 / 130
(a second Ctrl-C stops at once). Exit 1: data or environment failure; 2: bad arguments or
config; 3: the loss diverged.
"""


def _pretrain_options(p: argparse.ArgumentParser) -> None:
    from umt.config import DEFAULT_RECIPE

    p.add_argument(
        "--config",
        default=None,
        metavar="FILE|RECIPE",
        help=f"YAML file or packaged recipe name (default: {DEFAULT_RECIPE})",
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="PATH",
        help="CLIP teacher weights (any format umt convert knows); sets teacher.weights",
    )
    p.add_argument("--output-dir", default=None, help="run folder (default: runs/<recipe>-<time>)")
    p.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="'auto': latest complete checkpoint of the run; or a checkpoint / run folder",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the previous run's files in an existing --output-dir",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _with_trailing_options(
    args: argparse.Namespace, add_options, overrides: list[str]
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


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    from umt.config import DEFAULT_RECIPE, list_recipes

    p = sub.add_parser(
        "pretrain",
        help="stage-1 pretraining (align a video student with a frozen CLIP teacher)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Stage-1 Unmasked Teacher pretraining: a frozen CLIP teacher picks the tokens it "
            "attends to (semantic masking), the student sees only those kept tokens and its "
            "last K layers are aligned with the teacher's (UMA loss, 2 - 2cos).\n\n"
            f"With no arguments it runs the built-in default, '{DEFAULT_RECIPE}': a tiny model "
            "on a synthetic clip set generated on first use (under $UMT_HOME or "
            "~/.cache/umt), a few minutes on a laptop CPU. Its teacher is randomly "
            "initialised unless you give real CLIP weights with --teacher, so the falling "
            "loss shows the machinery works, not that the student learns useful features."
        ),
        epilog=_PRETRAIN_EPILOG.format(
            recipes="\n".join(
                f"  {r}{'  (default)' if r == DEFAULT_RECIPE else ''}" for r in list_recipes()
            )
        ),
    )
    _pretrain_options(p)
    p.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides"
    )
    p.set_defaults(handler=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from umt.config import load_config

    args = _with_trailing_options(args, _pretrain_options, list(args.overrides))
    overrides = list(args.overrides)
    if args.teacher is not None:
        overrides.append(f"teacher.weights={args.teacher}")
    if args.output_dir is not None:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.resume is not None:
        overrides.append(f"train.resume={args.resume}")
    if args.overwrite:
        overrides.append("train.overwrite=true")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from umt.train.loop import main_entry
    from umt.train.tasks import Stage1Task

    return main_entry(cfg, Stage1Task, "pretrain")


# --------------------------------------------------------------------------- visualize-mask
def _visualize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default=None, metavar="PATH", help="CLIP teacher weights")
    p.add_argument("--config", default=None, metavar="FILE|RECIPE", help="recipe for sizes")
    p.add_argument("--mask-ratio", type=float, default=None, help="default: the recipe's")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask draw")
    p.add_argument("-o", "--output", default="mask.png", help="PNG to write (default: mask.png)")


def _add_visualize_mask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize-mask",
        help="draw a clip's frames with the tokens semantic masking keeps",
        description=(
            "Run the teacher on one clip, draw the kept tokens of the semantic mask over its "
            "frames (dropped tokens dimmed) with the teacher's class-token attention below, and "
            "write a PNG. Default input: the first clip of the synthetic set; default teacher: "
            "the tiny recipe's, randomly initialised (use --teacher for real CLIP weights)."
        ),
    )
    p.add_argument("video", nargs="?", default=None, help="video file (default: synthetic clip 0)")
    _visualize_options(p)
    p.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides"
    )
    p.set_defaults(handler=_run_visualize_mask)


def _run_visualize_mask(args: argparse.Namespace) -> int:
    from pathlib import Path

    from umt.config import load_config
    from umt.train.visualize import visualize_mask

    args = _with_trailing_options(args, _visualize_options, list(args.overrides))
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


# --------------------------------------------------------------------------- data
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data", help="check annotation files, pack them into tar shards, make the synthetic dataset"
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    chk = data_sub.add_parser(
        "check",
        help="decode every video of an annotation file; list the unreadable / too-short ones",
        description=(
            "Probe each video, decode a training view, the test view and the last frames "
            "(--thorough: every frame). Exit status 1 when any video is bad, 2 on a usage error."
        ),
    )
    chk.add_argument(
        "list", help="annotation file (.txt/.csv list, SSv2/video-text/image-text JSON)"
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
    chk.set_defaults(handler=_run_data_check)
    syn = data_sub.add_parser("synth", help="write the built-in synthetic dataset (mp4 + lists)")
    syn.add_argument("out", help="output folder")
    syn.add_argument("--videos", type=int, default=300)
    syn.add_argument("--frames", type=int, default=16)
    syn.add_argument("--size", type=int, default=64)
    syn.add_argument("--fps", type=int, default=8)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--workers", type=int, default=None)
    syn.set_defaults(handler=_run_data_synth)
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
    shd.set_defaults(handler=_run_data_shards)
    p.set_defaults(handler=lambda args: (p.print_help(), 0)[1])


def _run_data_check(args: argparse.Namespace) -> int:
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


def _run_data_synth(args: argparse.Namespace) -> int:
    from umt.data.synth import ensure_synthetic_dataset

    root = ensure_synthetic_dataset(
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        workers=args.workers,
    )
    print(f"synthetic dataset ready in {root}")
    return 0


def _run_data_shards(args: argparse.Namespace) -> int:
    from umt.data.datasets import load_annotations
    from umt.data.shards import shard_pattern, write_shards

    records = load_annotations(args.list, format=args.format, root=args.root)
    paths = write_shards(records, args.out, per_shard=args.per_shard, prefix=args.prefix)
    count = len(records)
    pattern = shard_pattern(paths)
    print(f"wrote {count} samples in {len(paths)} shard(s) to {args.out}")
    print(f"train on them with: data.train_list={pattern}")
    print(f"pretraining on shards also needs data.num_samples={count} (samples per epoch)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umt",
        description="Unmasked Teacher: train and use training-efficient video foundation models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_convert(sub)
    _add_data(sub)
    _add_pretrain(sub)
    _add_visualize_mask(sub)
    return parser


def _error_exit_code(err: BaseException) -> int | None:
    """Exit code of an error a user or the environment caused (None: a bug, let it raise).
    2: bad arguments, config or input files; 1: data or environment failures."""
    from umt.data.decode import VideoDecodeError
    from umt.data.faults import TooManyFaultsError

    if isinstance(err, (TooManyFaultsError, VideoDecodeError, PermissionError)):
        return 1
    if isinstance(err, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)):
        return 2
    if isinstance(err, (ValueError, KeyError)):
        return 2
    if isinstance(err, OSError) or type(err).__name__ in ("RunError", "RunFolderError"):
        return 1
    return None


def _one_line(err: BaseException) -> str:
    """The error as one printable line (control characters escaped)."""
    text = str(err) if not isinstance(err, KeyError) else str(err.args[0] if err.args else err)
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    text = " ".join(text.split()) or type(err).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    try:
        code = int(args.handler(args) or 0)
    except Exception as err:  # noqa: BLE001 - user and environment errors: one line, no traceback
        code = _error_exit_code(err)
        if code is None:
            raise
        print(f"umt {args.command}: error: {_one_line(err)}", file=sys.stderr)
    if args.command == "pretrain" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker: end without the interpreter teardown that can abort gloo runs.
        from umt.train.distributed import exit_process

        exit_process(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
