"""``umt models``: the released checkpoints by name, and which are in the Hugging Face cache."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_models"]

_EPILOG = """\
Every --checkpoint, --init and --teacher option (and umt.load_checkpoint / umt.create_model)
takes these names: the file comes through huggingface_hub's cache (HF_HOME / HF_HUB_CACHE,
default ~/.cache/huggingface/hub), downloaded on first use when the hub is reachable, taken from
the cache when it is not or with HF_HUB_OFFLINE=1. Sizes are approximate (the parameters in
float32); figures are the ones the paper's model zoo reports.

output: one line per checkpoint (NAME, SIZE, PAPER, CACHED, WHAT); with --json one JSON object
per line: {"name", "repo", "path", "url", "what", "figure", "params", "approx_bytes", "sizes",
"cached", "cached_path"} ("sizes": what the file does not store, passed to the loader).
"""


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the released UMT checkpoints by name (and whether each is cached)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "List the official UMT checkpoints (OpenGVLab/UMT on the Hugging Face hub) under "
            "the names umt gives them, with what each is, its approximate size, the figure the "
            "paper reports for it and whether it is in the Hugging Face cache already."
        ),
        epilog=_EPILOG,
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line and checkpoint")
    p.add_argument("--cached", action="store_true", help="only the checkpoints already cached")
    p.set_defaults(handler=run_models)


def _size(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def run_models(args: argparse.Namespace) -> int:
    from umt.models.released import cache_dir, cached_file, releases

    rows = []
    for rel in releases():
        found = cached_file(rel)
        if args.cached and found is None:
            continue
        rows.append((rel, found))
    if args.json:
        for rel, found in rows:
            record = {
                "name": rel.name,
                "repo": rel.repo,
                "path": rel.path,
                "url": f"https://huggingface.co/{rel.repo}/blob/main/{rel.path}",
                "what": rel.what,
                "figure": rel.figure or None,
                "params": rel.params,
                "approx_bytes": rel.approx_bytes,
                "sizes": dict(rel.sizes),
                "cached": found is not None,
                "cached_path": None if found is None else str(found),
            }
            print(json.dumps(record), flush=True)
        return 0
    table = [("NAME", "SIZE", "PAPER", "CACHED", "WHAT")] + [
        (
            rel.name,
            _size(rel.approx_bytes),
            rel.figure or "-",
            "yes" if found is not None else "no",
            rel.what,
        )
        for rel, found in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    cached = sum(found is not None for _, found in rows)
    print(
        f"umt models: {cached} of {len(rows)} cached in {cache_dir()}; use a name wherever a "
        "checkpoint path goes (umt classify clip.mp4 --checkpoint umt-b16-k400)",
        file=sys.stderr,
    )
    return 0
