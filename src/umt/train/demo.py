"""``umt demo``: the paper's claims, measured on the built-in synthetic world.

synthetic videos -> built-in teacher -> pretraining with

  UMT, attention (semantic) masking | UMT, random masking | VideoMAE (tube 0.9, pixel targets)
  | no pretraining

at the same pretraining compute (FLOPs of one training step, counted by torch's
``FlopCounterMode``, times the steps; UMT's count includes its teacher's forward pass, VideoMAE's
its decoder), then the same fine-tuning of each, for several seeds. UMT with attention masking
and VideoMAE are also pretrained at fractions of the budget (a curve of probe accuracy against
compute: the paper's training-efficiency claim). Every number comes from the run itself; each
claim is judged against the seed spread (:func:`claims`) and reported as shown or not shown.
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

from umt.errors import InputError, MachineError, StoppedError
from umt.utils.cpu import usable_cores

STEPS_PER_EPOCH = 30  # the tiny recipes' schedule.steps_per_epoch
FULL = 1.0  # the full budget, as a fraction of itself


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    recipe: str | None  # pretraining recipe; None: no pretraining
    overrides: tuple[str, ...] = ()
    curve: bool = False  # pretrained (and probed) at every budget of the settings, not only full


VARIANTS = (
    Variant(
        "umt-attention",
        "UMT, attention masking",
        "umt-tiny-synthetic",
        ("mask.kind=attention",),
        curve=True,
    ),
    Variant("umt-random", "UMT, random masking", "umt-tiny-synthetic", ("mask.kind=random",)),
    Variant("videomae", "VideoMAE, tube masking 0.9", "videomae-tiny-synthetic", curve=True),
    Variant("none", "no pretraining", None),
)


@dataclass
class DemoSettings:
    """The budget of one demo. ``budget_steps``: the full pretraining compute, in steps of UMT
    with attention masking (the default ``umt pretrain`` runs 360); the other objectives get
    the steps that cost the same FLOPs. ``budgets``: the fractions of it the curve variants
    are also pretrained at (1 always included). ``finetune_epochs`` of 30 steps for every
    variant (pretrained at the full budget)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    budget_steps: int = 360
    budgets: tuple[float, ...] = (1 / 3, 2 / 3, FULL)
    finetune_epochs: int = 16  # the default fine-tuning recipe's (umt-tiny-synthetic-ft)
    test_views: str = "1x1"
    teacher_steps: int | None = None  # the built-in teacher's training steps (None: recipe's)

    def __post_init__(self) -> None:
        fractions = {round(float(b), 6) for b in self.budgets} | {FULL}
        self.budgets = tuple(sorted(fractions))
        self.seeds = tuple(self.seeds)

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(seeds=(0,), budget_steps=180, budgets=(0.5, FULL), finetune_epochs=8)


@dataclass
class RunRecord:
    variant: str
    seed: int
    budget: float = FULL  # fraction of the full pretraining budget
    pretrain_steps: int = 0
    pretrain_flops: float = 0.0
    pretrain_seconds: float = 0.0
    probe_acc: float | None = None  # k-NN on frozen features
    linear_probe_acc: float | None = None
    probe_acc_random_init: float | None = None  # the same student at random init
    linear_probe_acc_random_init: float | None = None
    finetune_top1: float | None = None  # fraction; full-budget runs only
    finetune_category_acc: float | None = None  # predicted class of the right category
    finetune_motion_acc: float | None = None  # predicted class of the right motion
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
        d["curve"] = curve(self)
        d["claims"] = claims(self)
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
    variant: Variant,
    steps: int,
    seed: int,
    out: Path,
    teacher_steps: int | None = None,
    probe_random_init: bool = False,
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
        f"schedule.steps_per_epoch={STEPS_PER_EPOCH}",
        "schedule.warmup_epochs=1",
        f"train.max_steps={steps}",
        "probe.enabled=true",
        f"probe.random_init={'true' if probe_random_init else 'false'}",
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
            f"schedule.steps_per_epoch={STEPS_PER_EPOCH}",
            "eval.every_epochs=0",  # no validation: the demo reads the test split's top-1
            "eval.test_best=false",  # tested with the last weights, on the test split
            f"eval.test_views={settings.test_views}",
        ],
    )


