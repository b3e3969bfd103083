"""Annotation formats, the synthetic dataset, DataLoader determinism, shards, collate."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from data_videogen import pattern_frame, read_number
from PIL import Image
from torch.utils.data import DataLoader

from umt.data import (
    CLASSES,
    MultiViewDataset,
    ShardDataset,
    VideoDataset,
    build_dataset,
    collate_videos,
    detect_format,
    ensure_synthetic_dataset,
    load_annotations,
    read_frames,
)
from umt.data.clip_spec import ClipSpec

SMALL = {"clip": ClipSpec(num_frames=4, input_size=32), "backend": "pyav"}


def test_list_formats(tmp_path, good_videos):
    (tmp_path / "a.txt").write_text(f"{good_videos[0]} 3\n\n{good_videos[1]} 4\n")
    (tmp_path / "b.csv").write_text(f"path,label\n{good_videos[0].name},3\n")
    (tmp_path / "c.txt").write_text(f"{good_videos[0].name}\n")
    assert [(r.path, r.label) for r in load_annotations(tmp_path / "a.txt")] == [
        (str(good_videos[0]), 3),
        (str(good_videos[1]), 4),
    ]
    rec = load_annotations(tmp_path / "b.csv", root=good_videos[0].parent)
    assert rec[0].path == str(good_videos[0]) and rec[0].label == 3
    assert load_annotations(tmp_path / "c.txt")[0].label is None
    (tmp_path / "bad.txt").write_text("x.mp4 1\ny.mp4 one\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: label 'one'"):
        load_annotations(tmp_path / "bad.txt")


def test_json_formats(tmp_path):
    (tmp_path / "vt.json").write_text(json.dumps([{"video": "v.mp4", "caption": ["a", "b"]}]))
    (tmp_path / "it.json").write_text(json.dumps([{"image": "i.jpg", "caption": "x"}]))
    (tmp_path / "ss.json").write_text(
        json.dumps([{"id": "7", "template": "Pushing [something] left"}])
    )
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something left": "5"}))
    assert detect_format(tmp_path / "vt.json") == "video_text"
    assert detect_format(tmp_path / "it.json") == "image_text"
    assert detect_format(tmp_path / "ss.json") == "ssv2"
    assert load_annotations(tmp_path / "vt.json")[0].caption == ["a", "b"]
    assert load_annotations(tmp_path / "it.json")[0].is_image
    rec = load_annotations(tmp_path / "ss.json")[0]
    assert rec.label == 5 and rec.path == str(tmp_path / "7.webm")
    (tmp_path / "odd.json").write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(ValueError, match=r"odd\.json: cannot tell"):
        detect_format(tmp_path / "odd.json")


def test_write_video_same_frames_same_bytes(tmp_path):
    """The synthetic clips' encoder is deterministic: the same frames, encoded again and again
    with other allocations between the calls, give one file (x264's macroblock tree, on by
    default, gave three different files and decoded pictures in twelve such calls)."""
    import hashlib

    from umt.data.synth import render_clip, write_video

    digests, ballast = set(), []
    for k in range(12):
        frames, _ = render_clip(0, 8, 112, np.random.default_rng([0, 12]))
        ballast.append(np.random.default_rng(k).bytes(100_000 * (k + 1)))
        write_video(tmp_path / f"{k}.mp4", frames, fps=8, gop=4)
        digests.add(hashlib.md5((tmp_path / f"{k}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_synthetic_dataset(synthetic_root, tmp_path):
    from umt.data.synth import set_params

    root = synthetic_root
    assert (root / ".complete").is_file()
    assert json.loads((root / "classes.json").read_text()) == [c["name"] for c in CLASSES]
    splits = {s: load_annotations(root / f"{s}.csv") for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [24, 12, 12]
    paths = [r.path for s in splits.values() for r in s]
    assert len(set(paths)) == 48  # disjoint splits
    for records in splits.values():  # balanced labels
        assert sorted(r.label for r in records) == sorted(list(range(12)) * (len(records) // 12))
    ssv2 = load_annotations(root / "ssv2" / "train.json", root=root / "videos")
    assert [r.label for r in ssv2] == [r.label for r in splits["train"]]
    texts = load_annotations(root / "train.json")
    assert all(isinstance(r.caption, str) and r.caption for r in texts)
    records = json.loads((root / "val.json").read_text())
    for rec in records:
        assert rec["caption"].endswith(f"{rec['category']} moves {rec['motion']}")
        assert CLASSES[rec["label"]]["name"] == f"{rec['category']} moves {rec['motion']}"
    # idempotent; a finished set is accepted as it is, or checked against what is asked
    assert ensure_synthetic_dataset(root) == root
    assert ensure_synthetic_dataset(root, train=24, frames=16, size=32) == root
    with pytest.raises(ValueError, match="made with"):
        ensure_synthetic_dataset(root, train=10, frames=16, size=32)
    # another root with the same seed gives identical bytes for the same clip number
    other = ensure_synthetic_dataset(
        tmp_path / "again", train=24, val=1, test=0, frames=16, size=32, workers=1
    )
    assert (other / "videos" / "00011.mp4").read_bytes() == (
        root / "videos" / "00011.mp4"
    ).read_bytes()
    # the marker is the set's one record of its parameters; a damaged one is named
    assert set_params(other)["train"] == 24 and set_params(tmp_path / "none") is None
    (other / ".complete").write_text("{not json")
    with pytest.raises(ValueError, match=r"\.complete: unreadable"):
        ensure_synthetic_dataset(other)


def _actor_track(frames: np.ndarray, rgb) -> list[tuple[float, float]]:
    """Centre of the pixels of colour ``rgb`` (plain fill) in each frame."""
    hits = (frames == np.array(rgb, dtype=np.uint8)).all(-1)  # [T, S, S]
    return [(np.nonzero(h)[1].mean(), np.nonzero(h)[0].mean()) for h in hits]


def test_synthetic_classes_need_category_and_motion():
    """The actor moves as its class says; classes of one category differ only in motion and
    classes of one motion only in the actor's shape; the actor is one of several objects."""
    from umt.data.synth import COLOURS, render_clip

    seen = set()
    for label in range(12):
        rng = np.random.default_rng([7, label])
        frames, rec = render_clip(label, 8, 112, rng)
        assert frames.shape == (8, 112, 112, 3) and frames.dtype == np.uint8
        assert rec["label"] == label and CLASSES[label]["category"] == rec["category"]
        seen.add((rec["category"], rec["motion"]))
        if rec["fill"] != "plain":
            continue
        # distractors share the palette: follow the actor by its colour where it is unique
        track = _actor_track(frames, COLOURS[rec["colour"]])
        (x0, y0), (x1, y1) = track[0], track[-1]
        move = {"left": x0 - x1, "right": x1 - x0, "up": y0 - y1}[rec["motion"]]
        assert move > 0.15 * 112, (label, track)
    assert len(seen) == 12
    # every frame differs from the last (something moves), the background is not flat
    frames, _ = render_clip(0, 8, 112, np.random.default_rng(1))
    assert not np.array_equal(frames[0], frames[-1])
    assert frames[0].reshape(-1, 3).std(0).min() > 5


