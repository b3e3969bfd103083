"""Video-text and image-text training data (stage 2 and retrieval fine-tuning).

The official stage-2 data (``multi_modality/dataset``), rebuilt on this package's loaders:

* :class:`CaptionDataset` — one JSON list ``[{"video" | "image": path, "caption": str | [str]}]``
  (WebVid / CC3M style; the key gives the medium). A list of captions gives one item per
  caption (the official ``multi_txt_gt`` training expansion), or one paragraph with
  ``paragraph=True`` (DiDeMo / ActivityNet). Videos are decoded by :class:`VideoDataset`
  (fault counting, replacement of broken files, per-sample seeds); images are one-frame clips
  ``[3, 1, H, W]``.
* :class:`CaptionCorpus` — several such sets in one run, concatenated (map-style, indexable by
  ``(epoch, index)``), with globally unique sample ids.
* :class:`MixedMediaSampler` — the official ``MetaLoader`` mixing: every step is a pure image
  or a pure video batch, on every rank the same medium, in proportion to the media's batch
  counts, with exact resumes.
* :class:`CaptionShardDataset` / :func:`write_caption_shards` — the same items from tar shards.
* :func:`collate_captions` — batches of one medium.

Items: ``{"video": float [3, T, H, W] (T=1 for images), "caption": str (raw: tokenisation and
the official ``pre_text`` cleaning happen later), "sample_id": int, "media": "video" | "image",
"index": int, "path": str, "faults": [(path, reason)]}``.

Sample ids say which pairs are positives of each other (VTC targets, VTM exclusions):

* ``id_by="entry"`` (pretraining): each annotation entry is its own id (its captions, when it
  lists several, share it);
* ``id_by="video"`` (retrieval fine-tuning): all captions of one video (same resolved path)
  share an id; the official code keys by the file's base name, so two videos with the same
  name in different folders would share one there;
* ``id_by="caption"`` (SSv2-label / template): all videos with the same caption share an id.

Within a dataset ids are numbered in order of first appearance (the official ``match_ids``);
across the datasets of a :class:`CaptionCorpus` each dataset's ids are offset by the id count
of the datasets before it, so ids are unique in the whole run. (The official pretraining uses
the per-sub-dataset annotation index inside a ``ConcatDataset``, so items of different
datasets with equal local index count as positives: spec J item 7. The offset fixes that.)

Transforms (official ``multi_modality/dataset/__init__.py``): training
``RandomResizedCrop(size, scale=(0.5, 1.0), bicubic)`` + horizontal flip, one crop for all
frames; test ``Resize((size, size), bicubic)``; then ``/255`` and ImageNet mean / std.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from umt.data.clip_spec import ClipSpec
from umt.data.datasets import ShardDataset, VideoDataset, collate_videos
from umt.data.faults import FaultCounter, VideoFault
from umt.data.formats.annotations import detect_format, load_annotations
from umt.data.formats.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoRecord
from umt.data.sampling import SAMPLING_NAMES, make_generator, sample_seed
from umt.data.transforms.recipes import build_caption_transform
from umt.errors import InputError

__all__ = [
    "ID_MODES",
    "MEDIA",
    "CaptionDataset",
    "CaptionCorpus",
    "CaptionShardDataset",
    "MixedMediaSampler",
    "media_order",
    "collate_captions",
    "write_caption_shards",
]

ID_MODES = ("entry", "video", "caption")
"""What makes two items share a sample id (see the module docstring)."""

MEDIA = ("video", "image")

_SPEC_KEYS = ("anno", "root", "media", "id_by", "paragraph", "max_seconds")


# --------------------------------------------------------------------------- transforms
# --------------------------------------------------------------------------- one dataset
def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _media_of_file(path: str | os.PathLike) -> str:
    """``"video"`` or ``"image"`` from a video-text / image-text JSON's keys."""
    fmt = detect_format(path)
    if fmt == "video_text":
        return "video"
    if fmt == "image_text":
        return "image"
    raise InputError(
        f"{os.fspath(path)}: not a video-text or image-text JSON list (entries need a 'video' "
        f"or 'image' path and a 'caption'); detected format {fmt!r}"
    )


