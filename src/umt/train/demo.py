"""``umt demo``: the paper's central claim, measured on the built-in synthetic set.

synthetic videos -> built-in teacher -> pretraining with

  (a) UMT, attention (semantic) masking  (b) UMT, random masking
  (c) VideoMAE (tube 0.9, pixel targets) (d) no pretraining

at the same pretraining compute (FLOPs of one training step, counted by torch's
``FlopCounterMode``, times the steps; UMT's count includes its teacher's forward pass, VideoMAE's
its decoder), then the same fine-tuning of each, for several seeds. Every number comes from the
run itself; a result that disagrees with the paper is reported as measured.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from umt.errors import InputError, StoppedError

STEPS_PER_EPOCH = 30  # the synthetic set: 240 training clips / batch 8


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    recipe: str | None  # pretraining recipe; None: no pretraining
    overrides: tuple[str, ...] = ()


VARIANTS = (
    Variant(
        "umt-attention", "UMT, attention masking", "umt-tiny-synthetic", ("mask.kind=attention",)
    ),
    Variant("umt-random", "UMT, random masking", "umt-tiny-synthetic", ("mask.kind=random",)),
    Variant("videomae", "VideoMAE, tube masking 0.9", "videomae-tiny-synthetic"),
    Variant("none", "no pretraining", None),
)


@dataclass
class DemoSettings:
    """The budget of one demo. ``budget_steps``: pretraining compute, in steps of (a) (the
    default ``umt pretrain`` runs 360); the other objectives get the steps that cost the same
    FLOPs. ``finetune_epochs`` of 30 steps for every variant."""

    seeds: tuple[int, ...] = (0, 1, 2)
    budget_steps: int = 360
    finetune_epochs: int = 6
    test_views: str = "2x3"
    teacher_steps: int | None = None  # the built-in teacher's training steps (None: recipe's)

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(seeds=(0,), budget_steps=120, finetune_epochs=4)


@dataclass
class RunRecord:
    variant: str
    seed: int
    pretrain_steps: int = 0
    pretrain_flops: float = 0.0
    pretrain_seconds: float = 0.0
    probe_acc: float | None = None  # k-NN on frozen features
    linear_probe_acc: float | None = None
    finetune_top1: float | None = None  # fraction
    finetune_seconds: float = 0.0


@dataclass
class DemoResult:
    settings: dict[str, Any]
    teacher: str
    teacher_zero_shot: dict[str, Any]
    step_flops: dict[str, float]
    runs: list[RunRecord] = field(default_factory=list)
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = summarise(self)
        return d


# --------------------------------------------------------------------------- compute
def step_flops(cfg: Any) -> float:
    """FLOPs of one optimizer step of ``cfg``'s task (forward and backward of one batch, the
    frozen teacher's forward included), counted by ``torch.utils.flop_counter`` with the math
    attention kernel so that attention is counted too."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from umt.train.distributed import DistInfo
    from umt.train.tasks import task_class
    from umt.train.tasks.base import RunContext

    task = task_class(cfg.task)(cfg, RunContext(DistInfo()))
    task.check()
    dataset = task.build_data()
    items = [dataset[(0, i)] for i in range(cfg.train.batch_size)]
    batch = task.to_device(task.collate()(items))
    model = task.build_model()
    model.train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        task.loss(model, batch, 0).backward()
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------- runs
def _common(out: Path, seed: int) -> list[str]:
    return [
        f"train.output_dir={out}",
        "train.resume=auto",  # a demo continued after a stop continues its interrupted run
        f"train.seed={seed}",
        "train.progress=false",
        "train.plot=false",
        "train.loggers=[]",
        "train.keep_last=1",
        "train.checkpoint_every=100000",
        "train.log_every=1000",
    ]


def pretrain_config(
    variant: Variant, steps: int, seed: int, out: Path, teacher_steps: int | None = None
) -> Any:
    from umt.config import load_config

    epochs = math.ceil(steps / STEPS_PER_EPOCH)
    teacher = []
    if teacher_steps is not None and variant.key.startswith("umt"):
        teacher = [f"teacher.builtin_steps={teacher_steps}"]
    overrides = [
        *variant.overrides,
        *teacher,
        *_common(out, seed),
        f"schedule.epochs={epochs}",
        "schedule.warmup_epochs=1",
        f"train.max_steps={steps}",
        "probe.enabled=true",
        f"probe.random_init={'true' if variant.key == 'umt-attention' else 'false'}",
    ]
    return load_config(variant.recipe, overrides)


