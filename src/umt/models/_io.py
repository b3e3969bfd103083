"""Safe reading of weights and umt's ``config.json``: the leaf every model family uses.

Files are recognised by their content, not their extension, and read with safetensors or
``torch.load(weights_only=True)`` (plus ``argparse.Namespace``, which the official training scripts
store under ``args``): nothing else is ever unpickled. Wrappers ``{"model": ...}``,
``{"module": ...}``, ``{"state_dict": ...}`` are unwrapped; :func:`strip_wrappers` removes the
``module.`` / ``backbone.`` / ``encoder.`` prefixes.

umt's own format is a folder with ``model.safetensors`` and ``config.json`` (the constructor
arguments plus ``"architecture"``, the class name; folders written before that field existed have
none and are recognised from their keys by :mod:`umt.models.hub`).

Also here: :class:`AssumedSizeWarning` (a size the checkpoint does not store was assumed),
:func:`build_checked` (a model is built only after its weights are checked to fit it) and the
one-line error messages every loader raises. This module imports no other ``umt.models`` module.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import inspect
import json
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umt.errors import InputError

__all__ = [
    "ARCHITECTURE",
    "AssumedSizeWarning",
    "CheckpointInfo",
    "build_checked",
    "check_args",
    "init_args",
    "input_error",
    "printable",
    "read_config",
    "read_state_dict",
    "sniff",
    "strip_prefix",
    "strip_wrappers",
    "warn_assumed",
    "weights_file",
]

ARCHITECTURE = "architecture"
"""The ``config.json`` key naming the model class (e.g. ``"VideoViT"``)."""

_WRAPPERS = ("model", "module", "state_dict", "model_state", "student")
_PREFIXES = ("module.", "backbone.", "encoder.")
_ST_MAX_HEADER = 100_000_000  # the safetensors format's own limit
_FIX = "re-download it or pick another checkpoint"


class AssumedSizeWarning(UserWarning):
    """A size the checkpoint does not store (heads, frames, resolution, ...) was assumed.

    Made by :func:`warn_assumed`, it carries ``path``, ``kind`` and ``assumed`` (the list of
    ``name=value (why)`` items), so a caller can re-state it for the parts it keeps."""

    path: str = ""
    kind: str = ""
    assumed: tuple[str, ...] = ()


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, as recognised from its tensor names and shapes."""

    path: str
    kind: str
    parts: list[str] = field(default_factory=list)  # "video-text", "student", "teacher", ...
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- messages
def printable(text: str) -> str:
    """Escape control and other unprintable characters (ANSI escapes included) for display."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def input_error(message: str, cls: type[Exception] = InputError) -> Exception:
    """One printable line: what is raised for bad input (the CLI prints it without a traceback)."""
    return cls(printable(message))


def _first_sentence(text: str, limit: int = 160) -> str:
    """The informative start of a library's error message, on one line."""
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    line = re.split(r"(?<=[a-z)\]])\. ", line)[0].rstrip(".")
    return line[:limit]


def _shape(t: torch.Tensor | torch.Size | tuple[int, ...]) -> str:
    return str(list(t.shape if isinstance(t, torch.Tensor) else t))


def warn_assumed(
    path: str | os.PathLike, kind: str, assumed: Sequence[str], stacklevel: int = 3
) -> None:
    """Say (an :class:`AssumedSizeWarning`) which sizes of the ``kind`` checkpoint at ``path``
    were assumed, and how to give them; nothing when none were."""
    if not assumed:
        return
    warning = AssumedSizeWarning(
        printable(
            f"{path}: {kind} checkpoint: sizes it does not store were assumed: "
            f"{'; '.join(assumed)}; give them if they differ (keyword arguments; on the "
            "command line --num-heads, --text-num-heads, --num-frames, --img-size)"
        )
    )
    warning.path, warning.kind, warning.assumed = os.fspath(path), kind, tuple(assumed)
    warnings.warn(warning, stacklevel=stacklevel)


# --------------------------------------------------------------------------- reading
def weights_file(path: Path) -> Path:
    """The weights file of a checkpoint path (``model.safetensors`` for a folder)."""
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            hint = ""
            if (path / "checkpoints").is_dir() or any(path.glob("step_*")):
                hint = " (a training run? pass one of its checkpoints/step_* folders)"
            raise input_error(f"{path}: folder has no model.safetensors{hint}", FileNotFoundError)
        return weights
    if not path.is_file():
        raise input_error(f"{path}: no such checkpoint file", FileNotFoundError)
    return path


