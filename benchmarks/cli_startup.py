"""Start-up time of the ``umt`` command: the median wall time of ``umt --help`` and of
``umt X --help`` for every subcommand (a fresh interpreter each time, as a user runs it).

Run: ``python benchmarks/cli_startup.py [--repeats 5]``. Prints one line per command and a final
JSON line ``{"umt --help": seconds, "umt X --help": seconds, ...}``; for reference also the time
of ``python -c "import torch"``, which ``umt --help`` does not pay. Targets: ``umt --help``
<= 0.5 s, ``umt X --help`` <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], repeats: int) -> float:
    """The median wall time of running ``argv`` (stdout and stderr discarded) ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def subcommands() -> list[str]:
    """The names ``umt --help`` lists (read from the parser, which imports no torch)."""
    from umt.cli import build_parser

    action = next(a for a in build_parser()._actions if a.dest == "command")
    return list(action.choices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (median)")
    args = parser.parse_args()
    umt = [sys.executable, "-m", "umt"]
    results: dict[str, float] = {}
    for command in ["", *subcommands()]:
        name = f"umt {command} --help".replace("  ", " ")
        results[name] = median_seconds([*umt, *command.split(), "--help"], args.repeats)
        print(f"{name:<34} {results[name]:6.3f} s", flush=True)
    torch_s = median_seconds([sys.executable, "-c", "import torch"], args.repeats)
    reference = 'python -c "import torch"'
    print(f"{reference:<34} {torch_s:6.3f} s  (reference)")
    results[reference] = torch_s
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
