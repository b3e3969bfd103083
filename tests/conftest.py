"""Shared test fixtures: the official reference outputs (``UMT_FIXTURES``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fixtures_root() -> Path | None:
    """The fixture folder: ``$UMT_FIXTURES`` or ``../shared/fixtures/official_umt`` beside the repo."""
    env = os.environ.get("UMT_FIXTURES")
    if env:
        return Path(env).resolve()
    default = (REPO / ".." / "shared" / "fixtures" / "official_umt").resolve()
    return default if default.is_dir() else None


@pytest.fixture(scope="session")
def official_root() -> Path:
    root = fixtures_root()
    if root is None:
        pytest.skip("official fixtures not found: set UMT_FIXTURES")
    if not root.is_dir():
        raise FileNotFoundError(f"UMT_FIXTURES={root} is not a folder")
    return root


def load_case(root: Path, name: str) -> tuple[dict, dict]:
    """(config.json, io.safetensors tensors) of one fixture case."""
    from safetensors.torch import load_file

    case = root / name
    if not case.is_dir():
        pytest.skip(f"fixture case {name} absent from {root}")
    return json.loads((case / "config.json").read_text()), load_file(str(case / "io.safetensors"))