def _caption_key(text: str) -> int:
    """A stable 62-bit id of a caption text (for shards that carry no ids)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"umt-capt").digest()
    return int.from_bytes(digest, "little") >> 2


class CaptionDataset(Dataset):
    """One video-text or image-text training set (map-style, indexable by ``(epoch, index)``).

    ``__getitem__`` returns ``{"video": [3, T, S, S] (T=1 for images), "caption": str,
    "sample_id": int, "media": str, "index": int, "path": str, "faults": [(path, reason)]}``.
    A broken file is replaced by another item (seeded from ``(seed, epoch, index, attempt)``,
    at most ``max_retries`` times), counted in :attr:`faults` and reported in ``"faults"``;
    the replacement's caption and sample id come with it, as officially.

    Args:
        annotations: a JSON / JSONL list ``[{"video" | "image": path, "caption": str |
            [str]}]`` or already loaded :class:`VideoRecord` s.
        root: prefix of relative media paths (default: the annotation file's folder).
        media: ``"video"``, ``"image"`` or ``None`` / ``"auto"`` (from the entries' key, for
            records from the file extensions). Image entries need an image file extension
            (``.jpg``, ``.png``, ...), video entries must not have one.
        id_by: ``"entry"``, ``"video"`` or ``"caption"`` (see the module docstring).
        id_offset: added to every sample id (:class:`CaptionCorpus` sets it).
        paragraph: join a caption list with spaces into one text (the official paragraph
            retrieval, DiDeMo / ActivityNet) instead of one item per caption.
        num_frames / sampling: the clip; ``sampling=None`` is ``"rand"`` for training and
            ``"middle"`` for test (:func:`umt.data.sampling.interval_indices`); any name of
            :data:`umt.data.sampling.SAMPLING_NAMES` works.
        max_seconds: sample only the first ``max_seconds`` of longer videos (official DiDeMo
            ``trimmed30``: 30).
        input_size / rrc_scale / flip / mean / std / antialias: :func:`build_caption_transform`;
            ``transform`` replaces it.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Sequence[VideoRecord],
        root: str | os.PathLike | None = None,
        media: str | None = None,
        id_by: str = "entry",
        id_offset: int = 0,
        paragraph: bool = False,
        num_frames: int = 4,
        sampling: str | None = None,
        input_size: int = 224,
        train: bool = True,
        rrc_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        mean: str | Sequence[float] = "imagenet",
        std: str | Sequence[float] | None = None,
        antialias: bool = False,
        transform: Callable | None = None,
        max_seconds: float | None = None,
        seed: int = 0,
        backend: str = "auto",
        max_retries: int = 10,
        max_fail_ratio: float = 0.5,
    ) -> None:
        _check_choice("id_by", id_by, ID_MODES)
        if media == "auto":
            media = None
        if media is not None:
            _check_choice("media", media, MEDIA)
        sampling = sampling or ("rand" if train else "middle")
        _check_choice("sampling", sampling, SAMPLING_NAMES)
        root = root or None  # "" (an unset config field) means the annotation's folder
        if isinstance(annotations, (str, os.PathLike)):
            self.source = os.fspath(annotations)
            found = _media_of_file(annotations)
            if media is not None and media != found:
                raise InputError(
                    f"{self.source}: entries have '{found}' paths but media={media!r} was given"
                )
            media = found
            entries = load_annotations(annotations, f"{media}_text", root)
        else:
            self.source = "<records>"
            entries = list(annotations)
            if not entries:
                raise InputError("CaptionDataset: no records given")
            if media is None:
                media = "image" if all(r.is_image for r in entries) else "video"
        self.media: str = media
        self.id_by = id_by
        self.id_offset = int(id_offset)
        self.paragraph = bool(paragraph)
        self.records, self.entry_of = self._expand(entries)
        self._check_media()
        self.local_ids, self.num_ids = self._number_ids()
        if transform is None:
            transform = build_caption_transform(
                train, input_size, rrc_scale, flip, mean, std, antialias
            )
        self.train = bool(train)
        self.videos = VideoDataset(
            self.records,
            clip=ClipSpec(
                num_frames=num_frames,
                sampling=sampling,
                max_seconds=max_seconds,
                image_repeat=1,
                train=train,
            ),
            transform=transform,
            seed=seed,
            backend=backend,
            max_retries=max_retries,
            max_fail_ratio=max_fail_ratio,
        )
        self.videos.source = self.source

    # ---------------------------------------------------------------- building
    def _expand(self, entries: list[VideoRecord]) -> tuple[list[VideoRecord], list[int]]:
        """One record per caption (or per paragraph), and the entry each came from."""
        records: list[VideoRecord] = []
        entry_of: list[int] = []
        for n, rec in enumerate(entries):
            caption = rec.caption
            if caption is None or (isinstance(caption, list) and not caption):
                raise InputError(
                    f"{self.source}: entry {n} ({rec.listed or rec.path}) has no caption"
                )
            if isinstance(caption, str):
                records.append(rec)
                entry_of.append(n)
            elif self.paragraph:
                records.append(replace(rec, caption=" ".join(caption)))
                entry_of.append(n)
            else:
                for text in caption:
                    records.append(replace(rec, caption=text))
                    entry_of.append(n)
        empty = [r for r in records if not str(r.caption).strip()]
        if records and len(empty) == len(records):
            raise InputError(
                f"{self.source}: all {len(records)} captions are empty; a video-text model "
                "cannot learn from it: fill in the 'caption' fields"
            )
        if empty:
            warnings.warn(
                f"{self.source}: {len(empty)} of {len(records)} captions are empty (first: "
                f"{empty[0].listed or empty[0].path}); they train as empty texts",
                stacklevel=3,
            )
        return records, entry_of

    def _check_media(self) -> None:
        for rec, n in zip(self.records, self.entry_of):
            is_image = rec.path.lower().endswith(IMAGE_EXTENSIONS)
            if self.media == "image" and not is_image:
                raise InputError(
                    f"{self.source}: entry {n}: {rec.path} is not an image file (image-text "
                    f"entries need one of {', '.join(IMAGE_EXTENSIONS)})"
                )
            if self.media == "video" and is_image:
                raise InputError(
                    f"{self.source}: entry {n}: {rec.path} is an image; list images in an "
                    "image-text file (key 'image')"
                )

    def _number_ids(self) -> tuple[list[int], int]:
        if self.id_by == "entry":
            ids = list(self.entry_of)
            return ids, (ids[-1] + 1 if ids else 0)
        table: dict[str, int] = {}
        ids = []
        for rec in self.records:
            key = os.path.normpath(rec.path) if self.id_by == "video" else str(rec.caption)
            ids.append(table.setdefault(key, len(table)))
        return ids, len(table)

    # ---------------------------------------------------------------- access
    @property
    def faults(self) -> FaultCounter:
        """This process's tally of skipped files."""
        return self.videos.faults

    def fault_summary(self) -> str:
        return self.faults.summary(len(self.records))

    def sample_id(self, index: int) -> int:
        """The sample id of item ``index`` (offset included)."""
        return self.id_offset + self.local_ids[index]

    def set_epoch(self, epoch: int) -> None:
        self.videos.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        s = self.videos[item]
        return {
            "video": s["video"],
            "caption": s["caption"],
            "sample_id": self.sample_id(s["record_index"]),
            "media": self.media,
            "index": s["index"],
            "path": s["path"],
            "faults": s["faults"],
        }


