"""The AVA action detector: RoI features against direct computations, on-the-fly position
interpolation, the official box jitter / extension, the loss and scores, checkpoint loading,
the registry entries and the hub round trip. Tiny sizes, CPU, a few seconds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from umt.models import VideoDetector, VideoViT, create_model, list_models, model_config
from umt.models.detection import (
    boxes_to_rois,
    detection_loss,
    detection_scores,
    extend_boxes,
    jitter_boxes,
    sample_boxes,
)
from umt.models.layers import sincos_table

# patch 4, 2 frames of 16 px: a 2 x 4 x 4 table, 16 channels.
TINY = dict(img_size=16, patch_size=4, num_frames=2, tubelet_size=1, embed_dim=16, depth=2)
TINY_HEADS = 2


def tiny(**kw) -> VideoDetector:
    torch.manual_seed(0)
    return VideoDetector(**{**TINY, "num_heads": TINY_HEADS, "num_classes": 5, **kw}).eval()


def tiny_vit(**kw) -> VideoViT:
    torch.manual_seed(1)
    cfg = dict(TINY, num_heads=TINY_HEADS, align_layers=0, weight_init="trunc_normal")
    return VideoViT(**{**cfg, **kw}).eval()


def pair_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of each 2 x 2 window (stride 1): ``[..., h, w] -> [..., h-1, w-1]``."""
    return (x[..., :-1, :-1] + x[..., 1:, :-1] + x[..., :-1, 1:] + x[..., 1:, 1:]) / 4


# --------------------------------------------------------------------------- RoI features
def test_pool_boxes_token_aligned_box_equals_direct_computation():
    """A box spanning exactly 7 x 7 tokens: each 7x7 bin is one token wide, RoIAlign (not
    aligned, sampling_ratio 0 -> one sample per bin at its centre) reads the bilinear value at
    (cell + 0.5) in token units, i.e. the mean of a 2 x 2 window; then max over the bins."""
    model = tiny(patch_size=16, img_size=32)  # patch 16: pixel boxes / 16 = token coords
    torch.manual_seed(3)
    feats = torch.randn(2, 6, 10, 12)  # [B, C, h, w]
    # clip 0: tokens x 2..9, y 1..8 ; clip 1: two boxes
    b0 = torch.tensor([[2 * 16, 1 * 16, 9 * 16, 8 * 16]], dtype=torch.float32)
    b1 = torch.tensor([[0.0, 0.0, 7 * 16, 7 * 16], [4 * 16, 2 * 16, 11 * 16, 9 * 16]])
    out = model.pool_boxes(feats, [b0, b1])  # [3, C]

    def direct(f: torch.Tensor, x0: int, y0: int) -> torch.Tensor:
        window = f[:, y0 : y0 + 8, x0 : x0 + 8]  # [C, 8, 8]: the 7 bins and their right edge
        return pair_mean(window).amax(dim=(-2, -1))  # [C]

    want = torch.stack([direct(feats[0], 2, 1), direct(feats[1], 0, 0), direct(feats[1], 4, 2)])
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


def test_pool_boxes_pixel_scale_is_one_over_patch():
    """The same token box given for patch 8 in pixels x 8 pools the same features; a box of
    7 tokens at half-token offset reads the token values themselves (no interpolation)."""
    feats = torch.randn(1, 3, 9, 9)
    a = tiny(patch_size=16, img_size=32).pool_boxes(feats, [torch.tensor([[16.0, 0, 128, 112]])])
    b = tiny(patch_size=8, img_size=16).pool_boxes(feats, [torch.tensor([[8.0, 0, 64, 56]])])
    torch.testing.assert_close(a, b)
    # Box from token 0.5 to 7.5: sample points at 1.0 ... 7.0 -> exactly cells 1..7.
    p = 8
    c = tiny(patch_size=p, img_size=16).pool_boxes(
        feats, [torch.tensor([[0.5 * p, 0.5 * p, 7.5 * p, 7.5 * p]])]
    )
    torch.testing.assert_close(c[0], feats[0, :, 1:8, 1:8].amax(dim=(-2, -1)))


