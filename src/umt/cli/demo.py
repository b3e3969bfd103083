"""``umt demo``: the paper's claim measured on the synthetic set."""

from __future__ import annotations

import argparse

from umt.errors import InputError

__all__ = ["add_demo"]


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="measure the paper's claim on the synthetic set: UMT vs random masking vs VideoMAE "
        "vs no pretraining at equal compute",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "synthetic videos -> built-in teacher -> pretraining with (a) UMT attention masking, "
            "(b) UMT random masking, (c) VideoMAE, (d) none, at the same pretraining FLOPs (UMT "
            "and VideoMAE also at a third and two thirds of it) -> the same fine-tuning for "
            "each, over several seeds; each of the paper's claims judged against the seed "
            "spread. Writes demo.md (tables and findings), demo.json and demo.png (probe "
            "accuracy vs pretraining compute, fine-tuned accuracy) to the output folder and "
            "prints the tables. About 20 minutes on 2 CPU cores; --quick (one seed, budgets "
            "1/2 and 1 of 180 steps) under 5."
        ),
    )
    p.add_argument("--quick", action="store_true", help="one seed, a smaller budget, two budgets")
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
        help="pretraining compute, in steps of UMT with attention masking (default 360; quick 180)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        metavar="N",
        help="fine-tuning epochs of 30 steps (default 16; quick 8)",
    )
    p.add_argument(
        "--teacher-steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps of the built-in teacher (default: its recipe's 1000)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="runs at a time, each in its own process with cores/N threads (default: one per "
        "CPU core, at most 4; 1: one after the other in this process). The numbers depend "
        "slightly on the threads per run",
    )
    p.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from umt.train.demo import DemoSettings, default_jobs, findings, format_table, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    for flag, value in (
        ("--seeds", args.seeds),
        ("--budget-steps", args.budget_steps),
        ("--finetune-epochs", args.finetune_epochs),
        ("--teacher-steps", args.teacher_steps),
        ("--jobs", args.jobs),
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
    jobs = args.jobs if args.jobs is not None else default_jobs()
    print(
        f"umt demo: {'quick, ' if args.quick else ''}seeds {list(settings.seeds)}, "
        f"{jobs} run(s) at a time -> {out}"
    )
    result = run_demo(out, settings, say=lambda m: print(m, flush=True), jobs=jobs)
    print()
    print(format_table(result), end="")
    print("\n".join(findings(result)))
    print(f"table: {out / 'demo.md'}  plot: {out / 'demo.png'}  ({result.wall_seconds:.0f}s)")
    return 0
