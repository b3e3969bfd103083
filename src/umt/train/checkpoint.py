"""Training checkpoints without pickles, written atomically.

A checkpoint is a folder ``<output>/checkpoints/step_000123/``::

    model.safetensors      student weights (keys of a plain ``VideoViT``)
    optimizer.safetensors  optimizer tensors, keyed ``<param name>/<state key>``
    optimizer.json         param groups and the optimizer's non-tensor state
    rng.safetensors        torch CPU / CUDA generator states (uint8), numpy key (uint32)
    state.json             step, data position, python ``random`` state, GradScaler, metrics
    config.yaml            the resolved config of the run
    config.json            the model's constructor arguments: with model.safetensors, the folder
                           loads on its own (``umt.load_checkpoint``, ``umt convert``)
    ema.safetensors        the EMA of the weights (``train.ema_decay``), when kept
    COMPLETE               written last; a folder without it is ignored

It is written under ``step_000123.tmp/`` and renamed when complete, so an interrupted write
never hides the previous checkpoint; a failed write (disk full) removes its ``.tmp`` folder and
raises an ``OSError`` naming the file (safetensors' own error included). :func:`staged_dir` does
the same for any folder of outputs (``best/``, a run's ``test/``).
Pruning removes a checkpoint's ``COMPLETE`` marker before its files, so a half-deleted
checkpoint is never taken for a complete one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from umt.errors import InputError

COMPLETE = "COMPLETE"
_STEP_RE = re.compile(r"^step_(\d+)$")


class CorruptCheckpointError(InputError):
    """A checkpoint folder marked complete whose files cannot be read back."""


@dataclass
class TrainState:
    """Everything besides weights and optimizer needed to continue a run."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch of the next batch
    batch_in_epoch: int = 0  # per-process batches of ``epoch`` already consumed
    scaler: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- state dicts
def _options(full: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU state dict with wrapper prefixes removed. Collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(model, options=_options(_distributed()))
    prefix = _prefix(model)
    return {_strip(k, prefix): v.detach().cpu().contiguous() for k, v in sd.items()}


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def _prefix(model: nn.Module) -> str:
    """The name prefix of the exported model inside a task's training module
    (its ``state_prefix``, e.g. ``"student."``): checkpoints hold the exported model's names."""
    inner = getattr(model, "module", model)
    return getattr(inner, "state_prefix", "")


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(_distributed()))


def _split_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"state": {}, "param_groups": []}
    for pname, entries in sd["state"].items():
        other = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pname}/{key}"] = value.detach().cpu().contiguous()
            else:
                other[key] = value
        meta["state"][pname] = other
    for group in sd["param_groups"]:
        meta["param_groups"].append(
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
        )
    return tensors, meta


def _join_optimizer(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], template: dict[str, Any]
) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {p: dict(v) for p, v in meta["state"].items()}
    for key, value in tensors.items():
        pname, skey = key.rsplit("/", 1)
        state.setdefault(pname, {})[skey] = value
    groups = []
    for saved, current in zip(meta["param_groups"], template["param_groups"], strict=True):
        g = dict(current)
        for k, v in saved.items():
            g[k] = tuple(v) if isinstance(current.get(k), tuple) else v
        groups.append(g)
    return {"state": state, "param_groups": groups}