def same_budget(a: float, b: float) -> bool:
    """Budget fractions as equal as their rounding in the settings (6 digits) allows."""
    return abs(a - b) < 1e-5


def run_dir_name(variant: str, seed: int, budget: float) -> str:
    """``umt-attention-seed0`` (full budget) or ``umt-attention-b33-seed0`` (a third of it)."""
    if same_budget(budget, FULL):
        return f"{variant}-seed{seed}"
    return f"{variant}-b{round(100 * budget)}-seed{seed}"


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


def default_jobs() -> int:
    """Runs at a time: one per usable core, at most 4. The tiny runs use a second thread
    poorly (a run on one core of two, beside another, takes about as long as alone on both),
    so two at a time nearly halve the demo's wall time on 2 cores."""
    return max(1, min(usable_cores(), 4))


def run_demo(
    out: Path,
    settings: DemoSettings,
    say: Callable[[str], None] = print,
    jobs: int = 1,
) -> DemoResult:
    """Run the whole comparison into ``out``; write ``demo.json``, ``demo.md`` and
    ``demo.png``; return the result. ``jobs``: runs at a time, each in its own process with
    ``usable_cores() // jobs`` threads (1: one after the other in this process, with its
    threads). Each finished run is recorded in ``out/progress.json``: a demo stopped by
    SIGTERM / Ctrl-C (:class:`DemoStopped`) continues, when run again into the same ``out``
    with the same settings (any ``jobs``), from there (its interrupted runs from their
    checkpoints)."""
    from umt.train.loop import Stopper

    if jobs < 1:
        raise InputError(f"jobs: must be at least 1, got {jobs}")

    out.mkdir(parents=True, exist_ok=True)
    done = load_progress(out, settings)
    _save_progress(out, settings, done)
    if done:
        say(f"continuing the demo in {out}: {len(done)} run(s) already finished")
    stopper = Stopper()  # between the runs (each run, and the teacher, handle their own)
    stopper.install()
    try:
        return _run_demo(out, settings, say, done, stopper, jobs)
    finally:
        stopper.restore()


def _run_demo(
    out: Path,
    settings: DemoSettings,
    say: Callable[[str], None],
    done: list[RunRecord],
    stopper: Any,
    jobs: int,
) -> DemoResult:
    from umt.train.builtin_teacher import read_report, recipe_for_run, teacher_dir
    from umt.train.tasks.common import build_teacher

    t0 = time.time()
    base = pretrain_config(VARIANTS[0], 1, 0, out / "unused", settings.teacher_steps)
    _, teacher_line = build_teacher(base, log=say)  # trains it first when not cached
    say(teacher_line)
    zero_shot = read_report(teacher_dir(recipe_for_run(base))).get("zero_shot", {})

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
    todo: list[tuple[Variant, int, float, Path]] = []
    for seed in settings.seeds:
        for v in VARIANTS:
            budgets = settings.budgets if v.curve else (FULL,)
            for fraction in sorted(budgets, reverse=True):  # the full run first
                kept = next(
                    (
                        r
                        for r in done
                        if (r.variant, r.seed) == (v.key, seed) and same_budget(r.budget, fraction)
                    ),
                    None,
                )
                if kept is not None:
                    result.runs.append(kept)
                else:
                    todo.append((v, seed, fraction, out / run_dir_name(v.key, seed, fraction)))

    def finished(rec: RunRecord) -> None:
        result.runs.append(rec)
        _save_progress(out, settings, result.runs)
        say(_run_line(rec))

    if jobs > 1 and len(todo) > 1:
        _run_parallel(todo, jobs, settings, steps, flops, finished, stopper, out)
    else:
        for v, seed, fraction, run_dir in todo:
            if stopper.requested:
                raise _stopped(stopper.signum, f"before the run {run_dir}", out)
            rec = _one_run(v, seed, fraction, run_dir, settings, steps, flops)
            if rec is not None:
                finished(rec)
    _random_init_probes(result.runs)
    order = [v.key for v in VARIANTS]
    result.runs.sort(key=lambda r: (r.seed, order.index(r.variant), -r.budget))
    result.wall_seconds = round(time.time() - t0, 1)
    write_outputs(result, out)
    return result


