"""The official test protocols end to end, through the commands users run.

The fixtures ``eval_retrieval``, ``eval_qa`` and ``eval_mc`` hold what the official test code
computed on real H.264 files with tiny official checkpoints (its video reader, sampling, resize,
text cleaning, tokenizer, model and metric). Here the same files go through ``umt convert``,
``umt evaluate retrieval|qa|mc`` and ``umt ask``: same predictions and ranks, scores within 1e-4
(ITM logits within 1e-3). Every size and setting is read from the fixture, so the checks hold on
fixtures of other sizes (``UMT_FIXTURES``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from official_fixtures import load_case
from umt.cli import main

pytestmark = pytest.mark.parity

SCORE_TOL = 1e-4
ITM_TOL = 1e-3
METRIC_TOL = 0.011  # metrics are rounded to 2 decimals; one query moves them by >= 0.1


def _vocab(case: Path, cfg: dict) -> Path:
    """The vocabulary the official tokenizer used: the case's own ``vocab.txt``, else the file
    the config names inside an installed package; its sha256 checked when given."""
    spec = cfg["tokenizer"].get("vocab", {})
    path = case / "vocab.txt"
    if not path.is_file() and isinstance(spec, dict) and spec.get("file"):
        if (case / spec["file"]).is_file():
            path = case / spec["file"]
        else:
            found = importlib.util.find_spec(spec["module"]) if spec.get("module") else None
            if found is None or not found.submodule_search_locations:
                pytest.skip(f"the vocabulary's package {spec.get('package')} is not installed")
            path = Path(list(found.submodule_search_locations)[0]) / spec["file"]
    assert path.is_file(), f"{case}: no vocabulary for the official tokenizer"
    if isinstance(spec, dict) and spec.get("sha256"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == spec["sha256"], f"{path} is not the vocabulary the fixture used"
    return path


def _tokenizer_cpu(case: Path, cfg: dict) -> list[str]:
    return ["--tokenizer", str(_vocab(case, cfg)), "--amp", "none", "--device", "cpu"]


def _sizes(model_cfg: dict) -> list[str]:
    """The size flags of an official file, from the fixture's constructor arguments."""
    flags = ["--num-heads", str(model_cfg["num_heads"])]
    flags += ["--text-num-heads", str(model_cfg["text_num_heads"])]
    return flags


def _run(argv: list[str], capsys) -> tuple[dict, str]:
    """``umt ARGV`` in this process: (the JSON of its last stdout line, stderr)."""
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out.strip().splitlines()[-1]), out.err


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- retrieval
def _video_text_argv(
    task: str, case: Path, cfg: dict, checkpoint: str, out: Path, *extra: str
) -> list[str]:
    """``umt evaluate retrieval|mc`` with the fixture's test settings (sizes not included)."""
    return [
        "evaluate",
        task,
        checkpoint,
        str(case / cfg["annotations"]),
        "--root",
        str(case / cfg.get("video_root", "videos")),
        "--num-frames",
        str(cfg["num_frames"]),
        "--max-text-len",
        str(cfg["max_txt_l"]),
        "--predictions",
        str(out),
        "--workers",
        "0",
        "--no-progress",
        *_tokenizer_cpu(case, cfg),
        *extra,
    ]


def _retrieval_argv(case: Path, cfg: dict, checkpoint: str, out: Path) -> list[str]:
    return _video_text_argv("retrieval", case, cfg, checkpoint, out, "--k-test", str(cfg["k_test"]))


def _check_retrieval_predictions(lines: list[dict], io: dict, k_test: int) -> None:
    itc = {"text": io["itc_t2i"], "video": io["itc_i2t"]}
    itm = {"text": io["itm_t2i"], "video": io["itm_i2t"]}
    ranks = {"text": io["ranks_t2i"], "video": io["ranks_i2t"]}
    ranks_itc = {"text": io["ranks_t2i_itc"], "video": io["ranks_i2t_itc"]}
    seen = {"text": 0, "video": 0}
    for line in lines:
        q, kind = line["index"], line["query"]
        seen[kind] += 1
        rank = int(ranks[kind][q])
        if rank < k_test:  # beyond k_test the official rank is numpy's tie order (-100 each)
            assert line["rank"] - 1 == rank, (kind, q)
        assert line["rank_itc"] - 1 == int(ranks_itc[kind][q]), (kind, q)
        previous = None
        for item in line["top"]:
            c = item["index"]
            assert abs(item["itc"] - float(itc[kind][q, c])) < SCORE_TOL, (kind, q, c)
            official = float(itm[kind][q, c])
            if official == -100.0:  # not among the query's k_test best by ITC
                assert item["itm"] is None, (kind, q, c)
                continue
            assert item["itm"] is not None, (kind, q, c)
            assert abs(item["itm"] - official) < ITM_TOL, (kind, q, c)
            if previous is not None:  # the re-ranked order
                assert official <= previous + ITM_TOL
            previous = official
    assert seen == {"text": itc["text"].shape[0], "video": itc["video"].shape[0]}


