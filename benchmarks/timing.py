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


def interleaved(
    runs: dict[str, Callable[[int], object]], steps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """:func:`timed` for several variants in one process, interleaved: round ``i`` calls every
    ``run_one(i)`` in turn, so that a change in the machine's load falls on all of them alike
    (same-run ratios). Returns each variant's ``steps`` timed seconds."""
    sync = device_sync(device)
    out: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + steps):
        for name, run_one in runs.items():
            sync()
            t0 = time.perf_counter()
            run_one(i)
            sync()
            if i >= warmup:
                out[name].append(time.perf_counter() - t0)
    return out


def matmul_run(device: torch.device, n: int = 1024) -> tuple[Callable[[int], object], float]:
    """``(run_one, flops)``: one ``n x n @ n x n`` float32 matrix product per call and its FLOPs,
    the machine's fp32 matmul rate for :func:`interleaved` (TF32 as the backend is set)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    return (lambda i: torch.mm(a, b, out=out)), 2.0 * n**3


def dynamo_counts() -> dict[str, object]:
    """What torch.compile did in this process so far: graphs compiled, graph breaks (and their
    three most frequent reasons, shortened), frames that were recompiled."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    reasons = [f"{n}x {r.splitlines()[0][:120]}" for r, n in breaks.most_common(3)]
    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(breaks.values())),
        "graph_break_reasons": reasons,
    }


def compiled_ratios(med: dict[str, float], official: str) -> dict[str, object]:
    """The compiled variant's numbers from the variants' median step seconds ``med`` (keys
    ``umt`` / ``compiled`` / ``official``), when it ran: its median, its speed-up over eager and
    over the official step (key ``compiled_speedup_vs_<official>``), and :func:`dynamo_counts`."""
    if "compiled" not in med:
        return {}
    out: dict[str, object] = {"compiled_median_s": round(med["compiled"], 4)}
    if "umt" in med:
        out["compiled_speedup_vs_eager"] = round(med["umt"] / med["compiled"], 2)
    if "official" in med:
        out[f"compiled_speedup_vs_{official}"] = round(med["official"] / med["compiled"], 2)
    out.update(dynamo_counts())
    return out


def profile_top(
    run_one: Callable[[int], object], device: torch.device, calls: int = 2, top: int = 10
) -> list[dict[str, object]]:
    """Where ``calls`` calls of ``run_one`` spend their time (torch.profiler): the ``top`` ops
    by self time (CUDA time on a GPU), each with its share of the total."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = device_sync(device)
    with profile(activities=acts) as prof:
        for i in range(calls):
            run_one(10_000 + i)
        sync()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {
            "op": e.key[:60],
            "share": round(getattr(e, key) / total, 3),
            "ms_per_call": round(getattr(e, key) / 1e3 / calls, 2),
        }  # fmt: skip
        for e in events[:top]
    ]
