"""The live progress line of ``lens-fast run`` (only on a terminal, off with --no-progress)."""
from __future__ import annotations

import time

from rich.live import Live
from rich.text import Text

from lens.engine.plan import RunPlan

REFRESH_S = 0.25


def progress_text(plan: RunPlan, elapsed: float, sent: int, s,
                  rate: float | None = None) -> str:
    """Format one progress line from a ``RunResults.snapshot()``.

    "achieved" is requests started per second since t0 (sent / elapsed, unless ``rate`` is
    given): steady from the first tick, unlike a rate fitted to the first few start times.
    """
    if rate is None:
        rate = sent / elapsed if elapsed > 0 else 0.0
    total = f"/{plan.duration_s:.0f}s" if plan.duration_s else ""
    of = f"/{plan.requests}" if plan.requests else ""
    ttft = "–" if s.ttft_p50_ms is None or s.ttft_p50_ms != s.ttft_p50_ms \
        else f"{s.ttft_p50_ms:.1f} ms"
    return (f"{elapsed:6.1f}s{total}  sent {sent}{of}  completed {s.completed}  "
            f"failed {s.failed}  in flight {s.in_flight}  achieved {rate:.1f} req/s  "
            f"TTFT p50 {ttft}")


class ProgressLine:
    """elapsed/total · sent · completed · failed · in flight · achieved rps · p50 TTFT."""

    def __init__(self, plan: RunPlan, console):
        self.plan = plan
        self.live = Live(Text("starting workers…"), console=console, transient=True,
                         auto_refresh=False)
        self.live.start()
        self._last = 0.0

    def update(self, elapsed: float, results, supervisor) -> None:
        now = time.monotonic()
        if now - self._last < REFRESH_S or results is None:
            return
        self._last = now
        sent, in_flight, _ = supervisor.counters()
        results.in_flight = in_flight
        s = results.snapshot()
        self.live.update(Text(progress_text(self.plan, elapsed, sent, s)), refresh=True)

    def update_hosts(self, elapsed: float, sent: int, view) -> None:
        """A distributed run (``lens.distributed``): ``elapsed`` from the agreed start,
        ``sent`` as the hosts last reported, ``view`` a ``HostsView`` of their streamed rows.
        The TTFT is the median of every host's so far (not only the last seconds)."""
        from lens.output.results import Progress

        now = time.monotonic()
        if now - self._last < REFRESH_S:
            return
        self._last = now
        if elapsed < 0:
            self.live.update(Text(f"hosts start together in {-elapsed:.1f} s…"), refresh=True)
            return
        c = view.counts()
        h = view.histogram("ttft")
        p50 = h.quantile(0.5) / 1e6 if h.count else None
        s = Progress(c["ok"], c["failed"], c["dropped"], view.in_flight, 0.0, p50)
        # the hosts' counts are up to a second old: their rate is over their own elapsed
        at = view.reported_elapsed_s
        rate = sent / at if at > 0 else 0.0
        self.live.update(Text(progress_text(self.plan, elapsed, sent, s, rate)), refresh=True)

    def close(self) -> None:
        self.live.stop()
