"""Shared test fixtures: the official reference outputs (``UMT_FIXTURES``) and the built-in
synthetic clip set for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from official_fixtures import fixtures_root


@pytest.fixture(scope="session")
def official_root() -> Path:
    root = fixtures_root()
    if root is None:
        pytest.skip("official fixtures not found: set UMT_FIXTURES")
    if not root.is_dir():
        raise FileNotFoundError(f"UMT_FIXTURES={root} is not a folder")
    return root


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """The default synthetic dataset (made once per test session; tests must not modify it)."""
    from umt.data import ensure_synthetic_dataset

    return ensure_synthetic_dataset(tmp_path_factory.mktemp("synthetic"))
