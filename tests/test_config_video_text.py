"""Stage-2 and retrieval fine-tuning recipes, value for value, and the multi-modality schedule."""

from __future__ import annotations

import math

import pytest

from umt.config import ConfigError, list_recipes, load_config, task_command
from umt.config.video_text import VideoTextConfig
from umt.train.optim import cosine_floor_scheduler


def test_pretraining_recipes_match_the_official_configs():
    for size, vit, proj, fusion, clip, clip_size, dp in (
        ("b16", "umt-b16", 512, 9, "clip-b16", 224, 0.1),
        ("l16", "umt-l16", 768, 19, "clip-l14", 196, 0.2),
    ):
        for corpus, n_sets in (("5m", 2), ("17m", 6), ("25m", 6)):
            cfg = load_config(f"umt-{size}-{corpus}")
            assert isinstance(cfg, VideoTextConfig) and cfg.task == "stage2"
            assert task_command(cfg.task) == "pretrain"
            assert (cfg.model.name, cfg.model.proj_dim, cfg.model.drop_path_rate) == (vit, proj, dp)
            assert (cfg.text.fusion_layer, cfg.text.max_length) == (fusion, 32)
            assert cfg.text.grad_checkpointing
            assert (cfg.teacher.name, cfg.teacher.img_size, cfg.teacher.return_layers) == (
                clip,
                clip_size,
                6,
            )
            assert not cfg.teacher.normalize and not cfg.teacher.allow_random
            assert (cfg.data.num_frames, cfg.data.input_size, cfg.data.sampling) == (4, 224, "rand")
            assert cfg.data.rrc_scale == [0.5, 1.0] and cfg.data.id_by == "entry"
            assert len(cfg.data.corpora) == n_sets
            media = sorted(c.media for c in cfg.data.corpora)
            assert media.count("video") == 1
            videos = [c.anno for c in cfg.data.corpora if c.media == "video"]
            assert ("10m" in videos[0]) == (corpus == "25m")
            assert (cfg.mask.video_ratio, cfg.mask.image_ratio) == (0.8, 0.5)
            lo = cfg.loss
            assert (lo.uma, lo.vtc, lo.vtm, lo.mlm, lo.mlm_prob) == (1, 1, 1, 1, 0.5)
            assert lo.vtm_hard_negatives
            o, s = cfg.optim, cfg.schedule
            assert (o.lr, o.weight_decay, o.betas, o.scale_lr, o.clip_grad) == (
                1e-4,
                0.02,
                [0.9, 0.999],
                False,
                None,
            )
            assert (s.epochs, s.warmup_epochs, s.kind, s.lr_floor) == (10, 1, "cosine_floor", 0.01)
            assert (cfg.train.batch_size, cfg.train.precision, cfg.eval.k_test) == (
                128,
                "fp16",
                128,
            )


# (size, dataset, corpus) -> (lr, epochs, warm-up epochs, drop path, max text length): the spec's
# Appendix 1, one row per distinct official config value.
RETRIEVAL = {
    ("b16", "msrvtt", "5m"): (2e-5, 10, 0, 0.2, 32),
    ("b16", "msrvtt", "25m"): (1e-5, 10, 1, 0.2, 32),
    ("l16", "msrvtt", "17m"): (2e-5, 7, 1, 0.3, 32),
    ("b16", "didemo", "5m"): (2e-5, 15, 1, 0.1, 64),
    ("b16", "didemo", "17m"): (2e-5, 10, 1, 0.1, 64),
    ("b16", "didemo", "25m"): (2e-5, 12, 1, 0.1, 64),
    ("l16", "didemo", "25m"): (4e-5, 5, 1, 0.2, 64),
    ("l16", "anet", "17m"): (4e-5, 20, 1, 0.3, 150),
    ("b16", "lsmdc", "5m"): (2e-5, 10, 1, 0.2, 96),
    ("l16", "lsmdc", "25m"): (2e-5, 8, 1, 0.2, 96),
    ("b16", "msvd", "17m"): (1e-5, 5, 0, 0.2, 64),
    ("l16", "msvd", "5m"): (1e-5, 3, 0, 0.3, 64),
    ("l16", "ssv2-label", "25m"): (4e-5, 10, 0, 0.2, 25),
    ("b16", "ssv2-label", "5m"): (5e-5, 10, 0, 0.1, 25),
    ("l16", "ssv2-tpl", "17m"): (1e-4, 8, 1, 0.2, 25),
    ("l16", "ssv2-tpl", "25m"): (1e-4, 5, 1, 0.2, 25),
}


