"""Wake an event loop at an absolute CLOCK_MONOTONIC time, finer than its 1 ms timer grid.

uvloop's timers count whole milliseconds (libuv), so a token paced by ``call_at`` is written
up to ~1 ms off its deadline, and neighbouring ITLs swing from ~0 to ~2 ms. On Linux the mock
arms one ``timerfd`` (an hrtimer) at the next deadline instead and lets the loop poll it like
a socket: the wake-up lands within some µs of the requested ns. Elsewhere it falls back to
``loop.call_later`` on the 1 ms grid.

``make_wakeup(loop, callback)`` returns an object with ``arm(t_ns)`` (one-shot; re-arming
replaces the previous time), ``disarm()`` and ``close()``. The callback must end by calling
``arm`` or ``disarm``: that is what clears an expired timerfd (``timerfd_settime`` resets its
expiry count), which saves a ``read()`` per wake-up.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable

__all__ = ["LoopWakeup", "TimerFdWakeup", "make_wakeup"]

_CLOCK_MONOTONIC = time.CLOCK_MONOTONIC
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFdWakeup:
    """Arm a Linux timerfd polled by the loop; call ``callback()`` when it expires."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_ITimerspec),
                                  ctypes.c_void_p]
        self._fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._spec = _ITimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._value = self._spec.it_value
        self._loop = loop
        loop.add_reader(self._fd, callback)  # it arms or disarms, which clears the fd

    def arm(self, t_ns: int) -> None:
        """Fire once at CLOCK_MONOTONIC ``t_ns`` (immediately if it has passed)."""
        # an all-zero it_value would disarm the timer instead
        self._value.tv_sec, self._value.tv_nsec = divmod(max(t_ns, 1), 1_000_000_000)
        self._set()

    def disarm(self) -> None:
        """Cancel a pending wake-up (and clear an expired one)."""
        self._value.tv_sec = self._value.tv_nsec = 0
        self._set()

    def _set(self) -> None:
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def close(self) -> None:
        """Stop polling and release the timerfd."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class LoopWakeup:
    """The portable fallback: ``loop.call_later`` (1 ms grid on uvloop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.Handle | None = None

    def arm(self, t_ns: int) -> None:
        """Fire once at CLOCK_MONOTONIC ``t_ns`` or up to 1 ms later (the loop's grid)."""
        if self._handle is not None:
            self._handle.cancel()
        # Whole ms, rounded up: uvloop rounds a delay under 0.5 ms down to "now", which would
        # spin until t_ns instead of sleeping.
        delay_ms = -((time.clock_gettime_ns(_CLOCK_MONOTONIC) - t_ns) // 1_000_000)
        self._handle = self._loop.call_later(max(delay_ms, 0) / 1000, self._fire)

    def disarm(self) -> None:
        """Cancel a pending wake-up."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._callback()

    close = disarm


def make_wakeup(loop: asyncio.AbstractEventLoop,
                callback: Callable[[], None]) -> TimerFdWakeup | LoopWakeup:
    """Return a timerfd wake-up on Linux, else the call_later fallback."""
    if sys.platform.startswith("linux"):
        try:
            return TimerFdWakeup(loop, callback)
        except (OSError, AttributeError):
            pass
    return LoopWakeup(loop, callback)
