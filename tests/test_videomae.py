"""VideoMAE as a task of the one training loop: targets, masks, the decoder, a tiny run, exact
resume, its encoder read by fine-tuning, and the recipes' official values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import umt
from umt.config import ConfigError, load_config
from umt.config.videomae import VideoMAEConfig
from umt.losses import reconstruction_loss
from umt.models import VideoMAE, VideoViT, create_model
from umt.models.videomae import patch_targets
from umt.train import pretrain
from umt.train.tasks.videomae import draw_mask

# A tiny VideoMAE on the synthetic set, a fraction of a second per step on 2 cores.
TINY_MAE = [
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=2",
    "model.decoder_embed_dim=32",
    "model.decoder_depth=1",
    "model.decoder_num_heads=2",
    "data.num_frames=2",
    "data.input_size=48",
    "train.batch_size=4",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
    "optim.lr=1e-3",
    "optim.warmup_lr=1e-4",
    "optim.min_lr=1e-4",
    "schedule.epochs=4",
    "schedule.warmup_epochs=1",
]


def mae_config(synthetic: Path, out: Path, *extra: str) -> VideoMAEConfig:
    return load_config(
        "videomae-tiny-synthetic",
        [*TINY_MAE, f"data.synthetic_root={synthetic}", f"train.output_dir={out}", *extra],
        task="pretrain",
    )


def tiny_model(**kw) -> VideoMAE:
    torch.manual_seed(0)
    encoder = dict(
        img_size=32, patch_size=16, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2
    )
    return VideoMAE(
        encoder, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2, **kw
    ).eval()


# --------------------------------------------------------------------------- targets
def _direct_targets(video: torch.Tensor, p: int, tub: int, normalize: bool) -> torch.Tensor:
    """One patch at a time: its pixels as (tubelet, row, column, channel), each channel
    standardised over the patch (unbiased std + 1e-6), in token order t, h, w."""
    b, c, t, h, w = video.shape
    rows = []
    for i in range(b):
        tokens = []
        for ti in range(t // tub):
            for hi in range(h // p):
                for wi in range(w // p):
                    cube = video[
                        i,
                        :,
                        ti * tub : (ti + 1) * tub,
                        hi * p : (hi + 1) * p,
                        wi * p : (wi + 1) * p,
                    ]  # [C, tub, p, p]
                    pix = cube.permute(1, 2, 3, 0).reshape(-1, c)  # [tub*p*p, C]
                    if normalize:
                        mean = pix.mean(0)
                        std = torch.sqrt(((pix - mean) ** 2).sum(0) / (pix.shape[0] - 1))
                        pix = (pix - mean) / (std + 1e-6)
                    tokens.append(pix.reshape(-1))
        rows.append(torch.stack(tokens))
    return torch.stack(rows)  # [B, N, tub*p*p*C]


@pytest.mark.parametrize("normalize", [True, False])
def test_patch_targets_match_a_direct_per_patch_computation(normalize):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 4, 16, 24, generator=g)  # 2 tubelets x 2 x 3 patches of 8
    got = patch_targets(video, patch=8, tubelet=2, normalize=normalize)
    assert got.shape == (2, 2 * 2 * 3, 2 * 8 * 8 * 3)
    want = _direct_targets(video, 8, 2, normalize)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if normalize:  # each channel of each patch: mean 0, unbiased std ~1
        per = got.reshape(2, 12, 2 * 8 * 8, 3)
        torch.testing.assert_close(per.mean(2), torch.zeros(2, 12, 3), atol=1e-5, rtol=0)
        torch.testing.assert_close(per.std(2), torch.ones(2, 12, 3), atol=1e-4, rtol=0)


def test_reconstruction_loss_is_the_mse_over_masked_tokens():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 6, 5, generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    pred = torch.randn(2, 3, 5, generator=g)
    want = torch.stack([((pred[i] - target[i][mask[i]]) ** 2).mean() for i in range(2)]).mean()
    torch.testing.assert_close(reconstruction_loss(pred, target, mask), want)
    with pytest.raises(ValueError, match="masked tokens"):
        reconstruction_loss(pred[:, :2], target, mask)


# --------------------------------------------------------------------------- masks
def test_tube_mask_keeps_exact_counts_same_positions_in_every_time_slot():
    seeds = list(range(100, 116))
    t, h, w = 8, 14, 14
    mask = draw_mask("tube", 0.9, (t, h, w), seeds)  # [B, N]
    assert mask.shape == (16, t * h * w) and mask.dtype == torch.bool
    per_slot = mask.reshape(16, t, h * w)
    assert (per_slot == per_slot[:, :1]).all()  # the same positions in every time slot
    dropped = h * w - (h * w - int(h * w * 0.9))  # the official int(HW * ratio) per slot
    assert (per_slot.sum(-1) == dropped).all()
    assert (~mask).sum(1).tolist() == [t * (h * w - dropped)] * 16  # exact visible count
    assert mask.float().mean().item() == pytest.approx(0.9, abs=0.01)
    assert len({tuple(m.tolist()) for m in per_slot[:, 0]}) == 16  # samples differ
    # A sample's mask is a function of its own seed only (not of the batch around it).
    again = draw_mask("tube", 0.9, (t, h, w), seeds[::-1])
    assert torch.equal(again, mask.flip(0))


def test_random_mask_keeps_exact_counts_over_all_tokens():
    seeds = list(range(8))
    t, h, w = 4, 7, 7
    n = t * h * w
    mask = draw_mask("random", 0.9, (t, h, w), seeds)
    assert (mask.sum(1) == int(n * 0.9)).all()
    per_slot = mask.reshape(8, t, h * w)
    assert not (per_slot == per_slot[:, :1]).all()  # not tubes
    assert torch.equal(draw_mask("random", 0.9, (t, h, w), seeds), mask)  # seeded


# --------------------------------------------------------------------------- the model
def test_decoder_predicts_the_masked_tokens_in_token_order():
    model = tiny_model()
    enc, dec = model.encoder, model.decoder
    assert model.out_dim == 2 * 16 * 16 * 3 and enc.align_heads is None and enc.head is None
    g = torch.Generator().manual_seed(2)
    video = torch.randn(2, 3, 4, 32, 32, generator=g)
    mask = draw_mask("random", 0.75, enc.grid, [5, 6])  # N = 2 * 2 * 2 = 8, 6 masked
    with torch.no_grad():
        pred = model(video, mask)
        assert pred.shape == (2, 6, model.out_dim)
        # Reference: the decoder on the clip in its own token order (visible tokens at their
        # positions, the mask token elsewhere), read at the masked positions.
        x_vis = dec.embed(enc.forward_features(video, mask))  # [B, N_vis, C]
        full = dec.mask_token.expand(2, enc.num_patches, -1).clone()
        full[~mask] = x_vis.reshape(-1, x_vis.shape[-1])
        x = full + dec.pos_embed
        for blk in dec.blocks:
            x = blk(x)
        want = dec.head(dec.norm(x))[mask].reshape(2, 6, -1)
    torch.testing.assert_close(pred, want, rtol=1e-4, atol=1e-5)
    # The encoder saw only the visible tokens: changing a masked tubelet changes nothing.
    masked_token = int(mask[0].nonzero()[0])
    ti, rest = divmod(masked_token, 4)
    hi, wi = divmod(rest, 2)
    changed = video.clone()
    changed[0, :, 2 * ti : 2 * ti + 2, 16 * hi : 16 * hi + 16, 16 * wi : 16 * wi + 16] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(model(changed, mask), pred)


def test_registry_variants_have_the_official_sizes():
    with torch.device("meta"):
        b, big = create_model("videomae-b16"), create_model("videomae-l16")
    for m, width, depth, dec_width, heads in ((b, 768, 12, 384, 6), (big, 1024, 24, 512, 8)):
        assert isinstance(m.encoder, VideoViT)
        assert (m.encoder.embed_dim, len(m.encoder.blocks), m.encoder.grid) == (
            width,
            depth,
            (8, 14, 14),
        )
        assert (m.decoder.embed_dim, len(m.decoder.blocks)) == (dec_width, 4)
        assert m.decoder.blocks[0].attn.num_heads == heads
        assert m.out_dim == 1536  # 2 x 16 x 16 x 3, the official decoder_num_classes
    with pytest.raises(ValueError, match="no alignment heads"):
        VideoMAE(
            dict(img_size=32, num_frames=2, embed_dim=32, depth=2, num_heads=2, align_layers=1)
        )


# --------------------------------------------------------------------------- the loop
def test_tiny_run_loss_falls_and_writes_a_videomae_checkpoint(synthetic, tmp_path):
    # A short warm-up: within 24 steps the loss falls to about 1.0 (normalised targets: the
    # level of predicting each patch's mean), from about 1.07 at random init.
    fast = ("train.max_steps=24", "schedule.warmup_steps=3", "optim.lr=2e-3")
    res = pretrain(mae_config(synthetic, tmp_path / "run", *fast))
    assert len(res.losses) == 24
    first, last = sum(res.losses[:4]) / 4, sum(res.losses[-4:]) / 4
    assert last < 0.97 * first, res.losses
    step = tmp_path / "run" / "checkpoints" / "step_000024"
    names = set(load_file(str(step / "model.safetensors")))
    assert any(k.startswith("encoder.blocks.") for k in names)
    assert any(k.startswith("decoder.blocks.") for k in names) and "decoder.mask_token" in names
    # The folder loads back whole on its own (config.json), and as its encoder alone.
    whole = VideoMAE.from_pretrained(step)
    encoder = umt.load_checkpoint(step)
    assert isinstance(encoder, VideoViT) and encoder.align_heads is None
    for k, v in encoder.state_dict().items():
        torch.testing.assert_close(v, whole.encoder.state_dict()[k])


def test_resume_restores_encoder_and_decoder_exactly(synthetic, tmp_path):
    extra = ("train.max_steps=6", "model.drop_path_rate=0.2", "mask.kind=random")
    straight = pretrain(mae_config(synthetic, tmp_path / "a", *extra))
    pretrain(mae_config(synthetic, tmp_path / "b", *extra[1:], "train.max_steps=3"))
    second = pretrain(mae_config(synthetic, tmp_path / "b", *extra, "train.resume=auto"))
    assert second.first_step == 3
    first_losses = [
        json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert first_losses == pytest.approx(straight.losses, rel=1e-6, abs=1e-7)
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000006" / "model.safetensors"))
    assert set(a) == set(b) and any(k.startswith("decoder.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_finetune_init_reads_the_videomae_encoder(synthetic, tmp_path):
    from umt.models.video_vit import read_student_weights
    from umt.train.tasks.classify import build_classifier, load_init_weights

    pretrain(mae_config(synthetic, tmp_path / "run", "train.max_steps=1"))
    step = tmp_path / "run" / "checkpoints" / "step_000001"
    weights, kind = read_student_weights(str(step))
    assert kind == "videomae"
    assert not any(k.startswith(("decoder", "encoder.")) for k in weights)
    ft = load_config(
        None,
        [
            "model.embed_dim=64", "model.depth=2", "model.num_heads=2", "data.num_frames=2",
            "data.input_size=48", "model.num_classes=12", f"model.init={step}",
        ],
        task="finetune",
    )  # fmt: skip
    clf = build_classifier(ft)
    load_init_weights(clf, weights, str(step))
    mae = VideoMAE.from_pretrained(step)
    for k, v in mae.encoder.state_dict().items():
        if not k.startswith("norm."):  # the classifier has fc_norm instead of the final norm
            torch.testing.assert_close(clf.state_dict()[k], v)
    # An official VideoMAE pretraining file (encoder_to_decoder, mask_token) reads the same.
    sd = load_file(str(step / "model.safetensors"))
    official = {k: v for k, v in sd.items() if not k.startswith("decoder.")}
    official["encoder_to_decoder.weight"] = sd["decoder.embed.weight"]
    official["mask_token"] = sd["decoder.mask_token"]
    official.update({k: v for k, v in sd.items() if k.startswith("decoder.blocks.")})
    torch.save({"model": official}, tmp_path / "official.pth")
    w2, kind2 = read_student_weights(str(tmp_path / "official.pth"))
    assert kind2 == "videomae" and set(w2) == set(weights)


def test_bad_decoder_settings_are_refused(synthetic, tmp_path):
    with pytest.raises(ConfigError, match="decoder_num_heads"):
        pretrain(mae_config(synthetic, tmp_path / "x", "model.decoder_num_heads=5"))
    with pytest.raises(ConfigError, match="masks none"):
        pretrain(mae_config(synthetic, tmp_path / "x", "mask.ratio=0.05"))
    assert not (tmp_path / "x" / "checkpoints").exists()


# --------------------------------------------------------------------------- recipes
def test_b16_recipes_match_the_official_scripts():
    k400, ssv2 = load_config("videomae-b16-k400"), load_config("videomae-b16-ssv2")
    for c, rate in ((k400, 4), (ssv2, 2)):
        assert isinstance(c, VideoMAEConfig) and c.task == "videomae"
        m, d, o = c.model, c.data, c.optim
        assert (m.name, m.tubelet_size, m.drop_path_rate) == ("umt-b16", 2, 0.0)
        assert (m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads) == (384, 4, 6)
        assert (d.num_frames, d.input_size, d.sampling, d.sampling_rate) == (16, 224, "dense", rate)
        assert d.scales == [1.0, 0.875, 0.75, 0.66] and not d.flip and d.mean_std == "imagenet"
        assert (c.mask.kind, c.mask.ratio, c.loss.normalize_target) == ("tube", 0.9, True)
        assert (o.lr, o.min_lr, o.warmup_lr, o.scale_lr) == (1.5e-4, 1e-5, 0.0, True)
        assert (o.betas, o.weight_decay, o.weight_decay_end, o.clip_grad) == (
            [0.9, 0.95],
            0.05,
            None,
            None,
        )
        assert (c.schedule.epochs, c.schedule.warmup_epochs) == (800, 40)
        assert (c.train.batch_size, c.train.precision) == (32, "fp16")
        # 64 GPUs x 32 = 2048 clips per step: lr 1.2e-3, as the official run prints.
        assert o.lr * 64 * c.train.batch_size / 256 == pytest.approx(1.2e-3)


def test_tiny_recipe_has_the_umt_tiny_encoder_data_and_budget():
    mae, uma = load_config("videomae-tiny-synthetic"), load_config("umt-tiny-synthetic")
    for key in ("name", "embed_dim", "depth", "num_heads", "tubelet_size", "drop_path_rate"):
        assert getattr(mae.model, key) == getattr(uma.model, key), key
    assert (mae.model.decoder_embed_dim, mae.model.decoder_depth) == (96, 2)
    assert mae.model.decoder_num_heads == 3
    assert (mae.mask.kind, mae.mask.ratio) == ("tube", 0.9)
    for section in ("data", "optim", "schedule", "train", "dist"):
        assert getattr(mae, section) == getattr(uma, section), section


def test_videomae_recipes_run_with_pretrain_only():
    with pytest.raises(ConfigError, match="umt pretrain"):
        load_config("videomae-tiny-synthetic", task="finetune")
    cfg = load_config("videomae-tiny-synthetic", ["model.decoder_depth=3"], task="pretrain")
    assert cfg.model.decoder_depth == 3