@pytest.mark.parametrize("key", sorted(RETRIEVAL))
def test_retrieval_recipes_match_the_official_configs(key):
    size, ds, corpus = key
    name = f"umt-{size}-{ds}-ret" + ("" if corpus == "25m" else f"-{corpus}")
    cfg = load_config(name, task="finetune")
    lr, epochs, warm, dp, max_len = RETRIEVAL[key]
    assert cfg.task == "finetune-retrieval"
    assert math.isclose(cfg.optim.lr, lr)
    assert (cfg.schedule.epochs, cfg.schedule.warmup_epochs) == (epochs, warm)
    assert (cfg.model.drop_path_rate, cfg.text.max_length) == (dp, max_len)
    assert (cfg.data.num_frames, cfg.eval.num_frames, cfg.train.batch_size) == (12, 12, 32)
    assert (cfg.loss.uma, cfg.loss.mlm, cfg.loss.vtc, cfg.loss.vtm) == (0, 0, 1, 1)
    assert cfg.model.grad_checkpointing == (12 if size == "b16" else 24)
    assert cfg.data.paragraph == (ds in ("didemo", "anet"))
    assert cfg.data.max_seconds == (30 if ds == "didemo" else None)
    assert cfg.data.id_by == ("caption" if ds.startswith("ssv2") else "video")
    assert cfg.schedule.kind == "cosine_floor" and cfg.optim.weight_decay == 0.02


def test_every_retrieval_dataset_has_every_variant():
    names = set(list_recipes())
    for size in ("b16", "l16"):
        for ds in ("msrvtt", "didemo", "anet", "lsmdc", "msvd", "ssv2-label", "ssv2-tpl"):
            for suffix in ("", "-5m", "-17m"):
                assert f"umt-{size}-{ds}-ret{suffix}" in names


def test_commands_refuse_recipes_of_the_other_command():
    with pytest.raises(ConfigError, match="umt finetune"):
        load_config("umt-b16-msrvtt-ret", task="pretrain")
    with pytest.raises(ConfigError, match="umt pretrain"):
        load_config("umt-b16-5m", task="finetune")
    assert load_config("umt-tiny-synthetic-stage2", task="pretrain").task == "stage2"


def test_bad_video_text_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="mask.video_ratio"):
        load_config("umt-tiny-synthetic-stage2", ["mask.video_ratio=1.0"])
    with pytest.raises(ConfigError, match="loss.mlm_prob"):
        load_config("umt-tiny-synthetic-stage2", ["loss.mlm_prob=0"])
    with pytest.raises(ConfigError, match="every weight is 0"):
        load_config(
            "umt-tiny-synthetic-stage2", ["loss.uma=0", "loss.vtc=0", "loss.vtm=0", "loss.mlm=0"]
        )
    with pytest.raises(ConfigError, match="unknown config key 'text.fusion'"):
        load_config("umt-tiny-synthetic-stage2", ["text.fusion=3"])


def test_cosine_floor_schedule_is_the_official_lambda():
    """The official ``get_cosine_schedule_with_warmup`` with ``min_lr_multi``, step by step."""

    def official(step: int, warm: int, total: int, floor: float) -> float:
        if step < warm:
            return max(floor, step / max(1, warm))
        progress = (step - warm) / max(1, total - warm)
        return max(floor, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    lrs = cosine_floor_scheduler(1e-4, 0.01, epochs=10, niter_per_ep=7, warmup_epochs=1)
    assert len(lrs) == 70
    for s, value in enumerate(lrs):
        assert math.isclose(value, 1e-4 * official(s, 7, 70, 0.01), rel_tol=1e-12)
    assert lrs[0] == pytest.approx(1e-6)  # max(0.01, 0) at step 0: the floor, not 0
    assert min(lrs) == pytest.approx(1e-6) and max(lrs) == pytest.approx(1e-4)
    no_warm = cosine_floor_scheduler(2e-5, 0.01, epochs=3, niter_per_ep=5, warmup_epochs=0)
    assert no_warm[0] == pytest.approx(2e-5)
