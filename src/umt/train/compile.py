"""``train.compile``: ``torch.compile`` the repeated blocks of a task's model, owned by the loop.

Each transformer block (a module of an ``nn.ModuleList`` named ``blocks``, ``layers`` or
``resblocks``: encoder and decoder blocks, text layers, the teacher's residual blocks) is
compiled in place with ``nn.Module.compile``: its parameters keep their names, so state dicts,
checkpoints and resumes are those of an eager run. The loop compiles before it wraps the model
(DDP / FSDP2 shard the compiled blocks, as torchtitan does); gradient checkpointing calls the
compiled block; autocast is part of what a compiled graph is specialised on.

Blocks of one list share their code: one graph serves them all, except where a block's own
constants differ (each block's drop-path rate), which costs one graph each; the recompile limit
is raised to the number of blocks so that none falls back to eager.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from umt.errors import MachineError

BLOCK_LISTS = ("blocks", "layers", "resblocks")
"""Names of the ``nn.ModuleList`` attributes whose modules are compiled."""


class CompileUnavailableError(MachineError):
    """``torch.compile`` cannot build kernels here (no C++ compiler for inductor on the CPU,
    no triton on the GPU)."""


def repeated_blocks(roots: Iterable[nn.Module]) -> list[nn.Module]:
    """The blocks ``train.compile`` compiles under ``roots`` (each module once, in order)."""
    found: list[nn.Module] = []
    seen: set[int] = set()
    for root in roots:
        for module in root.modules():
            for name in BLOCK_LISTS:
                blocks = getattr(module, name, None)
                if not isinstance(blocks, nn.ModuleList):
                    continue
                for block in blocks:
                    if id(block) not in seen:
                        seen.add(id(block))
                        found.append(block)
    return found


def check_compile(device: torch.device) -> None:
    """Raise :class:`CompileUnavailableError` (one line: why, what to do) unless a tiny function
    compiles and runs on ``device`` with inductor, torch.compile's default backend."""

    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x) * 2.0 + 1.0

    try:
        torch.compile(probe, fullgraph=True)(torch.zeros(8, device=device))
    except Exception as err:  # inductor's failures come wrapped in dynamo's; any one will do
        lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else type(err).__name__
        need = "a C++ compiler (g++; or set CXX)" if device.type == "cpu" else "triton"
        raise CompileUnavailableError(
            f"train.compile=true: torch.compile cannot build kernels on {device} "
            f"({why[:240]}); it needs {need}: install it, or set train.compile=false"
        ) from None


def compile_blocks(roots: Iterable[nn.Module]) -> int:
    """``torch.compile`` each of :func:`repeated_blocks` in place; returns how many. Raises
    dynamo's recompile limit to the number of blocks (see the module docstring)."""
    import torch._dynamo

    blocks = repeated_blocks(roots)
    config = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, key):
            setattr(config, key, max(getattr(config, key), len(blocks)))
            break
    for block in blocks:
        block.compile()
    return len(blocks)


def drop_compiled(module: nn.Module) -> nn.Module:
    """``module`` with every submodule's compiled call removed (eager again): for a deep copy,
    whose compiled calls would still run the original's weights. Returns ``module``."""
    for sub in module.modules():
        if getattr(sub, "_compiled_call_impl", None) is not None:
            sub._compiled_call_impl = None
    return module
