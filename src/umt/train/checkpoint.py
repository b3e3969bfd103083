"""Training checkpoints without pickles, written atomically.

A checkpoint is a folder ``<output>/checkpoints/step_000123/``::

    model.safetensors      student weights (keys of a plain ``VideoViT``)
    optimizer.safetensors  optimizer tensors, keyed ``<param name>/<state key>``
    optimizer.json         param groups and the optimizer's non-tensor state
    rng.safetensors        torch CPU / CUDA generator states (uint8), numpy key (uint32)
    state.json             step, data position, python ``random`` state, GradScaler, metrics
    config.yaml            the resolved config of the run
    COMPLETE               written last; a folder without it is ignored

It is written under ``step_000123.tmp/`` and renamed when complete, so an interrupted write
never hides the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

COMPLETE = "COMPLETE"
_STEP_RE = re.compile(r"^step_(\d+)$")


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
    return {_strip(k): v.detach().cpu().contiguous() for k, v in sd.items()}


def _strip(name: str) -> str:
    return name[len("student.") :] if name.startswith("student.") else name


def _prefix(model: nn.Module) -> str:
    inner = getattr(model, "module", model)
    return "student." if hasattr(inner, "student") else ""


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


# --------------------------------------------------------------------------- save / load
def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1))


def save_checkpoint(
    root: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config_yaml: str,
    is_main: bool = True,
    keep_last: int = 3,
) -> Path | None:
    """Write ``root/step_{state.step:06d}`` atomically (rank 0 writes; all ranks must call it,
    FSDP gathers are collective). Keeps the newest ``keep_last`` complete checkpoints."""
    weights = model_state(model)
    optim_sd = optimizer_state(model, optimizer)
    if not is_main:
        return None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{state.step:06d}"
    tmp = root / f"step_{state.step:06d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    opt_tensors, opt_meta = _split_optimizer(optim_sd)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    _write_json(tmp / "optimizer.json", opt_meta)
    rng_tensors, rng_meta = rng_state()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
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
    (tmp / "config.yaml").write_text(config_yaml)
    for f in tmp.iterdir():  # make the contents durable before the rename publishes them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    (tmp / COMPLETE).write_text(str(state.step))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    prune(root, keep_last)
    return final


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


def prune(root: str | Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for p in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> TrainState:
    """Load weights (and optimizer, RNG) from a checkpoint folder into the (possibly wrapped)
    ``model``; returns the saved ``TrainState``. Reads tensors and JSON only."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE} marker)")
    prefix = _prefix(model)
    weights = {prefix + k: v for k, v in load_file(str(path / "model.safetensors")).items()}
    set_model_state_dict(model, weights, options=_options(_distributed()))
    if optimizer is not None:
        # The live param groups give the value types (tuples); the saved ones name the params.
        # (Not get_optimizer_state_dict: with full state dicts it is empty off rank 0.)
        template = optimizer.state_dict()
        meta = json.loads((path / "optimizer.json").read_text())
        sd = _join_optimizer(load_file(str(path / "optimizer.safetensors")), meta, template)
        set_optimizer_state_dict(model, optimizer, sd, options=_options(_distributed()))
    info = json.loads((path / "state.json").read_text())
    if restore_rng:
        set_rng_state(load_file(str(path / "rng.safetensors")), info.get("rng", {}))
    return TrainState(
        step=info["step"],
        epoch=info["epoch"],
        batch_in_epoch=info["batch_in_epoch"],
        scaler=info.get("scaler"),
        extra=info.get("extra", {}),
    )


def resolve_resume(resume: str | None, ckpt_root: str | Path) -> Path | None:
    """``None`` -> no resume; ``"auto"`` -> latest complete checkpoint under ``ckpt_root`` (or
    ``None``); a path -> that checkpoint (a run folder resolves to its latest checkpoint)."""
    if resume is None or resume == "":
        return None
    if resume == "auto":
        return latest_checkpoint(ckpt_root)
    p = Path(resume)
    if (p / COMPLETE).is_file():
        return p
    for cand in (p / "checkpoints", p):
        last = latest_checkpoint(cand)
        if last is not None:
            return last
    raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there")
