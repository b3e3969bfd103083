"""Fine-tuning parts against the official code's rules: layer-wise lr decay groups, mixup /
cutmix with label smoothing, the soft-target loss, RandAugment, random erasing and the order of
the training transform. The "official" functions below are transcriptions of the official
algorithms (``optim_factory.py``, ``datasets/mixup.py``, ``datasets/rand_augment.py``), written
independently of the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umt.data.sampling import make_generator
from umt.data.transforms.mixup import MixParams, Mixup
from umt.data.transforms.randaugment import RandAugment, parse_rand_augment
from umt.data.transforms.recipes import build_finetune_transform
from umt.data.transforms.video import (
    Compose,
    Normalize,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToModelLayout,
)
from umt.losses import SoftTargetCrossEntropy, soft_target_cross_entropy
from umt.models import VideoViT
from umt.train.optim import Schedules, layer_decay_param_groups


# --------------------------------------------------------------------------- layer decay
def _official_groups(model: nn.Module, weight_decay: float, layer_decay: float, skip_list):
    """``get_parameter_groups`` + ``LayerDecayValueAssigner`` + ``get_num_layer_for_vit`` as in
    the official run_class_finetuning.py / optim_factory.py."""
    num_layers = len(model.blocks)
    values = [layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]

    def get_num_layer_for_vit(var_name, num_max_layer):
        if var_name in ("cls_token", "mask_token", "pos_embed"):
            return 0
        elif var_name.startswith("patch_embed"):
            return 0
        elif var_name.startswith("rel_pos_bias"):
            return num_max_layer - 1
        elif var_name.startswith("blocks"):
            return int(var_name.split(".")[1]) + 1
        else:
            return num_max_layer - 1

    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if len(param.shape) == 1 or name.endswith(".bias") or name in skip_list:
            group_name, this_weight_decay = "no_decay", 0.0
        else:
            group_name, this_weight_decay = "decay", weight_decay
        layer_id = get_num_layer_for_vit(name, len(values))
        group_name = "layer_%d_%s" % (layer_id, group_name)  # noqa: UP031 - as officially
        if group_name not in groups:
            groups[group_name] = {
                "weight_decay": this_weight_decay,
                "params": [],
                "lr_scale": values[layer_id],
            }
        groups[group_name]["params"].append(name)
    return groups


def _small_classifier() -> VideoViT:
    return VideoViT(
        img_size=32,
        patch_size=16,
        num_frames=2,
        embed_dim=32,
        depth=3,
        num_heads=2,
        num_classes=5,
        pos_embed="learned",
        final_norm=False,
    )


class _DDPLike(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


class _CompiledLike(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner


@pytest.mark.parametrize("layer_decay", [0.75, 0.85])
def test_layer_decay_groups_equal_the_official_rule(layer_decay):
    torch.manual_seed(0)
    model = _small_classifier()
    official = _official_groups(model, 0.05, layer_decay, model.no_weight_decay())
    ours = layer_decay_param_groups(model, 0.05, layer_decay)
    # Same groups, in the same order, with the same members, weight decay and lr scale.
    assert [
        f"layer_{g['layer_id']}_{'decay' if g['weight_decay'] else 'no_decay'}" for g in ours
    ] == list(official)
    for group in ours:
        ref = official[
            f"layer_{group['layer_id']}_{'decay' if group['weight_decay'] else 'no_decay'}"
        ]
        assert group["names"] == ref["params"]
        assert group["weight_decay"] == ref["weight_decay"]
        assert group["lr_scale"] == pytest.approx(ref["lr_scale"], rel=1e-12)
        assert [id(p) for p in group["params"]] == [
            id(dict(model.named_parameters())[n]) for n in group["names"]
        ]
    # Spot checks of the rule itself (depth 3: scales ld^4 .. ld^0).
    scale = {n: g["lr_scale"] for g in ours for n in g["names"]}
    decay = {n: g["weight_decay"] for g in ours for n in g["names"]}
    assert scale["patch_embed.proj.weight"] == pytest.approx(layer_decay**4)
    assert scale["pos_embed"] == pytest.approx(layer_decay**4) and decay["pos_embed"] == 0.0
    assert scale["blocks.0.attn.qkv.weight"] == pytest.approx(layer_decay**3)
    assert scale["blocks.2.mlp.fc2.weight"] == pytest.approx(layer_decay**1)
    assert decay["blocks.1.attn.q_bias"] == 0.0 and decay["blocks.1.attn.qkv.weight"] == 0.05
    assert scale["head.weight"] == 1.0 and scale["fc_norm.weight"] == 1.0
    assert decay["head.bias"] == 0.0 and decay["fc_norm.weight"] == 0.0
    assert sum(len(g["params"]) for g in ours) == len(list(model.parameters()))


def test_layer_decay_groups_see_through_wrappers_and_skip_frozen():
    torch.manual_seed(0)
    model = _small_classifier()
    model.blocks[0].norm1.weight.requires_grad_(False)
    plain = layer_decay_param_groups(model, 0.05, 0.75)
    assert "blocks.0.norm1.weight" not in {n for g in plain for n in g["names"]}
    for wrapped in (_DDPLike(model), _CompiledLike(model), _DDPLike(_CompiledLike(model))):
        groups = layer_decay_param_groups(wrapped, 0.05, 0.75)
        assert [(g["names"], g["lr_scale"], g["weight_decay"]) for g in groups] == [
            (g["names"], g["lr_scale"], g["weight_decay"]) for g in plain
        ]
    with pytest.raises(ValueError, match="layer_decay"):
        layer_decay_param_groups(model, 0.05, 0.0)
    with pytest.raises(ValueError, match="blocks"):
        layer_decay_param_groups(nn.Linear(3, 3), 0.05, 0.75)


def test_schedules_apply_the_layer_scales():
    model = _small_classifier()
    groups = layer_decay_param_groups(model, 0.05, 0.75)
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    Schedules(lr=[2e-3], wd=[0.05]).apply(optimizer, 0)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(2e-3 * 0.75 ** (4 - group["layer_id"]))
        assert group["weight_decay"] in (0.0, 0.05)


# --------------------------------------------------------------------------- mixup
def _official_rand_bbox(img_shape, lam, cy, cx):
    """``rand_bbox`` (margin 0) with the centre given instead of drawn."""
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return yl, yh, xl, xh


def _official_mix_batch(x, target, lam, use_cutmix, cy, cx, num_classes, smoothing):
    """``Mixup._mix_batch`` + ``mixup_target`` for a given draw (lam, cutmix or not, centre)."""
    x = x.clone()
    if lam != 1.0:
        if use_cutmix:
            yl, yh, xl, xh = _official_rand_bbox(x.shape, lam, cy, cx)
            lam = 1.0 - (yh - yl) * (xh - xl) / float(x.shape[-2] * x.shape[-1])
            x[..., yl:yh, xl:xh] = x.flip(0)[..., yl:yh, xl:xh]
        else:
            x_flipped = x.flip(0).mul_(1.0 - lam)
            x.mul_(lam).add_(x_flipped)
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value

    def one_hot(t):
        t = t.long().view(-1, 1)
        return torch.full((t.size()[0], num_classes), off_value).scatter_(1, t, on_value)

    y1, y2 = one_hot(target), one_hot(target.flip(0))
    return x, y1 * lam + y2 * (1.0 - lam)


@pytest.mark.parametrize(
    "lam, cutmix, cy, cx",
    [
        (0.63, False, 0, 0),
        (0.63, True, 7, 9),
        (0.2, True, 0, 19),  # box clipped at the frame's corner: lam corrected
        (0.91, True, 15, 3),
    ],
)
def test_mixup_fixed_draw_equals_official(lam, cutmix, cy, cx):
    gen = make_generator(0)
    videos = torch.randn(4, 3, 2, 16, 20, generator=gen)
    labels = torch.tensor([0, 3, 1, 4])
    mix = Mixup(num_classes=5, label_smoothing=0.1)
    params = mix.cutmix_params(16, 20, lam, cy, cx) if cutmix else MixParams(lam=lam)
    out, target = mix.apply(videos, labels, params)
    ref_x, ref_t = _official_mix_batch(videos, labels, lam, cutmix, cy, cx, 5, 0.1)
    assert torch.equal(out, ref_x)
    assert torch.allclose(target, ref_t, atol=0, rtol=1e-6)
    assert torch.allclose(target.sum(1), torch.ones(4))
    if cutmix:
        yl, yh, xl, xh = _official_rand_bbox((16, 20), lam, cy, cx)
        assert params.box == (yl, yh, xl, xh)
        assert params.lam == pytest.approx(1.0 - (yh - yl) * (xh - xl) / 320.0)
        # every frame takes the same box from the paired sample (the batch flipped)
        assert torch.equal(out[0, :, :, yl:yh, xl:xh], videos[3, :, :, yl:yh, xl:xh])
        assert torch.equal(out[0, :, :, :yl], videos[0, :, :, :yl])
    assert torch.equal(videos, torch.randn(4, 3, 2, 16, 20, generator=make_generator(0)))


def test_mixup_unmixed_batch_gives_smoothed_targets():
    mix = Mixup(num_classes=4, prob=0.0, label_smoothing=0.1)
    videos = torch.randn(2, 3, 1, 8, 8)
    out, target = mix(videos, torch.tensor([2, 0]), generator=make_generator(0))
    assert out is videos
    assert torch.allclose(target[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\)"):
        mix(videos, torch.tensor([4, 0]))


def test_mixup_draws_are_reproducible_and_follow_the_probabilities():
    mix = Mixup(num_classes=10)
    draws = [mix.sample(16, 20, make_generator(s)) for s in range(1500)]
    assert draws == [mix.sample(16, 20, make_generator(s)) for s in range(1500)]
    cut = [d for d in draws if d.cutmix]
    assert abs(len(cut) / len(draws) - 0.5) < 0.06  # switch_prob 0.5
    for d in cut:
        y0, y1, x0, x1 = d.box
        assert 0 <= y0 <= y1 <= 16 and 0 <= x0 <= x1 <= 20
        assert d.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 320)
    mixed = [d.lam for d in draws if not d.cutmix]
    assert all(0 < lam < 1 for lam in mixed)
    assert np.mean(mixed) == pytest.approx(0.5, abs=0.04)  # Beta(0.8, 0.8) is symmetric
    rare = Mixup(num_classes=10, prob=0.3)
    share = np.mean([rare.sample(8, 8, make_generator(s)).lam < 1 for s in range(1500)])
    assert abs(share - 0.3) < 0.06


def test_mixup_leaves_global_rngs_alone():
    torch.manual_seed(7)
    np.random.seed(7)
    expected = (torch.rand(2), np.random.rand(2))
    torch.manual_seed(7)
    np.random.seed(7)
    Mixup(num_classes=3)(
        torch.randn(2, 3, 1, 8, 8, generator=make_generator(1)),
        torch.tensor([0, 1]),
        make_generator(2),
    )
    assert torch.equal(torch.rand(2), expected[0]) and np.array_equal(
        np.random.rand(2), expected[1]
    )


def test_soft_target_cross_entropy():
    logits = torch.randn(6, 5, generator=make_generator(0))
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    smoothed = Mixup(num_classes=5, prob=0.0, label_smoothing=0.1).smooth_one_hot(labels)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert soft_target_cross_entropy(logits, smoothed) == pytest.approx(expected.item(), rel=1e-6)
    soft = torch.softmax(torch.randn(6, 5, generator=make_generator(1)), -1)
    manual = (-(soft * torch.log_softmax(logits, -1)).sum(-1)).mean()
    assert SoftTargetCrossEntropy()(logits, soft) == pytest.approx(manual.item(), rel=1e-6)
    with pytest.raises(ValueError, match="soft targets"):
        soft_target_cross_entropy(logits, labels)


# --------------------------------------------------------------------------- RandAugment
_OFFICIAL_INCREASING = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
]


def _official_level_magnitude(name: str, level: float) -> float | None:
    """|argument| of the official ``*_level_to_arg`` at ``level`` (None: no argument)."""
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    return {
        "Rotate": (level / 10.0) * 30.0,
        "PosterizeIncreasing": 4 - int((level / 10.0) * 4),
        "SolarizeIncreasing": 256 - int((level / 10.0) * 256),
        "SolarizeAdd": int((level / 10.0) * 110),
        "ShearX": (level / 10.0) * 0.3,
        "ShearY": (level / 10.0) * 0.3,
        "TranslateXRel": (level / 10.0) * 0.45,
        "TranslateYRel": (level / 10.0) * 0.45,
    }.get(name, (level / 10.0) * 0.9)  # the enhance ops: |factor - 1|


def test_rand_augment_config_and_op_set():
    assert parse_rand_augment("rand-m7-n4-mstd0.5-inc1") == {
        "magnitude": 7.0,
        "num_ops": 4,
        "magnitude_std": 0.5,
        "increasing": True,
    }
    ra = RandAugment()
    assert list(ra.ops) == _OFFICIAL_INCREASING
    assert (ra.num_ops, ra.magnitude, ra.magnitude_std, ra.prob) == (4, 7.0, 0.5, 0.5)
    assert ra.interpolation == "bicubic" and ra.fill == (128, 128, 128)
    assert "Posterize" in RandAugment("rand-m9-n2").ops  # the non-increasing set
    for bad in ("m7-n4", "rand-m7-x3", "rand-mfoo"):
        with pytest.raises(ValueError, match="RandAugment config"):
            RandAugment(bad)


def test_rand_augment_draws_follow_the_official_distribution():
    ra = RandAugment()
    steps = [s for seed in range(800) for s in ra.sample(make_generator(seed))]
    assert len(steps) == 800 * 4
    counts = {name: sum(s.name == name for s in steps) for name in _OFFICIAL_INCREASING}
    assert set(counts) == {s.name for s in steps}
    assert all(abs(c / len(steps) - 1 / 15) < 0.025 for c in counts.values())  # uniform choice
    applied = [s for s in steps if s.applied]
    assert abs(len(applied) / len(steps) - 0.5) < 0.04  # each op fires with p 0.5
    mags = np.array([s.magnitude for s in applied])
    assert mags.min() >= 0 and mags.max() <= 10
    assert mags.mean() == pytest.approx(7.0, abs=0.05) and mags.std() == pytest.approx(
        0.5, abs=0.05
    )
    signs = []
    for s in applied:
        expected = _official_level_magnitude(s.name, s.magnitude)
        if expected is None:
            assert s.args == ()
            continue
        (value,) = s.args
        if s.name.endswith("Increasing") and not s.name.startswith(("Posterize", "Solarize")):
            value = value - 1.0
        assert abs(value) == pytest.approx(expected, abs=1e-9), s
        if s.name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
            signs.append(value > 0)
    assert abs(np.mean(signs) - 0.5) < 0.06  # random sign flips
    assert [s for s in steps if not s.applied][0].magnitude is None


def test_rand_augment_same_ops_for_every_frame():
    gen = make_generator(5)
    video = torch.randint(0, 256, (4, 3, 24, 32), generator=gen, dtype=torch.uint8)
    ra = RandAugment()
    changed = 0
    for seed in range(12):
        plan = ra.sample(make_generator(seed))
        out = ra(video, generator=make_generator(seed))
        assert out.shape == video.shape and out.dtype == torch.uint8
        for t in range(video.shape[0]):  # each frame alone under the clip's plan
            frame = video[t : t + 1]
            for step in plan:
                if step.applied:
                    frame = ra.apply_op(frame, step.name, step.args)
            assert torch.equal(out[t : t + 1], frame)
        changed += not torch.equal(out, video)
    assert changed > 6
    still = video[:1].expand(5, -1, -1, -1).clone()  # identical frames stay identical
    out = ra(still, generator=make_generator(3))
    assert all(torch.equal(out[0], out[t]) for t in range(5))
    with pytest.raises(TypeError, match="uint8"):
        ra(video.float(), generator=make_generator(0))


def test_rand_augment_geometry_follows_pil():
    from PIL import Image

    yy, xx = np.mgrid[0:20, 0:20]
    img = np.stack([xx * 12, yy * 12, (xx + yy) * 6], -1).astype(np.uint8)
    pil = Image.fromarray(img)
    video = torch.from_numpy(img).permute(2, 0, 1)[None]
    ra = RandAugment(interpolation="nearest")

    def ours(name, value):
        return ra.apply_op(video, name, (value,))[0].permute(1, 2, 0).numpy()

    fill = (128, 128, 128)
    ref = pil.transform(
        pil.size, Image.AFFINE, (1, 0, 0.25 * 20, 0, 1, 0), Image.NEAREST, fillcolor=fill
    )
    assert np.array_equal(ours("TranslateXRel", 0.25), np.asarray(ref))
    ref = pil.rotate(90.0, resample=Image.NEAREST, fillcolor=fill)
    assert np.array_equal(ours("Rotate", 90.0), np.asarray(ref))
    ref = pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0.3, 1, 0), Image.NEAREST, fillcolor=fill)
    assert (np.abs(ours("ShearY", 0.3).astype(int) - np.asarray(ref)) > 0).mean() < 0.02
    shifted = ours("TranslateYRel", 0.5)  # the lower half is filled with the official gray
    assert (shifted[10:] == 128).all() and np.array_equal(shifted[:10], img[10:])


# --------------------------------------------------------------------------- random erasing
def test_random_erasing_one_box_over_all_frames_with_probability():
    erase = RandomErasing()  # official: p 0.25, pixel mode, one box
    clip = torch.zeros(4, 3, 20, 24)
    erased, areas, noise = 0, [], []
    for seed in range(1200):
        out = erase(clip, generator=make_generator(seed))
        mask = out != 0
        if not mask.any():
            continue
        erased += 1
        assert all(torch.equal(mask[0], mask[t]) for t in range(4))  # same box in every frame
        assert torch.equal(mask[0, 0], mask[0, 2])  # over all channels
        rows, cols = mask[0, 0].any(1).nonzero(), mask[0, 0].any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask[0, 0].sum()) == h * w  # a rectangle
        areas.append(h * w / (20 * 24))
        noise.append(out[mask].view(4, -1))
    assert abs(erased / 1200 - 0.25) < 0.04
    assert min(areas) >= 0.015 and max(areas) <= 0.38  # [0.02, 1/3] up to rounding of the sides
    values = torch.cat([n.flatten() for n in noise])
    assert values.mean().abs() < 0.05 and (values.std() - 1).abs() < 0.05  # N(0, 1) per pixel
    assert not torch.equal(noise[0][0], noise[0][1])  # fresh noise per frame, as officially
    with pytest.raises(TypeError, match="float"):
        erase(clip.to(torch.uint8), generator=make_generator(0))


def test_random_erasing_box_rule():
    erase = RandomErasing(p=1.0)
    for seed in range(300):
        ((top, left, h, w),) = erase.get_boxes(20, 24, make_generator(seed))
        assert 0 <= top and top + h <= 20 and 0 <= left and left + w <= 24
        assert h < 20 and w < 24
        aspect = h / w
        assert 0.3 * 0.5 < aspect < (1 / 0.3) * 2  # exp(U(log .3, log 1/.3)), rounded sides
    assert RandomErasing(p=0.0).get_boxes(20, 24, make_generator(0)) == []


# --------------------------------------------------------------------------- pipeline
def test_finetune_transform_is_the_official_order():
    tf = build_finetune_transform(224)
    kinds = [type(t) for t in tf.transforms]
    assert kinds == [
        RandAugment,
        Normalize,
        RandomResizedCrop,
        RandomHorizontalFlip,
        RandomErasing,
        ToModelLayout,
    ]
    ra, _, rrc, flip, erase, _ = tf.transforms
    assert ra.config == "rand-m7-n4-mstd0.5-inc1" and ra.interpolation == "bicubic"
    assert rrc.scale == (0.08, 1.0) and rrc.ratio == (0.75, 1.3333) and rrc.size == (224, 224)
    assert not rrc.antialias and flip.p == 0.5
    assert (erase.p, erase.mode, erase.max_count) == (0.25, "pixel", 1)
    ssv2 = build_finetune_transform(224, flip=False, rand_augment=False, erase_prob=0.0)
    assert [type(t) for t in ssv2.transforms] == [Normalize, RandomResizedCrop, ToModelLayout]


def test_finetune_crop_runs_on_normalised_frames_without_antialiasing():
    clip = torch.randint(0, 256, (3, 3, 40, 56), generator=make_generator(1), dtype=torch.uint8)
    tf = build_finetune_transform(16, flip=False, rand_augment=False, erase_prob=0.0)
    out = tf(clip, generator=make_generator(9))
    top, left, h, w = RandomResizedCrop(16, ratio=(0.75, 1.3333)).get_params(
        40, 56, make_generator(9)
    )
    normalised = Normalize()(clip)[..., top : top + h, left : left + w]
    expected = F.interpolate(normalised, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected.permute(1, 0, 2, 3), atol=1e-6)
    full = build_finetune_transform(16)
    a, b = full(clip, generator=make_generator(4)), full(clip, generator=make_generator(4))
    assert torch.equal(a, b) and a.shape == (3, 3, 16, 16) and isinstance(full, Compose)


def test_rrc_fallback_is_a_centre_crop_of_clamped_ratio():
    rrc = RandomResizedCrop(8, scale=(0.99, 1.0), ratio=(0.75, 1.3333))
    top, left, h, w = rrc.get_params(10, 100, make_generator(0))  # nothing fits 10 tries
    assert (h, w) == (10, round(10 * 1.3333)) and left == (100 - w) // 2 and top == 0
    assert math.isclose(w / h, 1.3, abs_tol=0.05)
