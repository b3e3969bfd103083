"""``umt pretrain`` and ``umt finetune``: the training commands (a recipe, overrides, the loop)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from umt.cli._common import with_trailing_options

__all__ = ["add_train_command"]

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
{extra_outputs}tensorboard/ and wandb/ (train.loggers=[tensorboard,wandb]; default
[tensorboard]; W&B offline unless WANDB_MODE or an API key). A new run never reuses a folder
that holds a run (--resume or --overwrite say what to do with it).

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


def _train_options(task: str) -> Callable[[argparse.ArgumentParser], None]:
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
                metavar="PATH|NAME",
                help="CLIP teacher weights (any format umt convert knows), a released stage-2 "
                "checkpoint (its teacher; 'umt models'), or 'builtin' (the synthetic-world "
                "teacher); sets teacher.weights",
            )
        p.add_argument(
            "--init",
            default=None,
            metavar="PATH|NAME|scratch|auto",
            help=(
                "stage 2: the stage-1 checkpoint its video encoder starts from"
                if task == "pretrain"
                else "the checkpoint to fine-tune (stage-1, stage-2 or fine-tuned; official or "
                "umt's)"
            )
            + ", a released name ('umt models'), 'scratch', or 'auto' (the latest umt "
            "pretrain run); sets model.init",
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


def add_train_command(sub: argparse._SubParsersAction, task: str) -> None:
    """Register ``umt pretrain`` (``task="pretrain"``) or ``umt finetune``."""
    from umt.config import DEFAULT_FINETUNE_RECIPE, DEFAULT_RECIPE, recipe_names

    default = DEFAULT_FINETUNE_RECIPE if task == "finetune" else DEFAULT_RECIPE
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
        epilog_factory=lambda: _TRAIN_EPILOG.format(
            recipes="\n".join(
                f"  {r}{'  (default)' if r == default else ''}" for r in recipe_names(task)
            ),
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
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from umt.config import load_config

    task = args.command
    args = with_trailing_options(args, _train_options(task), list(args.overrides))
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
