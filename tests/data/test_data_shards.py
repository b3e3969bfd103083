"""write_shards / shard_pattern / ``umt data shards``: annotation list -> tar shards -> ShardDataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umt.cli import main
from umt.data import ShardDataset, load_annotations, shard_pattern, write_shards
from umt.data.clip_spec import ClipSpec

SMALL = {"clip": ClipSpec(num_frames=4, input_size=32), "backend": "pyav", "shuffle_shards": False}


def _read_back(pattern: str) -> list[dict]:
    samples = list(ShardDataset(pattern, **SMALL))
    for s in samples:
        assert tuple(s["video"].shape) == (3, 4, 32, 32)
    return samples


@pytest.fixture()
def small_list(tmp_path, synthetic_root) -> Path:
    """The first 7 entries of the synthetic train.csv, with absolute paths."""
    records = load_annotations(synthetic_root / "train.csv")[:7]
    path = tmp_path / "small.csv"
    path.write_text("".join(f"{r.path} {r.label}\n" for r in records))
    return path


def test_write_shards_labels(tmp_path, small_list):
    records = load_annotations(small_list)
    paths = write_shards(small_list, tmp_path / "out", per_shard=3)
    assert [p.name for p in paths] == [f"shard-00000{i}.tar" for i in range(3)]
    pattern = shard_pattern(paths)
    assert pattern == f"{tmp_path / 'out'}/shard-{{000000..000002}}.tar"
    samples = _read_back(pattern)
    assert [s["label"] for s in samples] == [r.label for r in records]
    assert all("caption" not in s for s in samples)
    # a second run into the same folder is refused; another prefix is fine
    with pytest.raises(FileExistsError, match="out"):
        write_shards(small_list, tmp_path / "out", per_shard=3)
    again = write_shards(small_list, tmp_path / "out", per_shard=10, prefix="all")
    assert shard_pattern(again) == str(tmp_path / "out" / "all-000000.tar")
    with pytest.raises(ValueError, match="per_shard"):
        write_shards(small_list, tmp_path / "other", per_shard=0)


def test_write_shards_captions(tmp_path, synthetic_root, good_videos):
    entries = json.loads((synthetic_root / "train.json").read_text())[:4]
    entries.append({"video": str(good_videos[0]), "caption": ["one", "two"], "label": 5})
    entries.append({"video": str(good_videos[1]), "caption": "  padded caption "})
    ann = tmp_path / "vt.json"
    ann.write_text(json.dumps(entries))
    paths = write_shards(ann, tmp_path / "out", per_shard=4, root=str(synthetic_root))
    assert len(paths) == 2
    samples = _read_back(shard_pattern(paths))
    assert len(samples) == 6
    for entry, s in zip(entries[:4], samples):
        assert (s["label"], s["caption"]) == (entry["label"], entry["caption"])
    assert samples[4]["label"] == 5 and samples[4]["caption"] in ("one", "two")
    assert samples[5]["caption"] == "  padded caption " and "label" not in samples[5]


def test_shard_pattern_rejects_gaps():
    with pytest.raises(ValueError, match="consecutive"):
        shard_pattern([Path("/x/shard-000000.tar"), Path("/x/shard-000002.tar")])


def test_cli_shards(tmp_path, small_list, capsys):
    out = tmp_path / "cli"
    argv = ["data", "shards", str(small_list), str(out), "--per-shard", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    pattern = f"{out}/shard-{{000000..000001}}.tar"
    assert f"data.train_list={pattern}" in printed
    assert "data.num_samples=7" in printed and "7 samples in 2 shard" in printed
    labels = [r.label for r in load_annotations(small_list)]
    assert [s["label"] for s in _read_back(pattern)] == labels

    assert main(argv) == 2  # the folder already holds shards
    assert str(out) in capsys.readouterr().err

    bad = tmp_path / "bad.csv"
    missing = tmp_path / "gone.mp4"
    bad.write_text(small_list.read_text() + f"{missing} 1\n")
    assert main(["data", "shards", str(bad), str(tmp_path / "bad_out")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "bad_out").exists()  # checked before anything is written
