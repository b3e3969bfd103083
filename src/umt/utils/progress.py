"""Progress bars on stderr (tqdm, imported only when a bar is made)."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar of ``total`` ``unit``s on stderr; a silent one when ``enabled`` is False."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled)
