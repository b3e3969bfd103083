"""Issue 18 (evaluation under adversarial use): evaluation never substitutes a broken video (it
skips, counts and names it), errors raised in DataLoader workers read as one line, and every
output path of an evaluation is checked before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from train_helpers import TINY_FT as TINY_FT_BASE
from umt.cli import main as cli_main
from umt.config import load_config
from umt.train import finetune

TINY_FT = [
    *TINY_FT_BASE,
    "schedule.epochs=1",
    "schedule.steps_per_epoch=2",
    "eval.test_views=1x1",
    "model.init=scratch",
]


def _broken_val_list(synthetic: Path, folder: Path) -> tuple[Path, list[str]]:
    """12 validation videos, 3 of them broken files (truncated / garbage bytes): the list and
    the broken paths as listed."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = (synthetic / "val.csv").read_text().splitlines()[:12]
    lines, broken = [], []
    for n, row in enumerate(rows):
        rel, label = row.rsplit(" ", 1)
        target = folder / f"v{n:02d}.mp4"
        data = (synthetic / rel).read_bytes()
        if n in (1, 6, 10):
            data = data[: len(data) // 8] if n != 6 else b"\x00garbage, not a video" * 40
            broken.append(str(target))
        target.write_bytes(data)
        lines.append(f"{target} {label}")
    val = folder / "val.csv"
    val.write_text("\n".join(lines) + "\n")
    return val, broken


# --------------------------------------------------------------------------- item 3
def test_finetune_validation_and_test_skip_and_name_broken_videos(synthetic, tmp_path):
    val, broken = _broken_val_list(synthetic, tmp_path / "data")
    out = tmp_path / "run"
    cfg = load_config(
        None,
        [
            *TINY_FT,
            f"data.synthetic_root={synthetic}",
            f"train.output_dir={out}",
            f"data.val_list={val}",
            f"data.test_list={val}",
            "data.num_workers=1",
        ],
        task="finetune",
    )
    with pytest.warns(RuntimeWarning, match="skipping video"):
        finetune(cfg, echo=lambda line: None)
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in recs if "val_top1" in r]
    assert vals and all(r["val_videos"] == 9 for r in vals)
    assert all(r["val_skipped_videos"] == 3 and r["val_skipped"] == broken for r in vals)
    test = json.loads((out / "test" / "results.json").read_text())
    assert test["videos"] == 9 and test["skipped"] == 3
    assert sorted(v["path"] for v in test["skipped_videos"]) == broken