# --------------------------------------------------------------------------- several datasets
def _spec_dict(spec: Mapping[str, Any] | Sequence[Any], n: int) -> dict[str, Any]:
    """A corpus entry as a dict: ``{"anno", "root", "media", ...}`` or the official
    ``[anno, root]`` / ``[anno, root, "video"]``."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_SPEC_KEYS))
        if unknown:
            raise InputError(
                f"corpus entry {n}: unknown key(s) {unknown}; allowed: {', '.join(_SPEC_KEYS)}"
            )
        if not spec.get("anno"):
            raise InputError(f"corpus entry {n}: 'anno' (the annotation file) is required")
        return dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return {"anno": spec}
    items = list(spec)
    if not 1 <= len(items) <= 3:
        raise InputError(f"corpus entry {n}: expected [anno, root] or [anno, root, media]")
    out: dict[str, Any] = {"anno": items[0]}
    if len(items) > 1:
        out["root"] = items[1]
    out["media"] = items[2] if len(items) > 2 else "image"  # the official default
    return out


class CaptionCorpus(Dataset):
    """Several :class:`CaptionDataset` s of one run, concatenated (map-style, ``(epoch, i)``).

    ``datasets`` lists ``{"anno": path, "root": path | None, "media": "video" | "image" |
    "auto" | None}`` (optionally also ``"id_by"``, ``"paragraph"``, ``"max_seconds"`` for that
    dataset) or the official ``[anno, root]`` / ``[anno, root, "video"]`` lists. The other
    keyword arguments (``id_by``, ``num_frames``, ``sampling``, ``input_size``, ``train``,
    ``rrc_scale``, ``flip``, ``mean``, ``std``, ``transform``, ``max_seconds``, ``backend``,
    ...) go to every :class:`CaptionDataset`. Dataset ``d`` draws from the seed
    ``sample_seed(seed, 0, d, 1)``.

    The datasets are grouped by medium (the first medium listed first, the given order within
    a medium), so each medium's items form one block: :attr:`media_sizes` (in that order)
    describes the index layout, and ``MixedMediaSampler(corpus.media_sizes, ...)`` equals
    ``MixedMediaSampler(corpus, ...)``. Sample ids are unique across the datasets (each
    dataset's ids are offset by the id count of the datasets before it).
    """

    def __init__(
        self,
        datasets: Sequence[Mapping[str, Any] | Sequence[Any] | CaptionDataset],
        id_by: str = "entry",
        seed: int = 0,
        **options: Any,
    ) -> None:
        if not datasets:
            raise InputError("CaptionCorpus: no datasets given")
        built: list[CaptionDataset] = []
        offset = 0
        prepared = []
        for n, spec in enumerate(datasets):
            if isinstance(spec, CaptionDataset):
                prepared.append((spec.media, n, spec))
                continue
            d = _spec_dict(spec, n)
            media = d.get("media") or "auto"
            if media == "auto":
                media = _media_of_file(d["anno"])
            prepared.append((media, n, d))
        order = list(dict.fromkeys(m for m, _, _ in prepared))
        prepared.sort(key=lambda x: (order.index(x[0]), x[1]))
        for position, (media, _, d) in enumerate(prepared):
            if isinstance(d, CaptionDataset):
                d.id_offset = offset
                ds = d
            else:
                kwargs = dict(options)
                kwargs["id_by"] = d.get("id_by") or id_by
                for key in ("paragraph", "max_seconds"):
                    if d.get(key) is not None:
                        kwargs[key] = d[key]
                ds = CaptionDataset(
                    d["anno"],
                    root=d.get("root") or None,
                    media=media,
                    id_offset=offset,
                    seed=sample_seed(seed, 0, position, 1),
                    **kwargs,
                )
            built.append(ds)
            offset += ds.num_ids
        self.datasets = built
        self.num_ids = offset
        self.cumulative_sizes: list[int] = []
        total = 0
        for ds in built:
            total += len(ds)
            self.cumulative_sizes.append(total)
        self.media_ranges: dict[str, list[range]] = {}
        start = 0
        for ds in built:
            self.media_ranges.setdefault(ds.media, []).append(range(start, start + len(ds)))
            start += len(ds)

    @property
    def media_sizes(self) -> dict[str, int]:
        """Items per medium, in index-block order."""
        return {m: sum(len(r) for r in rs) for m, rs in self.media_ranges.items()}

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(dataset number, index inside it)`` of corpus item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        d = bisect.bisect_right(self.cumulative_sizes, index)
        return d, index - (self.cumulative_sizes[d - 1] if d else 0)

    def media_of(self, index: int) -> str:
        """``"video"`` or ``"image"``: the medium of item ``index``."""
        return self.datasets[self.locate(index)[0]].media

    def set_epoch(self, epoch: int) -> None:
        for ds in self.datasets:
            ds.set_epoch(epoch)

    def fault_summary(self) -> str:
        """This process's skipped files over all datasets."""
        total = FaultCounter()
        for ds in self.datasets:
            total.add(ds.faults.by_path)
        return total.summary(len(self))

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, tuple):
            epoch, index = int(item[0]), int(item[1])
            d, local = self.locate(index)
            sample = self.datasets[d][(epoch, local)]
        else:
            index = int(item)
            d, local = self.locate(index)
            sample = self.datasets[d][local]
        sample["index"] = index
        return sample


