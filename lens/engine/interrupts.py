"""Ctrl-C and SIGTERM that arrive before the supervisor runs: remember them, lose nothing.

``lens-fast run`` installs these handlers first thing (``install()``), so a signal that comes
while the command loads its config, starts the embedded mock or spawns workers is not a
traceback or a silent kill: it is recorded, and the supervisor, which takes over the
handlers for the run itself, sees it (``pending()``), stops at once and the run ends like
any interrupted run: outputs written (empty if nothing was measured), summary marked
interrupted, exit status 130 / 143.
"""
from __future__ import annotations

import os
import signal

__all__ = ["SIGNALS", "Counter", "count", "install", "installed", "pending", "reset"]

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


class Counter:
    """Count SIGINT and SIGTERM exactly from now on, also while a long blocking call runs.

    Python runs a signal's handler once per trip, however many signals came before it ran:
    two Ctrl-Cs during one blocking call (a Ray wait of a second) reach the handler as one.
    The C-level handler also writes one byte per signal to the wakeup fd
    (``signal.set_wakeup_fd``), so this counter gives each its own byte: ``poll()`` reads
    them. Only the main thread can set the wakeup fd; elsewhere ``exact`` is False and the
    caller counts the handler's calls instead. ``close()`` (or the ``with`` block's end)
    puts the previous wakeup fd back.
    """

    def __init__(self) -> None:
        self.n = 0
        self.first: str | None = None          # the first signal's name
        self._r = self._w = -1
        self._old = -1
        r, w = os.pipe()
        try:
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:                     # not the main thread
            os.close(r)
            os.close(w)
            return
        self._r, self._w = r, w

    @property
    def exact(self) -> bool:
        """Whether signals are counted here (the wakeup fd is set)."""
        return self._r >= 0

    def poll(self) -> int:
        """Read the signals that came; return how many SIGINT/SIGTERM since the start."""
        while self._r >= 0:
            try:
                data = os.read(self._r, 512)
            except BlockingIOError:
                break
            if not data:
                break
            for b in data:
                if b in SIGNALS:
                    self.n += 1
                    self.first = self.first or signal.Signals(b).name
        return self.n

    def close(self) -> None:
        """Stop counting: the previous wakeup fd is set again."""
        if self._r >= 0:
            signal.set_wakeup_fd(self._old)
            os.close(self._r)
            os.close(self._w)
            self._r = self._w = -1

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