def _clips(ds, num_workers, epoch=0):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=4, num_workers=num_workers, collate_fn=collate_videos)
    return [b["video"] for b in loader], [b["index"] for b in loader]


def test_determinism_across_workers_and_epochs(synthetic_root):
    ds = VideoDataset(synthetic_root / "train.csv", seed=3, **SMALL)
    a, idx = _clips(ds, 0)
    b, _ = _clips(ds, 2)
    c, _ = _clips(ds, 0, epoch=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert a[0].shape == (4, 3, 4, 32, 32) and idx[0].dtype == torch.long
    # tuple indexing (epoch, index) reaches persistent workers too
    assert torch.equal(ds[(1, 5)]["video"], c[1][1])


def test_sample_dict_and_collate(synthetic_root):
    ds = VideoDataset(synthetic_root / "train.json", seed=0, **SMALL)
    sample = ds[2]
    assert set(sample) >= {"video", "label", "caption", "index", "path", "faults"}
    assert sample["video"].shape == (3, 4, 32, 32) and sample["video"].dtype == torch.float32
    batch = collate_videos([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 4, 32, 32)
    assert batch["label"].tolist() == [0, 1] and len(batch["caption"]) == 2
    assert int(batch["skipped"]) == 0 and batch["faults"] == []


def test_eval_views(synthetic_root):
    ds = VideoDataset(
        synthetic_root / "val.csv",
        clip=ClipSpec(
            num_frames=4,
            sampling="dense",
            frame_stride=2,
            train=False,
            input_size=32,
            short_side=48,
            num_clips=2,
            num_crops=3,
        ),
        backend="pyav",
    )
    assert len(ds) == 6 * ds.num_videos
    views = [ds[i] for i in range(6)]
    assert [v["view"] for v in views] == list(range(6))
    assert len({v["video"].sum().item() for v in views}) == 6
    assert torch.equal(ds[3]["video"], ds[3]["video"])


def test_frame_folder_and_images(tmp_path):
    folder = tmp_path / "frames" / "vid0"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(pattern_frame(i, 32)).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    Image.fromarray(pattern_frame(5, 32)).save(tmp_path / "pic.png")
    (tmp_path / "list.txt").write_text("frames/vid0 12 1\n")
    (tmp_path / "it.json").write_text(json.dumps([{"image": "pic.png", "caption": "five"}]))
    ds = VideoDataset(
        tmp_path / "list.txt",
        clip=ClipSpec(num_frames=4, train=False, input_size=32, mean=(0, 0, 0), std=(1, 1, 1)),
    )
    clip = ds[0]["video"]  # [3, T, H, W] in 0..1
    got = [
        read_number((clip[:, t].permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for t in range(4)
    ]
    assert got == [1, 4, 7, 9]  # official validation clip: seg 11/4, starts 0,3,6,8 (+1)
    img = VideoDataset(tmp_path / "it.json", clip=ClipSpec(num_frames=4, input_size=32))[0]
    assert img["video"].shape == (3, 1, 32, 32) and img["caption"] == "five"


def _write_shards(tmp_path, videos, n_shards=2):
    urls = []
    per = (len(videos) + n_shards - 1) // n_shards
    for s in range(n_shards):
        path = tmp_path / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for k, video in enumerate(videos[s * per : (s + 1) * per]):
                for ext, data in (
                    ("mp4", video.read_bytes()),
                    ("cls", str(k).encode()),
                    ("txt", f"clip {k}".encode()),
                ):
                    info = tarfile.TarInfo(f"s{s}_{k:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls.append(str(path))
    return str(tmp_path / f"shard-{{000..{n_shards - 1:03d}}}.tar"), urls


def test_tar_shards_split_by_worker(tmp_path, good_videos):
    pattern, _ = _write_shards(tmp_path, good_videos, n_shards=3)
    ds = build_dataset(pattern, **SMALL)
    assert isinstance(ds, ShardDataset)
    single = list(DataLoader(ds, batch_size=None, num_workers=0))
    multi = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert len(single) == len(good_videos) == len(multi)
    assert sorted(s["index"] for s in single) == sorted(s["index"] for s in multi)
    by_index = {s["index"]: s["video"] for s in single}
    assert all(torch.equal(by_index[s["index"]], s["video"]) for s in multi)
    assert {s["caption"] for s in single} >= {"clip 0"}
    ranks = [
        ShardDataset(pattern, rank=r, world_size=2, **SMALL).shards_for_this_worker()
        for r in range(2)
    ]
    assert sorted(u for part in ranks for u in part) == sorted(enumerate(ds.urls))


def test_decoded_clip_frames_are_the_sampled_ones(good_videos):
    frames = read_frames(good_videos[2], [0, 27], backend="pyav")
    assert [read_number(f) for f in frames] == [0, 27]


def test_clip_spec_defaults_of_the_datasets(synthetic_root):
    """Without a ClipSpec: VideoDataset trains on 8 sparse frames; MultiViewDataset is the
    official 4 x 3 test and reads every video with at least one frame."""
    from umt.data.sampling import min_frames_needed

    train = VideoDataset(synthetic_root / "train.csv", backend="pyav")
    assert train.loader.train and train.loader.num_frames == 8
    assert train.loader.min_frames == min_frames_needed(8, "sparse")
    test = MultiViewDataset(synthetic_root / "val.csv", backend="pyav")
    assert (test.num_clips, test.num_crops, test.num_views) == (4, 3, 12)
    assert test.loader.min_frames == 1 and not test.loader.train
    spec = ClipSpec(num_frames=4, input_size=32, num_clips=2, num_crops=1)
    assert MultiViewDataset(synthetic_root / "val.csv", clip=spec).num_views == 2
