"""The built-in teacher's cache: made once, reused by every run that asks for the same recipe.

No real CLIP weights can be downloaded on the machines umt's defaults must run on, so the default
``umt pretrain`` distils a teacher umt trains itself, once: the task
:class:`~umt.train.tasks.teacher.TeacherTask` (frames of the synthetic set against captions of
their colour and shape, locked MiniLM text tower, contrastive loss), trained by the one loop
(:func:`umt.train.loop.train`) like every task: its optimizer and schedule, checkpoints, resume,
signals and ``metrics.jsonl``.

The result is cached under ``$UMT_HOME/teachers`` (else ``~/.cache/umt/teachers``) in a folder
named by a hash of its :class:`~umt.config.teacher.TeacherRecipe`, beside the recipe, a
checksum of the weights and a report (zero-shot colour / shape accuracy on the val frames). A
later run whose recipe hashes the same reuses it; a folder whose recipe or checksum does not match
is refused and rebuilt. The training's run folder sits beside it (:func:`partial_path`): a stopped
training continues from its checkpoint; it is removed once the teacher is cached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from umt.config.teacher import TeacherRecipe, recipe_from_config
from umt.errors import InputError, MachineError, StoppedError
from umt.utils.files import sha256_file

BUILTIN = "builtin"  # the teacher.weights value that asks for this teacher
WEIGHTS, CONFIG, RECIPE, CHECKSUM, REPORT = (
    "model.safetensors",
    "config.json",
    "recipe.json",
    "checksum.sha256",
    "report.json",
)


class TeacherCacheError(MachineError):
    """The cached teacher cannot be made or read (the message names the folder)."""


class TeacherStopped(StoppedError):
    """SIGTERM / Ctrl-C while the teacher was trained (its progress kept, the message says
    where) or waited for; ``exit_code`` is 143 / 130."""


WAIT_REPORT_S = 30.0  # while waiting for another process's teacher: a line this often


def partial_path(folder: Path) -> Path:
    """The run folder (checkpoints, ``metrics.jsonl``) of the training of the teacher of
    ``folder``: an interrupted training continues from it; removed once the teacher is cached."""
    return folder.parent / f".{folder.name}.partial"


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as the holder wrote it (``process 123, step 300/1000``)."""
    try:
        text = " ".join(lock_path.read_text().split())
    except OSError:
        text = ""
    return text or "another process"


def _lock(lock: Any, lock_path: Path, say: Callable[[str], None]) -> None:
    """Take the teacher's lock; while another process holds it, say so at once and then every
    :data:`WAIT_REPORT_S` seconds (who, its progress, how long)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    t0 = time.monotonic()
    say(
        f"built-in teacher: waiting for {_holder(lock_path)} to finish training it (lock "
        f"{lock_path}); the wait is not training time"
    )
    next_report = t0 + WAIT_REPORT_S
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.2)
            if time.monotonic() >= next_report:
                say(
                    f"  still waiting for {_holder(lock_path)} "
                    f"({time.monotonic() - t0:.0f}s so far)"
                )
                next_report += WAIT_REPORT_S
    except KeyboardInterrupt:
        raise TeacherStopped(
            f"interrupted while waiting for {_holder(lock_path)} to train the built-in teacher; "
            "nothing to keep: run the same command again",
            signal.SIGINT,
        ) from None
    say(f"built-in teacher: waited {time.monotonic() - t0:.0f}s for {lock_path}")


def _mark_holder(lock: Any, text: str) -> None:
    """Write who holds the lock (and how far it is) into the lock file, for waiters to read."""
    try:
        lock.seek(0)
        lock.truncate(0)
        lock.write(text)
        lock.flush()
    except OSError:
        pass  # only informative


def recipe_for_run(cfg: Any) -> TeacherRecipe:
    """The built-in teacher a run's config asks for (:func:`recipe_from_config`), learning from
    the synthetic set the run uses: the finished one under its ``synthetic_root`` as it was made
    (``umt data synth`` may make a smaller or larger one), else the default one (made when the
    teacher is trained). The set's parameters are part of the recipe, so each set has its own
    cached teacher, and so is the world's version (a set at another version is remade)."""
    from umt.config.teacher import SyntheticSetSpec
    from umt.data.synth import WORLD_VERSION, set_params
    from umt.train.data import synthetic_root

    recipe = dataclasses.replace(recipe_from_config(cfg), world=WORLD_VERSION)
    try:
        found = set_params(synthetic_root(cfg))
    except InputError:
        return recipe  # making the set says what is wrong with it
    if found is None:
        return recipe  # none made yet: the default one will be
    fields = {f.name for f in dataclasses.fields(SyntheticSetSpec)}
    try:
        spec = SyntheticSetSpec(**{k: int(v) for k, v in found.items() if k in fields})
    except (TypeError, ValueError):
        return recipe  # a hand-edited marker: making the set says what is wrong with it
    return dataclasses.replace(recipe, synthetic=spec)