def test_roi_features_is_time_mean_of_backbone_then_roi_max():
    """End to end: the detector's backbone equals a VideoViT with the same weights (final norm
    kept), tokens -> [B, C, T, h, w] -> mean over T, then the direct RoI computation."""
    model = tiny()
    vit = tiny_vit(final_norm=True)
    vit.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}, strict=True
    )
    torch.manual_seed(4)
    video = torch.randn(2, 3, 2, 16, 16)
    with torch.no_grad():
        tokens = vit.forward_features(video)  # [B, N, C], N = 2*4*4
        fmap = tokens.reshape(2, 2, 4, 4, 16).permute(0, 4, 1, 2, 3).mean(2)  # [B, C, 4, 4]
        torch.testing.assert_close(model.feature_map(video), fmap, rtol=1e-5, atol=1e-5)
        # a 3-token box: patch 4 -> pixels (0,0)-(12,12), bins of 3/7 token; compare with the
        # map fed directly to torchvision (the RoI op) and by hand for a 7-token box below.
        boxes = [torch.tensor([[0.0, 0.0, 12.0, 12.0]]), torch.tensor([[4.0, 0.0, 16.0, 8.0]])]
        got = model.roi_features(video, boxes)  # [2, C]
        from torchvision.ops import roi_align

        rois = torch.tensor([[0, 0.0, 0, 12, 12], [1, 4, 0, 16, 8]])
        want = roi_align(fmap, rois, (7, 7), 0.25, 0, aligned=False).amax(dim=(-2, -1))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        logits = model(video, boxes)
        torch.testing.assert_close(logits, model.head(want), rtol=1e-5, atol=1e-6)
    assert logits.shape == (2, 5)


def test_forward_shapes_empty_clips_and_gradients():
    model = tiny().train()
    video = torch.randn(3, 3, 2, 16, 20)  # width 20: 5 tokens
    boxes = [torch.tensor([[0.0, 0, 8, 8], [2, 2, 15, 15]]), torch.zeros(0, 4), torch.rand(1, 4)]
    logits = model(video, boxes)
    assert logits.shape == (3, 5)
    detection_loss(logits, torch.zeros(3, 5)).backward()
    assert model.head.weight.grad is not None and model.blocks[0].attn.qkv.weight.grad is not None
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="box sets"):
        model(video, boxes[:2])
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        model(video, [torch.zeros(2, 5)] * 3)


def test_boxes_to_rois():
    rois = boxes_to_rois([torch.tensor([[1.0, 2, 3, 4]]), torch.zeros(0, 4), torch.ones(2, 4)])
    want = torch.tensor([[0.0, 1, 2, 3, 4], [2, 1, 1, 1, 1], [2, 1, 1, 1, 1]])
    torch.testing.assert_close(rois, want)


def test_head_init_scale_and_no_dropout():
    model = VideoDetector(**TINY, num_heads=2, num_classes=80, init_scale=0.001)
    assert model.head.weight.shape == (80, 16)
    assert model.head.weight.abs().max() <= 2.0 * 0.001 + 1e-9  # trunc_normal(0.02, +-2) * 1e-3
    assert 0.005e-3 < model.head.weight.std() < 0.04e-3
    assert torch.equal(model.head.bias, torch.zeros(80))
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert torch.equal(model.norm.weight, torch.ones(16))


# --------------------------------------------------------------------------- positions
def test_position_table_native_grid_is_plain_table():
    model = tiny()
    table = model.position_table((2, 4, 4))
    assert torch.equal(table, sincos_table(2 * 4 * 4, 16))


def test_position_table_other_grid_is_bicubic_of_each_frame():
    model = tiny()
    plain = sincos_table(2 * 4 * 4, 16).reshape(2, 4, 4, 16)  # [T, h, w, C]
    frames = plain.permute(0, 3, 1, 2)  # [T, C, 4, 4]
    want = F.interpolate(frames, size=(5, 7), mode="bicubic", align_corners=False)
    want = want.permute(0, 2, 3, 1).reshape(1, 2 * 5 * 7, 16)
    torch.testing.assert_close(model.position_table((2, 5, 7)), want)


def test_full_frame_input_is_padded_and_uses_the_interpolated_table():
    """A 16 x 18 frame pads to 16 x 20 (zeros, right) -> 4 x 5 tokens, positions resized."""
    model = tiny()
    video = torch.randn(1, 3, 2, 16, 18)
    tokens, grid = model.embed(video)
    assert grid == (2, 4, 5)
    padded = torch.cat([video, torch.zeros(1, 3, 2, 16, 2)], dim=-1)
    plain = sincos_table(32, 16).reshape(2, 4, 4, 16).permute(0, 3, 1, 2)
    pos = F.interpolate(plain, size=(4, 5), mode="bicubic", align_corners=False)
    pos = pos.permute(0, 2, 3, 1).reshape(1, 40, 16)
    want = model.patch_embed(padded) + pos
    torch.testing.assert_close(tokens, want)
    # the AVA test layout: 256 x 340 with patch 16 pads to 256 x 352 -> 16 x 22 tokens
    ava = VideoDetector(num_frames=8, embed_dim=16, depth=1, num_heads=2)
    assert ava.token_grid(8, 256, 340) == (8, 16, 22)
    assert ava.position_table((8, 16, 22)).shape == (1, 8 * 16 * 22, 16)


