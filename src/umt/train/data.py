"""Training data shared by the tasks: the built-in synthetic set, annotation lists, tar shards,
and the loop's data loaders (training and validation)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from umt.config import TaskConfig
from umt.data.synth import WORLD_VERSION
from umt.errors import InputError
from umt.train.distributed import DistInfo, barrier

SYNTHETIC_DIR = f"synthetic-v{WORLD_VERSION}"
"""The default synthetic set's folder under ``$UMT_HOME`` (the world's version in the name: a
folder of an older world is left alone)."""


def synthetic_root(cfg: TaskConfig) -> Path:
    """Where the built-in synthetic set lives: ``data.synthetic_root``, else
    ``$UMT_HOME/``:data:`SYNTHETIC_DIR`, else ``~/.cache/umt/``:data:`SYNTHETIC_DIR`."""
    if cfg.data.synthetic_root:
        return Path(cfg.data.synthetic_root)
    home = os.environ.get("UMT_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "umt"
    return base / SYNTHETIC_DIR


def synthetic_write_error(err: OSError, root: Path) -> OSError:
    """One line (an ``OSError``, exit code 1) for a synthetic set that cannot be written to
    ``root`` (a read-only or full ``UMT_HOME``): the path, the reason and the remedy."""
    where = err.filename or root
    return OSError(
        f"cannot write the synthetic data set under {root} ({where}: {err.strerror or err}); "
        "set UMT_HOME to a writable folder, or data.synthetic_root=DIR"
    )


def ensure_synthetic(cfg: TaskConfig, info: DistInfo) -> Path:
    """The synthetic set's folder, made on first use by rank 0 (the others wait)."""
    from umt import data as umt_data

    root = synthetic_root(cfg)
    if info.is_main:
        try:
            umt_data.ensure_synthetic_dataset(root)
        except OSError as err:
            raise synthetic_write_error(err, root) from None
    barrier()
    return root


def build_video_dataset(
    cfg: TaskConfig, info: DistInfo, annotations: str | None, split: str = "train", **kw: Any
) -> Any:
    """A dataset over ``annotations`` (``None`` = the synthetic set's ``split``): an annotation
    list of any known format, or WebDataset tar shards streamed with ``data.num_samples``.
    ``kw`` are :class:`umt.data.VideoDataset` / :class:`umt.data.ShardDataset` arguments."""
    from umt import data as umt_data

    if annotations is None:
        return umt_data.VideoDataset(ensure_synthetic(cfg, info) / f"{split}.csv", **kw)
    if umt_data.detect_format(annotations) == "wds":
        return build_shard_dataset(cfg, info, annotations, kw)
    if not Path(annotations).is_file():
        raise FileNotFoundError(f"data.train_list: no such file {annotations}")
    return umt_data.build_dataset(annotations, root=cfg.data.root or None, **kw)


def build_shard_dataset(
    cfg: TaskConfig, info: DistInfo, pattern: str, kw: dict[str, Any], cls: type | None = None
) -> Any:
    """WebDataset tar shards (``data.train_list=shards-{000..099}.tar``), streamed: each process
    and worker cycles over its share of the shards; an epoch is ``data.num_samples`` clips.
    ``cls``: the stream class (default :class:`umt.data.ShardDataset`)."""
    from umt import data as umt_data

    d = cfg.data
    if not d.num_samples or d.num_samples <= 0:
        raise InputError(
            f"data.train_list={pattern}: tar shards stream without a length; set "
            "data.num_samples to the clips per epoch (all processes together)"
        )
    dataset = (cls or umt_data.ShardDataset)(
        pattern, repeat=True, rank=info.rank, world_size=info.world_size, **kw
    )
    dataset.urls = [str(Path(d.root, u)) if d.root else u for u in dataset.urls]
    missing = [u for u in dataset.urls if not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data.train_list={pattern}: {len(missing)} of {len(dataset.urls)} shard(s) "
            f"not found: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
    try:
        dataset.check_split(d.num_workers)
    except ValueError as err:
        raise InputError(f"data.train_list={pattern}: {err}") from None
    return dataset


def build_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int,
    device: torch.device,
    *,
    sampler: Any = None,
    train: bool = False,
    streaming: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
) -> torch.utils.data.DataLoader:
    """The loop's ``DataLoader``. Training (``train``): full batches only, drawn by ``sampler``;
    map-style data is indexed by (epoch, index), so its workers live across epochs and keep their
    per-file caches (a stream, ``streaming``, learns its position only when workers start).
    Validation: every item once, in order. Pinned memory on CUDA."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=train,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init_fn,
        persistent_workers=train and num_workers > 0 and not streaming,
    )
