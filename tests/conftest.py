"""Shared test fixtures: the official reference outputs (``UMT_FIXTURES``) and the built-in
synthetic clip set for the training tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from official_fixtures import fixtures_root
from train_helpers import threads_per_worker
from umt.utils.cpu import usable_cores

# Under pytest-xdist (`-n auto`) each worker takes its share of the cores, it and the runs it
# starts: two workers at two threads each on 2 cores would oversubscribe them (OpenMP's threads
# wait for each other), which costs more than the second worker gains.
# Inductor's compile workers likewise: it compiles in the worker's process (no pool of compile
# processes, each importing torch, in every process that compiles).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = threads_per_worker()
    os.environ["OMP_NUM_THREADS"] = os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = str(_threads)
    import torch

    torch.set_num_threads(_threads)


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per usable core, at most 8 (each holds its own torch and sets)."""
    return max(1, min(usable_cores(), 8))


@pytest.fixture(scope="session")
def official_root() -> Path:
    root = fixtures_root()
    if root is None:
        pytest.skip("official fixtures not found: set UMT_FIXTURES")
    if not root.is_dir():
        raise FileNotFoundError(f"UMT_FIXTURES={root} is not a folder")
    return root


# The default suite's synthetic set: the default world at a tenth of its size (120 train, 60 val,
# 60 test clips): runs that use it (through UMT_HOME or data.synthetic_root) take it as it is,
# and the built-in teacher's recipe follows the set it finds.
SMALL_SET = {"train": 120, "val": 60, "test": 60}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """A small synthetic set of the default world (made once per test session; tests must not
    modify it)."""
    from umt.data import ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "set", **SMALL_SET)


@pytest.fixture(scope="session")
def synthetic_full(tmp_path_factory) -> Path:
    """The default synthetic set, full size (the heavy learning tests)."""
    from umt.data import ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic-full") / "set")


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """Makes a tiny synthetic set of the default world (16 frames of 32 px, one thread):
    ``tiny_synthetic(name, train, val, test)`` -> its folder (a new one per call)."""
    from umt.data import ensure_synthetic_dataset

    def make(name: str, train: int, val: int, test: int) -> Path:
        return ensure_synthetic_dataset(
            tmp_path_factory.mktemp(name) / "ds",
            train=train,
            val=val,
            test=test,
            frames=16,
            size=32,
            workers=1,
        )

    return make