def ensure_for_config(cfg: Any, log: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """:func:`ensure_builtin_teacher` of the teacher a run's config asks for (its synthetic set
    made first when absent): the cached folder and a line saying which teacher it is."""
    recipe = recipe_for_run(cfg)
    return ensure_builtin_teacher(recipe, synthetic_set(cfg, recipe), log=log)


def synthetic_set(cfg: Any, recipe: TeacherRecipe) -> Path:
    """The synthetic set ``recipe`` learns from, under the run's ``synthetic_root`` (made first
    when absent; a folder that cannot be written is one line saying so)."""
    from umt.data import ensure_synthetic_dataset
    from umt.train.data import synthetic_root, synthetic_write_error

    root = synthetic_root(cfg)
    try:
        return ensure_synthetic_dataset(root, **dataclasses.asdict(recipe.synthetic))
    except OSError as err:
        raise synthetic_write_error(err, root) from None


def prepare_for_run(cfg: Any, say: Callable[[str], None] | None) -> None:
    """A run's set-up, before its processes join (:meth:`Task.prepare`): make the built-in
    teacher the config asks for unless it is cached (every process of a torchrun: one trains,
    the others wait on the lock; only rank 0 speaks)."""
    if getattr(cfg.teacher, "weights", None) != BUILTIN:
        return
    main = int(os.environ.get("RANK", "0")) == 0
    say = (say or (lambda line: print(line, flush=True))) if main else None
    _, desc = ensure_for_config(cfg, log=say)
    if say is not None and "(cached)" not in desc:
        say(desc)


def cache_root() -> Path:
    """``$UMT_HOME/teachers``, else ``~/.cache/umt/teachers``."""
    home = os.environ.get("UMT_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "umt") / "teachers"


def teacher_dir(recipe: TeacherRecipe, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"synthetic-clip-{recipe.key()}"


def check_cached(folder: Path, recipe: TeacherRecipe) -> str | None:
    """Why ``folder`` is not a usable cached teacher of ``recipe`` (None: it is)."""
    if not folder.is_dir():
        return "not built yet"
    try:
        found = json.loads((folder / RECIPE).read_text())
        checksum = (folder / CHECKSUM).read_text().split()
    except (OSError, ValueError, IndexError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    if found != recipe.to_dict():
        return "made with another recipe"
    if not checksum or not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        return "incomplete"
    if sha256_file(folder / WEIGHTS) != checksum[0]:
        return f"corrupt ({WEIGHTS} does not match its checksum)"
    return None


def read_report(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / REPORT).read_text())
    except (OSError, ValueError):
        return {}


def describe(folder: Path, how: str) -> str:
    """One line: where the teacher is, how it came, its zero-shot frame accuracies."""
    rep = read_report(folder)
    zs = rep.get("zero_shot", {})
    acc = ""
    if zs:
        acc = (
            f"; zero-shot on {zs.get('frames', '?')} val frames: colour {zs['colour_acc']:.1%}, "
            f"shape {zs['shape_acc']:.1%} (chance {zs['colour_chance']:.0%} / "
            f"{zs['shape_chance']:.0%})"
        )
    return f"teacher: built-in synthetic-world CLIP ({how}) {folder}{acc}"


def ensure_builtin_teacher(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
    retrain: bool = False,
) -> tuple[Path, str]:
    """The cached teacher folder of ``recipe`` (trained now if absent, stale or corrupt, or when
    ``retrain``) and a line saying which. Safe with several processes: one trains, the others
    wait on a lock and reuse its result."""
    say = log or (lambda _msg: None)
    folder = teacher_dir(recipe, root)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path = folder.parent / f".{folder.name}.lock"
        lock = open(lock_path, "a+")  # noqa: SIM115 (held until the function returns)
    except OSError as err:
        raise TeacherCacheError(
            f"cannot write the teacher cache {folder.parent} ({err.strerror or err}); set "
            "UMT_HOME to a writable folder"
        ) from None
    with lock:
        _lock(lock, lock_path, say)
        problem = "retrain requested" if retrain else check_cached(folder, recipe)
        if problem is None:
            return folder, describe(folder, "cached")
        _mark_holder(lock, f"process {os.getpid()}")
        if folder.exists():
            say(f"built-in teacher at {folder}: {problem}; training it again")
        else:
            say(f"built-in teacher: none cached for this recipe; training it ({folder})")
        t0 = time.time()

        def progress(step: int) -> None:
            _mark_holder(lock, f"process {os.getpid()}, step {step}/{recipe.steps}")

        _build(recipe, synthetic_root, folder, say, progress)
        return folder, describe(folder, f"trained now in {time.time() - t0:.0f}s")


def _build(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    folder: Path,
    say: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Train into a temporary sibling folder, then swap it in (a crash leaves no half cache)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        report = train_teacher(recipe, synthetic_root, tmp, partial_path(folder), say, progress)
        (tmp / REPORT).write_text(json.dumps(report, indent=1))
        (tmp / RECIPE).write_text(json.dumps(recipe.to_dict(), indent=1))
        (tmp / CHECKSUM).write_text(f"{sha256_file(tmp / WEIGHTS)}  {WEIGHTS}\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.rename(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, folder)
        shutil.rmtree(partial_path(folder), ignore_errors=True)  # it is in the cache now
    except OSError as err:
        raise TeacherCacheError(
            f"cannot write the built-in teacher to {folder} ({err.strerror or err}); free some "
            "space or set UMT_HOME to a writable folder"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- training
@contextlib.contextmanager
def alone() -> Iterator[None]:
    """The teacher trains in this process alone, even in a torchrun worker (whose peers wait
    on the lock meanwhile): the launcher's WORLD_SIZE / RANK / LOCAL_RANK are hidden from the
    loop for that time."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _checkpoint_step(run_dir: Path) -> int:
    """The step of the newest checkpoint in ``run_dir`` (0: none)."""
    from umt.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir / "checkpoints")
    return int(latest.name.split("_")[-1]) if latest is not None else 0


def _losses(run_dir: Path) -> list[float]:
    """The loss of every step, from the run's ``metrics.jsonl`` (resumed runs included)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [r["loss"] for r in rows if "loss" in r]


def train_teacher(
    recipe: TeacherRecipe,
    synthetic_root: Path,
    out: Path,
    run_dir: Path,
    say: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train the teacher of ``recipe`` (:class:`~umt.train.tasks.teacher.TeacherTask`, by the
    loop, its run folder ``run_dir``) and write it to ``out`` (``model.safetensors`` +
    ``config.json``, a frozen :class:`CLIPTeacher`); return the report (losses, zero-shot
    accuracies, time). A ``run_dir`` holding a checkpoint is continued (the loop's resume);
    one it cannot continue is started again. SIGTERM / Ctrl-C stop it after the current step
    with the loop's checkpoint, then :class:`TeacherStopped` says where it is kept.
    ``progress(step)`` hears every 100 steps."""
    import torch

    from umt.config.teacher import BuiltinTeacherConfig
    from umt.train.loop import RunError, train
    from umt.train.tasks.teacher import EXPORT, TeacherTask

    t0 = time.time()

    def report(step: int, loss: float) -> None:
        if step % 100 == 0 or step == 1:
            say(f"  teacher step {step}/{recipe.steps}: contrastive loss {loss:.4f}")
            if progress is not None:
                progress(step)

    class ReportingTeacherTask(TeacherTask):
        on_step = staticmethod(report)

    cfg = BuiltinTeacherConfig.for_recipe(recipe, synthetic_root, run_dir)
    cfg.validate()
    step = _checkpoint_step(run_dir)
    if step:
        say(f"built-in teacher: continuing an interrupted training from step {step} ({run_dir})")
    try:
        with alone():
            result = train(cfg, ReportingTeacherTask, echo=lambda line: say(f"  {line}"))
    except (RunError, InputError) as err:
        if not step:
            raise
        say(f"built-in teacher: cannot continue {run_dir} ({err}); starting over")
        shutil.rmtree(run_dir, ignore_errors=True)
        with alone():
            result = train(cfg, ReportingTeacherTask, echo=lambda line: say(f"  {line}"))
    if result.stop_signal is not None:
        _stopped(recipe, run_dir, result.stop_signal)
    for name in (WEIGHTS, CONFIG):
        shutil.copyfile(run_dir / EXPORT / name, out / name)
    losses = _losses(run_dir)
    return {
        "loss_first": losses[0],
        "loss_last": sum(losses[-20:]) / len(losses[-20:]),
        **json.loads((run_dir / REPORT).read_text()),
        "train_seconds": round(time.time() - t0, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__,
    }


def _stopped(recipe: TeacherRecipe, run_dir: Path, signum: int) -> None:
    """Raise :class:`TeacherStopped` saying where the stopped training is kept (if anywhere)."""
    name = signal.Signals(signum).name
    step = _checkpoint_step(run_dir)
    where = (
        f"stopped by {name} while training the built-in teacher after step {step}/{recipe.steps}"
    )
    if not step:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise TeacherStopped(f"{where}; nothing to keep: run the same command again", signum)
    raise TeacherStopped(
        f"{where}; its progress is kept in {run_dir}: run the same command again to continue "
        "from there",
        signum,
    )
