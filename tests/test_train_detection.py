"""AVA detection fine-tuning: the dataset's boxes through resize / crop / flip, the collate, a
tiny training run in the loop with validation, exact resume, the official recipes, config errors.
Kept fast (tiny sizes, a 20-clip synthetic set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.config import ConfigError, load_config
from umt.data.detection import AVA_MEAN, AVA_STD, AVADataset, collate_detection
from umt.data.sampling import make_generator, randint_inclusive, sample_seed
from umt.data.transforms.boxes import flip_boxes


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A 20-clip synthetic detection set (16 train, 4 val keyframes), 64 x 96 frames."""
    from umt.data.synth_detection import write_detection_dataset

    return write_detection_dataset(
        tmp_path_factory.mktemp("ava"), videos=20, frames=16, height=64, width=96
    )


@pytest.fixture(scope="module")
def square_video(tmp_path_factory) -> Path:
    """One 16-frame 64 x 96 video (8 fps), a white square at normalised (0.25, 0.25, 0.5, 0.75)
    on black, its GT CSV (timestamp 1, action 2) and a box CSV."""
    from umt.data.synth import write_video

    root = tmp_path_factory.mktemp("square")
    frames = np.zeros((16, 64, 96, 3), dtype=np.uint8)
    frames[:, 16:48, 24:48] = 255  # x 24..47, y 16..47 (inclusive)
    write_video(root / "v1.mp4", frames, fps=8)
    (root / "gt.csv").write_text("v1,1,0.25,0.25,0.5,0.75,2,0\n")
    (root / "boxes.csv").write_text("v1,1,0.25,0.25,0.5,0.75,0.9\nv1,1,0.0,0.0,0.2,0.2,0.5\n")
    return root


TINY = [
    "model.init=scratch",
    "model.embed_dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "model.drop_path_rate=0.1",
    "data.num_frames=2",
    "data.sampling_rate=4",
    "data.input_size=32",
    "data.short_side=32",
    "train.batch_size=4",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
    "optim.lr=5e-3",
    "schedule.epochs=2",
    "schedule.warmup_epochs=0",
    "schedule.warmup_steps=0",
]


def tiny_cfg(small_set: Path, out: Path, *extra: str):
    files = [
        f"data.train_list={small_set / 'train.csv'}",
        f"data.val_list={small_set / 'val.csv'}",
        f"data.val_boxes={small_set / 'val_boxes.csv'}",
        f"data.label_map={small_set / 'label_map.pbtxt'}",
        f"data.excluded={small_set / 'excluded.csv'}",
        f"data.root={small_set / 'videos'}",
    ]
    return load_config(
        "umt-tiny-synthetic-ava", [*TINY, *files, f"train.output_dir={out}", *extra], "finetune"
    )


# --------------------------------------------------------------------------- the dataset
def test_keyframe_clip_indices():
    ds = AVADataset.__new__(AVADataset)
    ds.num_frames, ds.sampling_rate = 4, 4
    assert ds.frame_indices(1, 8, 16) == [0, 4, 8, 12]  # keyframe round(1 x 8) = 8
    assert ds.frame_indices(0, 8, 16) == [0, 0, 0, 4]  # clamped at the start
    assert ds.frame_indices(5, 8, 16) == [7, 11, 15, 15]  # keyframe clamped to 15


def test_training_boxes_follow_resize_crop_flip(square_video):
    """Normalised (0.25, 0.25, 0.5, 0.75) on 64 x 96 -> pixels (24, 16, 47, 47) -> short side
    32 (x 0.5): (12, 8, 23.5, 23.5) -> a 32 x 32 crop at (x0, 0) -> maybe flipped; the square's
    pixels follow the box."""
    seen_flip = set()
    for epoch in range(6):
        ds = AVADataset(
            square_video / "gt.csv", num_frames=2, sampling_rate=4, short_side=32,
            input_size=32, color_jitter=False, num_classes=3, seed=1,
        )  # fmt: skip
        item = ds[(epoch, 0)]
        gen = make_generator(sample_seed(1, epoch, 0))
        x0 = randint_inclusive(0, 16, gen)  # the crop's x (y has no room: no draw)
        flipped = float(torch.rand(1, generator=gen)) < 0.5
        want = torch.tensor([[12.0 - x0, 8.0, 23.5 - x0, 23.5]]).clamp(min=0)
        if flipped:
            want = flip_boxes(want, 32)
        seen_flip.add(flipped)
        assert item["image_size"] == (32, 32) and item["orig_size"] == (64, 96)
        assert item["video"].shape == (3, 2, 32, 32)
        torch.testing.assert_close(item["boxes"], want)
        assert item["labels"].tolist() == [[0.0, 1.0, 0.0]]
        # The square's pixels (normalised white) sit inside the box, black outside.
        pix = item["video"][0, 0] * AVA_STD[0] + AVA_MEAN[0]  # [32, 32] red channel, 0-255
        x1, y1, x2, y2 = want[0].tolist()
        inside = pix[int(y1) + 2 : int(y2) - 1, int(x1) + 2 : int(x2) - 1]
        assert inside.mean() > 200
        outside = pix.clone()
        outside[max(int(y1) - 2, 0) : int(y2) + 3, max(int(x1) - 2, 0) : int(x2) + 3] = 0
        assert outside.max() < 60
    assert seen_flip == {True, False}