def sniff(path: Path) -> tuple[str, bytes]:
    """``("safetensors" | "torch-zip" | "pickle" | "unknown", first bytes)``, from the content."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) >= 9 and head[8:9] == b"{":
        if 2 <= int.from_bytes(head[:8], "little") <= _ST_MAX_HEADER:
            return "safetensors", head
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch-zip", head
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle", head
    return "unknown", head


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, ``__metadata__``)."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
    try:
        if len(raw) < n:
            raise InputError("the header is cut short")
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise InputError("the header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        reason = _first_sentence(str(err))
        raise input_error(
            f"{path}: corrupt or truncated safetensors file ({reason}); {_FIX}"
        ) from None
    return header


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types
        reason = _first_sentence(str(err))
        raise input_error(
            f"{path}: corrupt or truncated safetensors file ({reason}); {_FIX}"
        ) from None


@contextlib.contextmanager
def _allow_namespace() -> Iterator[None]:
    """Let the weights-only unpickler build ``argparse.Namespace`` (the official ``args``)."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):
        with serialization.safe_globals([argparse.Namespace]):
            yield
    else:  # older torch: the process-wide allow list
        serialization.add_safe_globals([argparse.Namespace])
        yield


def _read_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors that never suggest unsafe loading."""
    try:
        with warnings.catch_warnings(), _allow_namespace():
            warnings.filterwarnings("ignore", message=".*pickle protocol")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        detail = text.split("WeightsUnpickler error:", 1)[-1]
        found = re.search(r"GLOBAL ([\w.]+)", detail)
        if found:
            raise input_error(
                f"{path}: refused: the file holds a pickled {found.group(1)}, not only tensors "
                "and plain containers, and unpickling it could run code (umt reads only tensors, "
                "plain containers and argparse.Namespace); get the weights as a .safetensors "
                "file or as a file holding only the state dict"
            ) from None
        reason = _first_sentence(detail)
        reason = "" if "weights_only" in reason else f" ({reason})"
        raise input_error(
            f"{path}: refused: the file holds pickled data that is not plain tensors and "
            f"containers{reason}: not a weights-only PyTorch checkpoint, or corrupt; {_FIX}"
        ) from None
    except Exception as err:
        reason = _first_sentence(str(err)) or type(err).__name__
        reason = type(err).__name__ if "weights_only" in reason else reason
        raise input_error(
            f"{path}: unreadable PyTorch file, corrupt or truncated ({reason}); {_FIX}"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a safetensors file, a torch file or a umt folder, without running code.

    The format is recognised from the content (a safetensors file named ``.pth`` loads). Raises
    ``FileNotFoundError`` / ``InputError`` (a ``ValueError``) naming the file when it is missing,
    corrupt, truncated or not a checkpoint.
    """
    path = weights_file(Path(path))
    if path.stat().st_size == 0:
        raise input_error(f"{path}: empty file, not a checkpoint")
    fmt, head = sniff(path)
    if fmt == "safetensors":
        return _read_safetensors(path)
    if fmt != "unknown":
        return _unwrap(_read_torch(path), path)
    if path.suffix == ".safetensors":
        raise input_error(
            f"{path}: corrupt or truncated safetensors file (no valid header; starts with bytes "
            f"{head[:16]!r}); {_FIX}"
        )
    if head.startswith(b"version https://git-lfs"):
        what = "a Git LFS pointer file, not the weights (fetch them with `git lfs pull`)"
    elif head.lstrip().startswith(b"<"):
        what = "it looks like a web page, perhaps a failed download"
    else:
        what = f"neither a safetensors file nor a PyTorch file (starts with bytes {head[:16]!r})"
    raise input_error(f"{path}: not a checkpoint: {what}")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise input_error(f"{path}: no state dict found (got {type(obj).__name__})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and isinstance(k, str)}
    if not tensors:
        raise input_error(f"{path}: holds no tensors; keys: {', '.join(map(str, list(obj)[:8]))}")
    return tensors


def strip_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, with it removed (the others dropped)."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def strip_wrappers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``backbone.`` / ``encoder.`` wrappers (also once nested)."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


# --------------------------------------------------------------------------- config.json
def _read_config_json(cfg_file: Path) -> dict[str, Any] | None:
    """A umt ``config.json``; None for another library's (e.g. a transformers model folder)."""
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise input_error(f"{cfg_file}: invalid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise input_error(
            f"{cfg_file}: must hold a JSON object of model arguments, not {type(cfg).__name__}"
        )
    if {"model_type", "architectures", "transformers_version"} & set(cfg):
        return None
    return cfg


def read_config(path: str | Path) -> tuple[dict[str, Any], str] | None:
    """``(config, where it came from)`` of a checkpoint in umt's format, or None for foreign
    files. The config is as stored: with its ``"architecture"`` when it has one."""
    path = Path(path)
    cfg_file = path / "config.json" if path.is_dir() else path.with_name("config.json")
    if path.is_dir() or (path.suffix == ".safetensors" and cfg_file.is_file()):
        if not cfg_file.is_file():
            return None
        cfg = _read_config_json(cfg_file)
        return None if cfg is None else (cfg, str(cfg_file))
    if path.suffix == ".safetensors" and path.is_file() and path.stat().st_size:
        if sniff(path)[0] != "safetensors":
            return None
        meta = _safetensors_header(path).get("__metadata__") or {}
        if isinstance(meta, dict) and "umt_config" in meta:
            try:
                cfg = json.loads(meta["umt_config"])
            except (json.JSONDecodeError, TypeError) as err:
                raise input_error(
                    f"{path}: invalid JSON in the umt_config metadata ({err})"
                ) from None
            if not isinstance(cfg, dict):
                raise input_error(f"{path}: the umt_config metadata is not a JSON object")
            return cfg, f"{path} (umt_config metadata)"
    return None


# --------------------------------------------------------------------------- checks
def init_args(cls: type[nn.Module]) -> list[str]:
    """The constructor argument names of ``cls``."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def check_args(cls: type[nn.Module], keys: list[str], where: str, exc: type[Exception]) -> None:
    """Refuse argument names ``cls`` does not take, suggesting the closest one."""
    known = init_args(cls)
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(known)}"
            raise input_error(f"{where}: unknown key {key!r} for a {cls.__name__} ({hint})", exc)


def build_checked(
    cls: type[nn.Module],
    cfg: dict[str, Any],
    sd: dict[str, torch.Tensor],
    strict: bool,
    skip: tuple[str, ...],
    context: str,
) -> Any:
    """Build ``cls(**cfg)`` after checking, on the meta device (no memory), that the weights fit.

    Every parameter / buffer shape is compared with ``sd`` (``skip``: tables resized later); with
    ``strict`` the names must match too. Raises ``InputError`` starting with ``context``.
    """
    try:
        with torch.device("meta"):
            probe = cls(**cfg)
    except (TypeError, ValueError) as err:
        raise input_error(f"{context}: cannot build a {cls.__name__} from it ({err})") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    del probe
    wrong = [
        f"{k} is {_shape(sd[k])} in the weights but {_shape(shape)} by the config"
        for k, shape in expected.items()
        if k in sd and k not in skip and tuple(sd[k].shape) != shape
    ]
    missing = [k for k in expected if k not in sd] if strict else []
    extra = [k for k in sd if k not in expected] if strict else []
    if wrong or missing or extra:
        problems = []
        if wrong:
            problems.append(f"{len(wrong)} tensor(s) differ in shape: {_few(wrong)}")
        if missing:
            problems.append(f"{len(missing)} missing from the weights: {_few(missing)}")
        if extra:
            problems.append(f"{len(extra)} in the weights but not in the model: {_few(extra)}")
        raise input_error(f"{context}{_holds(sd)}: {'; '.join(problems)}")
    return cls(**cfg)


def _few(items: list[str], n: int = 2) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _holds(sd: dict[str, torch.Tensor]) -> str:
    """What the weights hold, in the words of the constructor arguments."""
    w = sd.get("patch_embed.proj.weight", sd.get("conv1.weight"))
    if w is None:
        return ""
    prefix = "blocks." if "patch_embed.proj.weight" in sd else "transformer.resblocks."
    idx = {int(k.split(".")[len(prefix.split(".")) - 1]) for k in sd if k.startswith(prefix)}
    depth = 1 + max(idx) if idx else 0
    what = ("embed_dim", "depth") if prefix == "blocks." else ("width", "layers")
    return f" (the weights hold {what[0]} {w.shape[0]}, {what[1]} {depth})"