# --------------------------------------------------------------------------- mixing
def media_order(batch_counts: Mapping[str, int], seed: int, epoch: int) -> list[str]:
    """The medium of every step of ``epoch``: ``[m] * batch_counts[m]`` for each medium,
    shuffled with a generator from ``(seed, epoch)`` (the official ``MetaLoader`` order, the
    same on every rank). Media are taken in sorted name order before shuffling."""
    names = [m for m in sorted(batch_counts) for _ in range(int(batch_counts[m]))]
    if not names:
        return []
    gen = make_generator(sample_seed(seed, epoch, -1))
    return [names[i] for i in torch.randperm(len(names), generator=gen).tolist()]


def _index_tensor(value: Any, start: int) -> torch.Tensor:
    if isinstance(value, int):
        return torch.arange(start, start + value, dtype=torch.long)
    if isinstance(value, range):
        return torch.arange(value.start, value.stop, value.step, dtype=torch.long)
    items = list(value)
    if items and all(isinstance(v, range) for v in items):
        return torch.cat([_index_tensor(v, 0) for v in items])
    return torch.tensor([int(v) for v in items], dtype=torch.long)


class MixedMediaSampler(Sampler):
    """Homogeneous image / video batches in the official proportions, the same medium on
    every rank, resumable by ``(epoch, batch)``: the official ``MetaLoader`` as one sampler.

    ``media``: a :class:`CaptionCorpus` (its ``media_ranges``), or ``{medium: size}``
    (consecutive index blocks in the mapping's order) or ``{medium: indices}`` (a range, a
    list of ranges or of ints). Per epoch, medium ``m`` (``k``-th in sorted name order) is
    shuffled with ``sample_seed(seed, epoch, k)`` and cut into global batches of
    ``batch_size * world_size`` (the tail dropped); the steps' media are :func:`media_order`.
    Rank ``r`` takes positions ``r, r + world, ...`` of each global batch, so rank ``r``'s
    ``k``-th batch together with the other ranks' ``k``-th batches is the single-process
    ``k``-th batch of size ``batch_size * world_size`` (as :class:`ResumableSampler` of
    ``umt.train.distributed``, whose interface this matches).

    The sampler yields a flat stream (``(epoch, index)`` pairs with ``with_epoch``) that a
    ``DataLoader(batch_size=batch_size, drop_last=True)`` cuts into the batches. A medium
    with fewer items than one global batch contributes no batch.
    """

    def __init__(
        self,
        media: Mapping[str, Any] | CaptionCorpus,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        with_epoch: bool = True,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise InputError(
                f"need batch_size >= 1 and 0 <= rank < world_size; got {batch_size}, "
                f"rank {rank} of {world_size}"
            )
        mapping = media.media_ranges if hasattr(media, "media_ranges") else media
        if not mapping:
            raise InputError("MixedMediaSampler: no media given")
        if any(isinstance(v, int) for v in mapping.values()) and not all(
            isinstance(v, int) for v in mapping.values()
        ):
            raise InputError("MixedMediaSampler: give all media as sizes or all as indices")
        self.indices: dict[str, torch.Tensor] = {}
        start = 0
        for name, value in mapping.items():
            self.indices[str(name)] = _index_tensor(value, start)
            if isinstance(value, int):
                start += value
        self.batch_size = int(batch_size)
        self.world = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.with_epoch = with_epoch
        self.epoch = 0
        self.start_batch = 0
        step = self.batch_size * self.world
        self.media_batches = {m: len(t) // step for m, t in self.indices.items()}
        self.batches_per_rank = sum(self.media_batches.values())
        if self.batches_per_rank == 0:
            sizes = ", ".join(f"{len(t)} {m}" for m, t in self.indices.items())
            raise InputError(
                f"{sizes} item(s): fewer than one step's batch "
                f"({batch_size} x {world_size} processes) of any medium"
            )

    @property
    def num_batches(self) -> int:
        """Batches per process and epoch."""
        return self.batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start_batch = 0

    def set_position(self, epoch: int, batch: int) -> None:
        """Start ``epoch`` at its ``batch``-th (per-process) batch."""
        self.epoch = int(epoch)
        self.start_batch = int(batch)

    def batch_media(self, epoch: int | None = None) -> list[str]:
        """The medium of every step of ``epoch`` (default: the current one)."""
        return media_order(self.media_batches, self.seed, self.epoch if epoch is None else epoch)

    def global_batches(self, epoch: int | None = None) -> list[tuple[str, list[int]]]:
        """``(medium, indices)`` of every global batch (all ranks together) of ``epoch``."""
        epoch = self.epoch if epoch is None else int(epoch)
        step = self.batch_size * self.world
        perms = {}
        for k, m in enumerate(sorted(self.indices)):
            gen = make_generator(sample_seed(self.seed, epoch, k))
            idx = self.indices[m]
            perms[m] = idx[torch.randperm(len(idx), generator=gen)]
        taken = dict.fromkeys(self.indices, 0)
        out = []
        for m in media_order(self.media_batches, self.seed, epoch):
            j = taken[m]
            taken[m] += 1
            out.append((m, perms[m][j * step : (j + 1) * step].tolist()))
        return out

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        epoch = self.epoch
        for _, batch in self.global_batches(epoch)[self.start_batch :]:
            for i in batch[self.rank :: self.world]:
                yield (epoch, i) if self.with_epoch else i

    def __len__(self) -> int:
        return max(self.batches_per_rank - self.start_batch, 0) * self.batch_size


# --------------------------------------------------------------------------- collate
def collate_captions(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of one medium.

    Returns ``{"video": [B, 3, T, H, W], "caption": [str], "sample_ids": long [B], "media":
    "video" | "image", "index": long [B], "path": [str], "skipped": long scalar, "faults":
    [(path, reason)]}`` (the fault keys as in :func:`umt.data.collate_videos`). A batch mixing
    media is refused (use :class:`MixedMediaSampler`).
    """
    if not samples:
        raise InputError("collate_captions: empty batch")
    media = {s["media"] for s in samples}
    if len(media) > 1:
        raise InputError(
            f"collate_captions: a batch mixes media {sorted(media)}; every batch must be all "
            "videos or all images (sample with MixedMediaSampler)"
        )
    batch = collate_videos(samples)
    batch["sample_ids"] = torch.tensor([int(s["sample_id"]) for s in samples], dtype=torch.long)
    batch["media"] = media.pop()
    batch["caption"] = [s["caption"] for s in samples]
    return batch


# --------------------------------------------------------------------------- tar shards
def write_caption_shards(
    data: CaptionCorpus | CaptionDataset,
    out_dir: str | os.PathLike,
    per_shard: int = 1000,
    prefix: str = "shard",
) -> dict[str, list[Path]]:
    """Write the items of a corpus (or one dataset) as tar shards, one shard set per medium:
    ``out_dir/{prefix}-{medium}-000000.tar`` ... (WebDataset layout of
    :func:`umt.data.write_shards`). Each item (one per caption, as the map-style data has
    them) is a sample with the media file and a ``.json`` ``{"caption", "sample_id",
    "media"}``, so :class:`CaptionShardDataset` yields the same captions and sample ids.
    Returns ``{medium: shard paths}``; :func:`umt.data.shard_pattern` names a set.
    """
    from umt.data.shards import write_shards

    datasets = data.datasets if isinstance(data, CaptionCorpus) else [data]
    out: dict[str, list[Path]] = {}
    for medium in dict.fromkeys(ds.media for ds in datasets):
        records: list[VideoRecord] = []
        meta: list[dict[str, Any]] = []
        for ds in datasets:
            if ds.media != medium:
                continue
            for i, rec in enumerate(ds.records):
                records.append(rec)
                meta.append({"sample_id": ds.sample_id(i), "media": medium})
        out[medium] = write_shards(
            records, out_dir, per_shard=per_shard, prefix=f"{prefix}-{medium}", meta=meta
        )
    return out


class CaptionShardDataset(ShardDataset):
    """Streams caption items from tar shards (:class:`ShardDataset`: shuffling, split by rank
    and worker, ``repeat``, ``set_position``, fault counting), yielding the items of
    :class:`CaptionDataset` (``"index"`` is the shard stream index).

    ``"sample_id"`` and ``"media"`` come from the sample's ``.json`` when it has them
    (:func:`write_caption_shards`); otherwise the medium is the member's kind and the id is
    ``id_offset`` plus, by ``id_by``: the sample's place in the shard set (``"entry"`` /
    ``"video"``: one tar sample is one file) or a 62-bit hash of the caption (``"caption"``).
    A sample without a caption is skipped as a fault. ``media`` (when given) refuses samples
    of the other medium as faults: feed one medium per stream for homogeneous batches, with
    :func:`media_order` deciding the step order.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        num_frames: int = 4,
        sampling: str | None = None,
        input_size: int = 224,
        train: bool = True,
        rrc_scale: Sequence[float] = (0.5, 1.0),
        flip: bool = True,
        mean: str | Sequence[float] = "imagenet",
        std: str | Sequence[float] | None = None,
        antialias: bool = False,
        transform: Callable | None = None,
        media: str | None = None,
        id_by: str = "entry",
        id_offset: int = 0,
        seed: int = 0,
        backend: str = "auto",
        shuffle_shards: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        max_fail_ratio: float = 0.5,
        repeat: bool = False,
        max_seconds: float | None = None,
    ) -> None:
        _check_choice("id_by", id_by, ID_MODES)
        if media is not None:
            _check_choice("media", media, MEDIA)
        sampling = sampling or ("rand" if train else "middle")
        if transform is None:
            transform = build_caption_transform(
                train, input_size, rrc_scale, flip, mean, std, antialias
            )
        super().__init__(
            urls,
            clip=ClipSpec(
                num_frames=num_frames,
                sampling=sampling,
                max_seconds=max_seconds,
                image_repeat=1,
                train=train,
                input_size=input_size,
            ),
            transform=transform,
            seed=seed,
            backend=backend,
            shuffle_shards=shuffle_shards,
            rank=rank,
            world_size=world_size,
            max_fail_ratio=max_fail_ratio,
            repeat=repeat,
        )
        self.media = media
        self.id_by = id_by
        self.id_offset = int(id_offset)

    def _sample(self, name: str, group: dict[str, bytes], index: int) -> dict[str, Any] | None:
        import json

        kind = "video" if any("." + e in VIDEO_EXTENSIONS for e in group) else "image"
        meta: dict[str, Any] = {}
        try:
            if "json" in group:
                meta = json.loads(group["json"].decode("utf-8"))
            medium = meta.get("media", kind)
            if self.media is not None and medium != self.media:
                raise VideoFault(name, f"a {medium} sample in a {self.media} stream")
            if "txt" not in group and meta.get("caption", meta.get("text")) is None:
                raise VideoFault(name, "no caption (.txt or .json 'caption')")
        except (ValueError, UnicodeDecodeError, VideoFault) as err:
            reason = err.reason if isinstance(err, VideoFault) else f"bad .json member ({err})"
            self.faults.record(name, reason)
            self.faults.check()
            return None
        sample = super()._sample(name, group, index)
        if sample is None:
            return None
        if "sample_id" in meta:
            sample_id = int(meta["sample_id"])
        elif self.id_by == "caption":
            sample_id = self.id_offset + _caption_key(str(sample["caption"]))
        else:
            sample_id = self.id_offset + index % (len(self.urls) * 2**24)
        return {
            "video": sample["video"],
            "caption": sample["caption"],
            "sample_id": sample_id,
            "media": medium,
            "index": sample["index"],
            "path": sample["path"],
        }  # ShardDataset's stream adds "faults"