# --------------------------------------------------------------------------- rng
def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, json) capturing torch CPU/CUDA, numpy and python ``random`` states."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    tensors["numpy_key"] = torch.from_numpy(
        np.asarray(np_state[1], dtype=np.uint32).astype(np.int64)
    )
    version, internal, gauss = random.getstate()
    meta = {
        "python_random": [version, list(internal), gauss],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    if "python_random" in meta:
        version, internal, gauss = meta["python_random"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta and "numpy_key" in tensors:
        name, pos, has_gauss, cached = meta["numpy"]
        key = tensors["numpy_key"].numpy().astype(np.uint32)
        np.random.set_state((name, key, pos, has_gauss, cached))


# --------------------------------------------------------------------------- atomic writes
_OS_ERROR_CODE = re.compile(r"(?:os error|code:)\s*(\d+)")


def write_file(path: str | Path, write: Callable[[Path], Any]) -> None:
    """``write(path)``; any failure to write (an ``OSError`` that names no file, safetensors'
    ``SafetensorError``) is raised as an ``OSError`` naming ``path`` with its errno (28: full)."""
    path = Path(path)
    try:
        write(path)
    except OSError as err:
        if not err.filename:
            err.filename = str(path)
        raise
    except SafetensorError as err:
        found = _OS_ERROR_CODE.search(str(err))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from None


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Write a folder's files into ``<final>.tmp/`` (yielded), then make them durable and put
    them in place of ``final`` by renames: readers see the old folder or the new one whole,
    never a torn file beside a complete one. On any failure the ``.tmp`` folder is removed,
    ``final`` is left as it was and the error raised (an ``OSError``'s file named under
    ``final``)."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        for f in tmp.iterdir():  # durable before the rename publishes them
            if f.is_file():
                write_file(f, _fsync)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        name = getattr(err, "filename", None)
        if isinstance(err, OSError) and isinstance(name, str) and name.startswith(str(tmp)):
            err.filename = str(final) + name[len(str(tmp)) :]
        raise
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_outputs(folder: str | Path, writers: dict[str, Callable[[Path], Any]]) -> Path:
    """Write the files of ``folder`` (``name -> writer(path)``) all or nothing, in place of
    what was there (:func:`staged_dir`); a failure raises an ``OSError`` naming the file."""
    with staged_dir(folder) as tmp:
        for name, write in writers.items():
            write_file(tmp / name, write)
    return Path(folder)


# --------------------------------------------------------------------------- save / load
def _write_json(path: Path, obj: Any) -> None:
    write_file(path, lambda p: p.write_text(json.dumps(obj, indent=1)))


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], **metadata: str) -> None:
    write_file(path, lambda p: save_file(tensors, str(p), metadata=metadata or None))


def save_checkpoint(
    root: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config_yaml: str,
    is_main: bool = True,
    keep_last: int = 3,
    model_config: dict[str, Any] | None = None,
    ema: Any = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path | None:
    """Write ``root/step_{state.step:06d}`` atomically (rank 0 writes; all ranks must call it,
    FSDP gathers are collective). Keeps the newest ``keep_last`` complete checkpoints.
    ``model_config`` (the model's constructor arguments) is written as ``config.json``. A failed
    write removes its partial ``.tmp`` folder and raises an ``OSError`` naming the file."""
    weights = model_state(model)
    optim_sd = optimizer_state(model, optimizer)
    if not is_main:
        return None
    ema_weights = ema.state_dict() if ema is not None else None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{state.step:06d}"
    with staged_dir(final) as tmp:
        _write_checkpoint(
            tmp, weights, optim_sd, state, config_yaml, model_config, ema_weights, extra_files
        )
    prune(root, keep_last)
    return final


def _write_checkpoint(
    tmp: Path,
    weights: dict[str, torch.Tensor],
    optim_sd: dict[str, Any],
    state: TrainState,
    config_yaml: str,
    model_config: dict[str, Any] | None,
    ema_weights: dict[str, torch.Tensor] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    for name, data in (extra_files or {}).items():  # e.g. the tokenizer's vocab.txt
        write_file(tmp / name, lambda p, data=data: p.write_bytes(data))
    if ema_weights is not None:
        _write_tensors(tmp / "ema.safetensors", ema_weights)
    _write_tensors(tmp / "model.safetensors", weights, format="pt")
    opt_tensors, opt_meta = _split_optimizer(optim_sd)
    _write_tensors(tmp / "optimizer.safetensors", opt_tensors)
    _write_json(tmp / "optimizer.json", opt_meta)
    rng_tensors, rng_meta = rng_state()
    _write_tensors(tmp / "rng.safetensors", rng_tensors)
    _write_json(
        tmp / "state.json",
        {
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "scaler": state.scaler,
            "rng": rng_meta,
            "extra": state.extra,
        },
    )
    write_file(tmp / "config.yaml", lambda p: p.write_text(config_yaml))
    if model_config is not None:
        _write_json(tmp / "config.json", model_config)
    write_file(tmp / COMPLETE, lambda p: p.write_text(str(state.step)))  # the folder is only
    # published (renamed) after every file in it is durable (staged_dir)


def save_export(
    out: str | Path,
    model: nn.Module,
    model_config: dict[str, Any] | None,
    info: dict[str, Any] | None = None,
    is_main: bool = True,
    extra_files: dict[str, bytes] | None = None,
) -> Path | None:
    """Write ``model`` as a loadable folder (``model.safetensors`` + ``config.json`` +
    ``info.json`` + ``extra_files``), replacing ``out`` atomically (:func:`staged_dir`). All
    ranks call it (FSDP gathers)."""
    weights = model_state(model)
    if not is_main:
        return None
    out = Path(out)
    with staged_dir(out) as tmp:
        _write_tensors(tmp / "model.safetensors", weights, format="pt")
        if model_config is not None:
            _write_json(tmp / "config.json", model_config)
        _write_json(tmp / "info.json", info or {})
        for name, data in (extra_files or {}).items():
            write_file(tmp / name, lambda p, data=data: p.write_bytes(data))
    return out


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / COMPLETE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def _remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder, its ``COMPLETE`` marker first: a deletion cut short leaves
    an incomplete folder (ignored), never a "complete" one with files missing."""
    (path / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def prune(root: str | Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints (``<= 0``: keep all)."""
    if keep_last <= 0:
        return
    for p in list_checkpoints(root)[:-keep_last]:
        _remove_checkpoint(p)


def read_checkpoint(path: str | Path, with_optimizer: bool = True) -> dict[str, Any]:
    """Read every file of a checkpoint folder into memory (weights, optimizer, RNG, state).
    Raises ``CorruptCheckpointError`` naming the file when one is missing or unreadable."""
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE} marker)")
    out: dict[str, Any] = {}
    names = ["model.safetensors", "rng.safetensors", "state.json"]
    if with_optimizer:
        names += ["optimizer.safetensors", "optimizer.json"]
    for name in names:
        f = path / name
        try:
            out[name] = (
                load_file(str(f)) if name.endswith(".safetensors") else json.loads(f.read_text())
            )
        except Exception as err:  # noqa: BLE001 - safetensors / json / OS errors alike
            problem = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CorruptCheckpointError(f"{f}: unreadable ({problem})") from None
    for key in ("step", "epoch", "batch_in_epoch"):
        if not isinstance(out["state.json"].get(key), int):
            raise CorruptCheckpointError(f"{path / 'state.json'}: no integer '{key}'")
    return out


