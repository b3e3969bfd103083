"""Datasets: the map-style :class:`VideoDataset`, tar shards, collate.

Annotation files are read by :mod:`umt.data.formats` (Kinetics lists, SSv2 and caption JSON).

Relative paths are resolved against ``root`` (default: the annotation file's folder). A path
that is a folder is read as extracted frames (``img_00001.jpg`` ...). Images are one-frame
videos (T=1).

Determinism: sample ``i`` in epoch ``e`` draws everything (frame positions, augmentation,
replacement of a broken file, caption choice) from ``make_generator(sample_seed(seed, e, i))``;
nothing depends on worker ids or the global RNG. ``set_epoch`` only reaches DataLoader
workers that are (re)started after it, so use ``persistent_workers=False`` or index the
dataset with ``(epoch, index)`` tuples.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from umt.data.clip_spec import ClipSpec
from umt.data.decode import frame_files, read_image
from umt.data.faults import PROGRAMMING_ERRORS, FaultCounter, TooManyFaultsError, VideoFault
from umt.data.formats.annotations import detect_format, load_annotations
from umt.data.formats.records import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoRecord
from umt.data.sampling import (
    SAMPLING_NAMES,
    ClipView,
    eval_views,
    make_generator,
    min_frames_needed,
    sample_indices,
    sample_seed,
)
from umt.data.transforms.recipes import build_clip_transform
from umt.data.transforms.video import Normalize, ShortSideResize, SpatialCrop, resolve_mean_std
from umt.errors import InputError
from umt.utils.dist import rank_world

__all__ = [
    "ClipLoader",
    "VideoDataset",
    "MultiViewDataset",
    "ShardDataset",
    "collate_videos",
    "collate_views",
    "build_dataset",
    "fault_summary",
]


# --------------------------------------------------------------------------- annotation files


# --------------------------------------------------------------------------- readers


# --------------------------------------------------------------------------- clip loading
class ClipLoader:
    """Turn a source into the clip ``clip`` describes, transformed by ``transform`` and decoded
    by ``backend``; raises VideoFault when the source is unusable."""

    def __init__(self, clip: ClipSpec, backend: str, transform: Callable) -> None:
        sampling, num_frames, max_seconds = clip.sampling, clip.num_frames, clip.max_seconds
        if sampling not in SAMPLING_NAMES:
            raise InputError(
                f"sampling must be one of {', '.join(SAMPLING_NAMES)}; got {sampling!r}"
            )
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_stride = clip.frame_stride
        self.train = clip.train
        self.min_frames = (
            min_frames_needed(num_frames, sampling) if clip.min_frames is None else clip.min_frames
        )
        self.backend = backend
        self.transform = transform
        self.image_repeat = clip.image_repeat
        if max_seconds is not None and not float(max_seconds) > 0:
            raise InputError(f"max_seconds must be positive (or None), got {max_seconds}")
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self._decoder: Any = None

    @property
    def decoder(self) -> Any:
        if self._decoder is None:
            from umt.data.decode import get_decoder

            self._decoder = get_decoder(self.backend)
        return self._decoder

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoder"] = None
        return state

    def usable_frames(self, info: Any) -> int:
        """Frames a clip may come from: all of them, or with ``max_seconds`` only the first
        ``int(max_seconds * fps)`` when the video (``num_frames / fps`` seconds, as in the
        official ``trimmed30``) is longer than that."""
        n = int(info.num_frames)
        fps = float(getattr(info, "fps", 0.0) or 0.0)
        if self.max_seconds is not None and fps > 0 and n / fps > self.max_seconds:
            n = max(int(self.max_seconds * fps), 1)
        return n

    def _indices(
        self, n: int, name: str, gen: torch.Generator | None, view: ClipView | None
    ) -> list[int]:
        if n < self.min_frames:
            raise VideoFault(
                name, f"too short: {n} frame(s), a clip needs at least {self.min_frames}"
            )
        return sample_indices(
            n, self.num_frames, self.sampling, self.frame_stride, self.train, gen, view
        )

    def read(
        self,
        source: str | bytes,
        name: str,
        choose: Callable[[int], list[int]],
        kind: str | None = None,
    ) -> np.ndarray:
        """uint8 ``[len(choose(n)), H, W, 3]``: the frames ``choose(frame count)`` picks (an
        image: ``image_repeat`` copies). Raises :class:`VideoFault` naming the file."""
        from umt.data.decode import VideoDecodeError

        is_image = kind == "image" or (kind is None and name.lower().endswith(IMAGE_EXTENSIONS))
        if is_image:
            return np.repeat(read_image(source, name)[None], self.image_repeat, axis=0)
        if isinstance(source, str) and os.path.isdir(source):
            files = frame_files(source)
            if not files:
                raise VideoFault(
                    name,
                    "is a directory with no frame images (img_00001.jpg, ...), not a video file",
                )
            idx = choose(len(files))
            return np.stack([read_image(os.path.join(source, files[i]), name) for i in idx])
        try:
            dec = self.decoder
            if hasattr(dec, "read_sampled"):
                return dec.read_sampled(
                    source, lambda info: choose(self.usable_frames(info)), name=name
                )
            info = dec.probe(source, name=name)
            return dec.read(source, choose(self.usable_frames(info)), name=name)
        except VideoDecodeError as err:
            raise VideoFault(name, err.problem) from None

    def frames(
        self,
        source: str | bytes,
        name: str,
        gen: torch.Generator | None,
        view: ClipView | None,
        kind: str | None = None,
    ) -> np.ndarray:
        """uint8 ``[T, H, W, 3]`` for one sample (``view``: the test view, None: the training
        draw or the validation clip)."""
        return self.read(source, name, lambda n: self._indices(n, name, gen, view), kind)

    def clip(
        self,
        source: str | bytes,
        name: str,
        gen: torch.Generator,
        view: ClipView | None = None,
        kind: str | None = None,
        repeats: int = 1,
    ) -> torch.Tensor:
        """The transformed clip, float ``[3, T, S, S]``; with ``repeats`` > 1, that many
        transforms of the same frames, each its own draw: ``[repeats, 3, T, S, S]``."""
        frames = self.frames(source, name, gen, view, kind)
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W]
        crop_index = None if view is None else view.crop
        if repeats == 1:
            return self.transform(video, generator=gen, crop_index=crop_index)
        return torch.stack(
            [self.transform(video, generator=gen, crop_index=crop_index) for _ in range(repeats)]
        )


# --------------------------------------------------------------------------- map-style dataset
def _read_records(
    annotations: str | os.PathLike | Sequence[VideoRecord],
    format: str,
    root: str | os.PathLike | None,
    labels: str | os.PathLike | dict | None,
    who: str,
) -> tuple[str, list[VideoRecord]]:
    """``(source name, records)`` of an annotation file or a list of records."""
    if isinstance(annotations, (str, os.PathLike)):
        return os.fspath(annotations), load_annotations(annotations, format, root, labels)
    records = list(annotations)
    if not records:
        raise InputError(f"{who}: no records given")
    return "<records>", records


class VideoDataset(Dataset):
    """Map-style video (or image) dataset over an annotation file or a list of records.

    ``__getitem__(i)`` returns ``{"video": float [3, T, S, S], "label": int, "caption": str,
    "index": i, "path": str, "faults": [(path, reason)], ...}`` ("label"/"caption" only when
    annotated). In training (``substitute``, default ``train``) a broken sample is replaced by
    another one chosen from ``(seed, epoch, index, attempt)``, at most ``max_retries`` times;
    each is counted in ``self.faults`` and reported in the sample's ``"faults"``. In evaluation
    a broken sample is never replaced (a score must be of the listed videos): it comes back as
    ``{"index", "record_index", "path", "fault": reason, "faults": [(path, reason)]}`` with
    no ``"video"``, and :func:`collate_videos` leaves it out of the batch.

    Args:
        annotations: annotation file path or a list of :class:`VideoRecord`.
        clip: the clip of each video (:class:`umt.data.clip_spec.ClipSpec`): frames, sampling,
            transform, views. ``clip.train``: random sampling + augmentation. Else evaluation:
            with ``num_clips = num_crops = 1`` the official validation view (one clip,
            short-side resize, centre crop); otherwise the official multi-view test,
            ``num_clips x num_crops`` views per video in segment-major order (dataset length
            multiplies; sample ``"view"`` = ``clip * num_crops + crop``).
            :class:`MultiViewDataset` gives all views of a video at once. With
            ``clip.clips_per_video`` = R > 1 the sample's ``"video"`` is ``[R, 3, T, S, S]`` and
            :func:`collate_videos` flattens the repeats into the batch. Videos shorter than
            ``clip.min_frames`` (default :func:`min_frames_needed`: 1 for segments,
            ``num_frames`` for dense, ``ceil(num_frames/2)`` (>= 2) for sparse) are faults.
        root / format / labels: how the annotation file is read
            (:func:`umt.data.formats.annotations.load_annotations`).
        transform: a callable ``(video [T,3,H,W] uint8, generator=, crop_index=)`` replacing the
            one ``clip`` describes.
        seed: base seed; see :func:`umt.data.sample_seed`.
        substitute: replace a broken sample by another (default: ``train``; see above).
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Sequence[VideoRecord],
        clip: ClipSpec | None = None,
        root: str | os.PathLike | None = None,
        format: str = "auto",
        labels: str | os.PathLike | dict | None = None,
        transform: Callable | None = None,
        seed: int = 0,
        backend: str = "auto",
        max_retries: int = 10,
        max_fail_ratio: float = 0.5,
        substitute: bool | None = None,
    ) -> None:
        self.source, self.records = _read_records(annotations, format, root, labels, "VideoDataset")
        clip = ClipSpec() if clip is None else clip
        if clip.clips_per_video < 1:
            raise InputError(f"clips_per_video must be >= 1, got {clip.clips_per_video}")
        self.clip = clip
        self.clips_per_video = int(clip.clips_per_video)
        train, num_clips, num_crops = clip.train, clip.num_clips, clip.num_crops
        if transform is None:
            transform = build_clip_transform(clip)
        self.loader = ClipLoader(clip, backend, transform)
        self.train = train
        self.substitute = bool(train if substitute is None else substitute)
        # None: the training draw or the validation view; else the test views, segment-major.
        self.views: list[ClipView | None] = (
            [None]
            if train or num_clips * num_crops == 1
            else eval_views(num_clips, num_crops, clip.sampling)
        )
        self.seed = int(seed)
        self.epoch = 0
        self.max_retries = max(0, int(max_retries))
        self.faults = FaultCounter(max_fail_ratio=max_fail_ratio)

    @property
    def num_videos(self) -> int:
        return len(self.records)

    def __len__(self) -> int:
        return len(self.records) * len(self.views)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used in every sample's seed."""
        self.epoch = int(epoch)

    def fault_summary(self) -> str:
        """This process's tally, e.g. ``"3 of 240,000 videos skipped (3 too short)"``."""
        return self.faults.summary(len(self.records))

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (
            (int(item[0]), int(item[1])) if isinstance(item, tuple) else (self.epoch, int(item))
        )
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        nviews = len(self.views)
        record_index, view = divmod(index, nviews)
        view_spec = self.views[view]
        faults: list[tuple[str, str]] = []
        current = record_index
        for attempt in range(self.max_retries + 1):
            record = self.records[current]
            gen = make_generator(sample_seed(self.seed, epoch, index))
            try:
                video = self.loader.clip(
                    record.path, record.path, gen, view_spec, repeats=self.clips_per_video
                )
            except PROGRAMMING_ERRORS:
                raise
            except Exception as err:  # noqa: BLE001 - any unreadable file is a fault, not a crash
                reason = (
                    err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"
                )
                self.faults.record(record.path, reason)
                faults.append((record.path, reason))
                self.faults.check()
                if not self.substitute:
                    return {
                        "index": index,
                        "record_index": current,
                        "path": record.path,
                        "fault": reason,
                        "faults": faults,
                    }
                pick = make_generator(sample_seed(self.seed, epoch, index, attempt + 1))
                current = int(torch.randint(0, len(self.records), (1,), generator=pick).item())
                continue
            self.faults.record_success()
            sample: dict[str, Any] = {
                "video": video,
                "index": index,
                "record_index": current,
                "path": record.path,
                "faults": faults,
            }
            if record.label is not None:
                sample["label"] = record.label
            if record.caption is not None:
                caps = record.caption
                if isinstance(caps, list):
                    k = (
                        int(torch.randint(0, len(caps), (1,), generator=gen).item())
                        if self.train
                        else 0
                    )
                    caps = caps[k]
                sample["caption"] = caps
            if not self.train and nviews > 1:
                sample["view"] = view
            return sample
        listing = "; ".join(f"{p}: {r}" for p, r in faults[-3:])
        raise TooManyFaultsError(
            f"{self.source}: sample {index}: {self.max_retries + 1} attempts all failed ({listing})"
        )