def _run_line(rec: RunRecord) -> str:
    label = next(v.label for v in VARIANTS if v.key == rec.variant)
    line = f"  seed {rec.seed} {label:<28} {_budget_word(rec.budget):<6} "
    if rec.pretrain_steps:
        line += (
            f"pretrain {rec.pretrain_steps:>4} steps {rec.pretrain_seconds:>5.0f}s  k-NN "
            f"{_pct(rec.probe_acc)} linear {_pct(rec.linear_probe_acc)}"
        )
    if rec.finetune_top1 is not None:
        line += f"  fine-tune top-1 {_pct(rec.finetune_top1)} ({rec.finetune_seconds:.0f}s)"
        if rec.finetune_category_acc is not None and rec.finetune_motion_acc is not None:
            line += (
                f" category {_pct(rec.finetune_category_acc)} motion "
                f"{_pct(rec.finetune_motion_acc)}"
            )
    return line


_STOP: Any = None  # in a worker process of _run_parallel: the event set when the demo stops


def _worker_start(threads: int, stop: Any) -> None:
    """A worker of :func:`_run_parallel`: ``threads`` torch threads; between runs it leaves
    SIGTERM / Ctrl-C to the parent (each run handles them itself while it trains)."""
    import torch

    global _STOP
    _STOP = stop
    torch.set_num_threads(threads)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _run_parallel(
    todo: list[tuple[Variant, int, float, Path]],
    jobs: int,
    settings: DemoSettings,
    steps: dict[str, int],
    flops: dict[str, float],
    finished: Callable[[RunRecord], None],
    stopper: Any,
    out: Path,
) -> None:
    """The runs of ``todo``, ``jobs`` at a time in worker processes. A stop (SIGTERM / Ctrl-C
    here, or a run that failed or was stopped) reaches the runs under way as SIGTERM: each
    saves a checkpoint and ends; the runs not begun are not begun. Then the first failure, or
    :class:`DemoStopped`, is raised."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # no fork of a process that holds torch's thread pools
    stop = ctx.Event()
    threads = max(1, usable_cores() // jobs)
    failure: BaseException | None = None
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_worker_start, initargs=(threads, stop)
    ) as pool:
        # The longest runs first (fine-tuned ones, then the larger budgets): the workers end
        # together instead of one finishing a long run alone.
        ordered = sorted(todo, key=lambda job: -_cost(job[0], job[2]))
        pending = {pool.submit(_one_run, *job, settings, steps, flops) for job in ordered}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                try:
                    rec = fut.result()
                except BrokenProcessPool:  # a worker was killed (out of memory, a signal)
                    failure = failure or MachineError(
                        f"{out}: a process running a demo run ended abruptly (killed: out of "
                        f"memory?); the finished runs are kept in {out / PROGRESS}: run the "
                        "same command to continue (--jobs 1 uses less memory)"
                    )
                    continue
                except BaseException as err:  # noqa: BLE001 -- raised below, after the stop
                    failure = failure or err
                    continue
                if rec is not None:
                    finished(rec)
            if stopper.requested or failure is not None:
                stop.set()
                for fut in pending:
                    fut.cancel()
                for child in mp.active_children():  # again each time: a run just begun too
                    try:
                        os.kill(child.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
    if failure is not None:
        raise failure
    if stopper.requested:
        raise _stopped(stopper.signum, "while runs were under way", out)


def _cost(v: Variant, fraction: float) -> float:
    """A run's rough cost in full pretrainings (measured: a fine-tuning of the default 16
    epochs takes about three times a full pretraining, 80-87 s against 28-35 s; a probe a third
    of it)."""
    pretrain = fraction + 0.3 if v.recipe is not None else 0.0
    return pretrain + (3.0 if same_budget(fraction, FULL) else 0.0)


def _random_init_probes(runs: list[RunRecord]) -> None:
    """ "No pretraining" is probed as the random-init student of the same seed (measured by
    the full UMT attention run): copy those probes into its records."""
    for rec in runs:
        if rec.variant != "none" or rec.probe_acc is not None:
            continue
        base = next(
            (r for r in runs if r.seed == rec.seed and r.probe_acc_random_init is not None), None
        )
        if base is not None:
            rec.probe_acc = base.probe_acc_random_init
            rec.linear_probe_acc = base.linear_probe_acc_random_init


def _budget_word(fraction: float) -> str:
    if same_budget(fraction, FULL):
        return "full"
    return f"{fraction:.2f}".rstrip("0") + "x"


def _one_run(
    v: Variant,
    seed: int,
    fraction: float,
    run_dir: Path,
    settings: DemoSettings,
    steps: dict[str, int],
    flops: dict[str, float],
) -> RunRecord | None:
    """Pretrain ``v`` at ``fraction`` of the budget and probe it; at the full budget, fine-tune
    and test it too (``none``: fine-tune from scratch; its probes are filled in later by
    :func:`_random_init_probes`). None: in a worker of :func:`_run_parallel`, the demo
    stopped before this run began."""
    if _STOP is not None and _STOP.is_set():
        return None
    rec = RunRecord(v.key, seed, budget=fraction)
    init = "scratch"
    full = same_budget(fraction, FULL)
    if v.recipe is not None:
        n = max(1, round(steps[v.key] * fraction))
        cfg = pretrain_config(
            v,
            n,
            seed,
            run_dir / "pretrain",
            settings.teacher_steps,
            probe_random_init=full and v.key == VARIANTS[0].key,
        )
        res = _run(cfg, run_dir / "pretrain.log")
        probe = json.loads((run_dir / "pretrain" / "probe.json").read_text())["summary"]
        rec.pretrain_steps = n
        rec.pretrain_flops = flops[v.key] * n
        rec.pretrain_seconds = round(res.wall_s, 1)
        rec.probe_acc, rec.linear_probe_acc = probe["probe_acc"], probe["linear_probe_acc"]
        rec.probe_acc_random_init = probe.get("probe_acc_random_init")
        rec.linear_probe_acc_random_init = probe.get("linear_probe_acc_random_init")
        init = str(res.last_checkpoint)
    if full:
        fcfg = finetune_config(init, settings, seed, run_dir / "finetune")
        fres = _run(fcfg, run_dir / "finetune.log")
        test = json.loads((run_dir / "finetune" / "test" / "results.json").read_text())
        rec.finetune_top1 = test["top1"] / 100.0
        parts = _class_parts(run_dir / "finetune" / "test" / "predictions.jsonl")
        rec.finetune_category_acc, rec.finetune_motion_acc = parts["category"], parts["motion"]
        rec.finetune_seconds = round(fres.wall_s, 1)
    return rec


def _class_parts(predictions: Path) -> dict[str, float]:
    """Category and motion accuracy of a fine-tuning's test predictions (one JSON line per
    video, with ``label`` and ``prediction``)."""
    from umt.data.formats.records import read_json_list
    from umt.data.synth import class_part_accuracy

    rows = read_json_list(predictions)
    return class_part_accuracy((r["label"], r["prediction"]) for r in rows)


# --------------------------------------------------------------------------- report
PARTS = {  # fine-tuned accuracy on each half of the class: reported, not judged
    "finetune_category_acc": "fine-tune category",
    "finetune_motion_acc": "fine-tune motion",
}
METRICS = {
    "finetune_top1": "fine-tune top-1",
    "probe_acc": "k-NN probe",
    "linear_probe_acc": "linear probe",
}
MARGIN = 2.0  # a claim is shown when its difference is at least this many times the larger std
PROBE_GAIN = 0.10  # claim (d): the default pretraining's probes beat random init by 10 points


def _pct(x: float | None) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def _stats(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _records(result: DemoResult, variant: str, budget: float = FULL) -> list[RunRecord]:
    return [r for r in result.runs if r.variant == variant and same_budget(r.budget, budget)]


def _metric_stats(recs: list[RunRecord], metric: str) -> tuple[float, float]:
    return _stats([getattr(r, metric) for r in recs if getattr(r, metric) is not None])


def summarise(result: DemoResult) -> dict[str, Any]:
    """One row per variant at the full budget: steps, compute, time, mean and std of each
    metric over the seeds."""
    rows = {}
    for v in VARIANTS:
        recs = _records(result, v.key)
        if not recs:
            continue
        row: dict[str, Any] = {
            "label": v.label,
            "seeds": len(recs),
            "pretrain_steps": recs[0].pretrain_steps,
            "pretrain_gflops": recs[0].pretrain_flops / 1e9,
            "pretrain_seconds": statistics.fmean(r.pretrain_seconds for r in recs),
        }
        for metric in (*METRICS, *PARTS):
            row[f"{metric}_mean"], row[f"{metric}_std"] = _metric_stats(recs, metric)
        rows[v.key] = row
    return rows


def curve(result: DemoResult) -> dict[str, list[dict[str, Any]]]:
    """The curve variants' probe accuracies at each budget: ``{variant: [{"budget", "steps",
    "tflops", "probe_acc_mean", "probe_acc_std", "linear_probe_acc_mean", ...}]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in VARIANTS:
        if v.recipe is None:
            continue
        points = []
        for b in sorted({r.budget for r in result.runs if r.variant == v.key}):
            recs = _records(result, v.key, b)
            point: dict[str, Any] = {
                "budget": b,
                "steps": recs[0].pretrain_steps,
                "tflops": recs[0].pretrain_flops / 1e12,
            }
            for metric in ("probe_acc", "linear_probe_acc"):
                point[f"{metric}_mean"], point[f"{metric}_std"] = _metric_stats(recs, metric)
            points.append(point)
        out[v.key] = points
    return out


