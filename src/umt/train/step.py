"""One optimizer step of any task: forward/backward over the micro-batches (gradient sync on the
last one only), non-finite guard, unscale, clip, step (skipped by the grad scaler on overflow)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from umt.errors import DivergenceError
from umt.utils.device import maybe_autocast, model_device

LossFn = Callable[[nn.Module, Any], torch.Tensor]


class NonFiniteLossError(DivergenceError):
    """The loss became NaN or infinite; the message names the step and the last checkpoint."""


def grad_sync(model: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on accumulation micro-steps (DDP ``no_sync`` / FSDP2)."""
    if enabled:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):

        @contextlib.contextmanager
        def _fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return _fsdp_no_sync()
    return contextlib.nullcontext()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Any],
    loss_fn: LossFn,
    clip_grad: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
    reduce_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Forward/backward ``loss_fn(model, micro)`` over ``micro_batches``, then one optimizer step.

    Mixed precision is opened here, once for every task: ``loss_fn`` runs under autocast to
    ``amp_dtype`` on the model's device (None: float32); the backward runs outside it. A loss
    that needs a part in float32 says so itself with ``torch.autocast(..., enabled=False)``.

    Returns ``{"loss", "grad_norm"}``; the loss is the mean over micro-batches (and over processes
    through ``reduce_fn``); ``grad_norm`` (of the unscaled gradients) is NaN unless ``clip_grad``
    is set. With a ``scaler`` (fp16) it also has ``amp_scale``, the loss scale this step's
    backward used, and ``skipped_step`` (1 when a gradient overflowed: the scaler skipped the
    optimizer step and lowered the scale; else 0). Raises ``NonFiniteLossError`` before touching
    the weights when the loss itself is not finite."""
    model.train()
    n = len(micro_batches)
    device = model_device(model)
    total: torch.Tensor | None = None
    for i, micro in enumerate(micro_batches):
        with grad_sync(model, i == n - 1):
            with maybe_autocast(device, amp_dtype):
                loss = loss_fn(model, micro)
            loss = loss / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total = loss.detach() if total is None else total + loss.detach()
    if reduce_fn is not None:
        total = reduce_fn(total)
    loss_value = float(total)  # waits for the backward: reading the scale now costs nothing
    scale = scaler.get_scale() if scaler is not None else 1.0
    if not torch.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"loss is {loss_value}")
    if scaler is not None:
        scaler.unscale_(optimizer)  # before clipping: the norm and the clip see true gradients
    grad_norm = float("nan")
    if clip_grad is not None and clip_grad > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        grad_norm = float(norm)
    out = {"loss": loss_value, "grad_norm": grad_norm}
    if scaler is not None:
        scaler.step(optimizer)  # no update when a gradient is inf / NaN
        scaler.update()  # lowers the scale after an overflow, raises it after a quiet stretch
        out["amp_scale"] = scale
        out["skipped_step"] = int(scaler.get_scale() < scale)
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out
