"""``umt evaluate classification`` and umt.evaluate.classification: the official multi-view test
(per-view softmax, mean over views), skipped bad videos, outputs, single-view validation,
sharding over processes, and parity with the stored official run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main as cli_main
from umt.data import VideoDataset
from umt.data.clip_spec import ClipSpec
from umt.data.datasets import MultiViewDataset
from umt.data.synth import write_video
from umt.evaluate.classification import (
    ClassificationResult,
    evaluate_classification,
    validate,
)
from umt.models import VideoViT, load_checkpoint, save_pretrained

NUM_CLASSES = 6
FRAMES = 4
SIZE = 16


def _video(path: Path, frames: int, height: int, width: int, seed: int) -> Path:
    """A small H.264 clip of moving smooth colour blobs (non-square frames exercise crops)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    centre, speed = rng.uniform(0, [height, width]), rng.uniform(-2, 2, size=2)
    colours = rng.uniform(30, 225, size=(2, 3))
    for t in range(frames):
        cy, cx = centre + speed * t
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.1 * height * width))
        out[t] = (colours[0] * blob[..., None] + colours[1] * (1 - blob[..., None])).astype(
            np.uint8
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, out)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Videos, lists and a tiny classifier. ``list.csv``: five good videos (landscape, portrait,
    square, and two files named clip.mp4 in different folders), a missing and a corrupt one."""
    root = tmp_path_factory.mktemp("evalcorpus")
    _video(root / "videos/land.mp4", 23, 24, 36, 0)
    _video(root / "videos/port.mp4", 17, 36, 24, 1)
    _video(root / "videos/square.mp4", 3, 20, 20, 2)  # fewer frames than T: repeats
    _video(root / "a/clip.mp4", 30, 24, 32, 3)
    _video(root / "b/clip.mp4", 12, 24, 32, 4)
    (root / "videos/corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    good = [
        ("videos/land.mp4", 1),
        ("videos/port.mp4", 4),
        ("videos/square.mp4", 1),
        ("a/clip.mp4", 2),
        ("b/clip.mp4", 5),
    ]
    lines = [*good[:2], ("videos/missing.mp4", 0), *good[2:4], ("videos/corrupt.mp4", 3), good[4]]
    (root / "list.csv").write_text("".join(f"{p},{y}\n" for p, y in lines))
    (root / "good.csv").write_text("".join(f"{p},{y}\n" for p, y in good))
    (root / "bad.csv").write_text("videos/missing.mp4,0\nvideos/corrupt.mp4,1\n")
    torch.manual_seed(0)
    model = VideoViT(
        img_size=SIZE,
        patch_size=8,
        num_frames=FRAMES,
        embed_dim=32,
        depth=1,
        num_heads=2,
        final_norm=False,
        num_classes=NUM_CLASSES,
    )
    with torch.no_grad():  # logits that differ clearly between views and videos
        model.head.weight.normal_(0, 1.0)
        model.head.bias.normal_(0, 0.5)
    save_pretrained(model, root / "clf")
    save_pretrained(
        VideoViT(
            img_size=SIZE, patch_size=8, num_frames=FRAMES, embed_dim=32, depth=1, num_heads=2
        ),
        root / "features",
    )
    return root


def _json_tail(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _cli(*args: str) -> list[str]:
    return ["evaluate", "classification", *args, "--workers", "0", "--no-progress"]


# --------------------------------------------------------------------------- CLI
def test_cli_scores_views_skips_bad_videos_and_writes_outputs(corpus, tmp_path, capsys):
    preds = tmp_path / "out" / "preds.jsonl"
    code = cli_main(
        _cli(
            str(corpus / "clf"),
            str(corpus / "list.csv"),
            "--views",
            "2x3",
            "--short-side",
            "20",
            "--batch-size",
            "2",
            "--predictions",
            str(preds),
        )
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = _json_tail(captured.out)
    assert summary["videos"] == 5 and summary["views"] == 6 and summary["listed"] == 7
    assert summary["skipped"] == 2
    assert [v["path"] for v in summary["skipped_videos"]] == [
        "videos/missing.mp4",
        "videos/corrupt.mp4",
    ]
    assert "not found" in summary["skipped_videos"][0]["reason"]
    assert "skipping video videos/missing.mp4" in captured.err
    assert "skipping video videos/corrupt.mp4" in captured.err
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    # list order, paths as written; the two clip.mp4 files stay two videos
    assert [x["path"] for x in lines] == [
        "videos/land.mp4",
        "videos/port.mp4",
        "videos/square.mp4",
        "a/clip.mp4",
        "b/clip.mp4",
    ]
    assert [x["label"] for x in lines] == [1, 4, 1, 2, 5]
    for line in lines:
        logits = torch.tensor(line["view_logits"], dtype=torch.float64)
        scores = torch.tensor(line["scores"], dtype=torch.float64)
        assert logits.shape == (6, NUM_CLASSES) and scores.shape == (NUM_CLASSES,)
        assert torch.allclose(scores, logits.softmax(-1).mean(0), atol=1e-12)
        assert line["prediction"] == int(scores.argmax())
        assert len(line["frame_indices"]) == 2 and len(line["frame_indices"][0]) == FRAMES
    assert lines[3]["view_logits"] != lines[4]["view_logits"]
    # top-1 from the written scores
    top1 = 100 * np.mean([x["prediction"] == x["label"] for x in lines])
    assert summary["top1"] == pytest.approx(top1)
    assert f"top-1 {top1:.2f}%" in captured.out
    rows = list(csv.DictReader((tmp_path / "out" / "preds.per_class.csv").open()))
    assert [int(r["videos"]) for r in rows] == [0, 2, 1, 0, 1, 1]
    assert sum(int(r["correct"]) for r in rows) == round(top1 * 5 / 100)
    png = tmp_path / "out" / "preds.confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_views_equal_per_view_dataset_and_model(corpus, tmp_path, capsys):
    """Every view's logits equal the model on that view built by VideoDataset's test views (one
    decode per view, another code path), in segment-major order."""
    preds = tmp_path / "preds.jsonl"
    assert (
        cli_main(
            _cli(
                str(corpus / "clf"),
                str(corpus / "good.csv"),
                "--views",
                "3x2",
                "--short-side",
                "18",
                "--predictions",
                str(preds),
            )
        )
        == 0
    )
    capsys.readouterr()
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    model = load_checkpoint(corpus / "clf").eval()
    ds = VideoDataset(
        corpus / "good.csv",
        clip=ClipSpec(
            num_frames=FRAMES, train=False, input_size=SIZE, short_side=18, num_clips=3, num_crops=2
        ),
        backend="pyav",
    )
    with torch.no_grad():
        for k, line in enumerate(lines):
            views = torch.stack([ds[k * 6 + v]["video"] for v in range(6)])
            expected = model(views)
            assert torch.allclose(torch.tensor(line["view_logits"]), expected, atol=1e-5)


def test_cli_every_video_bad_exits_1_with_one_line(corpus, capsys):
    code = cli_main(_cli(str(corpus / "clf"), str(corpus / "bad.csv"), "--views", "1x1"))
    captured = capsys.readouterr()
    assert code == 1
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("umt evaluate: error:") and "none of its 2 videos" in last
    assert "videos/missing.mp4" in last
    assert captured.out == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--short-side", "8"], "--short-side 8"),
        (["--sampling", "ssv2", "--views", "4x3"], "ssv2"),
        (["--views", "0x3"], "--views"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_usage_errors_exit_2(corpus, capsys, args, named):
    try:
        code = cli_main(_cli(str(corpus / "clf"), str(corpus / "good.csv"), *args))
    except SystemExit as exit_:  # argparse refuses malformed options itself
        code = exit_.code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and named in err[-1] and "error" in err[-1]
    assert "{" not in captured.out  # nothing was evaluated


def test_cli_refuses_a_model_without_head_and_bad_labels(corpus, tmp_path, capsys):
    code = cli_main(_cli(str(corpus / "features"), str(corpus / "good.csv")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a classifier" in err[0]
    (tmp_path / "l.csv").write_text(f"{corpus / 'videos/land.mp4'},9\n")
    code = cli_main(_cli(str(corpus / "clf"), str(tmp_path / "l.csv")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "label 9" in err[-1] and "6 classes" in err[-1]


# --------------------------------------------------------------------------- metrics
def test_topk_and_mean_class_accuracy_on_a_hand_built_case():
    # 4 videos, 6 classes, 2 views; video scores chosen through the logits
    logits = torch.full((4, 2, 6), -5.0)
    ranking = {0: [0, 1, 2], 1: [3, 1, 0], 2: [5, 4, 3], 3: [1, 2, 3]}  # per video, best first
    for n, order in ranking.items():
        for place, c in enumerate(order):
            logits[n, :, c] = 3.0 - place
    labels = torch.tensor([0, 1, 1, 4])  # hit; 2nd; miss (not in its top 3 but in top 5); miss
    result = ClassificationResult(
        positions=[0, 1, 2, 3],
        paths=["a", "b", "c", "d"],
        files=["a", "b", "c", "d"],
        labels=labels,
        view_logits=logits,
        scores=logits.double().softmax(-1).mean(1),
        frame_indices=torch.zeros(4, 2, 4, dtype=torch.long),
        skipped=[("e", "file not found")],
        num_listed=5,
        num_clips=2,
        num_crops=1,
    )
    assert result.predictions.tolist() == [0, 3, 5, 1]
    assert result.top1 == pytest.approx(25.0)
    assert result.topk(2) == pytest.approx(50.0)
    # top-5 of 6 classes: video 2 (label 1) ranks 5,4,3 then 0,1,2 (ties, lower index first)
    assert result.top5 == pytest.approx(75.0)
    # classes 0: 1/1, 1: 0/2, 4: 0/1 -> mean 33.33
    assert result.mean_class_acc == pytest.approx(100 / 3)
    rows = {r["class"]: r for r in result.per_class()}
    assert rows[1]["videos"] == 2 and rows[1]["accuracy"] == 0.0 and rows[2]["accuracy"] is None
    assert rows[3]["predicted"] == 1
    confusion = result.confusion_matrix()
    assert confusion.sum() == 4 and confusion[0, 0] == 1 and confusion[4, 1] == 1
    summary = result.summary()
    assert summary["skipped"] == 1 and summary["views"] == 2 and summary["videos"] == 4


def test_evaluate_keeps_only_scores_when_asked(corpus, recwarn):
    model = load_checkpoint(corpus / "clf")
    ds = MultiViewDataset(
        corpus / "list.csv",
        clip=ClipSpec(num_frames=FRAMES, input_size=SIZE, num_clips=2, num_crops=1),
    )
    full = evaluate_classification(model, ds, batch_size=3, num_workers=0, progress=False)
    lean = evaluate_classification(
        model, ds, batch_size=3, num_workers=0, progress=False, keep_view_logits=False
    )
    assert full.view_logits.shape == (5, 2, NUM_CLASSES) and lean.view_logits is None
    assert torch.equal(full.scores, lean.scores) and lean.paths == full.paths
    assert lean.skipped == full.skipped and len(lean.skipped) == 2
    messages = [str(w.message) for w in recwarn if w.category is RuntimeWarning]
    assert any("skipping video videos/corrupt.mp4" in m for m in messages)


# --------------------------------------------------------------------------- validation
def test_validate_single_view(corpus):
    model = load_checkpoint(corpus / "clf").eval()
    ds = VideoDataset(
        corpus / "good.csv",
        clip=ClipSpec(num_frames=FRAMES, train=False, input_size=SIZE),
        backend="pyav",
    )
    criterion = torch.nn.CrossEntropyLoss()
    result = validate(model, ds, criterion, batch_size=2, num_workers=0)
    with torch.no_grad():
        videos = torch.stack([ds[i]["video"] for i in range(len(ds))])
        labels = torch.tensor([ds[i]["label"] for i in range(len(ds))])
        logits = model(videos)
    top1 = (logits.argmax(1) == labels).double().mean().item() * 100
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).double().mean().item() * 100
    assert result.num_videos == 5
    assert result.top1 == pytest.approx(top1) and result.top5 == pytest.approx(top5)
    assert result.loss == pytest.approx(criterion(logits, labels).item(), rel=1e-5)
    assert validate(model, ds, batch_size=5, num_workers=0).loss is None


# --------------------------------------------------------------------------- distributed
def _result_dict(result: ClassificationResult) -> dict:
    return {
        "positions": result.positions,
        "paths": result.paths,
        "skipped": result.skipped,
        "view_logits": result.view_logits,
        "scores": result.scores,
        "frame_indices": result.frame_indices,
        "top1": result.top1,
    }


def _evaluate(corpus: Path, shard_model: bool = False) -> dict:
    """Multi-view test (batches of 3 videos: 2 ranks get 2 and 1 batches) and validation
    (batches of 2: 2 and 1 batches). ``shard_model``: FSDP2, whose forward needs every rank."""
    model = load_checkpoint(corpus / "clf")
    if shard_model:
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # inner units reshard after every forward
            fully_shard(block)
        fully_shard(model)
    ds = MultiViewDataset(
        corpus / "list.csv",
        clip=ClipSpec(num_frames=FRAMES, input_size=SIZE, short_side=20, num_clips=2, num_crops=3),
        normalize=False,
        backend="pyav",
    )
    result = evaluate_classification(model, ds, batch_size=3, num_workers=0, progress=False)
    out = _result_dict(result)
    vds = VideoDataset(
        corpus / "good.csv",
        clip=ClipSpec(num_frames=FRAMES, train=False, input_size=SIZE),
        backend="pyav",
    )
    val = validate(model, vds, torch.nn.CrossEntropyLoss(), batch_size=2, num_workers=0)
    out["validate"] = (val.top1, val.top5, val.loss, val.num_videos)
    return out


def _worker(rank: int, corpus: str, rendezvous: str, out_dir: str) -> None:
    import warnings

    import torch.distributed as dist

    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    torch.save(_evaluate(Path(corpus)), Path(out_dir) / f"rank{rank}.pt")
    from umt.train.distributed import fsdp_available

    if fsdp_available():
        torch.save(_evaluate(Path(corpus), shard_model=True), Path(out_dir) / f"fsdp{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter teardown that can abort gloo processes


def test_two_gloo_processes_give_the_one_process_result(corpus, tmp_path):
    """7 videos (2 bad) over 2 ranks: shards of 4 and 3 videos, no overlap, unequal batch
    counts; every rank gets the full result, equal to one process's, also when the model is
    sharded with FSDP2 (its forward needs all ranks: the shorter shard runs throw-away calls)."""
    import warnings

    import torch.multiprocessing as mp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = _evaluate(corpus)
    context = mp.start_processes(
        _worker,
        args=(str(corpus), str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 240
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process evaluation did not finish in 240 s")
    outputs = sorted(tmp_path.glob("rank*.pt")) + sorted(tmp_path.glob("fsdp*.pt"))
    from umt.train.distributed import fsdp_available

    assert len(outputs) == (4 if fsdp_available() else 2)  # fsdp*: an FSDP2-sharded model
    for output in outputs:
        got = torch.load(output, weights_only=False)
        assert got["positions"] == single["positions"] == [0, 1, 3, 4, 6]
        assert got["paths"] == single["paths"] and got["skipped"] == single["skipped"]
        assert [p for p, _ in got["skipped"]] == ["videos/missing.mp4", "videos/corrupt.mp4"]
        assert torch.allclose(got["view_logits"], single["view_logits"], atol=1e-5)
        assert torch.allclose(got["scores"], single["scores"], atol=1e-8)
        assert torch.equal(got["frame_indices"], single["frame_indices"])
        assert got["top1"] == single["top1"]
        assert got["validate"][3] == single["validate"][3] == 5
        assert got["validate"][:2] == pytest.approx(single["validate"][:2])
        assert got["validate"][2] == pytest.approx(single["validate"][2], rel=1e-5)


# --------------------------------------------------------------------------- parity
@pytest.mark.parity
def test_cli_matches_the_official_multiview_test(official_root, tmp_path):
    """The stored official run (kinetics_sparse.py test mode + engine merge): per-view logits
    within 1e-2, merged scores within 5e-4, frame indices exact; sizes from config.json."""
    from official_fixtures import load_case

    cfg, tensors = load_case(official_root, "eval_multiview")
    case = official_root / "eval_multiview"
    model_cfg = cfg["model"]
    preds = tmp_path / "preds.jsonl"
    command = [
        sys.executable, "-m", "umt", "evaluate", "classification",
        str(case / model_cfg["checkpoint"]), str(case / cfg["list"]),
        "--num-frames", str(cfg["num_frames"]),
        "--input-size", str(model_cfg["img_size"]),
        "--num-heads", str(model_cfg["num_heads"]),
        "--short-side", str(cfg["short_side_size"]),
        "--views", f"{cfg['test_num_segment']}x{cfg['test_num_crop']}",
        "--sampling", cfg["sampling"],
        "--backend", "pyav", "--device", "cpu", "--workers", "1",
        "--predictions", str(preds),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _json_tail(proc.stdout)
    views = cfg["test_num_segment"] * cfg["test_num_crop"]
    assert summary["videos"] == len(cfg["videos"]) and summary["views"] == views
    assert summary["skipped"] == 0
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    listed = [row[0] for row in csv.reader((case / cfg["list"]).open())]
    assert [x["path"] for x in lines] == listed == cfg["videos"]
    assert [x["label"] for x in lines] == cfg["labels"]
    hits1, hits5 = [], []
    for k, line in enumerate(lines):
        logits = torch.tensor(line["view_logits"])
        assert logits.shape == tensors[f"v{k}_logits"].shape
        assert (logits - tensors[f"v{k}_logits"]).abs().max() < 1e-2
        scores = torch.tensor(line["scores"], dtype=torch.float64)
        assert (scores - tensors[f"v{k}_scores"].double()).abs().max() < 5e-4
        assert line["frame_indices"] == tensors[f"v{k}_frame_indices"].tolist()
        official = tensors[f"v{k}_scores"]
        hits1.append(int(official.argmax()) == line["label"])
        hits5.append(line["label"] in official.topk(min(5, official.numel())).indices.tolist())
    assert summary["top1"] == pytest.approx(100 * np.mean(hits1))
    assert summary["top5"] == pytest.approx(100 * np.mean(hits5))