def _judge(
    claim: str,
    text: str,
    metric: str,
    a: tuple[str, list[RunRecord]],
    b: tuple[str, list[RunRecord]],
    seeds: int,
    need: float = 0.0,
) -> dict[str, Any] | None:
    """Compare ``metric`` of the records ``a`` against ``b``: shown when the mean difference is
    positive, at least ``MARGIN`` times the larger std and at least ``need``."""
    (name_a, recs_a), (name_b, recs_b) = a, b
    ma, sa = _metric_stats(recs_a, metric)
    mb, sb = _metric_stats(recs_b, metric)
    if math.isnan(ma) or math.isnan(mb):
        return None
    diff, spread = ma - mb, max(sa, sb)
    if seeds < 2:
        shown, why = False, "one seed: no spread to judge it against"
    elif diff <= 0:
        shown, why = False, "the difference goes the other way"
    elif diff < MARGIN * spread:
        shown, why = False, f"less than {MARGIN:g}x the larger std"
    elif diff < need:
        shown, why = False, f"less than the {100 * need:.0f} points asked"
    else:
        shown, why = True, f"at least {MARGIN:g}x the larger std"
    return {
        "claim": claim,
        "text": text,
        "metric": metric,
        "a": name_a,
        "b": name_b,
        "a_mean": ma,
        "a_std": sa,
        "b_mean": mb,
        "b_std": sb,
        "difference": diff,
        "shown": shown,
        "why": why,
    }


