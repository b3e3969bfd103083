from __future__ import annotations

import pytest
from data_videogen import make_fault_corpus, write_pattern_video


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def good_videos(video_dir):
    """Six good H.264 clips of 20-40 frames."""
    return [write_pattern_video(video_dir / f"good{i}.mp4", 20 + 4 * i) for i in range(6)]


@pytest.fixture(scope="session")
def fault_corpus(tmp_path_factory):
    return make_fault_corpus(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="session")
def synthetic_root(tiny_synthetic):
    return tiny_synthetic("synth", train=24, val=12, test=12)
