"""Audit fixes: official pretraining segments, ``umt data check`` (truncation, usage errors,
awkward paths, directories), trusted MP4 probing with a byte-bounded cache, one warning per
bad file."""

from __future__ import annotations

import warnings
from collections import Counter

import av
import numpy as np
import pytest
import torch
from data_videogen import make_lying_avi, pattern_frame, read_number, write_pattern_video
from PIL import Image

import umt.data.check as check_module
from umt.cli import main as cli_main
from umt.data import VideoDataset, load_annotations
from umt.data.check import CheckOptionError, check_annotations, check_video
from umt.data.clip_spec import ClipSpec
from umt.data.decode import (
    PROBE_CACHE,
    PyAVDecoder,
    VideoDecodeError,
    VideoInfo,
    _ProbeCache,
    decode_to_end,
    probe_video,
    read_frames,
)
from umt.data.sampling import (
    eval_views,
    make_generator,
    min_frames_needed,
    sample_indices,
    segment_indices,
)


def _keep_uint8(video, **_):
    """A transform that returns the decoded uint8 frames ``[T, 3, H, W]`` untouched."""
    return video


def _numbers(video: torch.Tensor) -> list[int]:
    """Frame numbers of a uint8 ``[T, 3, H, W]`` clip of pattern frames."""
    return [read_number(frame.permute(1, 2, 0).numpy()) for frame in video]


