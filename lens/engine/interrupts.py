"""Ctrl-C and SIGTERM that arrive before the supervisor runs: remember them, lose nothing.

``lens-fast run`` installs these handlers first thing (``install()``), so a signal that comes
while the command loads its config, starts the embedded mock or spawns workers is not a
traceback or a silent kill: it is recorded, and the supervisor, which takes over the
handlers for the run itself, sees it (``pending()``), stops at once and the run ends like
any interrupted run: outputs written (empty if nothing was measured), summary marked
interrupted, exit status 130 / 143.
"""
from __future__ import annotations

import signal

__all__ = ["SIGNALS", "count", "install", "installed", "pending", "reset"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: list[str] = []
_installed: list[bool] = []


def _record(signum: int, frame: object) -> None:
    _pending.append(signal.Signals(signum).name)


def install() -> None:
    """Record SIGINT and SIGTERM from now on (main thread only)."""
    for s in SIGNALS:
        signal.signal(s, _record)
    _installed[:] = [True]


def installed() -> bool:
    """Whether ``install()`` was called in this process (``lens-fast run`` and ``sweep``)."""
    return bool(_installed)


def count() -> int:
    """How many signals were recorded since ``install()``/``reset()``."""
    return len(_pending)


def pending() -> str | None:
    """The first signal recorded since ``install()``/``reset()``, or None."""
    return _pending[0] if _pending else None


def reset() -> None:
    """Forget recorded signals (tests)."""
    _pending.clear()
