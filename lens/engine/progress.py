"""The live progress line of ``lens-fast run`` (only on a terminal, off with --no-progress)."""
from __future__ import annotations

import time

from rich.live import Live
from rich.text import Text

from lens.engine.plan import RunPlan

REFRESH_S = 0.25


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
        s = results.snapshot()
        total = f"/{self.plan.duration_s:.0f}s" if self.plan.duration_s else ""
        sent = f"{s.completed + s.failed}" + (f"/{self.plan.requests}" if self.plan.requests
                                               else "")
        ttft = f"{s.ttft_p50_ms:.1f} ms" if s.ttft_p50_ms == s.ttft_p50_ms and \
            s.ttft_p50_ms is not None else "–"
        self.live.update(Text(
            f"{elapsed:6.1f}s{total}  done {sent}  ok {s.completed}  failed {s.failed}  "
            f"achieved {s.achieved_rps:.1f} req/s  TTFT p50 {ttft}"), refresh=True)

    def close(self) -> None:
        self.live.stop()