def load_training_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
    files: dict[str, Any] | None = None,
    ema: Any = None,
) -> TrainState:
    """Load weights (and optimizer, RNG) from a checkpoint folder into the (possibly wrapped)
    ``model``; returns the saved ``TrainState``. Reads tensors and JSON only; every file is
    read (``files``: as :func:`read_checkpoint` returned them) before anything is changed."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    path = Path(path)
    files = files or read_checkpoint(path, with_optimizer=optimizer is not None)
    prefix = _prefix(model)
    weights = {prefix + k: v for k, v in files["model.safetensors"].items()}
    set_model_state_dict(model, weights, options=_options(_distributed()))
    if optimizer is not None:
        # The live param groups give the value types (tuples); the saved ones name the params.
        # (Not get_optimizer_state_dict: with full state dicts it is empty off rank 0.)
        template = optimizer.state_dict()
        sd = _join_optimizer(files["optimizer.safetensors"], files["optimizer.json"], template)
        set_optimizer_state_dict(model, optimizer, sd, options=_options(_distributed()))
    if ema is not None:
        ema_file = path / "ema.safetensors"
        if ema_file.is_file():
            ema.load_state_dict(load_file(str(ema_file)))
    info = files["state.json"]
    if restore_rng:
        set_rng_state(files["rng.safetensors"], info.get("rng", {}))
    return TrainState(
        step=info["step"],
        epoch=info["epoch"],
        batch_in_epoch=info["batch_in_epoch"],
        scaler=info.get("scaler"),
        extra=info.get("extra", {}),
    )


def resume_candidates(resume: str | None, ckpt_root: str | Path) -> list[Path]:
    """The checkpoints a resume may use, best first: ``None``/"" -> none; ``"auto"`` -> the
    complete checkpoints under ``ckpt_root``, newest first; a run or checkpoints folder -> its
    complete checkpoints, newest first; one checkpoint folder -> just that one."""
    if resume is None or resume == "":
        return []
    if resume == "auto":
        return list(reversed(list_checkpoints(ckpt_root)))
    p = Path(resume)
    if (p / COMPLETE).is_file():
        return [p]
    for cand in (p / "checkpoints", p):
        found = list_checkpoints(cand)
        if found:
            return list(reversed(found))
    raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there")


def resolve_resume(resume: str | None, ckpt_root: str | Path) -> Path | None:
    """The best of :func:`resume_candidates` (``None`` when there is none)."""
    found = resume_candidates(resume, ckpt_root)
    return found[0] if found else None