def claims(result: DemoResult) -> list[dict[str, Any]]:
    """The paper's claims as this demo can test them, each judged by :func:`_judge`:
    (a) attention > random masking, (b) UMT > VideoMAE at equal compute, and UMT at the
    smallest budget >= VideoMAE at the full one, (c) UMT > no pretraining after fine-tuning,
    (d) the default pretraining's probes >= random init + 10 points."""
    n = len(result.settings["seeds"])
    att, rnd = _records(result, "umt-attention"), _records(result, "umt-random")
    mae, none = _records(result, "videomae"), _records(result, "none")
    out = []

    def add(*args: Any, **kw: Any) -> None:
        judged = _judge(*args, seeds=n, **kw)
        if judged is not None:
            out.append(judged)

    for metric in METRICS:
        add("a", "attention masking beats random masking", metric,
            ("UMT, attention", att), ("UMT, random", rnd))  # fmt: skip
    for metric in METRICS:
        add("b", "UMT beats VideoMAE at equal compute", metric,
            ("UMT, attention", att), ("VideoMAE", mae))  # fmt: skip
    small = min(result.settings["budgets"])
    if not same_budget(small, FULL):
        few = _records(result, "umt-attention", small)
        for metric in ("probe_acc", "linear_probe_acc"):
            add(
                "b",
                f"UMT at {_budget_word(small)} the budget beats VideoMAE at the full budget",
                metric,
                (f"UMT, attention, {_budget_word(small)}", few),
                ("VideoMAE, full", mae),
            )
    add("c", "UMT beats no pretraining after fine-tuning", "finetune_top1",
        ("UMT, attention", att), ("no pretraining", none))  # fmt: skip
    init = [
        RunRecord("random-init", r.seed, probe_acc=r.probe_acc_random_init,
                  linear_probe_acc=r.linear_probe_acc_random_init)
        for r in att
    ]  # fmt: skip
    for metric in ("probe_acc", "linear_probe_acc"):
        add("d", "the default pretraining's probe beats random init by 10 points", metric,
            ("UMT, attention", att), ("random init", init), need=PROBE_GAIN)  # fmt: skip
    return out


