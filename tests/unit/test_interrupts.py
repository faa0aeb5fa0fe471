"""lens.engine.interrupts.Counter: every SIGINT/SIGTERM counted, also two that reach Python's
handler as one (the distributed driver waits a second at a time in Ray)."""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest

from lens.distributed.driver import _signals
from lens.engine import interrupts


@pytest.fixture
def handlers():
    """lens' recording handlers, the previous ones put back after."""
    old = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.reset()
    interrupts.install()
    yield
    for s, h in old.items():
        signal.signal(s, h)
    interrupts.reset()


def _busy_c(seconds: float) -> None:
    """Stay in one C call about ``seconds`` long (no Python handler runs meanwhile)."""
    t = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 20_000)
    per = (time.perf_counter() - t) / 20_000
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", int(seconds / per))


def test_two_signals_during_one_c_call_are_two(handlers):
    def send():
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    with interrupts.Counter() as sigs:
        assert sigs.exact
        t = threading.Thread(target=send)
        t.start()
        _busy_c(1.5)
        t.join()
        # Python's handler ran once for each kind, after the call; both were counted
        assert sigs.poll() == 2
        assert sigs.first == "SIGINT"
        assert interrupts.count() == 2 and interrupts.pending() == "SIGINT"

        # two of the same kind reach the handler as one; the counter has both
        t = threading.Thread(target=lambda: (time.sleep(0.2), os.kill(os.getpid(), 2),
                                             time.sleep(0.1), os.kill(os.getpid(), 2)))
        t.start()
        _busy_c(1.5)
        t.join()
        assert interrupts.count() == 3          # one more call of the handler
        assert sigs.poll() == 4                 # two more signals
        assert sigs.poll() == 4                 # read once


def test_close_puts_the_previous_wakeup_fd_back(handlers):
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w)
    try:
        with interrupts.Counter() as sigs:
            assert sigs.exact
        assert signal.set_wakeup_fd(w) == w     # ours is gone, the one before is back
        sigs.close()                            # twice: nothing more
        assert sigs.poll() == 0 and not sigs.exact
    finally:
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)


def test_off_the_main_thread_it_cannot_count():
    box = []
    t = threading.Thread(target=lambda: box.append(interrupts.Counter()))
    t.start()
    t.join()
    assert box[0].exact is False and box[0].poll() == 0
    box[0].close()


class _Sigs:
    def __init__(self, exact: bool, n: int = 0, first: str | None = None):
        self.exact, self.n, self.first = exact, n, first

    def poll(self) -> int:
        return self.n


def test_driver_signals_exact_and_by_handler(handlers):
    # none yet
    assert _signals(0, 0, 0, _Sigs(True)) == (0, None)
    # counted by the counter since the wait began
    assert _signals(0, 0, 0, _Sigs(True, 2, "SIGTERM")) == (2, "SIGTERM")
    # one recorded before the wait (lens-fast run: n0 = 0): it counts, and names the signal
    interrupts._pending.append("SIGINT")
    assert _signals(1, 0, 0, _Sigs(True, 1, "SIGTERM")) == (2, "SIGINT")
    # a library caller (n0 = what was recorded before): only the new ones
    assert _signals(1, 1, 0, _Sigs(True, 1, "SIGTERM")) == (1, "SIGTERM")
    # without the counter: the handler's records and the KeyboardInterrupts
    assert _signals(1, 1, 2, _Sigs(False)) == (2, "SIGINT")
    assert _signals(1, 1, 0, _Sigs(False)) == (0, None)
