"""``python -m umt`` runs the ``umt`` command."""

from umt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
