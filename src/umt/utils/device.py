"""Device and precision helpers shared by the evaluations, inference and the tasks."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from umt.errors import InputError

__all__ = ["maybe_autocast", "model_device", "resolve_amp", "resolve_device"]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def maybe_autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` to ``dtype``; a no-op context when ``dtype`` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """An ``--amp`` value (``auto``: float16 on CUDA as the official tests, none elsewhere;
    ``fp16``, ``bf16``, ``none``) as the autocast dtype for ``device``."""
    table = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if amp == "auto":
        return torch.float16 if device.type == "cuda" else None
    if amp not in table:
        raise InputError(f"amp must be auto, fp16, bf16 or none, not {amp!r}")
    return table[amp]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {name}: CUDA is not available here; use --device cpu or auto"
            )
        return torch.device(name)
    raise InputError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