def findings(result: DemoResult) -> list[str]:
    """Plain statements of what the numbers do and do not show."""
    n = len(result.settings["seeds"])
    lines = []
    for c in claims(result):
        verdict = "SHOWN" if c["shown"] else "NOT SHOWN"
        lines.append(
            f"- ({c['claim']}) {c['text']} -- {METRICS[c['metric']]}: {c['a']} "
            f"{100 * c['a_mean']:.1f} ± {100 * c['a_std']:.1f} vs {c['b']} "
            f"{100 * c['b_mean']:.1f} ± {100 * c['b_std']:.1f} ({100 * c['difference']:+.1f}): "
            f"{verdict} ({c['why']})."
        )
    rows = [r for r in summarise(result).values() if not math.isnan(r["finetune_top1_mean"])]
    if rows and all(not math.isnan(r[f"{m}_mean"]) for r in rows for m in PARTS):
        from umt.data.synth import CATEGORIES, MOTIONS

        each = "; ".join(
            f"{r['label']} {100 * r['finetune_category_acc_mean']:.1f} / "
            f"{100 * r['finetune_motion_acc_mean']:.1f}"
            for r in rows
        )
        lines.append(
            "- What fine-tuning learned: the share of test clips whose predicted class has the "
            f"right category / the right motion (chance {100 / len(CATEGORIES):.1f} / "
            f"{100 / len(MOTIONS):.1f}), mean over seeds: {each}."
        )
    s = result.settings
    lines += [
        "- What this does not show: anything about real video. The world has 12 synthetic "
        "classes (4 actor categories x 3 motions among distractors); the models have about 2M "
        "parameters; the teacher was trained on frames of the same training clips; the budget "
        f"is small ({s['budget_steps']} steps of UMT); {n} seed(s).",
        "- Compute is FLOPs counted by torch's FlopCounterMode on one step (matrix products, "
        "convolutions, attention), teacher forward included for UMT and the decoder for "
        "VideoMAE; data loading and wall-clock overheads are not equalised (times are listed).",
    ]
    return lines