class MultiViewDataset(Dataset):
    """All test views of one video per sample: the official multi-view test, decoded once.

    Sample ``i`` is video ``i`` of the list: the frames of its ``num_clips`` temporal clips
    (:func:`umt.data.sampling.sample_indices` with the test views) are decoded in one pass,
    the short side resized once to ``short_side`` (:class:`umt.data.transforms.ShortSideResize`)
    and each clip cut into ``num_crops`` windows (:class:`umt.data.transforms.SpatialCrop`).
    Returns ``{"video": [V, 3, T, S, S], "frame_indices": long [C, T], "index": i,
    "path": str, "label": int (when annotated)}`` with ``V = C * K`` views in segment-major
    order (view = clip * K + crop), float and normalised, or uint8 in [0, 255] with
    ``normalize=False`` (normalise where the model runs, with :attr:`mean` / :attr:`std`: a
    quarter of the bytes through the DataLoader). A video that cannot be used gives
    ``{"index": i, "path": str, "fault": reason}``: it is never replaced by another video.

    ``clip`` (default: 4 x 3 views): frames, sampling, ``input_size``, ``short_side``,
    ``num_clips x num_crops`` views,
    ``mean`` / ``std`` (its augmentation fields are not used: the views are the official
    test's). ``clip.min_frames`` None means 1: the official test scores every video it can read.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Sequence[VideoRecord],
        clip: ClipSpec | None = None,
        root: str | os.PathLike | None = None,
        format: str = "auto",
        labels: str | os.PathLike | dict | None = None,
        normalize: bool = True,
        backend: str = "auto",
    ) -> None:
        self.source, self.records = _read_records(
            annotations, format, root, labels, "MultiViewDataset"
        )
        clip = ClipSpec(train=False, num_clips=4, num_crops=3) if clip is None else clip
        num_clips, num_crops, input_size = clip.num_clips, clip.num_crops, clip.input_size
        self.views = eval_views(num_clips, num_crops, clip.sampling)
        self.num_clips, self.num_crops = int(num_clips), int(num_crops)
        self.num_frames = int(clip.num_frames)
        self.input_size = int(input_size)
        self.short_side = int(clip.short_side or input_size)
        if self.short_side < self.input_size:
            raise InputError(
                f"short side {self.short_side} is smaller than the input size {input_size}; "
                "use a short side of at least the input size"
            )
        self.mean, self.std = resolve_mean_std(clip.mean, clip.std)
        self.normalize = normalize
        self.resize = ShortSideResize(self.short_side)
        self.crop = SpatialCrop(self.input_size, num_crops)
        self._normalize = Normalize(self.mean, self.std)
        min_frames = 1 if clip.min_frames is None else clip.min_frames
        frames = replace(clip, train=False, min_frames=min_frames, image_repeat=self.num_frames)
        self.loader = ClipLoader(frames, backend, self.resize)

    @property
    def num_views(self) -> int:
        """Views per video, ``num_clips * num_crops``."""
        return len(self.views)

    def __len__(self) -> int:
        return len(self.records)

    def clip_indices(self, video_frames: int, name: str = "") -> list[list[int]]:
        """Frame indices ``[C][T]`` of the temporal test clips of a ``video_frames``-frame video."""
        clips = [v for v in self.views if v.crop == 0]
        return [self.loader._indices(video_frames, name, None, v) for v in clips]

    def views_of(self, frames: torch.Tensor, clip_indices: list[list[int]]) -> torch.Tensor:
        """``[V, 3, T, S, S]`` views of a video from its frames ``[U, 3, H, W]`` (uint8), where
        ``clip_indices[c]`` are positions in ``frames``."""
        frames = self.resize(frames)
        out = []
        for view in self.views:
            clip = frames[clip_indices[view.clip]]  # [T, 3, H, W]
            clip = self.crop(clip, crop_index=view.crop)
            if self.normalize:
                clip = self._normalize(clip)
            out.append(clip.permute(1, 0, 2, 3))
        return torch.stack(out).contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} videos")
        record = self.records[index]
        chosen: list[list[int]] = []

        def choose(video_frames: int) -> list[int]:
            chosen.extend(self.clip_indices(video_frames, record.path))
            return sorted({i for clip in chosen for i in clip})

        try:
            raw = self.loader.read(record.path, record.path, choose)
            if record.is_image:  # one picture: every clip is num_frames copies of it
                chosen[:] = [list(range(self.num_frames))] * self.num_clips
                positions = chosen
            else:
                where = {frame: k for k, frame in enumerate(sorted({i for c in chosen for i in c}))}
                positions = [[where[i] for i in clip] for clip in chosen]
            frames = torch.from_numpy(np.ascontiguousarray(raw)).permute(0, 3, 1, 2)
            video = self.views_of(frames, positions)
        except PROGRAMMING_ERRORS:
            raise
        except Exception as err:  # noqa: BLE001 - a bad file is reported, never a crash
            reason = err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"
            return {"index": index, "path": record.path, "fault": reason}
        sample: dict[str, Any] = {
            "video": video,
            "frame_indices": torch.tensor(chosen, dtype=torch.long),
            "index": index,
            "path": record.path,
        }
        if record.label is not None:
            sample["label"] = int(record.label)
        return sample


def collate_views(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`MultiViewDataset` samples: the usable videos' views one after another.

    Returns ``{"video": [B * V, 3, T, S, S] (None when no video of the batch is usable),
    "index": long [B], "path": [str], "label": long [B] (-1 where unannotated),
    "frame_indices": long [B, C, T], "faults": [(index, path, reason)]}`` over the ``B`` usable
    videos, in the order given.
    """
    good = [s for s in samples if "fault" not in s]
    faults = [(int(s["index"]), s["path"], s["fault"]) for s in samples if "fault" in s]
    batch: dict[str, Any] = {
        "video": torch.cat([s["video"] for s in good]) if good else None,
        "index": torch.tensor([int(s["index"]) for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "label": torch.tensor([int(s.get("label", -1)) for s in good], dtype=torch.long),
        "frame_indices": (
            torch.stack([s["frame_indices"] for s in good]) if good else torch.zeros(0)
        ),
        "faults": faults,
    }
    return batch


# --------------------------------------------------------------------------- tar shards
def _expand_urls(urls: str | Sequence[str]) -> list[str]:
    from braceexpand import braceexpand

    items = [urls] if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        for part in str(item).split("::"):
            out.extend(braceexpand(part))
    if not out:
        raise InputError("no tar shards given")
    return out


def _iter_tar(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` groups of a WebDataset tar, in order."""
    key: str | None = None
    group: dict[str, bytes] = {}
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name
            base = os.path.basename(name)
            if "." not in base or base.startswith("."):
                continue
            stem, ext = base.split(".", 1)
            sample_key = os.path.join(os.path.dirname(name), stem)
            if key is not None and sample_key != key:
                yield key, group
                group = {}
            key = sample_key
            handle = tar.extractfile(member)
            group[ext.lower()] = handle.read() if handle is not None else b""
    if key is not None:
        yield key, group


class ShardDataset(IterableDataset):
    """Streams WebDataset-style tar shards: ``KEY.mp4``/``KEY.jpg`` plus ``KEY.cls`` (label),
    ``KEY.txt`` (caption) or ``KEY.json`` (``{"label", "caption"}``).

    Shards are shuffled per epoch from the seed, then split by rank (``rank``/``world_size`` or
    ``torch.distributed``) and by DataLoader worker. A broken sample is skipped (counted,
    warned, reported in the next yielded sample's ``"faults"``). ``"index"`` is
    ``(repeat_pass * num_shards + shard_number) * 2**24 + position``; it seeds the sample like
    in :class:`VideoDataset`.

    For training, ``repeat=True`` makes every worker cycle over its shards without end, so
    that all ranks can take the same number of batches per epoch however the shard sizes
    differ (the trainer decides where an epoch ends); ``set_position`` then resumes part-way
    through an epoch by skipping, without decoding, the samples the consumed batches held.
    ``clip`` is :class:`VideoDataset`'s (one clip per sample: no repeats, no test views).
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        clip: ClipSpec | None = None,
        transform: Callable | None = None,
        seed: int = 0,
        backend: str = "auto",
        shuffle_shards: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        max_fail_ratio: float = 0.5,
        repeat: bool = False,
    ) -> None:
        self.urls = _expand_urls(urls)
        clip = ClipSpec() if clip is None else clip
        if clip.clips_per_video != 1 or clip.num_clips * clip.num_crops != 1:
            raise InputError("tar shards stream one clip per sample (clips_per_video and views 1)")
        if transform is None:
            transform = build_clip_transform(clip)
        self.loader = ClipLoader(clip, backend, transform)
        train = clip.train
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.shuffle_shards = shuffle_shards
        self.rank = rank
        self.world_size = world_size
        self.faults = FaultCounter(max_fail_ratio=max_fail_ratio)
        self.repeat = repeat
        self.skip_batches = 0  # batches of this epoch already consumed (see set_position)
        self.batch_size = 1

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used in shard shuffling and sample seeds (from its start)."""
        self.epoch = int(epoch)
        self.skip_batches = 0

    def set_position(self, epoch: int, batches_done: int, batch_size: int) -> None:
        """Start the next iteration at batch ``batches_done`` of ``epoch``, for exact resumes.

        A DataLoader over this dataset takes batches from its workers in turn (worker
        ``k % num_workers`` makes batch ``k``), so each worker skips the samples of its own
        consumed batches. Skipped samples are not decoded; the position is exact when none of
        them was broken (a broken one shifts the stream by one sample)."""
        self.epoch = int(epoch)
        self.skip_batches = int(batches_done)
        self.batch_size = int(batch_size)

    def _worker_role(self) -> tuple[int, int]:
        """``(role, num_workers)``: which worker's share of the epoch this worker streams.

        A new DataLoader iterator asks worker 0 first, but after ``b`` consumed batches the
        next one belongs to worker ``b % num_workers`` of the uninterrupted run: worker ``w``
        takes over the stream of worker ``(w + b) % num_workers``."""
        info = torch.utils.data.get_worker_info()
        if info is None:
            return 0, 1
        return (info.id + self.skip_batches) % info.num_workers, info.num_workers

    def _samples_to_skip(self) -> int:
        role, workers = self._worker_role()
        return len(range(role, self.skip_batches, workers)) * self.batch_size

    def fault_summary(self) -> str:
        return self.faults.summary()

    def shards_for_this_worker(self) -> list[tuple[int, str]]:
        """``(shard_number, url)`` this rank and worker reads this epoch."""
        order = list(range(len(self.urls)))
        if self.shuffle_shards:
            gen = make_generator(sample_seed(self.seed, self.epoch, -1))
            order = torch.randperm(len(order), generator=gen).tolist()
        rank, world = self._rank_world()
        role, workers = self._worker_role()
        mine = order[rank::world][role::workers]
        return [(i, self.urls[i]) for i in mine]

    def _rank_world(self) -> tuple[int, int]:
        """This process's rank and the process count (given, or from ``torch.distributed``)."""
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        return rank_world()

    def check_split(self, num_workers: int) -> None:
        """Refuse more processes x DataLoader workers than shards: in ``repeat`` mode a worker
        without a shard could never deliver its batches."""
        world = self._rank_world()[1]
        workers = max(int(num_workers), 1)
        if len(self.urls) < world * workers:
            raise InputError(
                f"{len(self.urls)} shard(s) for {world} process(es) x {workers} worker(s); "
                "every worker needs at least one shard (use more shards or fewer "
                "data.num_workers)"
            )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.repeat:
            self.check_split(self._worker_role()[1])
        shards = self.shards_for_this_worker()
        pending: list[tuple[str, str]] = []
        skip = self._samples_to_skip()
        repeat_pass = 0
        while True:
            progressed = False  # a sample yielded or skipped in this pass
            for shard_number, url in shards:
                try:
                    for position, (key, group) in enumerate(_iter_tar(url)):
                        if skip > 0:  # consumed before a resume: not decoded again
                            skip -= 1
                            progressed = True
                            continue
                        name = f"{url}:{key}"
                        index = (repeat_pass * len(self.urls) + shard_number) * 2**24 + position
                        sample = self._sample(name, group, index)
                        if sample is None:
                            continue
                        sample["faults"] = pending
                        pending = []
                        progressed = True
                        yield sample
                except (OSError, tarfile.TarError, EOFError) as err:
                    reason = f"cannot read tar shard ({err})"
                    self.faults.record(url, reason)
                    pending.append((url, reason))
            if not self.repeat:
                return
            if not progressed:
                raise TooManyFaultsError(
                    f"no readable sample in a whole pass over {len(shards)} shard(s) "
                    f"({', '.join(u for _, u in shards[:3])}{', ...' if len(shards) > 3 else ''})"
                )
            repeat_pass += 1

    def _sample(self, name: str, group: dict[str, bytes], index: int) -> dict[str, Any] | None:
        video_ext = next((e for e in group if "." + e in VIDEO_EXTENSIONS), None)
        image_ext = next((e for e in group if "." + e in IMAGE_EXTENSIONS), None)
        gen = make_generator(sample_seed(self.seed, self.epoch, index))
        label: int | None = None
        caption: Any = None
        try:
            if "cls" in group:
                label = int(group["cls"].decode().strip())
            if "txt" in group:
                caption = group["txt"].decode("utf-8").strip()
            if "json" in group:
                meta = json.loads(group["json"].decode("utf-8"))
                label = meta.get("label", label)
                caption = meta.get("caption", meta.get("text", caption))
            if video_ext is None and image_ext is None:
                raise VideoFault(name, f"no video or image member (has {sorted(group)})")
            ext = video_ext or image_ext
            video = self.loader.clip(
                group[ext], f"{name}.{ext}", gen, kind="image" if video_ext is None else "video"
            )
        except PROGRAMMING_ERRORS:
            raise
        except Exception as err:  # noqa: BLE001
            reason = err.reason if isinstance(err, VideoFault) else f"{type(err).__name__}: {err}"
            self.faults.record(name, reason)
            self.faults.check()
            return None
        self.faults.record_success()
        sample: dict[str, Any] = {"video": video, "index": index, "path": name}
        if label is not None:
            sample["label"] = int(label)
        if caption is not None:
            if isinstance(caption, list):
                caption = caption[int(torch.randint(0, len(caption), (1,), generator=gen).item())]
            sample["caption"] = caption
        return sample


# --------------------------------------------------------------------------- collate / factory
def collate_videos(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch.

    Returns ``{"video": [B, 3, T, H, W], "index": long [B], "label": long [B] (when all have
    one), "caption": [str] (when any has one), "path": [str], "skipped": long scalar (faults met
    while making this batch), "faults": [(path, reason)]}`` plus ``view``/``record_index``.
    An evaluation sample that could not be read (``"fault"``, no ``"video"``) is left out and
    only listed in ``"faults"``; when no sample is left, ``"video"`` is None.

    Samples with repeated clips (``"video"`` ``[R, 3, T, H, W]``, ``clips_per_video``) are flattened
    as the official ``multiple_samples_collate``: ``B * R`` clips, a sample's repeats next to
    each other, its fields repeated, and ``"repeat"`` ``long [B * R]`` numbering them.
    """
    if not samples:
        raise InputError("collate_videos: empty batch")
    faults = [tuple(f) for s in samples for f in s.get("faults", ())]
    samples = [s for s in samples if "fault" not in s]
    if not samples:
        return {
            "video": None,
            "index": torch.zeros(0, dtype=torch.long),
            "path": [],
            "faults": faults,
            "skipped": torch.tensor(len(faults), dtype=torch.long),
        }
    if samples[0]["video"].ndim == 5:
        flat = []
        for s in samples:
            for r, clip in enumerate(s["video"]):
                flat.append(
                    {**s, "video": clip, "repeat": r, "faults": s["faults"] if r == 0 else ()}
                )
        samples = flat
    shapes = {tuple(s["video"].shape) for s in samples}
    if len(shapes) > 1:
        raise InputError(
            f"collate_videos: clips of different shapes {sorted(shapes)} in one batch "
            f"(e.g. images (T=1) mixed with videos); batch them separately"
        )
    batch: dict[str, Any] = {
        "video": torch.stack([s["video"] for s in samples]),
        "index": torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
        "path": [s.get("path", "") for s in samples],
    }
    if all("label" in s for s in samples):
        batch["label"] = torch.tensor([int(s["label"]) for s in samples], dtype=torch.long)
    if any("caption" in s for s in samples):
        batch["caption"] = [s.get("caption", "") for s in samples]
    for key in ("view", "record_index", "repeat"):
        if all(key in s for s in samples):
            batch[key] = torch.tensor([int(s[key]) for s in samples], dtype=torch.long)
    batch["faults"] = faults
    batch["skipped"] = torch.tensor(len(faults), dtype=torch.long)
    return batch


def fault_summary(dataset_or_counter: Any, total: int | None = None) -> str:
    """Summary line for a dataset's (this process's) or a counter's faults."""
    counter = getattr(dataset_or_counter, "faults", dataset_or_counter)
    if total is None and hasattr(dataset_or_counter, "records"):
        total = len(dataset_or_counter.records)
    return counter.summary(total)


def build_dataset(
    kind_or_path: str | os.PathLike | Sequence[str], **kwargs: Any
) -> VideoDataset | ShardDataset:
    """A dataset from an annotation file (any format), tar shard pattern(s), or ``"synthetic"``.

    ``"synthetic"`` (optionally ``"synthetic:train"``, ``":val"`` or ``":test"``) makes or reuses the
    built-in dataset under ``kwargs.pop("synthetic_root", "data/umt-synthetic")``. Other
    keyword arguments go to :class:`VideoDataset` or :class:`ShardDataset`.
    """
    if isinstance(kind_or_path, (list, tuple)):
        return ShardDataset(list(kind_or_path), **kwargs)
    text = os.fspath(kind_or_path)
    if text.startswith("synthetic"):
        from umt.data.synth import ensure_synthetic_dataset

        split = text.split(":", 1)[1] if ":" in text else "train"
        root = ensure_synthetic_dataset(kwargs.pop("synthetic_root", "data/umt-synthetic"))
        return VideoDataset(root / f"{split}.csv", **kwargs)
    fmt = kwargs.get("format", "auto")
    if (fmt == "auto" and detect_format(text) == "wds") or fmt == "wds":
        kwargs.pop("format", None)
        return ShardDataset(text, **kwargs)
    return VideoDataset(text, **kwargs)
