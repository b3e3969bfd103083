"""The timing loop every benchmark shares: warm-up calls, then timed calls, each fenced by a
device synchronisation so that GPU work is counted where it is launched."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def device_sync(device: torch.device) -> Callable[[], None]:
    """``torch.cuda.synchronize`` on a CUDA device, a no-op elsewhere."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(
    run_one: Callable[[int], object], steps: int, warmup: int, device: torch.device
) -> list[float]:
    """Seconds of each of ``steps`` calls ``run_one(i)`` after ``warmup`` untimed ones (``i``
    counts all calls, warm-up included)."""
    sync = device_sync(device)
    out = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        run_one(i)
        sync()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out