def test_box_leaving_the_crop_is_dropped_and_test_items_use_detector_boxes(square_video):
    ds = AVADataset(
        square_video / "gt.csv", num_frames=2, short_side=64, input_size=16,
        color_jitter=False, flip=False, num_classes=3,
    )  # fmt: skip
    counts = {ds[(e, 0)]["boxes"].shape[0] for e in range(12)}
    assert counts == {0, 1}  # some 16 x 16 crops of the 64 x 96 frame miss the square
    test = AVADataset(
        square_video / "gt.csv", train=False, boxes=square_video / "boxes.csv",
        box_thresh=0.8, num_frames=2, short_side=32, num_classes=3,
    )  # fmt: skip
    item = test[0]
    assert item["image_size"] == (32, 48)  # the full resized frame, no crop
    torch.testing.assert_close(item["boxes"], torch.tensor([[12.0, 8.0, 23.5, 23.5]]))
    torch.testing.assert_close(item["box_scores"], torch.tensor([0.9]))


def test_labels_follow_their_actors_through_the_pipeline(small_set):
    """Each training item's box and label belong to the same actor in its frames: a rule that
    reads only the pixels around the box (the bright actor's centre in the first and last of
    the 4 sampled frames) recovers the motion label of nearly every box."""
    ds = AVADataset(
        small_set / "train.csv", small_set / "videos", num_frames=4, sampling_rate=4,
        short_side=64, input_size=96, flip=False, color_jitter=False, num_classes=6,
    )  # fmt: skip
    right = total = 0
    for i in range(len(ds)):
        item = ds[(0, i)]
        assert item["image_size"] == (64, 96)  # the whole frame: no actor cut off
        pix = item["video"].permute(1, 2, 3, 0) * torch.tensor(AVA_STD) + torch.tensor(AVA_MEAN)
        bright = pix.amax(-1) > 150  # [T, H, W]: actors, not the dim background
        for box, labels in zip(item["boxes"].tolist(), item["labels"].tolist()):
            x1, y1, x2, y2 = box
            gw, gh = 0.8 * (x2 - x1 + 1), 0.8 * (y2 - y1 + 1)
            xa, xb = int(max(x1 - gw, 0)), int(min(x2 + gw, 95))
            ya, yb = int(max(y1 - gh, 0)), int(min(y2 + gh, 63))
            centres = []
            for t in (0, -1):
                ys, xs = torch.nonzero(bright[t, ya : yb + 1, xa : xb + 1], as_tuple=True)
                centres.append((xs.float().mean().item(), ys.float().mean().item()))
            dx, dy = centres[1][0] - centres[0][0], centres[1][1] - centres[0][1]
            if max(abs(dx), abs(dy)) < 0.25 * (x2 - x1 + 1):
                motion = 5
            elif abs(dx) > abs(dy):
                motion = 1 if dx < 0 else 2
            else:
                motion = 3 if dy < 0 else 4
            right += labels[motion - 1] == 1.0
            total += 1
    assert total >= 30 and right >= 0.9 * total


def test_collate_pads_to_multiple_of_16_and_keeps_box_lists():
    a = {"video": torch.ones(3, 2, 32, 48), "boxes": torch.zeros(2, 4), "index": 0}
    b = {"video": torch.ones(3, 2, 40, 20), "boxes": torch.zeros(1, 4), "index": 5}
    for s, size in ((a, (32, 48)), (b, (40, 20))):
        s.update(labels=torch.zeros(s["boxes"].shape[0], 3), box_scores=torch.ones(1),
                 video_id="v", timestamp=1, image_size=size, orig_size=size, faults=[])  # fmt: skip
    bad = {"index": 7, "fault": "file not found", "faults": [("x.mp4", "file not found")]}
    batch = collate_detection([a, b, bad])
    assert batch["video"].shape == (2, 3, 2, 48, 48)
    assert batch["index"].tolist() == [0, 5]
    assert [x.shape[0] for x in batch["boxes"]] == [2, 1]
    assert batch["video"][1, :, :, :40, :20].eq(1).all()
    assert batch["video"][1, :, :, 40:].eq(0).all() and batch["video"][1, :, :, :, 20:].eq(0).all()
    assert batch["faults"] == [("x.mp4", "file not found")] and int(batch["skipped"]) == 1


