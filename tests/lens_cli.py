"""``cli(*args)``: run ``lens-fast ARGS…`` in this process; return its exit status."""
from __future__ import annotations

from lens.cli import main


def cli(*args: str) -> int:
    """Run ``lens-fast`` with ``args``; return the status it exits with (0 if it returns)."""
    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0