# --------------------------------------------------------------------------- boxes
def test_jitter_statistics_without_clipping():
    n = 20000
    boxes = torch.tensor([[400.0, 300.0, 499.0, 499.0]]).repeat(n, 1)  # w 100, h 200
    out = jitter_boxes(boxes, (1000, 1000), torch.Generator().manual_seed(0))
    d = (out - boxes) / torch.tensor([100.0, 200.0, 100.0, 200.0])
    lo = torch.tensor([-0.2, -0.1, -0.1, -0.05])
    hi = torch.tensor([0.1, 0.05, 0.2, 0.1])
    assert (d >= lo - 1e-5).all() and (d <= hi + 1e-5).all()
    torch.testing.assert_close(d.min(0).values, lo, atol=2e-3, rtol=0)
    torch.testing.assert_close(d.max(0).values, hi, atol=2e-3, rtol=0)
    torch.testing.assert_close(d.mean(0), (lo + hi) / 2, atol=3e-3, rtol=0)
    # the four sides are drawn independently
    corr = torch.corrcoef(d.T)
    assert (corr - torch.eye(4)).abs().max() < 0.05


def test_jitter_matches_official_formula_and_draw_order():
    boxes = torch.tensor([[10.0, 20, 59, 99], [0, 0, 9, 9], [200, 140, 223, 223]])
    g = torch.Generator().manual_seed(7)
    out = jitter_boxes(boxes, (224, 224), g)
    ref = torch.Generator().manual_seed(7)
    u = [torch.rand(3, 1, generator=ref) for _ in range(4)]  # drawn for x1, y1, x2, y2 in turn
    w, h = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
    x1 = (boxes[:, 0:1] + w * (u[0] * 0.3 - 0.2)).clamp(0, 222)
    y1 = (boxes[:, 1:2] + h * (u[1] * 0.15 - 0.1)).clamp(0, 222)
    x2 = torch.maximum((boxes[:, 2:3] + w * (u[2] * 0.3 - 0.1)).clamp(max=223), x1 + 1)
    y2 = torch.maximum((boxes[:, 3:4] + h * (u[3] * 0.15 - 0.05)).clamp(max=223), y1 + 1)
    want = torch.cat([x1, y1, x2, y2], 1).clamp(0, 223)
    torch.testing.assert_close(out, want)
    # same seed, same result; the global RNG when no generator is given
    torch.testing.assert_close(
        jitter_boxes(boxes, (224, 224), torch.Generator().manual_seed(7)), out
    )
    torch.manual_seed(7)
    torch.testing.assert_close(jitter_boxes(boxes, (224, 224)), out)


def test_jitter_clips_to_image():
    g = torch.Generator().manual_seed(1)
    boxes = torch.tensor([[0.0, 0, 223, 223], [220, 220, 223, 223], [0, 100, 3, 223]]).repeat(
        500, 1
    )
    out = jitter_boxes(boxes, (224, 160), g)  # height 224, width 160: x beyond 159 clipped
    assert (out[:, 0::2] >= 0).all() and (out[:, 0::2] <= 159).all()
    assert (out[:, 1::2] >= 0).all() and (out[:, 1::2] <= 223).all()
    assert (out[:, 0] <= 158).all() and (out[:, 1] <= 222).all()
    assert (out[:, 2] >= out[:, 0] + 1 - 1e-4).all() and (out[:, 3] >= out[:, 1] + 1 - 1e-4).all()
    assert out.shape == boxes.shape


def test_extend_by_hand_and_clipped():
    boxes = torch.tensor([[10.0, 20, 49, 99], [0, 5, 299, 199], [295, 190, 299, 199]])
    out = extend_boxes(boxes, (200, 300))  # (height, width)
    # w 40 h 80 -> pad 0.1*40/2 = 2, 0.05*80/2 = 2
    want0 = torch.tensor([8.0, 18, 51, 101])
    torch.testing.assert_close(out[0], want0)
    # full-width box: x clipped to [0, 299], y: h 195 -> pad 4.875, y2 clipped to 199
    torch.testing.assert_close(out[1], torch.tensor([0.0, 5 - 4.875, 299, 199]))
    # w 5 h 10 -> pad 0.25 / 0.25; x2, y2 clipped
    torch.testing.assert_close(out[2], torch.tensor([294.75, 189.75, 299, 199]))
    assert out.shape == (3, 4)
    # one number extends both ways alike
    torch.testing.assert_close(
        extend_boxes(boxes[:1], (200, 300), 0.1), torch.tensor([[8.0, 16, 51, 103]])
    )


