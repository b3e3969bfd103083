"""Official fine-tuning / test frame sampling (kinetics_sparse.py, ssv2.py, kinetics.py) and the
official test views (short-side resize, crops along the long side), checked against literal
transcriptions of the official code and against the stored official multi-view fixture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from data_videogen import read_number, write_pattern_video

from umt.data import VideoDataset
from umt.data.clip_spec import ClipSpec
from umt.data.datasets import MultiViewDataset, collate_views
from umt.data.decode import probe_video
from umt.data.sampling import (
    ClipView,
    dense_test_indices,
    eval_views,
    make_generator,
    sample_indices,
    segment_indices,
    sparse_indices,
    ssv2_indices,
)
from umt.data.transforms.recipes import build_eval_transform
from umt.data.transforms.video import (
    CenterCrop,
    ShortSideResize,
    SpatialCrop,
    resize_bilinear,
    short_side_sizes,
)


# --------------------------------------------------------------------------- official code
def official_sparse(video_size: int, num_frames: int, clip_idx: int, test_num_segment: int):
    """``VideoClsDataset_sparse._get_seq_frames`` (kinetics_sparse.py), test/validation branch,
    transcribed literally (numpy round)."""
    seg_size = max(0.0, float(video_size - 1) / num_frames)
    max_frame = int(video_size) - 1
    duration = seg_size / (test_num_segment + 1)
    seq = []
    for i in range(num_frames):
        start = int(np.round(seg_size * i))
        frame_index = start + int(duration * (clip_idx + 1))
        seq.append(min(frame_index, max_frame))
    return seq


def official_sparse_train_bounds(video_size: int, num_frames: int) -> list[tuple[int, int]]:
    """The ``random.randint(start, end)`` bounds of the official training branch (capped)."""
    seg_size = max(0.0, float(video_size - 1) / num_frames)
    last = video_size - 1
    return [
        (min(int(np.round(seg_size * i)), last), min(int(np.round(seg_size * (i + 1))), last))
        for i in range(num_frames)
    ]


def official_ssv2_test(n: int, num_segment: int, test_num_segment: int, chunk_nb: int):
    """``SSVideoClsDataset.loadvideo_decord`` (mode test) + ``buffer[chunk_nb::2]``."""
    tick = n / float(num_segment)
    all_index = [int(tick / 2.0 + tick * x) for x in range(num_segment)] + [
        int(tick * x) for x in range(num_segment)
    ]
    while len(all_index) < num_segment * test_num_segment:
        all_index.append(all_index[-1])
    all_index = np.sort(np.array(all_index))
    return all_index[chunk_nb::2].tolist()


def official_dense_test(n: int, clip_len: int, rate: int, test_num_segment: int, chunk_nb: int):
    """``VideoClsDataset.loadvideo_decord`` (kinetics.py, mode test)."""
    converted_len = int(clip_len * rate)
    temporal_step = max(1.0 * (n - converted_len) / (test_num_segment - 1), 0)
    temporal_start = int(chunk_nb * temporal_step)
    bound = min(temporal_start + converted_len, n)
    all_index = list(range(temporal_start, bound, rate))
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    return all_index


# --------------------------------------------------------------------------- sparse
@pytest.mark.parametrize("t", [1, 2, 3, 4, 8, 16])
def test_sparse_test_views_equal_the_official_code(t):
    for n in range(1, 161):
        for clips in range(1, 6):
            for c in range(clips):
                ours = sparse_indices(n, t, train=False, clip_index=c, num_clips=clips)
                assert ours == official_sparse(n, t, c, clips), (n, t, c, clips)
        assert sparse_indices(n, t, train=False) == official_sparse(n, t, 0, 1)  # validation


def test_sparse_hand_cases_short_exact_and_half_to_even():
    # n < T: seg = 2/4 = 0.5, starts round(0, .5, 1, 1.5) = 0, 0, 1, 2; validation offset 0
    assert sparse_indices(3, 4, train=False) == [0, 0, 1, 2]
    # n = T: seg = 3/4, starts 0, 1 (0.75), 2 (1.5 -> 2), 2 (2.25); offsets 0 / 0 / 0 (C=2)
    assert sparse_indices(4, 4, train=False) == [0, 1, 2, 2]
    assert sparse_indices(4, 4, False, clip_index=1, num_clips=2) == [0, 1, 2, 2]
    # one frame: copies of frame 0 in every mode
    assert sparse_indices(1, 4, train=False) == [0] * 4
    assert sparse_indices(1, 4, True, make_generator(0)) == [0] * 4
    # half to even: n=21, T=4 -> seg 5: exact; n=19, T=4 -> seg 4.5: 0, 4 (4.5), 9, 14 (13.5)
    assert sparse_indices(19, 4, train=False) == [2, 6, 11, 16]
    assert [round(4.5 * i) for i in range(4)] == [0, 4, 9, 14]
    # n=75, T=4, 2 clips (the fixture's first video): seg 18.5, round(55.5) = 56
    assert sparse_indices(75, 4, False, clip_index=0, num_clips=2) == [6, 24, 43, 62]
    assert sparse_indices(75, 4, False, clip_index=1, num_clips=2) == [12, 30, 49, 68]
    # the offset caps at n - 1
    assert max(sparse_indices(3, 2, False, clip_index=4, num_clips=5)) <= 2
    with pytest.raises(ValueError, match="clip 2 of 2"):
        sparse_indices(30, 4, False, clip_index=2, num_clips=2)


@pytest.mark.parametrize(("n", "t"), [(75, 4), (300, 8), (9, 8), (5, 8), (2, 4)])
def test_sparse_training_draws_cover_the_official_segments(n, t):
    """One uniform draw per segment in [round(seg*i), round(seg*(i+1))], both ends reachable."""
    bounds = official_sparse_train_bounds(n, t)
    seen = [set() for _ in range(t)]
    gen = make_generator(5)
    for _ in range(600):
        idx = sparse_indices(n, t, train=True, generator=gen)
        for i, frame in enumerate(idx):
            assert bounds[i][0] <= frame <= bounds[i][1]
            seen[i].add(frame)
    assert all(seen[i] == set(range(bounds[i][0], bounds[i][1] + 1)) for i in range(t))


def test_sparse_training_uses_only_the_given_generator():
    random.seed(0)
    torch.manual_seed(0)
    before = (random.getstate(), torch.get_rng_state())
    a = sparse_indices(300, 8, True, make_generator(3))
    assert torch.equal(torch.get_rng_state(), before[1]) and random.getstate() == before[0]
    assert a == sparse_indices(300, 8, True, make_generator(3))
    assert len({tuple(sparse_indices(300, 8, True, make_generator(s))) for s in range(10)}) > 1


# --------------------------------------------------------------------------- ssv2 / dense
@pytest.mark.parametrize("t", [1, 4, 8, 16])
def test_ssv2_test_views_equal_the_official_code(t):
    for n in range(1, 121):
        for clips in (1, 2):
            for c in range(clips):
                ours = ssv2_indices(n, t, train=False, clip_index=c, num_clips=clips)
                assert ours == official_ssv2_test(n, t, clips, c), (n, t, c, clips)
        tick = n / t
        assert ssv2_indices(n, t, train=False) == [int(tick / 2 + tick * x) for x in range(t)]
        assert sample_indices(n, t, "ssv2", train=True, generator=make_generator(n)) == (
            segment_indices(n, t, True, make_generator(n))
        )
    with pytest.raises(ValueError, match="2 temporal test views"):
        ssv2_indices(40, 4, train=False, clip_index=0, num_clips=4)
    with pytest.raises(ValueError, match="ssv2"):
        eval_views(4, 3, "ssv2")


def test_dense_test_equals_the_official_code_and_centres_one_clip():
    for n in range(1, 90):
        for clips in (2, 3, 5):
            for c in range(clips):
                ours = dense_test_indices(n, 8, 4, c, clips)
                assert ours == official_dense_test(n, 8, 4, clips, c), (n, c, clips)
    # one clip (the official code divides by zero): centred
    assert dense_test_indices(100, 8, 4, 0, 1) == list(range(34, 66, 4))
    assert dense_test_indices(10, 8, 4, 0, 1) == [0, 4, 8, 8, 8, 8, 8, 8]
    view = ClipView(clip=1, crop=0, num_clips=3, num_crops=1)
    assert sample_indices(100, 8, "dense", 4, train=False, view=view) == list(range(34, 66, 4))


def test_eval_views_are_segment_major():
    views = eval_views(2, 3)
    assert [(v.clip, v.crop) for v in views] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [v.index for v in views] == list(range(6))


# --------------------------------------------------------------------------- transforms
def test_short_side_resize_follows_the_official_sizes():
    assert short_side_sizes(48, 64, 32) == (32, 42)  # int(32 * 64 / 48) = int(42.67)
    assert short_side_sizes(64, 48, 32) == (42, 32)
    assert short_side_sizes(50, 50, 32) == (32, 32)
    clip = torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8, generator=make_generator(0))
    out = ShortSideResize(32)(clip)
    assert out.shape == (3, 3, 32, 42) and out.dtype == torch.uint8
    assert ShortSideResize(48)(clip) is clip  # short side already matches: untouched
    # bilinear with half-pixel centres, no antialiasing: a 2x downscale averages 2x2 blocks
    ramp = torch.arange(16, dtype=torch.uint8).mul(10).view(1, 1, 4, 4)
    half = resize_bilinear(ramp, (2, 2))
    expected = ramp.float().view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(2, 2, 4).mean(-1)
    assert torch.equal(half[0, 0], expected.round().to(torch.uint8))


def test_crops_along_the_long_side():
    frame = torch.arange(40 * 70).view(1, 1, 40, 70).expand(2, 3, 40, 70)
    three = SpatialCrop(40, num_crops=3)
    assert [three.offsets(40, 70, k) for k in range(3)] == [(0, 0), (0, 15), (0, 30)]
    assert [SpatialCrop(40, 1).offsets(40, 70, 0)] == [(0, 15)]  # int(30 / 2)
    assert [SpatialCrop(40, 1).offsets(40, 71, 0)] == [(0, 15)]  # int(31 / 2), floor
    assert SpatialCrop(40, 4).offsets(40, 71, 2) == (0, 20)  # int(2 * 31 / 3)
    assert SpatialCrop(40, 3).offsets(70, 40, 2) == (30, 0)  # portrait: along the height
    assert SpatialCrop(32, 3).offsets(40, 70, 1) == (4, 19)  # smaller crop: centred across
    assert torch.equal(three(frame, crop_index=2), frame[..., 30:70])
    # validation centre crop rounds half to even: margins 1 -> 0, 3 -> 2 (1.5), 5 -> 2 (2.5)
    for width, left in ((33, 0), (35, 2), (37, 2)):
        crop = CenterCrop(32)(torch.arange(width).view(1, 1, 1, width).expand(1, 1, 32, width))
        assert crop[0, 0, 0, 0] == left
    with pytest.raises(ValueError, match="short side 24 is smaller"):
        build_eval_transform(32, short_side=24)


# --------------------------------------------------------------------------- datasets
def _numbers(clip_cthw: torch.Tensor) -> list[int]:
    """Frame numbers of a uint8 [3, T, H, W] clip of pattern frames."""
    return [
        read_number(clip_cthw[:, t].permute(1, 2, 0).numpy()) for t in range(clip_cthw.shape[1])
    ]


def test_multiview_dataset_decodes_the_official_frames(tmp_path):
    video = write_pattern_video(tmp_path / "v.mp4", 37)
    missing = tmp_path / "missing.mp4"
    (tmp_path / "list.csv").write_text(f"v.mp4,2\n{missing.name},1\n")
    ds = MultiViewDataset(
        tmp_path / "list.csv",
        clip=ClipSpec(num_frames=4, input_size=64, num_clips=3, num_crops=1),
        normalize=False,
        backend="pyav",
    )
    sample = ds[0]
    assert sample["video"].shape == (3, 3, 4, 64, 64) and sample["video"].dtype == torch.uint8
    expected = [sparse_indices(37, 4, False, clip_index=c, num_clips=3) for c in range(3)]
    assert sample["frame_indices"].tolist() == expected
    assert [_numbers(sample["video"][c]) for c in range(3)] == expected
    assert sample["label"] == 2 and sample["path"] == str(video)
    bad = ds[1]
    assert "video" not in bad and "not found" in bad["fault"] and bad["path"] == str(missing)
    batch = collate_views([ds[1], ds[0]])
    assert batch["video"].shape == (3, 3, 4, 64, 64) and batch["index"].tolist() == [0]
    assert batch["faults"] == [(1, str(missing), bad["fault"])]
    assert ds.records[0].listed == "v.mp4"


def test_video_dataset_test_views_use_the_official_formula(tmp_path):
    write_pattern_video(tmp_path / "v.mp4", 30)
    (tmp_path / "list.txt").write_text("v.mp4 0\n")
    ds = VideoDataset(
        tmp_path / "list.txt",
        clip=ClipSpec(
            num_frames=4,
            train=False,
            input_size=64,
            mean=(0, 0, 0),
            std=(1, 1, 1),
            num_clips=2,
            num_crops=1,
        ),
    )
    assert len(ds) == 2
    for view in range(2):
        clip = (ds[view]["video"] * 255).round().to(torch.uint8)
        assert _numbers(clip) == sparse_indices(30, 4, False, clip_index=view, num_clips=2)
    validation = VideoDataset(
        tmp_path / "list.txt",
        clip=ClipSpec(num_frames=4, train=False, input_size=64, mean=(0, 0, 0), std=(1, 1, 1)),
    )
    assert len(validation) == 1 and "view" not in validation[0]
    clip = (validation[0]["video"] * 255).round().to(torch.uint8)
    assert _numbers(clip) == sparse_indices(30, 4, train=False)  # official mode='validation'


# --------------------------------------------------------------------------- fixture
@pytest.mark.parity
def test_fixture_frame_indices_and_views(official_root):
    """The stored official test: frame indices exactly, inputs within one grey level (PyAV
    decoding + torch bilinear against decord + OpenCV)."""
    from official_fixtures import load_case

    cfg, tensors = load_case(official_root, "eval_multiview")
    case = official_root / "eval_multiview"
    clips, crops = cfg["test_num_segment"], cfg["test_num_crop"]
    ds = MultiViewDataset(
        case / cfg["list"],
        clip=ClipSpec(
            num_frames=cfg["num_frames"],
            sampling=cfg["sampling"],
            input_size=cfg["input_size"],
            short_side=cfg["short_side_size"],
            num_clips=clips,
            num_crops=crops,
        ),
        backend="pyav",
    )
    assert len(ds) == len(cfg["videos"])
    for k, rel in enumerate(cfg["videos"]):
        n = probe_video(case / rel).num_frames
        expected = tensors[f"v{k}_frame_indices"]
        ours = [
            sparse_indices(n, cfg["num_frames"], False, clip_index=c, num_clips=clips)
            for c in range(clips)
        ]
        assert ours == expected.tolist()
        sample = ds[k]
        assert torch.equal(sample["frame_indices"], expected)
        order = tensors[f"v{k}_view_order"].tolist()
        assert order == [[v.clip, v.crop] for v in eval_views(clips, crops)]
        views = tensors[f"v{k}_views"]
        assert sample["video"].shape == views.shape
        assert (sample["video"] - views).abs().max() < 0.02  # one grey level / std