def finetune_config(init: str, settings: DemoSettings, seed: int, out: Path) -> Any:
    from umt.config import DEFAULT_FINETUNE_RECIPE, load_config

    return load_config(
        DEFAULT_FINETUNE_RECIPE,
        [
            f"model.init={init}",
            *_common(out, seed),
            f"schedule.epochs={settings.finetune_epochs}",
            f"eval.every_epochs={settings.finetune_epochs}",
            "eval.test_best=false",  # the synthetic val split is also the test split
            f"eval.test_views={settings.test_views}",
        ],
    )


class DemoStopped(StoppedError):
    """SIGTERM / Ctrl-C stopped the demo; the message says what is kept and how to continue;
    ``exit_code`` is 143 / 130."""


PROGRESS = "progress.json"  # the settings and the finished runs of a demo, to continue it


def _stopped(signum: int, where: str, out: Path) -> DemoStopped:
    return DemoStopped(
        f"stopped by {signal.Signals(signum).name} {where}; the finished runs are kept in "
        f"{out / PROGRESS}: run the same command (same options and --output-dir {out}) to "
        "continue",
        signum,
    )


def _run(cfg: Any, log_file: Path) -> Any:
    """One training run, everything it prints going to ``log_file`` (appended: a continued run
    keeps the log of its interrupted part); a stopped run raises :class:`DemoStopped`."""
    import contextlib

    from umt.train.loop import train
    from umt.train.tasks import task_class

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as fh, contextlib.redirect_stdout(fh):
        res = train(cfg, task_class(cfg.task), echo=lambda line: print(line, file=fh, flush=True))
    if res.stop_signal is not None:
        out = log_file.parent.parent
        raise _stopped(
            res.stop_signal, f"in the run {cfg.train.output_dir} (its log: {log_file})", out
        )
    return res