# --------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny classifier and a tiny video-text model (with its vocabulary and an answer list,
    so it also answers questions) saved as umt checkpoints."""
    import torch

    from umt.models import VideoViT, save_pretrained
    from umt.models.video_text import UMTVideoText
    from umt.text import minilm_dir

    vocab = minilm_dir()
    if vocab is None:
        pytest.skip("the bundled bert-base-uncased vocabulary is not installed")
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    clf = VideoViT(
        img_size=48, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2,
        num_classes=12,
    )  # fmt: skip
    save_pretrained(clf, root / "clf")
    vt = UMTVideoText(
        vision=dict(img_size=48, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2),
        text=dict(
            vocab_size=30522, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=32, fusion_layer=1, mlm_head=False,
        ),
        embed_dim=16,
    ).eval()  # fmt: skip
    save_pretrained(vt, root / "vt")
    shutil.copy(Path(vocab) / "vocab.txt", root / "vt" / "vocab.txt")
    (root / "answers.json").write_text(json.dumps(["red", "blue", "left", "right"]))
    return {"clf": root / "clf", "vt": root / "vt", "answers": root / "answers.json"}


def _annotations(synthetic: Path, folder: Path, val: Path) -> dict[str, Path]:
    """QA, multiple-choice and retrieval annotations over the videos of ``val``."""
    videos = [line.rsplit(" ", 1)[0] for line in val.read_text().splitlines()]
    files = {
        "qa": [
            {"video": v, "question": "what colour is it", "answer": "red", "question_id": n}
            for n, v in enumerate(videos)
        ],
        "mc": [{"video": v, "caption": ["a red ball", "a blue box"], "answer": 0} for v in videos],
        "ret": [{"video": v, "caption": f"a moving thing {n}"} for n, v in enumerate(videos)],
    }
    out = {}
    for name, entries in files.items():
        out[name] = folder / f"{name}.json"
        out[name].write_text(json.dumps(entries))
    return out


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_commands_skip_count_and_name_broken_videos(synthetic, models, tmp_path, capsys):
    val, broken = _broken_val_list(synthetic, tmp_path / "data")
    code, out, err = _cli(
        ["evaluate", "classification", str(models["clf"]), str(val), "--views", "1x1",
         "--workers", "1", "--no-progress", "--device", "cpu"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["videos"] == 9 and summary["skipped"] == 3
    assert sorted(v["path"] for v in summary["skipped_videos"]) == broken
    ann = _annotations(synthetic, tmp_path, val)
    code, out, err = _cli(
        ["evaluate", "qa", str(models["vt"]), str(ann["qa"]), "--answer-list",
         str(models["answers"]), "--workers", "1", "--no-progress", "--device", "cpu"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["unusable_videos"] == 3
    assert all(path in err for path in broken), err


def test_run_qa_and_run_mc_are_the_library_side_of_the_commands(synthetic, models, tmp_path):
    """``umt evaluate qa`` / ``mc`` are run_qa / run_mc plus printing: the same counts, the
    broken videos counted as wrong, and a predictions path refused before any work."""
    import warnings

    from umt.evaluate.multiple_choice import run_mc
    from umt.evaluate.qa import run_qa
    from umt.outputs import OutputPathError

    val, broken = _broken_val_list(synthetic, tmp_path / "data")
    ann = _annotations(synthetic, tmp_path, val)
    common = dict(num_workers=0, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "skipping video ..."
        qa = run_qa(models["vt"], ann["qa"], answer_list=models["answers"], **common)
        mc = run_mc(models["vt"], ann["mc"], num_frames=2, **common)
    assert qa.num_answers == 4 and qa.result.num_questions == 12
    assert sorted({path for _, path, _ in qa.result.faults}) == broken
    assert mc.num_questions == 12 and len(mc.predictions) == 9 and len(mc.faults) == 3
    bad = _blocked(tmp_path)
    with pytest.raises(OutputPathError):
        run_qa(models["vt"], ann["qa"], answer_list=models["answers"], predictions=bad, **common)
    with pytest.raises(OutputPathError):
        run_mc(models["vt"], ann["mc"], predictions=bad, **common)


def _wrong_root_qa(models: dict[str, Path], ann: Path, workers: int, capsys) -> tuple[int, str]:
    code, _, err = _cli(
        ["evaluate", "qa", str(models["vt"]), str(ann), "--answer-list", str(models["answers"]),
         "--root", "/nonexistent-root", "--workers", str(workers), "--no-progress",
         "--device", "cpu", "--batch-size", "2"],
        capsys,
    )  # fmt: skip
    return code, err


# --------------------------------------------------------------------------- item 7
def test_worker_error_reads_as_the_same_one_line(synthetic, models, tmp_path, capsys):
    rows = (synthetic / "val.csv").read_text().splitlines()[:24]
    ann = tmp_path / "qa.json"
    ann.write_text(
        json.dumps(
            [
                {"video": row.rsplit(" ", 1)[0], "question": "what colour", "answer": "red"}
                for row in rows
            ]
        )
    )  # relative videos: under the wrong --root none exists
    code0, err0 = _wrong_root_qa(models, ann, 0, capsys)
    code1, err1 = _wrong_root_qa(models, ann, 1, capsys)
    last0, last1 = err0.strip().splitlines()[-1], err1.strip().splitlines()[-1]
    assert code0 == code1 == 1
    assert last1.startswith("umt evaluate: error: ") and "/nonexistent-root" in last1
    assert "DataLoader worker" not in err1 and "Traceback" not in err1
    assert last1 == last0


# --------------------------------------------------------------------------- item 8
def _blocked(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: no folder can be made there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "out" / "predictions.jsonl"


def test_every_output_path_is_checked_before_the_work(synthetic, models, tmp_path, capsys):
    import time

    val, _ = _broken_val_list(synthetic, tmp_path / "data")
    ann = _annotations(synthetic, tmp_path, val)
    bad = _blocked(tmp_path)
    blocker = str(bad.parent.parent)
    commands = {
        "classification": ["evaluate", "classification", str(models["clf"]), str(val),
                           "--predictions", str(bad)],
        "retrieval": ["evaluate", "retrieval", str(models["vt"]), str(ann["ret"]),
                      "--predictions", str(bad)],
        "qa": ["evaluate", "qa", str(models["vt"]), str(ann["qa"]), "--answer-list",
               str(models["answers"]), "--predictions", str(bad)],
        "mc": ["evaluate", "mc", str(models["vt"]), str(ann["mc"]), "--predictions", str(bad)],
        "embed": ["embed", str(val), "--checkpoint", str(models["vt"]), "-o", str(bad.parent)],
    }  # fmt: skip
    for name, argv in commands.items():
        start = time.perf_counter()
        code, out, err = _cli([*argv, "--no-progress", "--device", "cpu"], capsys)
        seconds = time.perf_counter() - start
        lines = err.strip().splitlines()
        assert code == 2, (name, err)
        assert len(lines) == 1 and "error:" in lines[0], (name, err)
        assert blocker in lines[0] and "is a file, not a folder" in lines[0], (name, err)
        assert "File exists" not in err and seconds < 20, (name, seconds)
        assert not out.strip(), (name, out)  # nothing was evaluated or printed


def test_check_writable_refuses_a_read_only_mount(tmp_path):
    import subprocess

    from umt.outputs import OutputPathError, check_writable

    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(OutputPathError, match="choose a writable path"):
            check_writable(folder / "p.jsonl", "predictions file")
        with pytest.raises(OutputPathError, match="choose a writable path"):
            check_writable(folder / "index", "index", folder=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


class _UndecodableSet(torch.utils.data.Dataset):
    """Every item is a video that cannot be decoded (a worker raises VideoDecodeError)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        from umt.data.decode import VideoDecodeError

        raise VideoDecodeError("clip.mp4", "cannot open as a video container")