# --------------------------------------------------------------------------- the loop
def test_tiny_run_learns_validates_and_writes_results(small_set, tmp_path):
    from umt.evaluate.detection import frame_map_from_files
    from umt.train import finetune

    out = tmp_path / "run"
    result = finetune(tiny_cfg(small_set, out), echo=lambda s: None)
    assert len(result.losses) == 8  # 2 epochs x 16 keyframes / 4
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    maps = [r["val_map"] for r in evals if "val_map" in r]
    assert len(maps) == 2 and all(0.0 <= m <= 100.0 for m in maps)
    assert (out / "best" / "model.safetensors").is_file()
    res = json.loads((out / "test" / "results.json").read_text())
    assert res["mAP"] == pytest.approx(maps[-1])
    # The chance level beside it: random scores on the same detection rows.
    assert 0.0 < res["chance_mAP"] < 100.0 and 0.0 <= res["chance_mAP_std"] < 50.0
    assert set(res["per_class_AP"]) <= {
        "move left", "move right", "move up", "move down", "stand still", "pulse"
    }  # fmt: skip
    # The detections CSV evaluates (as the official re-reads it) to the same mAP.
    again = frame_map_from_files(
        small_set / "val.csv", out / "test" / "detections.csv", small_set / "label_map.pbtxt"
    )
    assert 100 * again.mean_ap == pytest.approx(res["mAP"], abs=0.5)


def test_resume_equals_straight(small_set, tmp_path):
    from umt.train import finetune

    extra = ("eval.every_epochs=5", "schedule.epochs=1")  # validation only after the last epoch
    straight = finetune(tiny_cfg(small_set, tmp_path / "a", *extra), echo=lambda s: None)
    finetune(tiny_cfg(small_set, tmp_path / "b", *extra, "train.max_steps=2"), echo=lambda s: None)
    second = finetune(
        tiny_cfg(small_set, tmp_path / "b", *extra, "train.resume=auto"), echo=lambda s: None
    )
    assert second.first_step == 2 and len(straight.losses) == 4
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)


# --------------------------------------------------------------------------- recipes, errors
def test_recipes_match_the_official_table():
    b = load_config("umt-b16-ava", task="finetune")
    l16 = load_config("umt-l16-ava", task="finetune")
    for cfg in (b, l16):
        assert cfg.task == "finetune-ava" and cfg.model.init is None
        assert cfg.model.num_classes == 80 and cfg.model.head_init_scale == 0.001
        assert cfg.model.proposals_per_clip == 100
        assert cfg.model.box_jitter == [0.2, 0.1, 0.1, 0.05]
        assert cfg.model.test_box_ext == [0.1, 0.05]
        d = cfg.data
        assert (d.num_frames, d.sampling_rate, d.input_size, d.short_side) == (8, 8, 224, 256)
        assert d.box_thresh == 0.8 and d.flip and d.color_jitter
        o = cfg.optim
        assert (o.lr, o.min_lr, o.warmup_lr, o.scale_lr) == (2.5e-4, 1e-6, 0.0, True)
        assert (o.weight_decay, o.betas, o.eps) == (0.05, [0.9, 0.999], 1e-8)
        assert cfg.schedule.warmup_epochs == 5
    assert b.model.name == "umt-b16-ava" and l16.model.name == "umt-l16-ava"
    # GPUs x batch = 16 x 8 = 32 x 4 = 128 -> effective lr 1.25e-4, min_lr 5e-7.
    assert 16 * b.train.batch_size == 32 * l16.train.batch_size == 128
    assert b.optim.lr * 128 / 256 == pytest.approx(1.25e-4)
    assert b.optim.min_lr * 128 / 256 == pytest.approx(5e-7)
    assert (b.schedule.epochs, l16.schedule.epochs) == (30, 25)
    assert (b.optim.layer_decay, l16.optim.layer_decay) == (0.75, 0.85)
    assert (b.model.drop_path_rate, l16.model.drop_path_rate) == (0.2, 0.4)
    assert (b.train.precision, l16.train.precision) == ("fp16", "fp32")
    assert (b.eval.every_epochs, l16.eval.every_epochs) == (10, 20)
    assert l16.train.seed == 6666


def test_missing_label_map_is_a_config_error_before_any_work(small_set, tmp_path):
    from umt.train import finetune

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="data.label_map"):
        finetune(tiny_cfg(small_set, out, "data.label_map=null"), echo=lambda s: None)
    with pytest.raises(ConfigError, match="data.label_map: no such file"):
        finetune(tiny_cfg(small_set, out, f"data.label_map={tmp_path}/nope.pbtxt"))
    assert not out.exists()
    with pytest.raises(ConfigError, match="model.init"):
        finetune(tiny_cfg(small_set, out, "model.init=null"))


def test_validation_leaves_out_and_names_unreadable_videos(small_set, tmp_path):
    """An unreadable validation video is left out, counted and named in the metrics and the
    test results: never replaced by another video."""
    import shutil

    from umt.train import finetune

    data = tmp_path / "set"
    shutil.copytree(small_set, data)
    val_ids = sorted({line.split(",")[0] for line in (data / "val.csv").read_text().splitlines()})
    broken = next(p for p in (data / "videos").iterdir() if p.stem == val_ids[0])
    broken.write_bytes(b"\x00" * 300)  # a real file that is no video
    out = tmp_path / "run"
    finetune(tiny_cfg(data, out, "schedule.epochs=1"), echo=lambda s: None)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_map" in r]
    assert val and val[-1]["val_skipped_videos"] == 1
    assert val[-1]["val_skipped"] == [str(broken)]
    res = json.loads((out / "test" / "results.json").read_text())
    assert [v["path"] for v in res["skipped_videos"]] == [str(broken)]