def load_progress(out: Path, settings: DemoSettings) -> list[RunRecord]:
    """The runs an interrupted demo in ``out`` finished (none for a new demo); refused when it
    was started with other settings."""
    path = out / PROGRESS
    if not path.is_file():
        return []
    try:
        saved = json.loads(path.read_text())
        records = [RunRecord(**r) for r in saved["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: unreadable ({err}); use another --output-dir") from None
    now = json.loads(json.dumps(asdict(settings)))
    if saved.get("settings") != now:
        raise InputError(
            f"{out}: holds a demo started with other settings ({saved.get('settings')}); "
            "continue it with the same options or choose another --output-dir"
        )
    return records


def _save_progress(out: Path, settings: DemoSettings, records: list[RunRecord]) -> None:
    tmp = out / (PROGRESS + ".tmp")
    tmp.write_text(
        json.dumps({"settings": asdict(settings), "runs": [asdict(r) for r in records]}, indent=1)
    )
    os.replace(tmp, out / PROGRESS)


def run_demo(out: Path, settings: DemoSettings, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole comparison into ``out``; write ``demo.json``, ``demo.md`` and
    ``demo.png``; return the result. Each finished run is recorded in ``out/progress.json``: a
    demo stopped by SIGTERM / Ctrl-C (:class:`DemoStopped`) continues, when run again into the
    same ``out`` with the same settings, from there (its interrupted run from its checkpoint)."""
    from umt.train.loop import Stopper

    out.mkdir(parents=True, exist_ok=True)
    done = load_progress(out, settings)
    _save_progress(out, settings, done)
    if done:
        say(f"continuing the demo in {out}: {len(done)} run(s) already finished")
    stopper = Stopper()  # between the runs (each run, and the teacher, handle their own)
    stopper.install()
    try:
        return _run_demo(out, settings, say, done, stopper)
    finally:
        stopper.restore()


def _run_demo(
    out: Path,
    settings: DemoSettings,
    say: Callable[[str], None],
    done: list[RunRecord],
    stopper: Any,
) -> DemoResult:
    from umt.config.teacher import recipe_from_config
    from umt.train.builtin_teacher import read_report, teacher_dir
    from umt.train.tasks.common import build_teacher

    t0 = time.time()
    base = pretrain_config(VARIANTS[0], 1, 0, out / "unused", settings.teacher_steps)
    _, teacher_line = build_teacher(base, log=say)  # trains it first when not cached
    say(teacher_line)
    zero_shot = read_report(teacher_dir(recipe_from_config(base))).get("zero_shot", {})

    flops = {}
    for v in VARIANTS:
        if v.recipe is not None:
            flops[v.key] = step_flops(
                pretrain_config(v, 1, 0, out / "unused", settings.teacher_steps)
            )
    budget = flops[VARIANTS[0].key] * settings.budget_steps
    steps = {k: max(1, round(budget / f)) for k, f in flops.items()}
    say(
        f"pretraining budget: {budget / 1e12:.2f} TFLOP each = "
        + ", ".join(f"{k} {steps[k]} steps ({flops[k] / 1e9:.1f} GFLOP/step)" for k in steps)
    )
    result = DemoResult(
        settings={**asdict(settings), "seeds": list(settings.seeds), "budget_flops": budget},
        teacher=teacher_line,
        teacher_zero_shot=zero_shot,
        step_flops=flops,
    )
    random_probe: dict[int, tuple[float, float]] = {}
    for seed in settings.seeds:
        for v in VARIANTS:
            run_dir = out / f"{v.key}-seed{seed}"
            kept = next((r for r in done if (r.variant, r.seed) == (v.key, seed)), None)
            if kept is not None:
                result.runs.append(kept)
                probe_file = run_dir / "pretrain" / "probe.json"
                if v.key == "umt-attention" and probe_file.is_file():
                    probe = json.loads(probe_file.read_text())["summary"]
                    random_probe[seed] = (
                        probe.get("probe_acc_random_init"),
                        probe.get("linear_probe_acc_random_init"),
                    )
                continue
            if stopper.requested:
                raise _stopped(stopper.signum, f"before the run {run_dir}", out)
            rec = RunRecord(v.key, seed)
            init = "scratch"
            if v.recipe is not None:
                cfg = pretrain_config(
                    v, steps[v.key], seed, run_dir / "pretrain", settings.teacher_steps
                )
                res = _run(cfg, run_dir / "pretrain.log")
                probe = json.loads((run_dir / "pretrain" / "probe.json").read_text())["summary"]
                rec.pretrain_steps = steps[v.key]
                rec.pretrain_flops = flops[v.key] * steps[v.key]
                rec.pretrain_seconds = round(res.wall_s, 1)
                rec.probe_acc, rec.linear_probe_acc = probe["probe_acc"], probe["linear_probe_acc"]
                if "probe_acc_random_init" in probe:
                    random_probe[seed] = (
                        probe["probe_acc_random_init"],
                        probe["linear_probe_acc_random_init"],
                    )
                init = str(res.last_checkpoint)
            else:
                rec.probe_acc, rec.linear_probe_acc = random_probe.get(seed, (None, None))
            fcfg = finetune_config(init, settings, seed, run_dir / "finetune")
            fres = _run(fcfg, run_dir / "finetune.log")
            test = json.loads((run_dir / "finetune" / "test" / "results.json").read_text())
            rec.finetune_top1 = test["top1"] / 100.0
            rec.finetune_seconds = round(fres.wall_s, 1)
            result.runs.append(rec)
            _save_progress(out, settings, result.runs)
            say(
                f"  seed {seed} {v.label:<28} pretrain {rec.pretrain_steps:>4} steps "
                f"{rec.pretrain_seconds:>5.0f}s  probe {_pct(rec.probe_acc)}  fine-tune top-1 "
                f"{_pct(rec.finetune_top1)} ({rec.finetune_seconds:.0f}s)"
            )
    result.wall_seconds = round(time.time() - t0, 1)
    write_outputs(result, out)
    return result


# --------------------------------------------------------------------------- report
def _pct(x: float | None) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def _stats(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(result: DemoResult) -> dict[str, Any]:
    rows = {}
    for v in VARIANTS:
        recs = [r for r in result.runs if r.variant == v.key]
        if not recs:
            continue
        ft = _stats([r.finetune_top1 for r in recs if r.finetune_top1 is not None])
        pr = _stats([r.probe_acc for r in recs if r.probe_acc is not None])
        lin = _stats([r.linear_probe_acc for r in recs if r.linear_probe_acc is not None])
        rows[v.key] = {
            "label": v.label,
            "seeds": len(recs),
            "pretrain_steps": recs[0].pretrain_steps,
            "pretrain_gflops": recs[0].pretrain_flops / 1e9,
            "pretrain_seconds": statistics.fmean(r.pretrain_seconds for r in recs),
            "finetune_top1_mean": ft[0],
            "finetune_top1_std": ft[1],
            "probe_acc_mean": pr[0],
            "probe_acc_std": pr[1],
            "linear_probe_acc_mean": lin[0],
            "linear_probe_acc_std": lin[1],
        }
    return rows


def findings(result: DemoResult) -> list[str]:
    """Plain statements of what the numbers do and do not show."""
    rows = summarise(result)
    n = len(result.settings["seeds"])
    lines = []

    def compare(a: str, b: str, metric: str, claim: str) -> None:
        if a not in rows or b not in rows:
            return
        ma, sa = rows[a][f"{metric}_mean"], rows[a][f"{metric}_std"]
        mb, sb = rows[b][f"{metric}_mean"], rows[b][f"{metric}_std"]
        diff = 100 * (ma - mb)
        spread = 100 * max(sa, sb)
        name = "fine-tune top-1" if metric == "finetune_top1" else "k-NN probe"
        head = f"{rows[a]['label']} vs {rows[b]['label']} ({name}): {diff:+.1f} points"
        if n < 2:
            verdict = "one seed: no spread to judge it against"
        elif abs(diff) <= spread:
            verdict = f"within the seed spread (±{spread:.1f}): this run does not separate them"
        elif diff > 0:
            verdict = (
                f"larger than the seed spread (±{spread:.1f}); agrees with the paper ({claim})"
            )
        else:
            verdict = (
                f"larger than the seed spread (±{spread:.1f}) and AGAINST the paper ({claim}); "
                "reported as measured"
            )
        lines.append(f"- {head}: {verdict}.")

    for metric in ("finetune_top1", "probe_acc"):
        compare("umt-attention", "videomae", metric, "UMT beats VideoMAE at equal compute")
        compare("umt-attention", "umt-random", metric, "attention masking beats random masking")
        compare("umt-attention", "none", metric, "pretraining helps")
    lines += [
        "- What this does not show: anything about real video. The set has 12 synthetic classes, "
        "240 training clips and 60 test clips (also the validation clips); the models have about "
        "2M parameters; the teacher was trained on frames of the same clips; the budget is small "
        f"({result.settings['budget_steps']} steps of (a)); {n} seed(s).",
        "- Compute is FLOPs counted by torch's FlopCounterMode on one step (matrix products, "
        "convolutions, attention), teacher forward included for UMT and the decoder for "
        "VideoMAE; data loading and wall-clock overheads are not equalised (times are listed).",
    ]
    return lines


def format_table(result: DemoResult) -> str:
    rows = summarise(result)
    head = (
        "| pretraining | steps | GFLOP | time/seed | k-NN probe | linear probe | fine-tune top-1 |\n"
        "|---|---|---|---|---|---|---|\n"
    )

    def ms(row: dict[str, Any], metric: str) -> str:
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        return "n/a" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    body = ""
    for r in rows.values():
        body += (
            f"| {r['label']} | {r['pretrain_steps']} | {r['pretrain_gflops']:.0f} | "
            f"{r['pretrain_seconds']:.0f}s | {ms(r, 'probe_acc')} | {ms(r, 'linear_probe_acc')} | "
            f"{ms(r, 'finetune_top1')} |\n"
        )
    return head + body


def write_outputs(result: DemoResult, out: Path) -> None:
    (out / "demo.json").write_text(json.dumps(result.to_dict(), indent=1, default=float))
    zs = result.teacher_zero_shot
    teacher = (
        f"Teacher zero-shot on {zs['frames']} val frames: colour {zs['colour_acc']:.1%}, shape "
        f"{zs['shape_acc']:.1%} (chance {zs['colour_chance']:.0%} / {zs['shape_chance']:.0%}).\n\n"
        if zs
        else ""
    )
    text = (
        "# umt demo\n\n"
        f"Seeds {result.settings['seeds']}; pretraining budget "
        f"{result.settings['budget_flops'] / 1e12:.2f} TFLOP per objective; fine-tuning "
        f"{result.settings['finetune_epochs']} epochs, tested with "
        f"{result.settings['test_views']} views. Mean ± std over seeds; accuracies in %.\n\n"
        + teacher
        + format_table(result)
        + "\n"
        + "\n".join(findings(result))
        + f"\n\nWall time: {result.wall_seconds:.0f}s.\n"
    )
    (out / "demo.md").write_text(text)
    plot(result, out / "demo.png")


def plot(result: DemoResult, path: Path) -> None:
    """Accuracy against pretraining compute: one point per seed, the mean as a larger mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, metric, title in (
        (axes[0], "finetune_top1", "fine-tune top-1 (test)"),
        (axes[1], "probe_acc", "k-NN probe (frozen features)"),
    ):
        for i, v in enumerate(VARIANTS):
            recs = [r for r in result.runs if r.variant == v.key]
            ys = [100 * getattr(r, metric) for r in recs if getattr(r, metric) is not None]
            if not ys:
                continue
            # Equal budgets share one x: offset the objectives a little so each stays visible.
            x = recs[0].pretrain_flops / 1e12
            if x > 0:
                x += (i - 1) * 0.015 * result.settings["budget_flops"] / 1e12
            ax.scatter([x] * len(ys), ys, color=f"C{i}", alpha=0.4, s=18)
            ax.scatter([x], [statistics.fmean(ys)], color=f"C{i}", s=80, marker="D", label=v.label)
        ax.set_xlabel("pretraining compute (TFLOP)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
