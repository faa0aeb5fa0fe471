"""What the driver does with the rows the hosts stream while they run.

The driver takes every host agent's drained request rows out of it once a second
(``HostAgent.take``), with its ITL histogram so far (token stamps stay on the host), so
neither holds more than a second or two of any host's rows. For each
host the driver keeps:

- a spool on disk (the raw rows, appended), from which a host lost mid-run (or stopped by a
  second Ctrl-C) gets its requests.parquet and the figures of its summary;
- with ``live`` (a progress line or live metrics show them), a ``RunResults`` fed with those
  rows as they come, its ITL histogram replaced by the host's latest: the run's live figures
  (progress line, Prometheus, InfluxDB, through ``HostsView``). Without, the rows are only
  spooled, and a lost host's ``RunResults`` is fed from its spool at the end (``figures``).

A host that returns its own files (and summary, with its client health) replaces what it
streamed; its spool is deleted. Spooling costs the driver about 0.1 µs per request, feeding
the live ``RunResults`` 1–2 µs more.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lens._core import ROW_DTYPE
from lens.engine.plan import RunPlan

__all__ = ["HostStream", "HostsView"]

SPOOL_CHUNK = 1 << 16      # records read back at a time when a spool becomes Parquet


class HostStream:
    """One host's streamed rows: live results and a spool on disk (see the module docstring)."""

    def __init__(self, plan: RunPlan, spool_dir: Path, live: bool = True):
        self.plan = plan
        self.live = live            # feed ``results`` as rows come (else at ``figures``)
        self.results = None
        self.rows = 0
        self.t0_ns = self.t0_unix_ns = None
        self._path = spool_dir / f"host-{plan.host_index:02d}-rows.bin"
        self._file = None
        self._itl_at = None
        self._itl: bytes | None = None      # the latest ITL histogram not yet applied
        self._fed = False                   # ``results`` holds every spooled row

    def start(self, t0_ns: int, t0_unix_ns: int) -> None:
        """The host's epoch (its CLOCK_MONOTONIC t0) and the wall clock at it."""
        from lens.engine.runner import target_info
        from lens.output.results import RunResults

        p = self.plan
        self.t0_ns, self.t0_unix_ns = int(t0_ns), int(t0_unix_ns)
        self.results = RunResults(
            self.t0_ns, t0_unix_ns=self.t0_unix_ns, scenario=p.scenario,
            targets=[target_info(p)], open_loop=p.mode == "open", offered_rps=p.rps,
            duration_s=p.duration_s, max_token_stamps=p.max_token_stamps)
        self._file = open(self._path, "wb")     # noqa: SIM115

    def add(self, rows: np.ndarray) -> None:
        """Feed one streamed batch of request rows (after ``start``)."""
        if len(rows):
            if self.live:
                self.results.add_rows(rows)
            rows.tofile(self._file)
            self.rows += len(rows)

    def set_itl(self, encoded: bytes, at: int) -> None:
        """The host's ITL histogram as of its report at ``at`` (its wall clock, ns)."""
        if at == self._itl_at:
            return
        self._itl_at = at
        self._itl = encoded
        if self.live:
            self._apply_itl()

    def _apply_itl(self) -> None:
        from lens._core import LogLinearHistogram

        encoded, self._itl = self._itl, None
        if encoded is None:
            return
        for t in self.results.targets:
            h = t.histograms["itl"]
            h.reset()
            h.merge(LogLinearHistogram.decode(encoded))

    def figures(self) -> Any:
        """The host's ``RunResults`` with every row it streamed and its latest ITL (fed from
        the spool now unless ``live`` fed it already)."""
        if not self.live and not self._fed:
            self._fed = True
            for rows in self.spooled():
                self.results.add_rows(rows)
        self._apply_itl()
        return self.results

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def drop(self) -> None:
        """The host returned its own files: forget the spool."""
        self.close()
        self._path.unlink(missing_ok=True)

    def spooled(self) -> Iterator[np.ndarray]:
        """Read the spooled rows back in chunks."""
        self.close()
        if not self._path.exists():
            return
        n = os.path.getsize(self._path) // ROW_DTYPE.itemsize
        with open(self._path, "rb") as f:
            for _ in range(0, n, SPOOL_CHUNK):
                yield np.fromfile(f, ROW_DTYPE, SPOOL_CHUNK)

    def write_parquet(self, d: Path, meta: dict) -> None:
        """Write the spooled rows as the host's requests.parquet in ``d`` (the columns and
        metadata its own sink writes; its tokens.parquet is left empty)."""
        from lens.engine.runner import target_info
        from lens.output.parquet import ParquetSink

        d.mkdir(parents=True, exist_ok=True)
        sink = ParquetSink(d, self.t0_ns, meta, targets=[target_info(self.plan)],
                           scenario=self.plan.scenario)
        try:
            for rows in self.spooled():
                sink.write_rows(rows)
        finally:
            sink.close()


class HostsView:
    """Every host's streamed ``RunResults`` seen as one, for ``LiveMetrics`` and the progress
    line: targets of all hosts (their counts and per-second series add up, since every
    host's second k starts at the agreed start + k s), histograms merged on demand.

    ``t0_ns`` is the agreed start on the driver's CLOCK_MONOTONIC.
    """

    def __init__(self, streams: list[HostStream], t0_ns: int, t0_unix_ns: int, scenario: str):
        from lens.output.results import ERROR_NAMES

        self.streams = streams
        self.t0_ns, self.t0_unix_ns, self.scenario = t0_ns, t0_unix_ns, scenario
        self.error_names = dict(ERROR_NAMES)
        self.in_flight = 0
        self.progress: dict[int, dict] = {}      # each host's latest report

    def report(self, host: int, item: dict) -> None:
        """Host ``host``'s latest report: requests sent and in flight."""
        self.progress[host] = item
        self.in_flight = sum(p.get("in_flight", 0) for p in self.progress.values())

    @property
    def reported_elapsed_s(self) -> float:
        """Seconds since the start as of the latest host report (what ``sent`` counts up to)."""
        return max((p.get("elapsed_s", 0.0) for p in self.progress.values()), default=0.0)

    @property
    def sent(self) -> int:
        """Requests the hosts sent, as last reported."""
        return sum(p.get("sent", 0) for p in self.progress.values())

    @property
    def targets(self) -> list[Any]:
        return [t for s in self.streams if s.results is not None for t in s.results.targets]

    def histogram(self, name: str) -> Any:
        """One metric's histogram merged over every host (a new object)."""
        from lens._core import LogLinearHistogram

        h = None
        for s in self.streams:
            if s.results is None:
                continue
            part = s.results.histogram(name)
            if h is None:
                h = part
            else:
                h.merge(part)
        return h if h is not None else LogLinearHistogram()

    def counts(self) -> dict[str, int]:
        """ok, failed, dropped summed over the hosts' targets."""
        out = {"ok": 0, "failed": 0, "dropped": 0}
        for t in self.targets:
            for k in out:
                out[k] += t.counts[k]
        return out
