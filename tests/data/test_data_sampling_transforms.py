"""Frame samplers and clip transforms: determinism, same parameters for all frames, shapes."""

from __future__ import annotations

import pytest
import torch

from umt.data import sample_seed
from umt.data.sampling import (
    dense_indices,
    eval_views,
    make_generator,
    min_frames_needed,
    sparse_indices,
)
from umt.data.transforms.mixup import Mixup
from umt.data.transforms.randaugment import RandAugment
from umt.data.transforms.recipes import (
    build_eval_transform,
    build_finetune_transform,
    build_pretrain_transform,
)
from umt.data.transforms.video import (
    CLIP_MEAN,
    IMAGENET_STD,
    MultiScaleCrop,
    RandomErasing,
    RandomResizedCrop,
)


def test_sample_seed_is_pure_and_distinct():
    assert sample_seed(0, 0, 5) == sample_seed(0, 0, 5)
    seeds = {sample_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450
    assert 0 <= sample_seed(2**40, -1, 3) < 2**63


@pytest.mark.parametrize("n", [300, 17, 8])
@pytest.mark.parametrize("t", [1, 4, 8, 16])
def test_sparse_one_frame_per_segment(n, t):
    """Official segments: frame i in [round(seg*i), round(seg*(i+1))], seg = (n-1)/T."""
    gen = make_generator(1)
    seg = (n - 1) / t
    for _ in range(20):
        idx = sparse_indices(n, t, train=True, generator=gen)
        assert len(idx) == t and all(0 <= i < n for i in idx) and idx == sorted(idx)
        for k, i in enumerate(idx):
            assert round(seg * k) <= i <= round(seg * (k + 1))
    # validation view: offset int(seg / 2) from each segment start (seg = 299/8 = 37.375)
    assert sparse_indices(300, 8, train=False) == [18, 55, 93, 130, 168, 205, 242, 280]


def test_sparse_short_video_repeats_frames():
    # seg = 3/8: starts round(0.375 i) = 0,0,1,1,2,2,2,3 (2.5 -> 2, half to even), offset 0
    assert sparse_indices(4, 8, train=False) == [0, 0, 1, 1, 2, 2, 2, 3]


def test_dense_stride_and_centre():
    assert dense_indices(300, 8, 4, train=False) == list(range(136, 168, 4))
    idx = dense_indices(300, 8, 4, train=True, generator=make_generator(0))
    assert [b - a for a, b in zip(idx, idx[1:])] == [4] * 7
    assert dense_indices(10, 8, 4, train=False) == list(range(1, 9))  # stride shrinks to fit
    with pytest.raises(ValueError, match="at least 8"):
        dense_indices(5, 8, 4)


def test_sampling_reproducible_from_seed():
    a = sparse_indices(300, 16, True, make_generator(sample_seed(0, 1, 7)))
    b = sparse_indices(300, 16, True, make_generator(sample_seed(0, 1, 7)))
    c = sparse_indices(300, 16, True, make_generator(sample_seed(0, 2, 7)))
    assert a == b and a != c


def test_min_frames_and_views():
    assert min_frames_needed(8, "dense") == 8
    assert min_frames_needed(8, "sparse") == 4 and min_frames_needed(1, "sparse") == 1
    views = eval_views(4, 3, "dense")
    assert len(views) == 12 and (views[0].clip, views[0].crop) == (0, 0)
    assert (views[-1].clip, views[-1].crop) == (3, 2)
    assert [v.index for v in views] == list(range(12))  # segment-major
    assert {v.crop for v in views} == {0, 1, 2} and {v.num_clips for v in views} == {4}


def _constant_clip(t=6, h=48, w=64):
    """A clip whose frames are identical: any per-frame difference after a transform means
    frames got different parameters."""
    frame = torch.randint(0, 256, (1, 3, h, w), generator=make_generator(3), dtype=torch.uint8)
    return frame.expand(t, 3, h, w).clone()


def _frames_identical(out: torch.Tensor, time_dim: int) -> bool:
    first = out.select(time_dim, 0)
    return all(torch.equal(out.select(time_dim, k), first) for k in range(out.shape[time_dim]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_pretrain_transform(32, flip=True),
        # Erasing draws fresh noise per frame inside one shared box, as the official cube mode
        # (tests/test_finetune_parts.py checks the box); here every other step.
        lambda: build_finetune_transform(32, rand_augment=True, erase_prob=0.0),
    ],
)
def test_random_transforms_same_for_all_frames_and_reproducible(make):
    transform = make()
    clip = _constant_clip()
    for s in range(8):
        out = transform(clip, generator=make_generator(s))
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.float32
        assert _frames_identical(out, 1)
        assert torch.equal(out, transform(clip, generator=make_generator(s)))
    outs = {transform(clip, generator=make_generator(s)).sum().item() for s in range(8)}
    assert len(outs) > 1  # different seeds, different augmentations


def test_multiscale_crop_sizes_follow_official_rule():
    crop = MultiScaleCrop(224, scales=(1, 0.875, 0.75, 0.66))
    base = 256
    sizes = [int(base * s) for s in (1, 0.875, 0.75, 0.66)]  # 256, 224, 192, 168
    allowed = {
        (
            sizes[i] if abs(sizes[i] - 224) >= 3 else 224,
            sizes[j] if abs(sizes[j] - 224) >= 3 else 224,
        )
        for i in range(4)
        for j in range(4)
        if abs(i - j) <= 1
    }
    gen = make_generator(0)
    seen = set()
    for _ in range(200):
        top, left, h, w = crop.get_params(256, 340, gen)
        assert (h, w) in allowed
        offsets = MultiScaleCrop.fixed_offsets(True, 340, 256, w, h)
        assert (left, top) in offsets
        seen.add((h, w))
    assert len(seen) == len(allowed)


def test_rrc_and_erasing_respect_bounds():
    gen = make_generator(0)
    rrc = RandomResizedCrop(16)
    for _ in range(50):
        top, left, h, w = rrc.get_params(40, 60, gen)
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60
    clip = torch.zeros(4, 3, 16, 16)
    erased = RandomErasing(p=1.0)(clip, generator=gen)
    mask = erased != 0
    assert mask.any() and torch.equal(mask[0], mask[3])  # same box in every frame


def test_randaugment_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    RandAugment()(_constant_clip(), generator=make_generator(0))
    assert torch.equal(torch.rand(3), expected)


def test_eval_three_crops():
    clip = torch.arange(40 * 80, dtype=torch.float32).view(1, 1, 40, 80).expand(2, 3, 40, 80)
    transform = build_eval_transform(32, short_side=40, crop="three")
    crops = [transform(clip, crop_index=i) for i in range(3)]
    assert all(c.shape == (3, 2, 32, 32) for c in crops)
    assert crops[0][0, 0, 0, 0] < crops[1][0, 0, 0, 0] < crops[2][0, 0, 0, 0]


def test_normalisation_constants():
    assert CLIP_MEAN[0] == pytest.approx(0.48145466) and IMAGENET_STD[2] == 0.225
    out = build_eval_transform(8, mean="clip")(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8))
    assert out[0, 0, 0, 0].item() == pytest.approx((1 - 0.48145466) / 0.26862954, rel=1e-5)


def test_mixup_cutmix_soft_targets():
    videos = torch.randn(4, 3, 2, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    for cutmix in (0.0, 1.0):
        mix = Mixup(
            num_classes=5,
            mixup_alpha=0.0 if cutmix else 0.8,
            cutmix_alpha=cutmix,
            label_smoothing=0.1,
        )
        out, target = mix(videos, labels, generator=make_generator(1))
        assert out.shape == videos.shape and target.shape == (4, 5)
        assert torch.allclose(target.sum(1), torch.ones(4))
        assert target.min() >= 0.1 / 5 - 1e-6
        out2, target2 = mix(videos, labels, generator=make_generator(1))
        assert torch.equal(out, out2) and torch.equal(target, target2)
