"""Video-text / image-text data: official MM sampling, transforms, ids, corpus, mixed-media
sampler, collate, tar shards (umt.data.video_text and the "rand" / "middle" samplings)."""

from __future__ import annotations

import itertools
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from umt.data import (
    SAMPLING_NAMES,
    CaptionCorpus,
    CaptionDataset,
    CaptionShardDataset,
    FaultCounter,
    MixedMediaSampler,
    VideoDataset,
    build_caption_transform,
    collate_captions,
    eval_views,
    interval_indices,
    make_generator,
    media_order,
    min_frames_needed,
    read_frames,
    sample_indices,
    shard_pattern,
    validate_check_options,
    write_caption_shards,
    write_shards,
)
from umt.data.clip_spec import ClipSpec
from umt.data.sampling import uniform01
from umt.data.transforms.video import BicubicResizedCrop

SMALL = {"num_frames": 4, "input_size": 32, "backend": "pyav"}
ITEM_KEYS = {"video", "caption", "sample_id", "media", "index", "path", "faults"}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synth(tiny_synthetic) -> Path:
    """24 synthetic clips (16 frames at 8 fps, 32 px): train.json has 12 entries."""
    return tiny_synthetic("vt", train=12, val=12, test=0)


def _write_images(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        rng = np.random.default_rng(i)
        pixels = rng.integers(0, 256, size=(24 + 4 * i, 40, 3), dtype=np.uint8)
        name = f"img{i}.png" if i % 2 == 0 else f"img{i}.jpg"
        Image.fromarray(pixels).save(folder / name)
        names.append(name)
    return names


@pytest.fixture()
def image_json(tmp_path) -> Path:
    """5 images (PNG and JPEG); entry 1 has two captions, entries 2 and 4 the same caption."""
    names = _write_images(tmp_path / "imgs", 5)
    captions: list = ["a cat", ["a dog", "a brown dog"], "the same", "a bird", "the same"]
    entries = [{"image": f"imgs/{n}", "caption": c} for n, c in zip(names, captions)]
    path = tmp_path / "it.json"
    path.write_text(json.dumps(entries))
    return path


def _synth_entries(synth: Path) -> list[dict]:
    return json.loads((synth / "train.json").read_text())


# --------------------------------------------------------------------------- official sampling
def official_get_frame_indices(num_frames, vlen, sample, rng, np_rng):
    """A transcription of the official ``get_frame_indices`` (multi_modality/dataset/
    video_utils.py) for ``sample`` in ("rand", "middle"), ``fix_start=None``."""
    acc_samples = min(num_frames, vlen)
    intervals = np.linspace(start=0, stop=vlen, num=acc_samples + 1).astype(int)
    ranges = []
    for idx, interv in enumerate(intervals[:-1]):
        ranges.append((interv, intervals[idx + 1] - 1))
    if sample == "rand":
        try:
            frame_indices = [rng.choice(range(x[0], x[1])) for x in ranges]
        except IndexError:
            frame_indices = np_rng.permutation(vlen)[:acc_samples]
            frame_indices.sort()
            frame_indices = list(frame_indices)
    else:
        frame_indices = [(x[0] + x[1]) // 2 for x in ranges]
    if len(frame_indices) < num_frames:
        padded = [frame_indices[-1]] * num_frames
        padded[: len(frame_indices)] = frame_indices
        frame_indices = padded
    return [int(i) for i in frame_indices]


def _possible_rand(n: int, t: int) -> set[tuple[int, ...]]:
    """Every clip the official "rand" can return for ``n`` frames and ``t`` samples."""
    count = min(n, t)
    cuts = np.linspace(0, n, count + 1).astype(int)
    ranges = [range(int(cuts[i]), int(cuts[i + 1]) - 1) for i in range(count)]
    if all(len(r) for r in ranges):
        clips = itertools.product(*ranges)
    else:
        clips = itertools.combinations(range(n), count)
    return {tuple(c) + (c[-1],) * (t - count) for c in clips}


def test_middle_matches_official():
    for n in range(1, 81):
        for t in range(1, 17):
            want = official_get_frame_indices(t, n, "middle", None, None)
            assert interval_indices(n, t, train=False) == want, (n, t)
            assert sample_indices(n, t, "middle", train=True) == want
            assert sample_indices(n, t, "middle", train=False) == want
            assert sample_indices(n, t, "rand", train=False) == want


def test_rand_matches_official_support():
    draws = 120
    for n in range(1, 25):
        for t in (1, 2, 3, 4, 5, 8):
            possible = _possible_rand(n, t)
            rng, np_rng = random.Random(n * 100 + t), np.random.default_rng(n * 100 + t)
            official = {
                tuple(official_get_frame_indices(t, n, "rand", rng, np_rng)) for _ in range(draws)
            }
            ours = {
                tuple(sample_indices(n, t, "rand", train=True, generator=make_generator(s)))
                for s in range(draws)
            }
            assert official <= possible, (n, t)  # the transcription and the enumeration agree
            assert ours <= possible, (n, t, ours - possible)
            if len(possible) <= 8:  # small supports are covered completely by both
                assert ours == possible == official, (n, t)
    # the interval's last frame is never drawn (official x[1] - 1 upper end)
    assert _possible_rand(8, 4) == set(itertools.product([0], [2], [4], [6]))
    # one-frame intervals: the official fallback, sorted distinct frames
    assert _possible_rand(5, 4) == set(itertools.combinations(range(5), 4))
    # shorter than T: all frames, padded with the last
    assert _possible_rand(3, 5) == {(0, 1, 2, 2, 2)}


def test_rand_is_seeded_and_registered():
    a = sample_indices(100, 8, "rand", generator=make_generator(3))
    assert a == sample_indices(100, 8, "rand", generator=make_generator(3))
    assert any(
        sample_indices(100, 8, "rand", generator=make_generator(s)) != a for s in range(4, 8)
    )
    assert {"rand", "middle"} <= set(SAMPLING_NAMES)
    assert min_frames_needed(4, "rand") == min_frames_needed(4, "middle") == 1
    validate_check_options(num_frames=4, sampling="rand", backend="pyav")
    # multi-clip test views take relative positions in each interval; view 0 of 1 = middle
    views = eval_views(2, 1, "middle")
    assert [sample_indices(40, 4, "middle", train=False, view=v) for v in views] == [
        [2, 12, 22, 32],
        [6, 16, 26, 36],
    ]
    (one,) = eval_views(1, 1, "rand")
    assert sample_indices(40, 4, "rand", train=False, view=one) == [4, 14, 24, 34]


def test_max_seconds_trims_like_trimmed30(synth):
    path = str(synth / "videos" / "00000.mp4")  # 16 frames at 8 fps: 2 s
    full = CaptionDataset(synth / "train.json", train=False, **SMALL)
    trimmed = CaptionDataset(synth / "train.json", train=False, max_seconds=1.0, **SMALL)
    longer = CaptionDataset(synth / "train.json", train=False, max_seconds=5.0, **SMALL)
    got_full = full.videos.loader.frames(path, path, None, None)
    got_trim = trimmed.videos.loader.frames(path, path, None, None)
    got_longer = longer.videos.loader.frames(path, path, None, None)
    # middles of 4 intervals of 16 frames, and of the first int(1 s * 8 fps) = 8 frames
    assert np.array_equal(got_full, read_frames(path, [1, 5, 9, 13], backend="pyav"))
    assert np.array_equal(got_trim, read_frames(path, [0, 2, 4, 6], backend="pyav"))
    assert np.array_equal(got_longer, got_full)
    with pytest.raises(ValueError, match="max_seconds"):
        VideoDataset(
            synth / "train.csv",
            clip=ClipSpec(num_frames=4, max_seconds=0, input_size=32),
            backend="pyav",
        )


# --------------------------------------------------------------------------- transforms
def test_train_transform_is_official_rrc_flip_normalise():
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    frame = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    clip = torch.stack([frame, frame.flip(-2), frame, frame])  # [T, 3, H, W]
    transform = build_caption_transform(train=True, input_size=32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    for seed in range(6):
        out = transform(clip, generator=make_generator(seed))
        assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
        gen = make_generator(seed)
        top, left, h, w = BicubicResizedCrop(32, (0.5, 1.0)).get_params(40, 48, gen)
        assert 0.5 * 40 * 48 * 0.9 <= h * w <= 40 * 48
        flip = uniform01(gen) < 0.5
        # torchvision of the official environment resized uint8 clips in float, then clamped
        # and rounded (newer releases have a native uint8 bicubic that differs by a few levels)
        want = F.resized_crop(
            clip.float(), top, left, h, w, [32, 32], InterpolationMode.BICUBIC, antialias=False
        )
        want = want.clamp(0, 255).round()
        if flip:
            want = want.flip(-1)
        want = (want.permute(1, 0, 2, 3).float() / 255 - mean) / std
        assert (out - want).abs().max() <= 1e-5
        assert torch.equal(out[:, 0], out[:, 2])  # one crop for every frame


def test_eval_transform_is_bicubic_resize():
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    clip = torch.randint(0, 256, (2, 3, 30, 50), dtype=torch.uint8)
    out = build_caption_transform(train=False, input_size=32, mean=(0, 0, 0), std=(1, 1, 1))(clip)
    want = F.resize(
        clip.float(), [32, 32], interpolation=InterpolationMode.BICUBIC, antialias=False
    )
    want = want.clamp(0, 255).round()  # as the official torchvision's uint8 resize
    assert out.shape == (3, 2, 32, 32)
    assert (out * 255 - want.permute(1, 0, 2, 3)).abs().max() <= 1e-3


# --------------------------------------------------------------------------- datasets and ids
def test_synthetic_set_is_a_video_text_corpus(synth):
    entries = _synth_entries(synth)
    corpus = CaptionCorpus(
        [{"anno": str(synth / "train.json"), "root": str(synth), "media": "auto"}], **SMALL
    )
    assert len(corpus) == len(entries) == 12 and corpus.media_sizes == {"video": 12}
    assert corpus.num_ids == 12 and corpus.media_ranges == {"video": [range(0, 12)]}
    item = corpus[(2, 5)]
    assert set(item) == ITEM_KEYS
    assert item["video"].shape == (3, 4, 32, 32) and item["media"] == "video"
    assert item["caption"] == entries[5]["caption"] and item["sample_id"] == 5
    assert item["index"] == 5 and item["path"].endswith(entries[5]["video"])
    # (epoch, index) items are reproducible; epochs differ
    assert torch.equal(item["video"], corpus[(2, 5)]["video"])
    assert not torch.equal(item["video"], corpus[(3, 5)]["video"])
    # test mode is deterministic "middle" sampling with the bicubic resize
    val = CaptionDataset(synth / "val.json", train=False, **SMALL)
    assert torch.equal(val[(0, 1)]["video"], val[(7, 1)]["video"])


def test_image_text_items(image_json):
    ds = CaptionDataset(image_json, **SMALL)
    assert ds.media == "image" and len(ds) == 6  # entry 1's two captions are two items
    captions = [ds[i]["caption"] for i in range(len(ds))]
    assert captions == ["a cat", "a dog", "a brown dog", "the same", "a bird", "the same"]
    for i in range(len(ds)):
        item = ds[(0, i)]
        assert set(item) == ITEM_KEYS and item["media"] == "image"
        assert item["video"].shape == (3, 1, 32, 32)
    assert [ds.sample_id(i) for i in range(6)] == [0, 1, 1, 2, 3, 4]  # entry
    by_video = CaptionDataset(image_json, id_by="video", **SMALL)
    assert [by_video.sample_id(i) for i in range(6)] == [0, 1, 1, 2, 3, 4]
    by_caption = CaptionDataset(image_json, id_by="caption", **SMALL)
    assert [by_caption.sample_id(i) for i in range(6)] == [0, 1, 2, 3, 4, 3]
    para = CaptionDataset(image_json, paragraph=True, **SMALL)
    assert len(para) == 5 and para[1]["caption"] == "a dog a brown dog"
    batch = collate_captions([ds[(0, i)] for i in range(3)])
    assert batch["video"].shape == (3, 3, 1, 32, 32) and batch["media"] == "image"
    assert batch["sample_ids"].tolist() == [0, 1, 1] and batch["caption"][2] == "a brown dog"
    assert batch["skipped"].item() == 0 and batch["faults"] == []


def test_ids_unique_across_datasets_and_shared(tmp_path, synth, image_json):
    entries = _synth_entries(synth)
    # retrieval style: the same video listed with several captions, and a caption list
    vid = [
        {"video": entries[0]["video"], "caption": "first"},
        {"video": entries[1]["video"], "caption": ["second", "also second"]},
        {"video": entries[0]["video"], "caption": "first again"},
    ]
    # SSv2-label style: different videos, the same caption
    lab = [{"video": e["video"], "caption": f"label {i % 2}"} for i, e in enumerate(entries[:4])]
    (tmp_path / "vid.json").write_text(json.dumps(vid))
    (tmp_path / "lab.json").write_text(json.dumps(lab))
    corpus = CaptionCorpus(
        [
            {"anno": str(tmp_path / "vid.json"), "root": str(synth), "id_by": "video"},
            {"anno": str(image_json), "media": "image"},
            [str(tmp_path / "lab.json"), str(synth), "video"],  # the official list form
        ],
        id_by="caption",
        **SMALL,
    )
    # grouped by medium: the two video sets first, then the image set
    assert [d.media for d in corpus.datasets] == ["video", "video", "image"]
    assert corpus.media_sizes == {"video": 8, "image": 6}
    assert corpus.media_ranges == {"video": [range(0, 4), range(4, 8)], "image": [range(8, 14)]}
    assert [corpus.media_of(i) for i in (0, 7, 8, 13)] == ["video", "video", "image", "image"]
    ids = [[d.sample_id(i) for i in range(len(d))] for d in corpus.datasets]
    assert ids[0] == [0, 1, 1, 0]  # per video
    assert ids[1] == [2, 3, 2, 3]  # per caption, offset by dataset 0's 2 ids
    assert ids[2] == [4, 5, 6, 7, 8, 7]  # per caption (corpus default), offset 4
    assert corpus.num_ids == 9
    for a, b in itertools.combinations(range(3), 2):
        assert not set(ids[a]) & set(ids[b])
    assert [corpus[(0, i)]["sample_id"] for i in (1, 5, 13)] == [1, 3, 7]
    assert corpus[(0, 9)]["index"] == 9 and corpus[(0, 9)]["media"] == "image"
    # entry ids (pretraining): every entry its own id, unique across datasets
    pre = CaptionCorpus(
        [str(tmp_path / "lab.json"), (str(tmp_path / "vid.json"), str(synth), "video")],
        **SMALL,
    )
    assert [pre.datasets[0].sample_id(i) for i in range(4)] == [0, 1, 2, 3]
    assert [pre.datasets[1].sample_id(i) for i in range(4)] == [4, 5, 5, 6]


def test_user_errors_are_clear(tmp_path, synth, image_json):
    with pytest.raises(ValueError, match="unknown key"):
        CaptionCorpus([{"anno": str(image_json), "captions": 1}])
    with pytest.raises(ValueError, match="media='video'"):
        CaptionDataset(image_json, media="video")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image": "clip.mp4", "caption": "x"}]))
    with pytest.raises(ValueError, match="not an image file"):
        CaptionDataset(bad)
    bad.write_text(json.dumps([{"video": "a.mp4"}]))
    with pytest.raises(ValueError, match="entry 0 .*has no caption"):
        CaptionDataset(bad)
    with pytest.raises(ValueError, match="id_by"):
        CaptionDataset(image_json, id_by="path")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CaptionDataset(tmp_path / "missing.json")


def test_corrupt_video_is_skipped_and_counted(tmp_path, synth):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    entries = [
        {"video": str(synth / e["video"]), "caption": e["caption"]} for e in _synth_entries(synth)
    ][:4]
    entries.insert(2, {"video": str(tmp_path / "broken.mp4"), "caption": "broken"})
    ann = tmp_path / "vt.json"
    ann.write_text(json.dumps(entries))
    ds = CaptionDataset(ann, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        items = [ds[(0, i)] for i in range(len(ds))]
    bad = items[2]
    assert bad["path"] != str(tmp_path / "broken.mp4") and bad["index"] == 2
    assert [f[0] for f in bad["faults"]] == [str(tmp_path / "broken.mp4")]
    replaced = [e["video"] for e in entries].index(bad["path"])  # the replacement's own pair
    assert bad["caption"] == entries[replaced]["caption"]
    assert bad["sample_id"] == ds.sample_id(replaced)
    assert ds.faults.failures == 1 and "1 of 5 videos skipped" in ds.fault_summary()
    batch = collate_captions(items[:3])
    assert batch["skipped"].item() == 1 and batch["faults"][0][0].endswith("broken.mp4")
    counter = FaultCounter()
    assert counter.add_batch(batch) == 1 and counter.num_skipped_files == 1


# --------------------------------------------------------------------------- sampler
def _batches(sampler: MixedMediaSampler) -> list[list[int]]:
    flat = [i for _, i in sampler] if sampler.with_epoch else list(sampler)
    size = sampler.batch_size
    assert len(flat) == len(sampler) and len(flat) % size == 0
    return [flat[k : k + size] for k in range(0, len(flat), size)]


def test_mixed_media_sampler_official_semantics():
    sizes = {"video": 50, "image": 83}  # video: indices 0..49, image: 50..132

    def medium(i: int) -> str:
        return "video" if i < 50 else "image"

    ranks = [MixedMediaSampler(sizes, 4, world_size=2, rank=r, seed=5) for r in range(2)]
    single = MixedMediaSampler(sizes, 8, world_size=1, rank=0, seed=5)
    for s in (*ranks, single):
        s.set_epoch(3)
    # global batch 8: 50 // 8 = 6 video and 83 // 8 = 10 image batches per epoch
    assert ranks[0].num_batches == single.num_batches == 16
    assert ranks[0].media_batches == {"video": 6, "image": 10}
    per_rank = [_batches(s) for s in ranks]
    joined = _batches(single)
    order = ranks[0].batch_media()
    assert order == ranks[1].batch_media() == single.batch_media()
    assert sorted(order) == ["image"] * 10 + ["video"] * 6 and order != sorted(order)
    seen: list[int] = []
    for k in range(16):
        media = {medium(i) for r in range(2) for i in per_rank[r][k]}
        assert media == {order[k]}  # homogeneous, the same medium on every rank
        for r in range(2):  # rank r's batch is positions r, r + 2, ... of the global batch
            assert per_rank[r][k] == joined[k][r::2]
        seen += joined[k]
    assert len(seen) == len(set(seen)) == 16 * 8  # every index at most once per epoch
    assert sum(medium(i) == "image" for i in seen) == 80
    # (epoch, index) items; the same stream from a fresh sampler; other epochs differ
    assert {e for e, _ in ranks[0]} == {3}
    again = MixedMediaSampler(sizes, 4, world_size=2, rank=0, seed=5)
    again.set_epoch(3)
    assert _batches(again) == per_rank[0]
    again.set_epoch(4)
    assert _batches(again) != per_rank[0]
    # resume at (epoch, batch): the rest of the same stream
    again.set_position(3, 5)
    assert len(again) == 11 * 4 and _batches(again) == per_rank[0][5:]
    again.set_epoch(3)
    assert len(again) == 16 * 4
    plain = MixedMediaSampler(sizes, 4, 2, 1, seed=5, with_epoch=False)
    plain.set_epoch(3)
    assert _batches(plain) == per_rank[1]
    with pytest.raises(ValueError, match="fewer than one step"):
        MixedMediaSampler({"video": 7, "image": 7}, 4, world_size=2)
    # media order: the official shuffle of [medium] * batches, a function of (seed, epoch)
    assert media_order({"a": 2, "b": 3}, 1, 0) == media_order({"b": 3, "a": 2}, 1, 0)


def test_sampler_with_corpus_and_dataloader(tmp_path, synth, image_json):
    corpus = CaptionCorpus(
        [{"anno": str(image_json)}, {"anno": str(synth / "train.json"), "root": str(synth)}],
        **SMALL,
    )
    assert corpus.media_sizes == {"image": 6, "video": 12}
    by_corpus = MixedMediaSampler(corpus, 2, seed=1)
    by_sizes = MixedMediaSampler(corpus.media_sizes, 2, seed=1)
    assert list(by_corpus) == list(by_sizes)
    loader = DataLoader(
        corpus, batch_size=2, sampler=by_corpus, collate_fn=collate_captions, drop_last=True
    )
    batches = list(loader)
    assert len(batches) == by_corpus.num_batches == 9
    assert [b["media"] for b in batches] == by_corpus.batch_media()
    for b in batches:
        frames = 1 if b["media"] == "image" else 4
        assert b["video"].shape == (2, 3, frames, 32, 32)
        assert all(corpus.media_of(int(i)) == b["media"] for i in b["index"])
    mixed = [corpus[(0, 0)], corpus[(0, 10)]]
    with pytest.raises(ValueError, match="mixes media"):
        collate_captions(mixed)


# --------------------------------------------------------------------------- tar shards
def test_caption_shards_round_trip(tmp_path, synth, image_json):
    opts = {**SMALL, "train": False}
    corpus = CaptionCorpus(
        [{"anno": str(synth / "train.json"), "root": str(synth)}, {"anno": str(image_json)}],
        id_by="video",
        **opts,
    )
    written = write_caption_shards(corpus, tmp_path / "shards", per_shard=5)
    assert sorted(written) == ["image", "video"]
    assert [p.name for p in written["image"]] == [
        "shard-image-000000.tar",
        "shard-image-000001.tar",
    ]
    stream = {
        m: list(CaptionShardDataset(shard_pattern(p), shuffle_shards=False, **opts))
        for m, p in written.items()
    }
    expected = {m: [corpus[(0, i)] for r in corpus.media_ranges[m] for i in r] for m in written}
    for m in written:
        assert len(stream[m]) == len(expected[m])
        for got, want in zip(stream[m], expected[m]):
            assert set(got) == ITEM_KEYS
            assert (got["caption"], got["sample_id"], got["media"]) == (
                want["caption"],
                want["sample_id"],
                want["media"],
            )
            assert torch.allclose(got["video"], want["video"], atol=1e-5)
    # shards made by `umt data shards` (no ids): stable per-sample ids, or ids by caption
    plain = write_shards(synth / "train.json", tmp_path / "plain", per_shard=20)
    by_entry = list(CaptionShardDataset(shard_pattern(plain), shuffle_shards=False, **opts))
    assert [s["sample_id"] for s in by_entry] == list(range(12))
    assert {s["media"] for s in by_entry} == {"video"}
    by_caption = list(
        CaptionShardDataset(shard_pattern(plain), shuffle_shards=False, id_by="caption", **opts)
    )
    for a, b in itertools.combinations(by_caption, 2):
        assert (a["sample_id"] == b["sample_id"]) == (a["caption"] == b["caption"])
    # a stream of one medium refuses the other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wrong = CaptionShardDataset(shard_pattern(written["image"]), media="video", **opts)
        assert list(wrong) == [] and wrong.faults.failures == 6