def test_worker_error_torch_cannot_rebuild_is_still_one_line():
    """VideoDecodeError takes two arguments, so torch re-raises it from a worker as a
    RuntimeError: the CLI still treats it as the data error it is, in the same one line."""
    from umt.cli._errors import exit_code, one_line
    from umt.data.decode import VideoDecodeError

    direct = VideoDecodeError("clip.mp4", "cannot open as a video container")
    loader = torch.utils.data.DataLoader(_UndecodableSet(), num_workers=1)
    with pytest.raises(RuntimeError, match="Caught VideoDecodeError") as caught:
        next(iter(loader))
    err = caught.value
    assert not isinstance(err, VideoDecodeError)  # what torch gives: not the original type
    assert exit_code(err) == exit_code(direct) == 1
    assert one_line(err) == one_line(direct)


def test_check_writable_refuses_a_folder_that_takes_no_files(tmp_path):
    """The permission bits say yes (root passes them everywhere) but the file system says no:
    /proc takes no new files. Refused before the work, and a writable folder is left as it was."""
    from umt.outputs import OutputPathError, check_writable

    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this machine")
    with pytest.raises(OutputPathError, match=r"/proc/umt-check\.jsonl: cannot write"):
        check_writable("/proc/umt-check.jsonl", "predictions file")
    existing = tmp_path / "p.jsonl"
    existing.write_text("kept\n")
    assert check_writable(existing, "predictions file") == existing
    assert existing.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]  # no probe file left
