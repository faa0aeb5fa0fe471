"""The host agent: one Ray actor per host, running the ordinary engine on its slice.

The agent is a plain class; the driver wraps it with ``ray.remote`` (one CPU per worker
process, pinned to one node). Its ``run`` is ``lens.engine.runner.execute`` with the plan's
host slice and the agreed start, so a host of a distributed run measures exactly as a local
run does: its own worker processes, its own shared-memory rings, its own Parquet and
``summary.json``.

The actor has two concurrency groups: ``run`` (with ``info`` and ``clock``) in the default
one, and ``take`` and ``stop`` in ``io`` (one thread), so that the driver reaches the agent
while its run goes on. No other actor is involved, so a run starts one Ray worker process per
host and nothing else (benchmarks/RESULTS.md: an extra relay actor cost about 0.5 CPU-s per
run and 0.009 CPU-s per second).

Rows stream: every drained batch of request rows (the structured array the host's own
results get) is buffered; once a second the run's thread also notes its progress and its
ITL histogram so far (3–4 KB encoded). The driver takes both out once a second (``take``,
``lens.distributed.stream``), so the rows of a host lost mid-run survive it and the driver
shows live figures. Token stamps do not travel (24 bytes a token: a 500-token answer would be
12 KB); the ITL histogram stands for them. When the run ends the last rows and the final
report wait in the buffer for the driver's last ``take``; a host that finishes returns its
own Parquet files as well, and the driver uses those.

Stopping: ``stop(signal_name)`` (a Ctrl-C or SIGTERM in the driver) is seen by the run's
next tick, which stops its supervisor as a signal would: no new requests, in-flight ones get
their short grace, the host's summary is marked interrupted by that signal. (The run is not
on the process's main thread, so its supervisor installs no signal handlers.)
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["HostAgent", "IO_GROUP", "normal_priority"]

PROGRESS_PERIOD_S = 1.0     # the run notes its progress and ITL histogram this often
IO_GROUP = "io"             # the concurrency group of take and stop


def normal_priority() -> int:
    """Put every thread of this process back to nice 0 (Ray starts its workers at nice 15);
    return this thread's niceness after. Lowering a niceness needs CAP_SYS_NICE (root
    usually has it; a container's root often not): where it is refused, the value stays, and
    the driver starts the agent again at nice 0 through Ray itself (a runtime env, which costs
    a second import of Ray in the new worker process)."""
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
        try:
            if os.getpriority(os.PRIO_PROCESS, int(tid)) > 0:
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except OSError:          # EPERM/EACCES without the capability; a thread that ended
            pass
    return os.getpriority(os.PRIO_PROCESS, 0)


class HostAgent:
    """Run one host's share of a distributed run (see the module docstring)."""

    def __init__(self, host_index: int, renice: bool = True):
        self.host_index = host_index
        self.renice = renice                 # normal_priority (else the cluster's nice)
        if renice:
            normal_priority()                # every thread now, so those it starts too
        self._lock = threading.Lock()
        self._rows: list[Any] = []           # batches drained since the driver's last take
        self._report: dict | None = None     # the latest progress report
        self._stop: str | None = None        # the driver's stop request (a signal's name)

    def info(self) -> dict:
        """Where this agent runs: hostname, Ray node id, CPUs, pid, user, and the niceness of
        the thread its run takes (0 unless the agent could not take normal priority when it
        started: the driver then starts it again)."""
        import ray

        return {"hostname": platform.node(), "node_id": ray.get_runtime_context().get_node_id(),
                "cpu_count": os.cpu_count(), "pid": os.getpid(), "uid": os.getuid(),
                "nice": os.nice(0)}

    def clock(self) -> int:
        """Return this host's wall clock (ns since the epoch), for the driver's offset ping."""
        return time.time_ns()

    def take(self) -> tuple[dict | None, Any]:
        """(io group) The latest progress report and the request rows drained since the last
        take (one structured array, or None)."""
        import numpy as np

        with self._lock:
            report = self._report
            if report is None:              # rows only with the host's epoch (its first tick)
                return None, None
            rows, self._rows = self._rows, []
        return report, (np.concatenate(rows) if len(rows) > 1 else rows[0] if rows else None)

    def stop(self, signal_name: str) -> None:
        """(io group) Ask the run to stop as that signal would (its next tick does)."""
        self._stop = signal_name

    def run(self, plan: Any, start_unix_ns: int, out_dir: str | None = None,
            return_files: bool = True) -> dict:
        """Run ``plan`` from ``start_unix_ns`` (this host's wall clock); return the summary,
        the outcome and, with ``return_files``, the Parquet files' bytes.

        ``out_dir`` (a shared file system's path) keeps the files there; without it they go
        to a temporary directory, removed once read. The drained rows and the progress wait
        for the driver's ``take``.
        """
        from lens.distributed.merge import host_result
        from lens.engine.runner import execute

        # this thread spawns the lens workers: they inherit its niceness
        nice = normal_priority() if self.renice else os.nice(0)
        d = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="lens-host-"))
        last = [-PROGRESS_PERIOD_S]        # the first tick notes the epoch at once

        def on_batch(rows: Any, tokens: Any) -> None:   # once per drain, not per request
            if len(rows):
                with self._lock:
                    self._rows.append(rows)

        def note(item: dict, results: Any) -> None:
            item["t_unix_ns"] = time.time_ns()
            if results is not None:
                results.flush()        # join the stamps that have their rows: ITL so far
                item["itl"] = results.histogram("itl").encode()
            self._report = item

        def tick(elapsed: float, results: Any, sup: Any) -> None:
            if self._stop is not None and sup.outcome.interrupted is None:
                sup.outcome.interrupted = self._stop      # as if the signal had come here
                sup.stop()
            if elapsed - last[0] < PROGRESS_PERIOD_S:
                return
            last[0] = elapsed
            sent, in_flight, dropped = sup.counters()
            note({"elapsed_s": round(elapsed, 3), "sent": sent, "in_flight": in_flight,
                  "dropped": dropped, "t0_ns": sup.outcome.t0_ns,
                  "t0_unix_ns": sup.outcome.t0_unix_ns,
                  "worker_pids": [w.process.pid for w in sup.workers]}, results)

        c0 = os.times()
        summary, results, outcome = execute(
            plan, d, on_tick=tick, t0_unix_ns=start_unix_ns, formats=("parquet", "json"),
            on_batch=on_batch)
        # the final report; the last rows wait in the buffer for the driver's last take
        counts = host_result(summary)["counts"]
        note({"elapsed_s": round((outcome.t_end_ns - outcome.t0_ns) / 1e9, 3),
              "sent": counts["sent"], "in_flight": 0, "dropped": counts["dropped"],
              "t0_ns": outcome.t0_ns, "t0_unix_ns": outcome.t0_unix_ns, "final": True,
              "worker_pids": [w.get("pid") for w in outcome.workers]}, results)
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
                        "workers": len(outcome.workers), "nice": nice,
                        "cpu_s": round(cpu_s, 6)},
            **self.info(),
        }