# --------------------------------------------------------------------------- 1. segments
def test_segments_follow_the_official_pretraining_scheme():
    """n=300, T=8: segment i is [37i, 37i+36]; frames 296..299 are never drawn; every frame
    of every segment can be drawn (uniform, both ends inclusive)."""
    n, t, length = 300, 8, 300 // 8
    seen = [set() for _ in range(t)]
    for seed in range(1500):
        idx = sample_indices(n, t, "segments", train=True, generator=make_generator(seed))
        assert len(idx) == t
        for i, frame in enumerate(idx):
            assert i * length <= frame <= i * length + length - 1
            seen[i].add(frame)
    assert all(seen[i] == set(range(i * length, (i + 1) * length)) for i in range(t))
    assert max(max(s) for s in seen) == 295  # 296..299 (n mod T = 4 frames) never used
    assert segment_indices(n, t, train=False) == [i * length + length // 2 for i in range(t)]


def test_segments_short_and_exact_videos():
    gen = make_generator(0)
    assert segment_indices(8, 8, train=True, generator=gen) == list(range(8))
    assert segment_indices(8, 8, train=False) == list(range(8))
    assert segment_indices(5, 8, train=True, generator=gen) == [0] * 8  # n < T: frame 0
    assert segment_indices(5, 8, train=False) == [0] * 8
    assert segment_indices(1, 8, train=True, generator=gen) == [0] * 8
    assert sample_indices(1, 4, "segments", generator=gen) == [0] * 4
    assert min_frames_needed(8, "segments") == 1
    # segments, never tested officially, place test clip k of C at (k + 0.5) / C of a segment
    views = eval_views(2, 1, "segments")
    assert [sample_indices(40, 4, "segments", train=False, view=v) for v in views] == [
        [2, 12, 22, 32],
        [7, 17, 27, 37],
    ]
    with pytest.raises(ValueError, match="no frames"):
        segment_indices(0, 8)


def test_segments_draw_only_from_the_given_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = segment_indices(300, 8, generator=make_generator(7))
    assert torch.equal(before, torch.get_rng_state())  # the global RNG is untouched
    assert a == segment_indices(300, 8, generator=make_generator(7))
    draws = {tuple(segment_indices(300, 8, generator=make_generator(s))) for s in range(20)}
    assert len(draws) > 1


def test_dataset_reads_segments_and_accepts_one_frame_videos(tmp_path):
    """VideoDataset dispatches on "segments": 22 frames, T=4 -> segments of 5 frames, frames
    20 and 21 never used; a 1-frame video is a clip of 4 copies of frame 0."""
    long = write_pattern_video(tmp_path / "v22.mp4", 22)
    one = write_pattern_video(tmp_path / "v1.mp4", 1)
    (tmp_path / "list.txt").write_text(f"{long} 0\n{one} 1\n")
    ds = VideoDataset(
        tmp_path / "list.txt",
        clip=ClipSpec(num_frames=4, sampling="segments"),
        transform=_keep_uint8,
    )
    used = set()
    for epoch in range(25):
        frames = _numbers(ds[(epoch, 0)]["video"])
        assert all(5 * i <= f <= 5 * i + 4 for i, f in enumerate(frames)), frames
        used.update(frames)
    assert max(used) <= 19
    sample = ds[1]
    assert sample["path"] == str(one) and _numbers(sample["video"]) == [0, 0, 0, 0]
    assert ds.faults.failures == 0
    # the check accepts the 1-frame video under segment sampling (it needs one frame)
    assert check_video(str(one), num_frames=4, sampling="segments") is None


# --------------------------------------------------------------------------- 2a. truncation
@pytest.fixture(scope="module")
def truncated_mp4(tmp_path_factory):
    """A 120-frame faststart MP4 cut to 60% of its bytes: the header still lists 120 frames."""
    folder = tmp_path_factory.mktemp("trunc")
    full = write_pattern_video(folder / "full.mp4", 120, gop=12, noise=True, faststart=True)
    cut = folder / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    return full, cut


def test_check_reports_a_truncated_mp4_by_default(tmp_path, truncated_mp4, capsys):
    full, cut = truncated_mp4
    info = probe_video(cut)
    assert info.truncated and not info.from_index and info.header_frames == 120
    # the tail decode alone also finds it (what training meets on late segments)
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4"):
        decode_to_end(cut, info.num_frames - 8)
    (tmp_path / "list.txt").write_text(f"{full} 0\n{cut} 1\n")
    report = check_annotations(tmp_path / "list.txt", progress=False, workers=1)
    assert report.checked == 2 and [p for p, _ in report.bad] == [str(cut)]
    assert "truncated" in dict(report.bad)[str(cut)]
    assert cli_main(["data", "check", str(tmp_path / "list.txt"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "cut.mp4" in out and "2 checked, 1 bad" in out


def test_check_takes_videos_as_well_as_lists(tmp_path, truncated_mp4, capsys):
    """Videos named on the command line are checked themselves, beside (and deduplicated
    with) the videos of an annotation file; a named video that is missing is a bad video."""
    full, cut = truncated_mp4
    assert cli_main(["data", "check", str(full), "--no-progress"]) == 0
    assert "1 checked, 0 bad" in capsys.readouterr().out
    (tmp_path / "list.txt").write_text(f"{full} 0\n")
    missing = tmp_path / "gone.mp4"
    argv = ["data", "check", str(tmp_path / "list.txt"), str(cut), str(full), str(missing)]
    assert cli_main([*argv, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "3 checked, 2 bad" in out and "cut.mp4" in out and "gone.mp4" in out
    report = check_annotations([tmp_path / "list.txt", cut], progress=False, workers=1)
    assert report.checked == 2 and [p for p, _ in report.bad] == [str(cut)]
    assert "truncated" in dict(report.bad)[str(cut)]


def test_thorough_decodes_the_whole_stream(tmp_path, capsys):
    """A packet zeroed in a GOP that neither view nor the tail touches: the default check
    passes, --thorough finds it."""
    n, gop, t = 120, 12, 2
    good = write_pattern_video(tmp_path / "src.mp4", n, gop=gop, noise=True)
    touched = set(sample_indices(n, t, "sparse", train=True, generator=make_generator(0)))
    touched |= set(sample_indices(n, t, "sparse", train=False))
    touched |= set(range(n - 8, n))
    free_gop = next(g for g in range(1, n // gop) if all(i // gop != g for i in touched))
    with av.open(str(good)) as container:
        entry = container.streams.video[0].index_entries[free_gop * gop + 4]
    data = bytearray(good.read_bytes())
    data[entry.pos : entry.pos + entry.size] = bytes(entry.size)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    assert check_video(str(damaged), num_frames=t) is None
    reason = check_video(str(damaged), num_frames=t, thorough=True)
    assert reason is not None and "decoding failed" in reason
    (tmp_path / "list.txt").write_text(f"{damaged} 0\n")
    base = ["data", "check", str(tmp_path / "list.txt"), "--num-frames", str(t), "--no-progress"]
    assert cli_main(base) == 0
    assert cli_main([*base, "--thorough"]) == 1
    assert "damaged.mp4" in capsys.readouterr().out


# --------------------------------------------------------------------------- 2b. usage errors
@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--num-frames", "0"], "--num-frames"),
        (["--num-frames", "-4"], "--num-frames"),
        (["--backend", "nope"], "--backend"),
        (["--backend", "decord"], "--backend"),
        (["--sampling", "random"], "--sampling"),
    ],
)
def test_check_usage_errors_exit_2_before_any_file(
    tmp_path, good_videos, monkeypatch, capsys, options, named
):
    import umt.data.decode as decode

    monkeypatch.setattr(decode, "_decord_available", lambda: False)  # "not installed"

    def must_not_run(*args, **kwargs):
        raise AssertionError("a file was checked despite a usage error")

    monkeypatch.setattr(check_module, "check_video", must_not_run)
    ann = tmp_path / "list.txt"
    ann.write_text("".join(f"{v} 0\n" for v in good_videos))
    assert cli_main(["data", "check", str(ann), "--no-progress", *options]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "umt data check: error" in lines[0]
    assert "checked" not in captured.out and "bad" not in captured.out


def test_check_options_are_validated_before_reading_the_list(tmp_path, monkeypatch):
    import umt.data.decode as decode

    monkeypatch.setattr(decode, "_decord_available", lambda: False)
    missing_list = tmp_path / "no_such_list.txt"
    with pytest.raises(CheckOptionError, match="num_frames"):
        check_annotations(missing_list, num_frames=0, progress=False)
    with pytest.raises(CheckOptionError, match=r"backend: 'decord' cannot be used.*pyav"):
        check_annotations(missing_list, backend="decord", progress=False)


# --------------------------------------------------------------------------- 2c/2d. paths
def test_paths_with_double_spaces_are_found(tmp_path):
    video = write_pattern_video(tmp_path / "a  b.mp4", 12)
    lists = {
        "labelled.csv": "path,label\na  b.mp4,3\n",
        "bare.csv": "a  b.mp4,3\n",
        "quoted.csv": 'path,label\n"a  b.mp4",3\n',
        "spaces.txt": "a  b.mp4 3\n",
    }
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
        records = load_annotations(tmp_path / name)
        assert [(r.path, r.label) for r in records] == [(str(video), 3)], name
        report = check_annotations(tmp_path / name, progress=False, workers=1)
        assert report.checked == 1 and report.ok, (name, report.bad)
    # a comma-less (unlabelled) line in a CSV keeps its spaces; TSN lines still parse
    (tmp_path / "mixed.csv").write_text("path,label\na  b.mp4\n")
    assert load_annotations(tmp_path / "mixed.csv")[0].path == str(video)
    (tmp_path / "tsn.txt").write_text("frames/clip  one 12 4\nplain.mp4 2\n")
    tsn, plain = load_annotations(tmp_path / "tsn.txt")
    assert (tsn.path, tsn.num_frames, tsn.label) == (str(tmp_path / "frames/clip  one"), 12, 4)
    assert (plain.path, plain.label) == (str(tmp_path / "plain.mp4"), 2)


def test_directory_is_reported_as_a_directory_unless_it_holds_frames(tmp_path):
    empty = tmp_path / "not_a_video.mp4"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    frames, broken_tail = tmp_path / "frames", tmp_path / "broken_tail"
    for folder in (frames, broken_tail):
        folder.mkdir()
        for i in range(12):
            Image.fromarray(pattern_frame(i, 32)).save(folder / f"img_{i + 1:05d}.jpg")
    (broken_tail / "img_00013.jpg").write_text("not a jpeg")  # only the last frame is broken
    (tmp_path / "list.txt").write_text(f"{empty} 0\n{frames} 1\n")
    report = check_annotations(tmp_path / "list.txt", progress=False, workers=1)
    assert report.checked == 2 and [p for p, _ in report.bad] == [str(empty)]
    assert "is a directory" in report.bad[0][1]
    assert check_video(str(frames), num_frames=4, thorough=True) is None
    assert "cannot read image" in check_video(str(broken_tail), num_frames=4)


# --------------------------------------------------------------------------- 3. probing
def _big_info(frames: int) -> VideoInfo:
    return VideoInfo(
        num_frames=frames,
        fps=25.0,
        duration=frames / 25,
        width=64,
        height=64,
        pts=tuple(range(0, 512 * frames, 512)),
        keyframes=tuple(range(0, frames, 250)),
    )


def test_probe_cache_is_bounded_by_bytes():
    budget = 3 * 2**20
    cache = _ProbeCache(max_bytes=budget)
    ten_minutes = _big_info(15_000)  # a 10-minute 25 fps video: 15k per-frame pts
    assert ten_minutes.nbytes() > 15_000 * 32  # the per-frame array is counted
    for i in range(200):
        cache.put(("pyav", f"/videos/{i}.mp4", 1, 1), ten_minutes if i % 2 else _big_info(500))
        if i == 10:
            assert cache.get(("pyav", "/videos/0.mp4", 1, 1)) is not None  # touched: kept
        if i > 10:
            cache.get(("pyav", "/videos/0.mp4", 1, 1))
        held = sum(size for _, size in cache._data.values())
        assert cache.nbytes == held <= budget
    assert cache.get(("pyav", "/videos/0.mp4", 1, 1)) is not None  # recently used survives
    assert cache.get(("pyav", "/videos/1.mp4", 1, 1)) is None  # least recently used evicted
    assert 2 <= len(cache) < 200
    cache.put(("pyav", "/huge.mp4", 1, 1), _big_info(200_000))  # larger than the budget
    assert cache.get(("pyav", "/huge.mp4", 1, 1)) is None and cache.nbytes <= budget
    assert 8 * 2**20 <= PROBE_CACHE.max_bytes <= 64 * 2**20


def test_trusted_mp4_probe_does_not_demux_the_file(tmp_path, monkeypatch):
    path = write_pattern_video(tmp_path / "long.mp4", 300, gop=25, noise=True)

    def no_demux(self, container, name, size):
        raise AssertionError("the trusted MP4 was demuxed packet by packet")

    monkeypatch.setattr(PyAVDecoder, "_probe_by_demux", no_demux)
    PROBE_CACHE.clear()
    info = probe_video(path)
    assert info.from_index and info.num_frames == 300 and info.header_frames == 300
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(12.0)
    assert len(info.timestamps) == 300 and info.timestamps[1] == pytest.approx(0.04)
    idx = [299, 0, 150, 24, 25, 26, 151, 298]
    assert [read_number(f) for f in read_frames(path, idx, backend="pyav")] == idx
    PROBE_CACHE.clear()
    with pytest.raises(AssertionError, match="demuxed"):  # what untrusted files go through
        probe_video(write_pattern_video(tmp_path / "v.avi", 20, codec="mpeg4"))


def test_untrusted_headers_are_counted_by_demuxing(tmp_path, truncated_mp4):
    calls = Counter()
    real = PyAVDecoder._probe_by_demux

    def counting(self, container, name, size):
        calls[name] += 1
        return real(self, container, name, size)

    PROBE_CACHE.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PyAVDecoder, "_probe_by_demux", counting)
        honest = write_pattern_video(tmp_path / "honest.avi", 20, codec="mpeg4")
        lying = make_lying_avi(honest, tmp_path / "lying.avi", claimed=1000)
        vfr = write_pattern_video(tmp_path / "vfr.mp4", 30, vfr=True)
        infos = {p: probe_video(p) for p in (lying, truncated_mp4[1], vfr)}
    assert calls == Counter({str(lying): 1, str(truncated_mp4[1]): 1, str(vfr): 1})
    assert infos[lying].num_frames == 20 and infos[vfr].num_frames == 30
    assert 0 < infos[truncated_mp4[1]].num_frames < 120
    assert not any(i.from_index for i in infos.values())
    gaps = np.diff(infos[vfr].timestamps)
    assert gaps.max() > 3 * gaps.min()
    PROBE_CACHE.clear()


# --------------------------------------------------------------------------- 4. warn once
def test_each_bad_file_is_announced_once_per_process(tmp_path, good_videos, caplog, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_text("this is not a video\n" * 20)
    ann = tmp_path / "list.txt"
    ann.write_text(f"{bad} 0\n" + "".join(f"{v} 1\n" for v in good_videos[:3]))
    options = {
        "clip": ClipSpec(num_frames=4, input_size=32),
        "backend": "pyav",
        "max_fail_ratio": 1.0,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = VideoDataset(ann, **options)
        for epoch in range(3):  # the bad file fails again in every epoch
            assert first[(epoch, 0)]["path"] != str(bad)
        second = VideoDataset(ann, **options)  # another dataset in the same process
        second[0]
    assert first.faults.failures >= 3 and second.faults.failures >= 1  # every failure counted
    mentions = [str(w.message) for w in caught if str(bad) in str(w.message)]
    mentions += [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    captured = capsys.readouterr()
    printed = captured.err.count(str(bad)) + captured.out.count(str(bad))
    assert len(mentions) + printed == 1, (mentions, printed)
    assert mentions[0].startswith(f"skipping video {bad}: cannot open")
