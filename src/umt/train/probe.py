"""The end of a pretraining run on the synthetic set: what did the student learn?

The trained encoder and the same encoder at its random initialisation are probed on the
synthetic set's labels (fit on train, score on val; :mod:`umt.evaluate.probe`): k-NN (``probe_acc``)
and a linear probe (``linear_probe_acc``). The numbers go to ``<run>/probe.json`` and to the
run's last stdout line, a JSON summary for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from umt.train.tasks.base import RunContext
from umt.train.tasks.common import data_clip


def probe_enabled(cfg: Any) -> bool:
    """``probe.enabled``, where unset: on when the run trains on the built-in synthetic set."""
    if cfg.probe.enabled is not None:
        return bool(cfg.probe.enabled)
    return cfg.data.train_list is None


def probe_datasets(cfg: Any, ctx: RunContext) -> tuple[Any, Any, int]:
    """The synthetic set's train clips (the first ``probe.fit_clips``) and val clips as the
    evaluation sees them (centre view), and the class count."""
    from umt.data import VideoDataset
    from umt.train.data import ensure_synthetic

    root = ensure_synthetic(cfg, ctx.info)
    d = cfg.data
    clip = data_clip(d, False, short_side=d.input_size)
    kw = dict(clip=clip, seed=cfg.train.seed)
    train = VideoDataset(root / "train.csv", **kw)
    fit = cfg.probe.fit_clips
    if fit is not None and fit < len(train):
        import torch

        train = torch.utils.data.Subset(train, range(fit))
    val = VideoDataset(root / "val.csv", **kw)
    classes = json.loads((root / "classes.json").read_text())
    return train, val, len(classes)


def run_probe(
    cfg: Any,
    ctx: RunContext,
    encoder: nn.Module,
    build_random_encoder: Callable[[], nn.Module] | None,
    out: Path,
    summary: dict[str, Any] | None = None,
) -> list[str]:
    """Probe ``encoder`` (and, with ``probe.random_init``, the encoder ``build_random_encoder``
    makes, on the run's device) on rank 0; write ``out/probe.json``; return the lines to print,
    the last one the JSON summary (``summary`` adds keys to it)."""
    if not ctx.info.is_main:
        return []
    from umt.evaluate.probe import probe_encoder

    p = cfg.probe
    train, val, num_classes = probe_datasets(cfg, ctx)
    kw = dict(
        num_classes=num_classes,
        k=p.k,
        epochs=p.epochs,
        weight_decay=p.weight_decay,
        batch_size=cfg.train.batch_size,
        num_workers=cfg.data.num_workers,
        device=ctx.device,
        autocast_dtype=ctx.amp_dtype,
    )
    trained = probe_encoder(encoder, train, val, **kw)
    baseline = None
    if p.random_init and build_random_encoder is not None:
        baseline = probe_encoder(build_random_encoder().to(ctx.device), train, val, **kw)
    where = (
        f"synthetic set: fit on {trained.num_train} train clips, scored on {trained.num_val} val "
        f"clips, {num_classes} classes (chance {trained.chance:.1%})"
    )
    lines = [
        f"probe ({where}):",
        f"  pretrained student:  k-NN {trained.knn_acc:.1%}  linear {trained.linear_acc:.1%}",
    ]
    # probe_acc is the k-NN accuracy: it needs no fitted classifier, so it reads the geometry
    # of the features; a linear probe on 600 clips already finds colour and where things go
    # in the features of a random network (both are reported, beside random init).
    result: dict[str, Any] = {
        "probe": f"k-NN (k={p.k}, cosine) on frozen features",
        "probe_acc": trained.knn_acc,
    }
    if baseline is not None:
        lines.append(
            f"  random-init student: k-NN {baseline.knn_acc:.1%}  linear {baseline.linear_acc:.1%}"
        )
        result["probe_acc_random_init"] = baseline.knn_acc
    result["linear_probe_acc"] = trained.linear_acc
    if baseline is not None:
        result["linear_probe_acc_random_init"] = baseline.linear_acc
    result["chance"] = trained.chance
    result.update(summary or {})
    record = {
        "trained": trained.to_dict(),
        "random_init": baseline.to_dict() if baseline else None,
        "summary": result,
    }
    try:
        (out / "probe.json").write_text(json.dumps(record, indent=1))
        lines.append(f"probe results: {out / 'probe.json'}")
    except OSError as err:
        lines.append(f"probe results not written ({out / 'probe.json'}: {err.strerror or err})")
    lines.append(json.dumps(result))
    return lines
