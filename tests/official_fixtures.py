"""Where the official reference outputs live (``UMT_FIXTURES``) and how to read one case."""

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


def load_case(root: Path, name: str) -> tuple[dict, dict]:
    """(config.json, io.safetensors tensors) of one fixture case."""
    from safetensors.torch import load_file

    case = root / name
    if not case.is_dir():
        pytest.skip(f"fixture case {name} absent from {root}")
    return json.loads((case / "config.json").read_text()), load_file(str(case / "io.safetensors"))