def test_extend_statistics():
    torch.manual_seed(0)
    xy = torch.rand(1000, 2) * 500 + 100
    wh = torch.rand(1000, 2) * 200 + 10
    boxes = torch.cat([xy, xy + wh], 1)
    out = extend_boxes(boxes, (2000, 2000))
    w_old, w_new = boxes[:, 2] - boxes[:, 0] + 1, out[:, 2] - out[:, 0] + 1
    h_old, h_new = boxes[:, 3] - boxes[:, 1] + 1, out[:, 3] - out[:, 1] + 1
    torch.testing.assert_close(w_new / w_old, torch.full((1000,), 1.1))
    torch.testing.assert_close(h_new / h_old, torch.full((1000,), 1.05))
    torch.testing.assert_close((out[:, :2] + out[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)


def test_sample_boxes():
    assert torch.equal(sample_boxes(7), torch.arange(7))
    idx = sample_boxes(150, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (100,) and len(set(idx.tolist())) == 100 and idx.max() < 150


# --------------------------------------------------------------------------- loss, scores
def test_loss_equals_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    terms = []
    for z, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1 / (1 + math.exp(-z))
        terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    want = sum(terms) / len(terms) * 2  # class-and-box mean, times the number of boxes
    torch.testing.assert_close(detection_loss(logits, targets), torch.tensor(want))
    assert detection_loss(torch.zeros(0, 3), torch.zeros(0, 3)) == 0
    with pytest.raises(ValueError):
        detection_loss(logits, targets[:1])


def test_scores_are_sigmoid_times_box_score():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    scores = detection_scores(logits, torch.tensor([0.9, 0.5]))
    want = torch.tensor(
        [
            [0.5 * 0.9, 0.9 / (1 + math.exp(-2))],
            [0.5 / (1 + math.exp(1)), 0.5 / (1 + math.exp(-1))],
        ]
    )
    torch.testing.assert_close(scores, want)


# --------------------------------------------------------------------------- weights
def test_load_classifier_of_other_class_count_keeps_backbone_skips_head():
    clf = tiny_vit(num_classes=7, final_norm=False, fc_norm=True)
    det = tiny()
    head_before = det.head.weight.clone()
    notes = det.load_backbone(clf.state_dict())
    det_sd, clf_sd = det.state_dict(), clf.state_dict()
    for k, v in clf_sd.items():
        if k.startswith(("head.", "fc_norm.")):
            continue
        assert torch.equal(det_sd[k], v), k
    assert torch.equal(det.head.weight, head_before)  # 7-way head dropped: kept new
    assert torch.equal(det.norm.weight, torch.ones(16))  # no norm in a classifier: kept (1, 0)
    assert any("7 classes" in n for n in notes) and any("fc_norm" in n for n in notes)


def test_load_official_names_and_stage1_student(tmp_path):
    # an official-style fine-tuned file: wrapped in {"module": ...}, 5-way head (same count)
    src = tiny()
    torch.nn.init.normal_(src.norm.weight)
    torch.nn.init.normal_(src.head.weight)
    path = tmp_path / "ava.pth"
    torch.save({"module": src.state_dict()}, path)
    det = VideoDetector(**TINY, num_heads=2, num_classes=5)
    det.load_backbone(path)
    for k, v in src.state_dict().items():
        assert torch.equal(det.state_dict()[k], v), k
    # a stage-1 student: final norm loads, alignment heads are not used
    student = tiny_vit(final_norm=True, align_layers=1, align_dim=8)
    torch.nn.init.normal_(student.norm.weight)
    notes = det.load_backbone(student.state_dict())
    assert torch.equal(det.norm.weight, student.norm.weight)
    assert any("align_heads" in n for n in notes)
    # an encoder of another size is refused
    with pytest.raises(ValueError, match="embed_dim"):
        det.load_backbone(tiny_vit(embed_dim=32).state_dict())


def test_hub_round_trip(tmp_path):
    model = tiny(num_classes=3, sampling_ratio=2)
    model.save_pretrained(tmp_path / "det")
    again = VideoDetector.from_pretrained(tmp_path / "det").eval()
    assert again.num_classes == 3 and again.sampling_ratio == 2
    video = torch.randn(1, 3, 2, 16, 16)
    boxes = [torch.tensor([[1.0, 2, 12, 14]])]
    with torch.no_grad():
        torch.testing.assert_close(again(video, boxes), model(video, boxes))


# --------------------------------------------------------------------------- registry
def test_registry_variants():
    assert {"umt-b16-ava", "umt-l16-ava"} <= set(list_models())
    for name, dim, depth, heads in (("umt-b16-ava", 768, 12, 12), ("umt-l16-ava", 1024, 24, 16)):
        cfg = model_config(name)
        assert cfg["num_classes"] == 80 and cfg["num_frames"] == 8 and cfg["tubelet_size"] == 1
        assert (cfg["embed_dim"], cfg["depth"], cfg["num_heads"]) == (dim, depth, heads)
        assert cfg["img_size"] == 224 and cfg["patch_size"] == 16
    model = create_model("umt-b16-ava", depth=1, embed_dim=64, num_heads=2)
    assert isinstance(model, VideoDetector) and model.grid == (8, 14, 14)
    assert model.get_num_layers() == 1
