"""lens.mock.wakeup: one-shot wake-ups at absolute CLOCK_MONOTONIC times."""
from __future__ import annotations

import sys
import time

import pytest
import uvloop

from lens.mock.wakeup import LoopWakeup, TimerFdWakeup, make_wakeup


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def fire_times(cls, offsets_ms, rearm=True):
    """Arm at each offset in turn (from the callback); return (lateness_ms, callback count)."""
    loop = uvloop.new_event_loop()
    calls, late = [], []
    targets = []

    def callback():
        t = now_ns()
        calls.append(t)
        if targets and t >= targets[0]:
            late.append((t - targets.pop(0)) / 1e6)
        if targets:
            w.arm(targets[0])
        else:
            w.disarm()
            loop.call_later(0.02, loop.stop)  # room for stray calls to show up

    w = cls(loop, callback)
    try:
        t0 = now_ns()
        targets.extend(t0 + int(ms * 1e6) for ms in offsets_ms)
        w.arm(targets[0])
        loop.run_forever()
    finally:
        w.close()
        loop.close()
    return late, len(calls)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux-only")
def test_timerfd_fires_at_the_time_and_only_then():
    late, calls = fire_times(TimerFdWakeup, [2.0, 2.3, 5.0, 5.05, 9.0])
    assert len(late) == 5 and calls == 5  # never early, no spurious calls once disarmed
    assert min(late) >= 0
    assert sorted(late)[2] < 0.5  # median well under the 1 ms grid (loose: a shared machine)


def test_loop_fallback_never_fires_early_nor_spins():
    late, calls = fire_times(LoopWakeup, [0.3, 0.6, 3.0])
    assert len(late) == 3 and min(late) >= 0
    assert calls <= 6  # a sub-ms wait sleeps to the next ms rather than spinning


def test_rearming_replaces_the_time():
    loop = uvloop.new_event_loop()
    got = []
    w = make_wakeup(loop, lambda: (got.append(now_ns()), w.disarm(), loop.stop()))
    try:
        t0 = now_ns()
        w.arm(t0 + 200_000_000)
        w.arm(t0 + 2_000_000)  # earlier: replaces
        loop.run_forever()
    finally:
        w.close()
        loop.close()
    assert len(got) == 1 and (got[0] - t0) / 1e6 < 100
