"""Broken inputs are skipped, counted and reported; too many stop the run; no memory leak."""

from __future__ import annotations

import gc
import os
import warnings

import psutil
import pytest
import torch
from torch.utils.data import DataLoader

from umt.cli import main as cli_main
from umt.data import FaultCounter, TooManyFaultsError, VideoDataset, collate_videos, read_frames
from umt.data.check import check_annotations
from umt.data.clip_spec import ClipSpec
from umt.data.decode import VideoDecodeError

SMALL = {"clip": ClipSpec(num_frames=8, input_size=32), "backend": "pyav"}
EXPECTED_REASON = {
    "truncated": "cannot open",
    "empty": "empty file",
    "text": "cannot open",
    "audio_only": "no video stream",
    "one_frame": "too short",
    "missing": "file not found",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_REASON))
def test_each_fault_has_a_clear_error(fault_corpus, kind):
    path = fault_corpus[kind]
    if kind == "one_frame":
        assert read_frames(path, [0], backend="pyav").shape[0] == 1
        with pytest.raises(VideoDecodeError, match=r"one_frame\.mp4.*out of range"):
            read_frames(path, [1], backend="pyav")
        return
    with pytest.raises(VideoDecodeError) as err:
        read_frames(path, [0], backend="pyav")
    assert path.name in str(err.value) and EXPECTED_REASON[kind] in str(err.value)


def _mixed_list(tmp_path, good_videos, fault_corpus):
    lines = [f"{v} {i}" for i, v in enumerate(good_videos)] + [
        f"{p} 0" for p in fault_corpus.values()
    ]
    ann = tmp_path / "mixed.txt"
    ann.write_text("\n".join(lines) + "\n")
    return ann


def test_loader_skips_faults_and_counts(tmp_path, good_videos, fault_corpus):
    ann = _mixed_list(tmp_path, good_videos, fault_corpus)
    good = {str(v) for v in good_videos}
    for workers in (0, 2):
        ds = VideoDataset(ann, max_fail_ratio=0.9, **SMALL)
        loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate_videos)
        total = FaultCounter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths, skipped = [], 0
            for batch in loader:
                assert batch["video"].shape[1:] == (3, 8, 32, 32)
                assert (
                    torch.isfinite(batch["video"]).all() and batch["video"].std() > 0.1
                )  # no black clips
                paths += batch["path"]
                skipped += int(batch["skipped"])
                total.add_batch(batch)
        assert len(paths) == len(ds) and set(paths) <= good
        assert total.num_skipped_files == len(fault_corpus)  # every bad file was met and reported
        assert skipped >= len(fault_corpus)
        assert {os.path.basename(p) for p in total.by_path} == {
            p.name for p in fault_corpus.values()
        }
        assert "6 of 12 videos skipped" in total.summary(len(ds))
        assert "too short" in total.summary()
        if workers == 0:  # warnings raised in worker processes do not reach this process
            msgs = [str(w.message) for w in caught if "skipping video" in str(w.message)]
            assert len(msgs) == len(fault_corpus)  # one warning per bad file
        # same clips whatever the worker layout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if workers == 0:
                first = [ds[i]["video"] for i in range(len(ds))]
            else:
                assert all(torch.equal(first[i], ds[i]["video"]) for i in range(len(ds)))


def test_mostly_broken_dataset_stops(tmp_path, fault_corpus, good_videos):
    ann = tmp_path / "broken.txt"
    ann.write_text(
        "".join(f"{fault_corpus['missing']}_{i} 0\n" for i in range(30)) + f"{good_videos[0]} 1\n"
    )
    ds = VideoDataset(ann, **SMALL)
    with pytest.raises(TooManyFaultsError, match="failed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(len(ds)):
                ds[i]
    ds = VideoDataset(ann, max_retries=2, max_fail_ratio=1.0, **SMALL)
    with pytest.raises(TooManyFaultsError, match="3 attempts all failed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(len(ds)):
                ds[i]


def test_missing_decoder_package_is_an_error_not_a_bad_video(tmp_path, good_videos, monkeypatch):
    """An environment problem (PyAV not importable) must stop the run, not be counted against
    each video as if the files were broken."""
    import builtins

    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ModuleNotFoundError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    ann = tmp_path / "good.txt"
    ann.write_text("".join(f"{v} {i}\n" for i, v in enumerate(good_videos)))
    ds = VideoDataset(ann, **SMALL)
    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(ModuleNotFoundError, match="'av'"):
        ds[0]
    assert ds.faults.failures == 0


def test_rss_stays_flat(good_videos, fault_corpus):
    proc = psutil.Process()
    bad = [fault_corpus["truncated"], fault_corpus["text"], fault_corpus["audio_only"]]

    def work(n):
        for k in range(n):
            read_frames(good_videos[k % len(good_videos)], [0, 5, 11, 19], backend="pyav")
            if k % 10 == 0:
                try:
                    read_frames(bad[k % 3], [0], backend="pyav")
                except VideoDecodeError:
                    pass

    work(300)  # warm-up
    gc.collect()
    before = proc.memory_info().rss
    work(2000)
    gc.collect()
    growth = (proc.memory_info().rss - before) / 2**20
    assert growth < 20, f"RSS grew by {growth:.1f} MiB over 2000 decodes"


def test_check_function_and_cli(tmp_path, good_videos, fault_corpus, capsys):
    ann = _mixed_list(tmp_path, good_videos, fault_corpus)
    report = check_annotations(ann, workers=2, progress=False)
    assert report.checked == 12 and len(report.bad) == 6
    assert dict(report.bad)[str(fault_corpus["one_frame"])].startswith("too short")
    assert cli_main(["data", "check", str(ann), "--workers", "2", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "12 checked, 6 bad" in out and "audio_only.mp4" in out and "no video stream" in out
    good = tmp_path / "good.txt"
    good.write_text("".join(f"{v} 0\n" for v in good_videos))
    assert (
        cli_main(["data", "check", str(good), "--no-progress", "--processes", "--workers", "2"])
        == 0
    )


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "syn"
    assert (
        cli_main(
            [
                "data",
                "synth",
                str(out),
                "--train",
                "12",
                "--val",
                "6",
                "--test",
                "6",
                "--frames",
                "8",
                "--size",
                "32",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (out / ".complete").is_file() and len(list((out / "videos").glob("*.mp4"))) == 24
    assert [len((out / f"{s}.csv").read_text().splitlines()) for s in ("train", "val", "test")] == [
        12,
        6,
        6,
    ]
