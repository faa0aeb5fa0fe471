"""The host agent: one Ray actor per host, running the ordinary engine on its slice.

The agent is a plain class; the driver wraps it with ``ray.remote`` (one CPU per worker
process, pinned to one node). Its ``run`` is ``lens.engine.runner.execute`` with the plan's
host slice and the agreed start, so a host of a distributed run measures exactly as a local
run does: its own worker processes, its own shared-memory rings, its own Parquet and
``summary.json``. It must run on the actor's main thread (the supervisor installs signal
handlers), so the actor keeps Ray's default of one call at a time; progress goes out through
the driver's ``Collector`` instead of a second call into the agent.

Rows stream too: every drained batch of request rows (the structured array the host's own
results get) is buffered and sent to the ``Collector`` with each progress report (once a
second), with the host's ITL histogram so far (3–4 KB encoded), and the driver takes them
out of it each time round its loop (``lens.distributed.stream``), so the rows of a host lost
mid-run survive it and the driver shows live figures. Token stamps do not travel (24 bytes a
token: a 500-token answer would be 12 KB); the ITL histogram stands for them. After the run
the agent sends what is left, and waits until the collector has it, before it returns; a
host that finishes returns its own Parquet files as well, and the driver uses those.

Stopping: the collector's reply to a report carries the driver's stop request (a Ctrl-C or
SIGTERM in the driver). The agent reads the reply of its previous report without waiting,
and, once asked, stops its supervisor as a signal would: no new requests, in-flight ones get
their short grace, the host's summary is marked interrupted by that signal.
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Collector", "HostAgent"]

PROGRESS_PERIOD_S = 1.0     # each report is one Ray call; benchmarks/RESULTS.md


class Collector:
    """Relay from the hosts to the driver: each host's last progress report and the row
    batches it streamed since the driver last took them; and the driver's stop request."""

    def __init__(self) -> None:
        self.last: dict[int, dict] = {}
        self.batches: dict[int, list[Any]] = {}
        self.stopping: str | None = None

    def report(self, host: int, item: dict, rows: Any = None) -> str | None:
        """Take one host's report; return the stop request (a signal's name) or None."""
        self.last[host] = item
        if rows is not None and len(rows):
            self.batches.setdefault(host, []).append(rows)
        return self.stopping

    def take(self) -> tuple[dict[int, dict], dict[int, list[Any]]]:
        """Return (the last report of each host, the batches streamed since the last take)."""
        batches, self.batches = self.batches, {}
        return dict(self.last), batches

    def stop(self, signal_name: str) -> None:
        """Ask every host to stop (its next report's reply says so)."""
        self.stopping = signal_name


class HostAgent:
    """Run one host's share of a distributed run (see the module docstring)."""

    def __init__(self, host_index: int, collector: Any = None):
        self.host_index = host_index
        self.collector = collector

    def info(self) -> dict:
        """Where this agent runs: hostname, Ray node id, CPUs, pid."""
        import ray

        return {"hostname": platform.node(), "node_id": ray.get_runtime_context().get_node_id(),
                "cpu_count": os.cpu_count(), "pid": os.getpid()}

    def clock(self) -> int:
        """Return this host's wall clock (ns since the epoch), for the driver's offset ping."""
        return time.time_ns()

    def run(self, plan: Any, start_unix_ns: int, out_dir: str | None = None,
            return_files: bool = True) -> dict:
        """Run ``plan`` from ``start_unix_ns`` (this host's wall clock); return the summary,
        the outcome and, with ``return_files``, the Parquet files' bytes.

        ``out_dir`` (a shared file system's path) keeps the files there; without it they go
        to a temporary directory, removed once read.
        """
        import numpy as np
        import ray

        from lens.engine.runner import execute

        d = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lens-host-"))
        last = [0.0]
        rows_buf: list[Any] = []
        reply: list[Any] = []          # the ObjectRef of the last report's reply

        def on_batch(rows: Any, tokens: Any) -> None:   # once per drain, not per request
            if self.collector is not None and len(rows):
                rows_buf.append(rows)

        def report(item: dict, results: Any) -> Any:
            # the rows drained since the last report, and the ITL histogram so far
            rows = np.concatenate(rows_buf) if rows_buf else None
            rows_buf.clear()
            item["t_unix_ns"] = time.time_ns()
            if results is not None:
                results.flush()        # join the stamps that have their rows: ITL so far
                item["itl"] = results.histogram("itl").encode()
            return self.collector.report.remote(self.host_index, item, rows)

        def tick(elapsed: float, results: Any, sup: Any) -> None:
            if self.collector is None or elapsed - last[0] < PROGRESS_PERIOD_S:
                return
            last[0] = elapsed
            if reply and ray.wait(reply, timeout=0)[0]:
                stop = ray.get(reply[0])
                if stop and sup.outcome.interrupted is None:
                    sup.outcome.interrupted = stop      # as if the signal had come here
                    sup.stop()
            sent, in_flight, dropped = sup.counters()
            reply[:] = [report({
                "elapsed_s": round(elapsed, 3), "sent": sent, "in_flight": in_flight,
                "dropped": dropped, "t0_ns": sup.outcome.t0_ns,
                "t0_unix_ns": sup.outcome.t0_unix_ns,
                "worker_pids": [w.process.pid for w in sup.workers]}, results)]

        c0 = os.times()
        summary, results, outcome = execute(plan, d, on_tick=tick,
                                            t0_unix_ns=start_unix_ns,
                                            formats=("parquet", "json"), on_batch=on_batch)
        if self.collector is not None:
            # the rest of the stream, received by the collector before this call returns
            counts = summary["scenarios"][0]["results"][0]["counts"]
            ray.get(report({"elapsed_s": round((outcome.t_end_ns - outcome.t0_ns) / 1e9, 3),
                            "sent": counts["sent"], "in_flight": 0,
                            "dropped": counts["dropped"], "t0_ns": outcome.t0_ns,
                            "t0_unix_ns": outcome.t0_unix_ns, "final": True,
                            "worker_pids": [w.get("pid") for w in outcome.workers]},
                           results))
        c1 = os.times()
        # this agent's CPU and its (reaped) worker processes': the host's cost of the run
        cpu_s = sum(c1[:4]) - sum(c0[:4])
        files: dict[str, bytes] = {}
        if return_files:
            for name in ("requests.parquet", "tokens.parquet"):
                if (d / name).exists():
                    files[name] = (d / name).read_bytes()
        if not out_dir:
            shutil.rmtree(d, ignore_errors=True)
        return {
            "summary": summary,
            "files": files,
            "dir": str(d) if out_dir else None,
            "outcome": {"start_late_ms": outcome.start_late_ms, "died": outcome.died,
                        "interrupted": outcome.interrupted,
                        "workers": len(outcome.workers),
                        "cpu_s": round(cpu_s, 6)},
            **self.info(),
        }
