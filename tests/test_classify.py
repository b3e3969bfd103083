"""Shipped class names, label files, and ``umt classify`` on real (tiny) videos with a random
tiny classifier saved in umt's format."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from umt.cli import main
from umt.data.formats.labels import (
    class_names,
    guess_class_names,
    guess_dataset,
    load_class_names,
)
from umt.infer import classify_videos, load_classifier
from umt.models import VideoViT

# Kinetics renamed these K400 classes; K710 lists them under the new names (K400 order kept).
_K400_RENAMED_IN_K710 = {
    "balloon blowing": "inflating balloons",
    "changing wheel": "changing wheel (not on bike)",
    "cooking sausages": "cooking sausages (not on barbeque)",
    "drinking": "sipping cup",
    "dying hair": "dyeing hair",
    "garbage collecting": "person collecting garbage",
    "hugging": "hugging (not baby)",
    "making bed": "making the bed",
    "opening bottle": "opening bottle (not wine)",
    "picking fruit": "picking apples",
    "skiing (not slalom or crosscountry)": "skiing mono",
    "sniffing": "smelling feet",
    "tying tie": "tying necktie",
}


# --------------------------------------------------------------------------- shipped lists
def test_shipped_lists_have_the_official_counts_and_order():
    counts = {"k400": 400, "k600": 600, "k700": 700, "k710": 710, "ssv2": 174, "mit": 339}
    for dataset, count in counts.items():
        names = class_names(dataset)
        assert len(names) == count and len(set(names)) == count, dataset
        assert all(n and n == n.strip() for n in names), dataset
    for dataset in ("k400", "k600", "k700", "ssv2"):  # alphabetical by official name
        assert class_names(dataset) == sorted(class_names(dataset)), dataset
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    assert class_names("k400") == list(_KINETICS400_CATEGORIES)
    assert class_names("k600")[:2] == ["abseiling", "acting in play"]
    assert class_names("k700")[-1] == "zumba" and class_names("k700")[19] == "backflip (human)"
    ssv2 = class_names("ssv2")
    assert ssv2[0] == "Approaching something with your camera"
    assert ssv2[65] == "Pretending to be tearing something that is not tearable"
    assert ssv2[102] == "Putting number of something onto something"
    assert ssv2[173] == "Wiping something off of something"
    assert class_names("mit")[:3] == ["clapping", "praying", "dropping"]
    assert class_names("mit")[-1] == "typing"


def test_k710_starts_with_the_k400_classes_in_k400_order():
    k400, k710 = class_names("k400"), class_names("k710")
    assert k710[:400] == [_K400_RENAMED_IN_K710.get(n, n) for n in k400]
    assert k710[400] == "poaching eggs" and k710[-1] == "bull fighting"
    known = set(k400) | set(class_names("k600")) | set(class_names("k700")) | {"throwing ball"}
    assert set(k710) <= known
    k700 = {
        n if not n.startswith("throwing ball (") else "throwing ball" for n in class_names("k700")
    }
    assert k700 <= set(k710)


def test_guess_and_dataset_aliases():
    assert guess_class_names(400) == class_names("k400")
    assert guess_class_names(174) == class_names("ssv2")
    assert [guess_dataset(n) for n in (600, 700, 710, 339, 5)] == [
        "k600",
        "k700",
        "k710",
        "mit",
        None,
    ]
    assert guess_class_names(5) is None
    assert class_names("Kinetics-400") == class_names("k400")
    assert class_names("sthv2") == class_names("ssv2")
    with pytest.raises(ValueError, match="k400, k600, k700, k710, ssv2, mit"):
        class_names("ucf101")


def test_load_class_names_accepts_text_and_json(tmp_path):
    text = tmp_path / "names.txt"
    text.write_bytes(b"cat\r\n dog \r\nbig bird\r\n\r\n\r\n")
    assert load_class_names(text) == ["cat", "dog", "big bird"]
    as_list = tmp_path / "names.json"
    as_list.write_text(json.dumps(["cat", "dog"]))
    assert load_class_names(as_list) == ["cat", "dog"]
    mapping = tmp_path / "labels.json"  # something-something-v2-labels.json style
    mapping.write_text(json.dumps({"Pushing b": "1", "Zooming": 2, "Approaching a": "0"}))
    assert load_class_names(mapping) == ["Approaching a", "Pushing b", "Zooming"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("gap.json", {"a": 0, "b": 2}, "1 is missing"),
        ("twice.json", {"a": 0, "b": 0}, "index 0 is given to both"),
        ("float.json", {"a": 0.5}, "integer index"),
        ("number.json", 3, "holds a JSON int"),
        ("mixed.json", ["a", 3], "non-empty class name strings"),
        ("empty.txt", "\n\n", "no class names"),
        ("hole.txt", "a\n\nb\n", "line 2 is empty"),
        ("broken.json", "{", "invalid JSON"),
    ],
)
def test_load_class_names_refuses_other_shapes(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        load_class_names(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- classify
def _write_video(path: Path, frames: int, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8, options={"crf": "18"})
        stream.width, stream.height = size + 16, size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            pixels = rng.integers(0, 256, (size, size + 16, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _tiny(num_classes: int, seed: int) -> VideoViT:
    torch.manual_seed(seed)
    model = VideoViT(
        img_size=32,
        patch_size=16,
        num_frames=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=num_classes,
        final_norm=False,
    )
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # peaked scores: orders and averages are informative
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    out = {
        "a": _write_video(root / "a.mp4", 12, 48, 0),
        "b": _write_video(root / "b clip.mp4", 20, 40, 1),
        "bad": root / "bad.mp4",
        "labels": root / "labels.txt",
    }
    out["bad"].write_bytes(b"\x00not a video at all")
    out["labels"].write_text("cat\ndog\nbird\nfish\ncow\n")
    _tiny(5, 0).save_pretrained(root / "five")
    _tiny(400, 1).save_pretrained(root / "k400like")
    encoder = VideoViT(img_size=32, patch_size=16, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    encoder.save_pretrained(root / "encoder")
    out.update(five=root / "five", k400=root / "k400like", encoder=root / "encoder")
    return out


def _blocks(stdout: str) -> dict[str, list[tuple[float, str]]]:
    blocks: dict[str, list[tuple[float, str]]] = {}
    for line in stdout.splitlines():
        if not line.startswith("  "):
            current = line.removesuffix(":")
            blocks[current] = []
        else:
            score, label = line.strip().split("  ", 1)
            blocks[current].append((float(score), label))
    return blocks


def test_classify_prints_top_k_with_names_from_a_labels_file(files, capsys):
    videos = [str(files["a"]), str(files["b"])]
    code = main(
        [
            "classify",
            *videos,
            "--checkpoint",
            str(files["five"]),
            "--labels",
            str(files["labels"]),
            "--top-k",
            "3",
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    blocks = _blocks(out.out)
    assert list(blocks) == videos
    expected = {
        r.path: r
        for r in classify_videos(
            load_classifier(files["five"]), videos, ["cat", "dog", "bird", "fish", "cow"], top_k=3
        )
    }
    for video, lines in blocks.items():
        assert len(lines) == 3
        assert [s for s, _ in lines] == sorted((s for s, _ in lines), reverse=True)
        assert [label for _, label in lines] == [p.label for p in expected[video].top]
        assert [s for s, _ in lines] == [round(p.score, 3) for p in expected[video].top]
    assert {label for lines in blocks.values() for _, label in lines} <= {
        "cat",
        "dog",
        "bird",
        "fish",
        "cow",
    }


def test_views_average_the_per_view_softmax(files):
    from umt.data.clip_spec import ClipSpec
    from umt.data.datasets import MultiViewDataset
    from umt.data.formats.records import VideoRecord

    model = load_classifier(files["five"])
    (result,) = classify_videos(model, [files["b"]], top_k=5, views=(2, 3))
    assert result.views == 6
    views = MultiViewDataset(
        [VideoRecord(str(files["b"]))],
        clip=ClipSpec(num_frames=4, input_size=32, num_clips=2, num_crops=3),
    )[0]["video"]
    with torch.no_grad():
        logits = model(views)  # [6, 5]
    mean_softmax = logits.softmax(-1).mean(0)
    assert {p.index: p.score for p in result.top} == pytest.approx(
        dict(enumerate(mean_softmax.tolist())), abs=1e-6
    )
    assert not torch.allclose(
        logits.mean(0).softmax(-1), mean_softmax, atol=1e-4
    )  # the order matters
    (single,) = classify_videos(model, [files["b"]], top_k=5)
    assert single.views == 1 and [p.score for p in single.top] != [p.score for p in result.top]


def test_classify_guesses_kinetics_names_from_the_class_count(files, capsys):
    code = main(
        ["classify", str(files["a"]), "--checkpoint", str(files["k400"]), "--json", "--top-k", "4"]
    )
    out = capsys.readouterr()
    assert code == 0
    assert "Kinetics-400 (guessed from the head's 400 classes)" in out.err
    (line,) = out.out.splitlines()
    record = json.loads(line)
    assert record["path"] == str(files["a"]) and record["views"] == 1
    k400 = class_names("k400")
    assert len(record["top_k"]) == 4
    for item in record["top_k"]:
        assert item["label"] == k400[item["index"]]
    scores = [item["score"] for item in record["top_k"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_classify_without_names_prints_indices_and_says_so_once(files, capsys):
    videos = [str(files["a"]), str(files["b"])]
    code = main(["classify", *videos, "--checkpoint", str(files["five"]), "--top-k", "5"])
    out = capsys.readouterr()
    assert code == 0
    assert out.err.count("printing class indices") == 1 and len(out.err.splitlines()) == 1
    for lines in _blocks(out.out).values():
        assert sorted(int(label) for _, label in lines) == [0, 1, 2, 3, 4]
        assert sum(s for s, _ in lines) == pytest.approx(1.0, abs=3e-3)


def test_a_bad_video_is_reported_and_the_others_still_run(files, capsys):
    videos = [str(files["a"]), str(files["bad"]), str(files["b"])]
    code = main(
        [
            "classify",
            *videos,
            "--checkpoint",
            str(files["five"]),
            "--labels",
            str(files["labels"]),
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in out.out.splitlines()]
    assert [r["path"] for r in records] == videos
    assert "error" in records[1] and "top_k" not in records[1]
    assert all(len(r["top_k"]) == 5 for r in (records[0], records[2]))
    bad_lines = [line for line in out.err.splitlines() if str(files["bad"]) in line]
    assert len(bad_lines) == 1 and "cannot classify" in bad_lines[0]
    assert "1 of 3 videos could not be classified" in out.err


def test_classify_refuses_what_it_cannot_use(files, capsys, tmp_path):
    code = main(["classify", str(files["a"]), "--checkpoint", str(files["encoder"])])
    err = capsys.readouterr().err
    assert code == 2 and "without a classification head" in err and len(err.splitlines()) == 1
    wrong = tmp_path / "three.txt"
    wrong.write_text("a\nb\nc\n")
    code = main(
        ["classify", str(files["a"]), "--checkpoint", str(files["five"]), "--labels", str(wrong)]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(wrong) in err and "3 class names" in err and "5 classes" in err
    code = main(["classify", str(files["a"]), "--checkpoint", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint not found" in err
    with pytest.raises(SystemExit) as info:
        main(["classify", str(files["a"]), "--checkpoint", str(files["five"]), "--views", "4by3"])
    assert info.value.code == 2 and "CLIPSxCROPS" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code = main(
            ["classify", str(files["a"]), "--checkpoint", str(files["five"]), "--device", "cuda"]
        )
        assert code == 2 and "CUDA is not available" in capsys.readouterr().err
