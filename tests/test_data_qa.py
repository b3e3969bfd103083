"""Video QA data: annotation formats (official, MSRVTT-QA, MSVD-QA, ActivityNet-QA, MC),
answer weights, QA / MC datasets and collates, and the synthetic QA set (umt.data.qa,
umt.data.synth_qa)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from umt.data.formats.qa import (
    MCEntry,
    QAEntry,
    answers_with_weights,
    load_answer_list,
    load_mc_annotations,
    load_qa_annotations,
)
from umt.data.qa import MCDataset, QADataset, collate_mc, collate_qa
from umt.data.synth import CLASSES
from umt.data.synth_qa import (
    ANSWERS,
    QA_TYPES,
    ensure_synthetic_qa,
    synthetic_qa_chance,
    write_synthetic_qa,
)

SMALL = {"num_frames": 4, "input_size": 32, "backend": "pyav"}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synth(tiny_synthetic) -> Path:
    """24 synthetic clips (16 frames, 32 px): 12 train, 12 val (one per class), with QA."""
    root = tiny_synthetic("qa", train=12, val=12, test=0)
    ensure_synthetic_qa(root)
    return root


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _one_line_error(exc_type, call, file: Path, *needles: str) -> str:
    """Run ``call``; it must raise ``exc_type`` with one line naming ``file`` and ``needles``."""
    with pytest.raises(exc_type) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert str(file) in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --------------------------------------------------------------------------- formats
def test_load_umt_json_and_jsonl(tmp_path):
    entries = [
        {"video": "a.mp4", "question": "what is it?", "answer": "cat", "question_id": "q0"},
        {"video": "/abs/b.mp4", "question": "who?", "answer": ["x", "x", "y"], "type": "who"},
    ]
    path = _write(tmp_path / "ann" / "test.json", entries)
    out = load_qa_annotations(path)
    assert out == [
        QAEntry(os.fspath(tmp_path / "ann" / "a.mp4"), "what is it?", ["cat"], "q0", None),
        QAEntry("/abs/b.mp4", "who?", ["x", "x", "y"], 1, "who"),  # no id: the entry index
    ]
    assert load_qa_annotations(path, root=tmp_path / "vids")[0].video == os.fspath(
        tmp_path / "vids" / "a.mp4"
    )
    jsonl = _write(tmp_path / "ann" / "test.jsonl", "\n".join(json.dumps(e) for e in entries))
    assert load_qa_annotations(jsonl, fmt="umt") == out
    lines_as_json = _write(tmp_path / "ann" / "lines.json", jsonl.read_text())
    assert load_qa_annotations(lines_as_json) == out  # JSON lines under a .json name


def test_load_msrvtt_raw(tmp_path):
    raw = [
        {"question": "what is a man doing?", "answer": "cook", "video_id": 7010, "id": 12,
         "category_id": 0},
        {"question": "who talks?", "answer": "man", "video_id": 7011, "id": 13, "category_id": 1},
    ]  # fmt: skip
    path = _write(tmp_path / "test_qa.json", raw)
    out = load_qa_annotations(path)  # detected from "video_id" + "category_id"
    assert [e.video for e in out] == [
        os.fspath(tmp_path / "video7010.mp4"),
        os.fspath(tmp_path / "video7011.mp4"),
    ]
    assert [e.question_id for e in out] == [12, 13]
    assert [e.answers for e in out] == [["cook"], ["man"]]
    assert [e.answer_type for e in out] == ["0", "1"]
    assert load_qa_annotations(path, fmt="msrvtt_qa", video_ext="webm")[0].video.endswith(
        "video7010.webm"
    )


def test_load_msvd_raw_with_mapping(tmp_path):
    raw = [
        {"question": "what is the cat doing?", "answer": "play", "video_id": 2, "id": 0},
        {"question": "what jumps?", "answer": "dog", "video_id": 1, "id": 1},
    ]
    path = _write(tmp_path / "ann" / "val_qa.json", raw)
    _write(tmp_path / "ann" / "youtube_mapping.txt", "-4wsuPCjDBc_5_15 vid1\nabc_1_9 vid2\n")
    out = load_qa_annotations(path, root=tmp_path / "clips")  # detected: no category_id
    assert [e.video for e in out] == [
        os.fspath(tmp_path / "clips" / "abc_1_9.avi"),
        os.fspath(tmp_path / "clips" / "-4wsuPCjDBc_5_15.avi"),
    ]
    assert [e.question_id for e in out] == [0, 1]
    # the mapping given explicitly (elsewhere), and another extension
    other = _write(tmp_path / "maps" / "m.txt", "zz_0_1 vid1\nyy_2_3 vid2\n")
    out = load_qa_annotations(path, fmt="msvd-qa", mapping=other, video_ext=".mp4")
    assert [Path(e.video).name for e in out] == ["yy_2_3.mp4", "zz_0_1.mp4"]
    assert load_qa_annotations(path, mapping={1: "p", 2: "q"})[0].video.endswith("q.avi")
    # a video id missing from the mapping
    _one_line_error(
        ValueError, lambda: load_qa_annotations(path, mapping={1: "p"}), path, "entry 0", "2"
    )
    # no mapping beside the file
    lonely = _write(tmp_path / "lonely" / "val_qa.json", raw)
    _one_line_error(FileNotFoundError, lambda: load_qa_annotations(lonely), lonely, "mapping")


def test_load_anet_pair(tmp_path):
    questions = [
        {"video_name": "JDg--pjY5gg", "question_id": "v_JDg--pjY5gg_1", "question": "is it day"},
        {"video_name": "abcdefghijk", "question_id": "v_abcdefghijk_0", "question": "what color"},
    ]
    answers = [  # another order than the questions
        {"question_id": "v_abcdefghijk_0", "answer": "red", "type": 4},
        {"question_id": "v_JDg--pjY5gg_1", "answer": "yes", "type": 3},
    ]
    q = _write(tmp_path / "test_q.json", questions)
    a = _write(tmp_path / "test_a.json", answers)
    out = load_qa_annotations(q)
    assert out == load_qa_annotations(a)  # either file finds the other
    assert out == load_qa_annotations(q, fmt="anet-qa")
    assert out == [
        QAEntry(os.fspath(tmp_path / "v_JDg--pjY5gg.mp4"), "is it day", ["yes"], "v_JDg--pjY5gg_1",
                "3"),
        QAEntry(os.fspath(tmp_path / "v_abcdefghijk.mp4"), "what color", ["red"],
                "v_abcdefghijk_0", "4"),
    ]  # fmt: skip
    # an answer without its question, a question without answer, a missing partner
    _write(tmp_path / "x_q.json", questions[:1])
    _write(tmp_path / "x_a.json", answers)
    _one_line_error(
        ValueError,
        lambda: load_qa_annotations(tmp_path / "x_q.json"),
        tmp_path / "x_a.json",
        "entry 0",
        "no question",
    )
    _write(tmp_path / "y_q.json", questions)
    _write(tmp_path / "y_a.json", answers[:1])
    _one_line_error(
        ValueError,
        lambda: load_qa_annotations(tmp_path / "y_q.json"),
        tmp_path / "y_q.json",
        "entry 0",
        "no answer",
    )
    _write(tmp_path / "z_q.json", questions)
    _one_line_error(
        FileNotFoundError,
        lambda: load_qa_annotations(tmp_path / "z_q.json"),
        tmp_path / "z_q.json",
        "z_a.json",
    )


def test_raw_extension_fallback(tmp_path):
    raw = [
        {"question": "q?", "answer": "a", "video_id": 0, "id": 0, "category_id": 0},
        {"question": "q?", "answer": "a", "video_id": 1, "id": 1, "category_id": 0},
        {"question": "q?", "answer": "a", "video_id": 2, "id": 2, "category_id": 0},
    ]
    path = _write(tmp_path / "ann.json", raw)
    vids = tmp_path / "vids"
    vids.mkdir()
    (vids / "video0.webm").write_bytes(b"")  # only another extension: used
    (vids / "video1.webm").write_bytes(b"")  # two other extensions: ambiguous, default kept
    (vids / "video1.mkv").write_bytes(b"")
    (vids / "video2.mp4").write_bytes(b"")  # the default exists
    (vids / "video2.avi").write_bytes(b"")
    names = [Path(e.video).name for e in load_qa_annotations(path, root=vids)]
    assert names == ["video0.webm", "video1.mp4", "video2.mp4"]
    names = [Path(e.video).name for e in load_qa_annotations(path, root=vids, video_ext="avi")]
    assert names == ["video0.avi", "video1.avi", "video2.avi"]  # explicit: no fallback
    missing = [Path(e.video).name for e in load_qa_annotations(path, root=tmp_path / "nope")]
    assert missing == ["video0.mp4", "video1.mp4", "video2.mp4"]


GOOD = {"video": "a.mp4", "question": "what?", "answer": "x", "question_id": 1}


@pytest.mark.parametrize(
    ("content", "error", "needles"),
    [
        ("{not json", ValueError, ["not valid JSON"]),
        ("", ValueError, ["empty"]),
        ('{"video": "a.mp4"}', ValueError, ["JSON list", "dict"]),
        ("[]", ValueError, ["empty"]),
        ([GOOD, 3], ValueError, ["entry 1", "int", "not an object"]),
        ([GOOD, {"video": "b.mp4", "answer": "x"}], ValueError, ["entry 1", "'question'"]),
        ([GOOD, {**GOOD, "question_id": 2, "answer": 5}], ValueError, ["entry 1", "'answer'"]),
        ([{**GOOD, "answer": ["a", 1]}], ValueError, ["entry 0", "list of strings"]),
        ([{**GOOD, "answer": []}], ValueError, ["entry 0", "'answer'"]),
        ([{**GOOD, "answer": " "}], ValueError, ["entry 0", "empty"]),
        ([{**GOOD, "question": 7}], ValueError, ["entry 0", "'question'", "string"]),
        ([{**GOOD, "question_id": 1.5}], ValueError, ["entry 0", "'question_id'"]),
        ([GOOD, {**GOOD, "video": "b.mp4"}], ValueError, ["entry 1", "repeats entry 0"]),
        ([{"video": "a.mp4", "caption": ["x", "y"], "answer": 0}], ValueError, ["umt evaluate mc"]),
        ([{"foo": 1}], ValueError, ["cannot tell", "fmt="]),
    ],
)
def test_qa_errors_one_line(tmp_path, content, error, needles):
    path = _write(tmp_path / "bad.json", content)
    _one_line_error(error, lambda: load_qa_annotations(path), path, *needles)


def test_qa_errors_other(tmp_path):
    missing = tmp_path / "missing.json"
    _one_line_error(FileNotFoundError, lambda: load_qa_annotations(missing), missing, "not found")
    bad_line = _write(tmp_path / "x.jsonl", json.dumps(GOOD) + "\n{oops\n")
    _one_line_error(ValueError, lambda: load_qa_annotations(bad_line), bad_line, "line 2")
    raw = _write(tmp_path / "r.json", [{"question": "q", "answer": "a", "video_id": "x7",
                                        "id": 0, "category_id": 1}])  # fmt: skip
    _one_line_error(ValueError, lambda: load_qa_annotations(raw), raw, "entry 0", "video_id")
    with pytest.raises(ValueError, match="unknown QA format"):
        load_qa_annotations(raw, fmt="tgif")


def test_load_answer_list(tmp_path):
    path = _write(tmp_path / "answers.json", ["yes", "no", "red"])
    assert load_answer_list(path) == ["yes", "no", "red"]
    dup = _write(tmp_path / "dup.json", ["yes", "no", "blue", "no", "blue"])
    msg = _one_line_error(ValueError, lambda: load_answer_list(dup), dup, "'no'", "entry 3")
    assert "blue" not in msg  # the first duplicate only
    empty = _write(tmp_path / "empty.json", [])
    _one_line_error(ValueError, lambda: load_answer_list(empty), empty, "empty")
    blank = _write(tmp_path / "blank.json", ["yes", ""])
    _one_line_error(ValueError, lambda: load_answer_list(blank), blank, "entry 1")
    number = _write(tmp_path / "number.json", ["yes", 3])
    _one_line_error(ValueError, lambda: load_answer_list(number), number, "entry 1")


def test_answers_with_weights():
    assert answers_with_weights(["a", "a", "b"]) == (["a", "b"], [2 / 3, 1 / 3])
    answers, weights = answers_with_weights(["b", "a", "b", "c"])
    assert answers == ["b", "a", "c"]  # first appearance, not sorted
    assert weights == [0.5, 0.25, 0.25]
    assert answers_with_weights(["only"]) == (["only"], [1.0])
    with pytest.raises(ValueError):
        answers_with_weights([])


def test_load_mc_annotations(tmp_path):
    entries = [
        {"video": "v0.mp4", "caption": ["a", "b", "c", "d", "e"], "answer": 2},
        {"video": "v1.mp4", "caption": ["p", "q", "r"], "answer": 0},  # other count: allowed
    ]
    path = _write(tmp_path / "mc.json", entries)
    out = load_mc_annotations(path)
    assert out == [
        MCEntry(os.fspath(tmp_path / "v0.mp4"), ["a", "b", "c", "d", "e"], 2),
        MCEntry(os.fspath(tmp_path / "v1.mp4"), ["p", "q", "r"], 0),
    ]
    assert [e.num_options for e in out] == [5, 3]
    for bad, needles in [
        ({"video": "v.mp4", "caption": ["a", "b"], "answer": 2}, ["out of range"]),
        ({"video": "v.mp4", "caption": ["a", "b"], "answer": True}, ["integer"]),
        ({"video": "v.mp4", "caption": ["a", "b"], "answer": "1"}, ["integer"]),
        ({"video": "v.mp4", "caption": "a", "answer": 0}, ["'caption'"]),
        ({"video": "v.mp4", "caption": [], "answer": 0}, ["'caption'"]),
        ({"video": "v.mp4", "caption": ["a", 2], "answer": 0}, ["'caption'"]),
        ({"caption": ["a"], "answer": 0}, ["'video'"]),
    ]:
        file = _write(tmp_path / "bad_mc.json", [entries[0], bad])
        _one_line_error(
            ValueError, lambda f=file: load_mc_annotations(f), file, "entry 1", *needles
        )


# --------------------------------------------------------------------------- collates
def _sample(index: int, answers: list[str], weights: list[float], fault: str | None = None):
    s = {
        "question": f"q{index}",
        "answers": answers,
        "weights": weights,
        "answer": answers[0],
        "answer_type": None,
        "question_id": f"id{index}",
        "index": index,
        "path": f"/v/{index}.mp4",
        "faults": [],
    }
    if fault is None:
        s["video"] = torch.full((3, 2, 8, 8), float(index))
    else:
        s["fault"] = fault
    return s


def test_collate_qa_shapes_counts_weights():
    samples = [
        _sample(0, ["a", "b"], [0.75, 0.25]),
        _sample(1, ["c"], [1.0], fault="cannot open"),
        _sample(2, ["d"], [1.0]),
        _sample(3, ["e", "f", "g"], [0.5, 0.25, 0.25]),
    ]
    samples[2]["faults"] = [("/v/broken.mp4", "too short")]  # replaced while training
    batch = collate_qa(samples)
    assert batch["video"].shape == (3, 3, 2, 8, 8)
    assert batch["video"][:, 0, 0, 0, 0].tolist() == [0.0, 2.0, 3.0]
    assert batch["question"] == ["q0", "q2", "q3"]
    assert batch["answers"] == ["a", "b", "d", "e", "f", "g"]
    assert batch["weights"].dtype == torch.float32
    assert batch["weights"].tolist() == [0.75, 0.25, 1.0, 0.5, 0.25, 0.25]
    assert batch["counts"].dtype == torch.long and batch["counts"].tolist() == [2, 1, 3]
    assert batch["answer"] == ["a", "d", "e"]
    assert batch["question_id"] == ["id0", "id2", "id3"]
    assert batch["index"].tolist() == [0, 2, 3]
    assert batch["path"] == ["/v/0.mp4", "/v/2.mp4", "/v/3.mp4"]
    assert batch["faults"] == [(1, "/v/1.mp4", "cannot open"), (2, "/v/broken.mp4", "too short")]
    assert int(batch["skipped"]) == 2
    # per-question weights sum to 1 after splitting by counts
    sums = [float(w.sum()) for w in batch["weights"].split(batch["counts"].tolist())]
    assert sums == pytest.approx([1.0, 1.0, 1.0])
    empty = collate_qa([_sample(5, ["x"], [1.0], fault="missing")])
    assert empty["video"] is None
    assert empty["counts"].shape == (0,) and empty["weights"].shape == (0,)
    assert empty["faults"] == [(5, "/v/5.mp4", "missing")]


# --------------------------------------------------------------------------- datasets
def test_qadataset_train_items(synth):
    ds = QADataset(synth / "qa" / "train.json", train=True, seed=3, **SMALL)
    entries = load_qa_annotations(synth / "qa" / "train.json")
    assert len(ds) == len(entries) == 60
    item = ds[(0, 5)]
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert item["question"] == entries[5].question
    assert item["answers"] == entries[5].answers and item["weights"] == [1.0]
    assert item["answer"] == entries[5].answers[0]
    assert item["question_id"] == entries[5].question_id
    assert item["answer_type"] == entries[5].answer_type
    assert item["index"] == 5 and item["faults"] == []
    assert os.path.samefile(item["path"], entries[5].video)
    again = ds[(0, 5)]
    assert torch.equal(item["video"], again["video"])  # per-sample seed
    ds.set_epoch(1)
    other = ds[5]
    assert not torch.equal(item["video"], other["video"])  # another epoch, another draw
    batch = collate_qa([ds[(0, i)] for i in range(3)])
    assert batch["video"].shape == (3, 3, 4, 32, 32)
    assert batch["counts"].tolist() == [1, 1, 1]


def test_qadataset_eval_broken_not_replaced(synth, tmp_path):
    val = load_qa_annotations(synth / "qa" / "val.json")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 64)
    entries = [
        val[0],
        QAEntry(os.fspath(tmp_path / "missing.mp4"), "what?", ["red", "red", "blue"], "m0"),
        QAEntry(os.fspath(corrupt), "which way?", ["left"], "c0", "direction"),
        val[1],
    ]
    with pytest.warns(RuntimeWarning):
        ds = QADataset(entries, train=False, **SMALL)
        items = [ds[i] for i in range(4)]
    assert items[0]["video"].shape == (3, 4, 32, 32)
    for i in (1, 2):
        assert "video" not in items[i] and items[i]["fault"]
        assert items[i]["question_id"] == entries[i].question_id  # kept, not replaced
        assert items[i]["path"] == entries[i].video
    assert items[1]["answers"] == ["red", "blue"] and items[1]["answer"] == "red"
    assert ds.faults.failures == 2 and ds.faults.num_skipped_files == 2
    assert "2 of 4 videos skipped" in ds.fault_summary()
    batch = collate_qa(items)
    assert batch["video"].shape[0] == 2
    assert batch["question_id"] == [val[0].question_id, val[1].question_id]
    assert [f[0] for f in batch["faults"]] == [1, 2]
    assert all(f[1] == entries[f[0]].video for f in batch["faults"])
    # middle sampling + resize: deterministic in eval
    assert torch.equal(ds[0]["video"], items[0]["video"])


def test_qadataset_train_replaces_broken(synth, tmp_path):
    val = load_qa_annotations(synth / "qa" / "val.json")
    broken = QAEntry(os.fspath(tmp_path / "gone.mp4"), "broken question?", ["zzz"], "b0")
    entries = [broken, *val[:4]]
    with pytest.warns(RuntimeWarning):
        ds = QADataset(entries, train=True, **SMALL)
        item = ds[(0, 0)]
    assert "video" in item and item["video"].shape == (3, 4, 32, 32)
    assert item["faults"] and item["faults"][0][0] == broken.video
    # the replacement's own question and answers come with its video
    replacement = next(e for e in val[:4] if e.question_id == item["question_id"])
    assert item["path"] == replacement.video
    assert item["question"] == replacement.question and item["question"] != broken.question
    assert item["answers"] == replacement.answers
    assert item["question_id"] == replacement.question_id
    assert item["index"] == 0


def test_mcdataset(synth, tmp_path):
    entries = load_mc_annotations(synth / "mc" / "val.json")
    ds = MCDataset(entries[:3] + [MCEntry(os.fspath(tmp_path / "no.mp4"), ["a", "b"], 1)],
                   num_frames=4, input_size=32, backend="pyav")  # fmt: skip
    assert ds.option_counts == {5: 3, 2: 1}
    item = ds[1]
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.uint8
    assert item["options"] == entries[1].options and item["answer"] == entries[1].answer
    broken = ds[3]
    assert "video" not in broken and broken["fault"] and broken["options"] == ["a", "b"]
    batch = collate_mc([ds[i] for i in range(4)])
    assert batch["video"].shape == (3, 3, 4, 32, 32)
    assert batch["answer"].tolist() == [e.answer for e in entries[:3]]
    assert batch["num_options"].tolist() == [5, 5, 5]
    assert batch["faults"] == [(3, os.fspath(tmp_path / "no.mp4"), broken["fault"])]
    normalized = MCDataset(synth / "mc" / "val.json", normalize=True, **SMALL)[0]["video"]
    assert normalized.dtype == torch.float32 and normalized.min() < 0


# --------------------------------------------------------------------------- synthetic QA
def _class_of(caption: str) -> int | None:
    """The synthetic class a caption describes (None: no class)."""
    words = caption.split()
    for label, spec in enumerate(CLASSES):
        if words[-3:] == [spec["category"], "moves", spec["motion"]]:
            return label
    return None


def test_synthetic_qa_files_valid(synth):
    answer_list = load_answer_list(synth / "qa" / "answer_list.json")
    assert answer_list == list(ANSWERS) and len(set(answer_list)) == 17
    clips = json.loads((synth / "val.json").read_text())
    val = load_qa_annotations(synth / "qa" / "val.json")
    train = load_qa_annotations(synth / "qa" / "train.json")
    assert all(e.answers[0] in answer_list for e in val + train)
    assert all(os.path.isfile(e.video) for e in val + train)
    # questions per clip and per type
    per_clip = {}
    for e in val:
        per_clip.setdefault(os.path.normpath(e.video), []).append(e)
    assert len(per_clip) == len(clips) == 12
    for clip in clips:
        qs = per_clip[os.path.normpath(synth / clip["video"])]
        types = [e.answer_type for e in qs]
        assert types == ["category", "colour", "motion", "fill", "size"]
        stem = Path(clip["video"]).stem
        assert [e.question_id for e in qs] == [f"val-{stem}-{t}" for t in types]
        by = {e.answer_type: e.answers[0] for e in qs}
        spec = CLASSES[clip["label"]]
        assert (by["category"], by["motion"]) == (spec["category"], spec["motion"])
        words = clip["caption"].split()  # "a small striped red ring moves left"
        assert by["colour"] in words and by["size"] == words[1]
        assert by["fill"] == ("striped" if "striped" in words else "plain")
    counts = {t: sum(e.answer_type == t for e in val) for t in QA_TYPES}
    assert counts == dict.fromkeys(QA_TYPES, 12)
    assert len({e.question_id for e in val + train}) == len(val) + len(train)
    # multiple choice: 5 distinct options, the right one is the clip's caption, the others
    # differ from it only in the actor's category and / or motion
    mc = load_mc_annotations(synth / "mc" / "val.json")
    assert len(mc) == len(clips)
    for entry, clip in zip(mc, clips):
        assert os.path.samefile(entry.video, synth / clip["video"])
        assert entry.num_options == 5 and len(set(entry.options)) == 5
        assert entry.options[entry.answer] == clip["caption"]
        assert _class_of(clip["caption"]) == clip["label"]
        negatives = [o for k, o in enumerate(entry.options) if k != entry.answer]
        classes = [_class_of(o) for o in negatives]
        assert None not in classes and clip["label"] not in classes  # other classes
        assert len(set(classes)) == 4
        head = clip["caption"].split()[:-3]  # size, fill and colour words: the same
        assert all(o.split()[:-3] == head for o in negatives)
    assert len({e.answer for e in mc}) > 1  # the right position varies


def test_synthetic_qa_deterministic_and_idempotent(synth, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("train.json", "val.json"):
        shutil.copy(synth / name, copy / name)
    first = write_synthetic_qa(copy)
    blobs = {k: p.read_bytes() for k, p in first.items()}
    assert blobs["val"] == (synth / "qa" / "val.json").read_bytes()
    assert blobs["mc_val"] == (synth / "mc" / "val.json").read_bytes()
    second = write_synthetic_qa(copy)
    assert {k: p.read_bytes() for k, p in second.items()} == blobs
    reseeded = write_synthetic_qa(copy, seed=1)
    assert reseeded["mc_val"].read_bytes() != blobs["mc_val"]
    assert reseeded["val"].read_bytes() == blobs["val"]
    # ensure: writes once, then leaves the files alone; a new seed rewrites
    paths = ensure_synthetic_qa(copy)
    marker = copy / "qa" / ".complete"
    stamp = (marker.stat().st_mtime_ns, paths["mc_val"].stat().st_mtime_ns)
    assert paths["mc_val"].read_bytes() == blobs["mc_val"]
    assert ensure_synthetic_qa(copy) == paths
    assert (marker.stat().st_mtime_ns, paths["mc_val"].stat().st_mtime_ns) == stamp
    ensure_synthetic_qa(copy, seed=1)
    assert json.loads(marker.read_text())["seed"] == 1
    assert not list((copy / "qa").glob("*.tmp")) and not list((copy / "mc").glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="not a synthetic dataset"):
        write_synthetic_qa(tmp_path / "empty")


def test_synthetic_qa_chance(synth):
    val = load_qa_annotations(synth / "qa" / "val.json")
    train = load_qa_annotations(synth / "qa" / "train.json")
    chance = synthetic_qa_chance(val, synth / "qa" / "answer_list.json", train)
    assert chance["uniform"] == pytest.approx(100 / 17)
    assert chance["questions"] == 60 and chance["answers"] == 17
    # one clip per class: the category and motion questions' majority answers are right on
    # 3 and 4 of the 12 clips; the nuisances' majorities are counted on the train clips
    per_type = {k: v["accuracy"] for k, v in chance["per_type"].items()}
    assert per_type["category"] == pytest.approx(25.0)
    assert per_type["motion"] == pytest.approx(100 / 3)
    expected = 0.0
    for kind in QA_TYPES:
        ref = [e.answers[0] for e in train if e.answer_type == kind]
        top = min(set(ref), key=lambda a: (-ref.count(a), a))
        assert chance["per_type"][kind]["majority"] == top
        expected += sum(e.answers[0] == top for e in val if e.answer_type == kind)
    assert chance["majority_per_type"] == pytest.approx(100 * expected / 60)