def format_table(result: DemoResult) -> str:
    rows = summarise(result)
    columns = ["pretraining", "steps", "GFLOP", "time/seed", "k-NN probe", "linear probe"]
    columns += ["fine-tune top-1", *PARTS.values()]
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"

    def ms(row: dict[str, Any], metric: str) -> str:
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        return "n/a" if math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    body = ""
    for r in rows.values():
        body += (
            f"| {r['label']} | {r['pretrain_steps']} | {r['pretrain_gflops']:.0f} | "
            f"{r['pretrain_seconds']:.0f}s | {ms(r, 'probe_acc')} | {ms(r, 'linear_probe_acc')} | "
            + " | ".join(ms(r, m) for m in ("finetune_top1", *PARTS))
            + " |\n"
        )
    points = curve(result)
    if any(len(p) > 1 for p in points.values()):
        body += "\n| pretraining | budget | steps | k-NN probe | linear probe |\n|---|---|---|---|---|\n"
        labels = {v.key: v.label for v in VARIANTS}
        for key, pts in points.items():
            if len(pts) < 2:
                continue
            for p in pts:
                body += (
                    f"| {labels[key]} | {_budget_word(p['budget'])} | {p['steps']} | "
                    f"{100 * p['probe_acc_mean']:.1f} ± {100 * p['probe_acc_std']:.1f} | "
                    f"{100 * p['linear_probe_acc_mean']:.1f} ± "
                    f"{100 * p['linear_probe_acc_std']:.1f} |\n"
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
    s = result.settings
    text = (
        "# umt demo\n\n"
        f"Seeds {s['seeds']}; full pretraining budget {s['budget_flops'] / 1e12:.2f} TFLOP per "
        f"objective (curves at {', '.join(_budget_word(b) for b in s['budgets'])}); fine-tuning "
        f"{s['finetune_epochs']} epochs of {STEPS_PER_EPOCH} steps, tested on the test split "
        f"with {s['test_views']} views. Mean ± std over seeds; accuracies in %.\n\n"
        + teacher
        + format_table(result)
        + "\n"
        + "\n".join(findings(result))
        + f"\n\nWall time: {result.wall_seconds:.0f}s.\n"
    )
    (out / "demo.md").write_text(text)
    plot(result, out / "demo.png")


def plot(result: DemoResult, path: Path) -> None:
    """Three panels: the k-NN and linear probes against pretraining compute (a curve per
    objective over the budgets, one point per seed, the mean joined), and fine-tuned top-1 per
    pretraining (bars with the seeds' std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, metric in ((axes[0], "probe_acc"), (axes[1], "linear_probe_acc")):
        for i, v in enumerate(VARIANTS):
            recs = [r for r in result.runs if r.variant == v.key]
            pts = sorted(
                (r.pretrain_flops / 1e12, 100 * getattr(r, metric))
                for r in recs
                if getattr(r, metric) is not None
            )
            if not pts:
                continue
            ax.scatter(*zip(*pts), color=f"C{i}", alpha=0.35, s=16)
            xs = sorted({x for x, _ in pts})
            means = [statistics.fmean(y for x2, y in pts if x2 == x) for x in xs]
            ax.plot(xs, means, color=f"C{i}", marker="D", label=v.label)
        ax.set_xlabel("pretraining compute (TFLOP)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{METRICS[metric]} (frozen features, val)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    rows = summarise(result)
    keys = [k for k in rows if not math.isnan(rows[k]["finetune_top1_mean"])]
    ax = axes[2]
    ax.bar(
        range(len(keys)),
        [100 * rows[k]["finetune_top1_mean"] for k in keys],
        yerr=[100 * rows[k]["finetune_top1_std"] for k in keys],
        color=[f"C{[v.key for v in VARIANTS].index(k)}" for k in keys],
        capsize=4,
    )
    ax.set_xticks(range(len(keys)), [rows[k]["label"] for k in keys], rotation=15, fontsize=8)
    ax.set_ylabel("top-1 (%)")
    ax.set_title("fine-tuned at the full budget (test split)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