def _check_retrieval_metrics(summary: dict, metrics: dict) -> None:
    for ours, theirs in (("", "test/"), ("_itc", "test_emb/")):
        official = metrics[theirs]
        for k in (1, 5, 10):
            assert summary[f"t2v_r{k}{ours}"] == pytest.approx(
                official[f"img_r{k}"], abs=METRIC_TOL
            )
            assert summary[f"v2t_r{k}{ours}"] == pytest.approx(
                official[f"txt_r{k}"], abs=METRIC_TOL
            )
        assert summary[f"r_mean{ours}"] == pytest.approx(official["r_mean"], abs=METRIC_TOL)


def test_retrieval_official_file_and_converted_folder(official_root, tmp_path, capsys):
    cfg, io = load_case(official_root, "eval_retrieval")
    case = official_root / "eval_retrieval"
    metrics = json.loads((case / "metrics.json").read_text())
    model_cfg = cfg["model"]

    # the official file as it is, with the sizes it does not store
    argv = _retrieval_argv(case, cfg, str(case / cfg["checkpoint"]), tmp_path / "direct.jsonl")
    summary, err = _run(argv + _sizes(model_cfg) + ["--img-size", str(cfg["image_res"])], capsys)
    assert "text_num_heads=" not in err and "num_heads=" not in err  # nothing assumed aloud
    _check_retrieval_metrics(summary, metrics)
    _check_retrieval_predictions(_jsonl(tmp_path / "direct.jsonl"), io, int(cfg["k_test"]))

    # converted once, then evaluated from umt's folder with no size flag
    conv = tmp_path / "converted"
    report = subprocess.run(
        [sys.executable, "-m", "umt", "convert", str(case / cfg["checkpoint"]), str(conv)]
        + _sizes(model_cfg)
        + ["--teacher-heads", str(model_cfg["teacher_heads"])]
        + ["--num-frames", str(cfg["num_frames"]), "--img-size", str(cfg["image_res"])],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    assert "assumed:" not in report.stdout
    assert "texts: [CLS] X (the official tokenizer)" in report.stdout
    assert json.loads((conv / "config.json").read_text())["text"]["sep_after_text"] is False
    argv = _retrieval_argv(case, cfg, str(conv), tmp_path / "folder.jsonl")
    summary, _ = _run(argv, capsys)
    _check_retrieval_metrics(summary, metrics)
    _check_retrieval_predictions(_jsonl(tmp_path / "folder.jsonl"), io, int(cfg["k_test"]))


def test_retrieval_token_ids_are_the_official_ones(official_root):
    """The tokenizer of the loaded official model gives the fixture's ids (no [SEP])."""
    from umt.evaluate.retrieval import load_video_text, resolve_tokenizer

    cfg, io = load_case(official_root, "eval_retrieval")
    case = official_root / "eval_retrieval"
    sizes = {"num_heads": cfg["model"]["num_heads"]}
    sizes["text_num_heads"] = cfg["model"]["text_num_heads"]
    model = load_video_text(
        case / cfg["checkpoint"], cfg["num_frames"], img_size=cfg["image_res"], **sizes
    )
    tok = resolve_tokenizer(case / cfg["checkpoint"], model, _vocab(case, cfg))
    ids, mask = tok(cfg["captions"], max_length=cfg["max_txt_l"])
    assert torch.equal(ids, io["input_ids"].long())
    assert torch.equal(mask, io["attention_mask"].long())


# --------------------------------------------------------------------------- QA
def _qa_argv(case: Path, cfg: dict) -> list[str]:
    return [
        "--k-test",
        str(cfg["k_test"]),
        "--max-question-len",
        str(cfg["max_q_len"]),
        "--max-answer-len",
        str(cfg["max_a_len"]),
        *_tokenizer_cpu(case, cfg),
    ]


def _check_qa_ranked(ranked: list[dict], row: int, io: dict, answers: list[str]) -> None:
    ids, probs = io["rerank_ids"][row], io["rerank_probs"][row]
    assert len(ranked) == min(len(ranked), ids.numel()) and ranked
    for j, item in enumerate(ranked):
        assert item["answer"] == answers[int(ids[j])], (row, j)
        assert abs(item["probability"] - float(probs[j])) < SCORE_TOL, (row, j)


def test_qa_convert_evaluate_and_ask(official_root, tmp_path, capsys):
    cfg, io = load_case(official_root, "eval_qa")
    case = official_root / "eval_qa"
    results = json.loads((case / "results.json").read_text())
    answers = json.loads((case / cfg["answer_list"]).read_text())
    ann = json.loads((case / cfg["annotations"]).read_text())
    row_of = {entry["question_id"]: i for i, entry in enumerate(ann)}
    official = {p["question_id"]: p["answer"] for p in results["predictions"]}
    model_file = str(case / cfg["checkpoint"])
    sizes = _sizes(cfg["model"])
    clip = ["--num-frames", str(cfg["num_frames"]), "--img-size", str(cfg["image_res"])]

    # umt convert without the sizes says what it assumed, with the flags to set them
    bare = subprocess.run(
        [sys.executable, "-m", "umt", "convert", model_file, str(tmp_path / "bare")],
        capture_output=True,
        text=True,
    )
    assert bare.returncode == 0, bare.stderr
    assumed = [line for line in bare.stdout.splitlines() if line.startswith("assumed:")]
    assert assumed and "num_frames=12" in assumed[0] and "--num-frames" in assumed[0]
    # ... and with them, a folder that evaluate qa and ask read with no size flag
    conv = tmp_path / "qa"
    done = subprocess.run(
        [sys.executable, "-m", "umt", "convert", model_file, str(conv), *sizes, *clip],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "assumed:" not in done.stdout and "model: UMT video QA" in done.stdout

    root = str(case / cfg.get("video_root", "videos"))
    common = [str(case / cfg["annotations"]), "--answer-list", str(case / cfg["answer_list"])]
    common += ["--root", root, "--workers", "0", "--no-progress", *_qa_argv(case, cfg)]
    for name, checkpoint, extra in (
        ("folder", str(conv), []),
        ("official", model_file, [*sizes, *clip]),
    ):
        out = tmp_path / f"{name}.jsonl"
        summary, err = _run(
            ["evaluate", "qa", checkpoint, *common, "--predictions", str(out), *extra], capsys
        )
        assert "assumed" not in err, err
        assert summary["accuracy"] == pytest.approx(results["accuracy"], abs=METRIC_TOL)
        lines = _jsonl(out)
        assert {p["question_id"]: p["prediction"] for p in lines} == official
        for p in lines:
            _check_qa_ranked(p["ranked"], row_of[p["question_id"]], io, answers)

    # umt ask: one video's questions, the top answers with their probabilities
    video = int(io["question_video"][0])
    rows = [i for i in range(len(ann)) if int(io["question_video"][i]) == video]
    path = str(Path(root) / ann[rows[0]]["video"])
    questions = [ann[i]["question"] for i in rows]
    shown = min(5, int(cfg["k_test"]))
    code = main(
        ["ask", path, *questions, "--checkpoint", str(conv), "--answers"]
        + [str(case / cfg["answer_list"]), "--top-k", str(shown), "--json", *_qa_argv(case, cfg)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    replies = [json.loads(line) for line in out.out.strip().splitlines()]
    assert [r["question"] for r in replies] == questions
    for row, reply in zip(rows, replies):
        assert reply["answers"][0]["answer"] == official[ann[row]["question_id"]]
        _check_qa_ranked(reply["answers"], row, io, answers)


def test_qa_token_ids_are_the_official_ones(official_root):
    """Questions ``[CLS]`` + pieces (no ``[SEP]``), answers ``answer [SEP]`` through the same
    tokenizer (one ``[SEP]``, lost when an answer is cut)."""
    from umt.evaluate.qa import tokenize_answers
    from umt.infer.qa import load_qa_model

    cfg, io = load_case(official_root, "eval_qa")
    case = official_root / "eval_qa"
    sizes = {"num_heads": cfg["model"]["num_heads"]}
    sizes["text_num_heads"] = cfg["model"]["text_num_heads"]
    loaded = load_qa_model(
        case / cfg["checkpoint"],
        cfg["num_frames"],
        case / cfg["answer_list"],
        _vocab(case, cfg),
        img_size=cfg["image_res"],
        **sizes,
    )
    ann = json.loads((case / cfg["annotations"]).read_text())
    ids, mask = loaded.tokenizer([e["question"] for e in ann], max_length=cfg["max_q_len"])
    assert torch.equal(ids, io["question_input_ids"].long())
    assert torch.equal(mask, io["question_attention_mask"].long())
    ids, mask = tokenize_answers(loaded.tokenizer, loaded.answers, cfg["max_a_len"], cfg["eos"])
    assert torch.equal(ids, io["answer_input_ids"].long())
    assert torch.equal(mask, io["answer_attention_mask"].long())


# --------------------------------------------------------------------------- multiple choice
def test_mc_official_file(official_root, tmp_path, capsys):
    cfg, io = load_case(official_root, "eval_mc")
    case = official_root / "eval_mc"
    results = json.loads((case / "results.json").read_text())
    out = tmp_path / "mc.jsonl"
    checkpoint = str(case / cfg["checkpoint"])
    sizes = [*_sizes(cfg["model"]), "--img-size", str(cfg["image_res"])]
    summary, err = _run(_video_text_argv("mc", case, cfg, checkpoint, out, *sizes), capsys)
    assert "text_num_heads=" not in err
    assert summary["accuracy"] == pytest.approx(results["acc"], abs=METRIC_TOL)
    lines = _jsonl(out)
    assert len(lines) == io["scores"].shape[0]
    for q, line in enumerate(lines):
        assert (
            line["prediction"]
            == int(io["pred"][q])
            == results["predictions"][q]["pred_ans_ensemble"]
        )
        assert line["answer"] == int(io["answer"][q])
        got = torch.tensor(line["scores"], dtype=torch.float64)
        assert torch.allclose(got, io["scores"][q].double(), atol=SCORE_TOL, rtol=0), q
