"""The parent process of a run: spawn workers, agree on t0, drain their rings, stop them.

The parent sends no request. It owns the shared-memory rings (one row ring and one token
ring per worker), releases all workers at one epoch ``t0 = now + LEAD``, drains the rings
every ``DRAIN_S`` into the results and the output sinks, and watches the workers: a worker
that dies is reported with the load it missed, and the run still ends with valid outputs.

Ctrl-C (SIGINT) or SIGTERM: the first asks every worker to stop (no new requests, a short
grace for in-flight ones, then they are recorded as cancelled); a second one stops waiting
and terminates the workers. Either way the outputs are written and the run is marked
interrupted.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from typing import Any

from lens._core import Ring, now_ns
from lens._core.recorder import ROW_FIELDS
from lens.engine.plan import RunPlan
from lens.engine.worker import worker_main
from lens.errors import EndpointError, RunError

LEAD_NS = 100_000_000           # t0 = now + 100 ms: every worker is waiting by then
DRAIN_S = 0.05
ROW_RING = 1 << 14              # rows per worker ring (~3 MB); spills beyond, never drops
TOKEN_RING = 1 << 18            # token stamps per worker ring (~6 MB)
TOKEN_WORDS = 3
READY_TIMEOUT_S = 120.0


@contextlib.contextmanager
def _no_main_rerun() -> Iterator[None]:
    """While it is open, a spawned process does not run this process's ``__main__`` again.

    ``multiprocessing``'s spawn runs the parent's main script (or module) again in each child,
    as ``__mp_main__``, for targets defined there. A lens worker's is not, and in a Ray host
    agent that script is Ray's ``default_worker.py``: every lens worker imported Ray (about
    0.4 CPU-s and 100 MB each). The main module's ``__file__`` and ``__spec__`` are hidden
    while the child is started (the parent sends its preparation data then), and put back.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@dataclass
class WorkerState:
    """What the parent knows of one worker."""

    index: int
    process: Any
    pipe: Any
    rows: Ring
    tokens: Ring
    ready: dict | None = None
    done: dict | None = None
    died: str | None = None
    missed: dict | None = None          # the load a dead worker did not send


@dataclass
class RunOutcome:
    """How a run went, besides the measured rows (which went to the sinks)."""

    t0_ns: int = 0
    t0_unix_ns: int = 0
    t_end_ns: int = 0
    start_late_ms: float = 0.0                # an agreed t0 that had passed when all were ready
    interrupted: str | None = None            # None, "SIGINT" or "SIGTERM"
    workers: list[dict] = field(default_factory=list)
    died: list[str] = field(default_factory=list)


class Supervisor:
    """Run a plan across ``plan.cores`` worker processes.

    ``on_batch(rows, tokens)`` receives every drained batch (numpy arrays of ROW/TOKEN
    records); ``on_tick(elapsed_s)`` is called after each drain (progress display).
    ``t0_unix_ns``: an agreed start (wall clock, one host of a distributed run) instead of
    ``now + LEAD``; it becomes this host's CLOCK_MONOTONIC t0 through ``time_ns()``.
    """

    def __init__(self, plan: RunPlan, on_batch: Callable, on_tick: Callable | None = None,
                 cpus: list[int] | None = None, t0_unix_ns: int | None = None):
        self.plan = plan
        self.t0_unix_ns = t0_unix_ns
        self.on_batch = on_batch
        self.on_tick = on_tick
        self.cpus = cpus
        self.workers: list[WorkerState] = []
        self.outcome = RunOutcome()
        self._signals = 0

    # ------------------------------------------------------------------ start
    def _spawn(self) -> None:
        """Start the workers (``spawn``: a fresh interpreter each, whatever the parent's
        threads; their target, ``worker_main``, is importable)."""
        ctx = mp.get_context("spawn")
        W = self.plan.cores
        # one host of several: worker k runs as global worker base + k of all hosts' workers
        base, total = self.plan.host_index * W, self.plan.hosts * W
        for k in range(W):
            rows = Ring(capacity=ROW_RING, record_words=len(ROW_FIELDS))
            tokens = Ring(capacity=TOKEN_RING, record_words=TOKEN_WORDS)
            parent_end, child_end = ctx.Pipe()
            cpu = self.cpus[k % len(self.cpus)] if self.cpus else None
            p = ctx.Process(target=worker_main, name=f"lens-worker-{k}",
                            args=(self.plan, base + k, total, rows.name, tokens.name,
                                  child_end, cpu),
                            daemon=True)
            w = WorkerState(k, p, parent_end, rows, tokens)
            try:
                with _no_main_rerun():
                    p.start()
            finally:
                child_end.close()
                self.workers.append(w)

    def _drain(self) -> int:
        n = 0
        for w in self.workers:
            rows = w.rows.drain()
            tokens = w.tokens.drain()
            if len(rows) or len(tokens):
                self.on_batch(rows, tokens)
                n += len(rows)
        return n

    def _poll_messages(self, timeout: float) -> None:
        pipes = {w.pipe: w for w in self.workers if w.done is None and w.died is None}
        sentinels = {w.process.sentinel: w for w in self.workers
                     if w.done is None and w.died is None}
        if not pipes:
            time.sleep(timeout)
            return
        try:
            ready = mp_wait(list(pipes) + list(sentinels), timeout)
        except InterruptedError:
            return
        for obj in ready:
            if obj in pipes:
                w = pipes[obj]
                try:
                    msg = w.pipe.recv()
                except (EOFError, OSError):
                    continue
                self._on_message(w, msg)
        for obj in ready:
            if obj in sentinels:
                w = sentinels[obj]
                if w.done is None and w.died is None and w.process.exitcode is not None:
                    # a last message may still sit in the pipe
                    while w.pipe.poll():
                        try:
                            self._on_message(w, w.pipe.recv())
                        except (EOFError, OSError):
                            break
                    if w.done is None:
                        code = w.process.exitcode
                        how = f"signal {-code}" if code < 0 else f"exit status {code}"
                        w.died = f"worker {w.index} (pid {w.process.pid}) died ({how})"
                        w.missed = self._missed(w)
                        if w.missed:
                            w.died += f"; {w.missed['text']}"
                        self.outcome.died.append(w.died)

    def _missed(self, w: WorkerState) -> dict | None:
        """The load worker ``w`` did not send because it died (None before t0)."""
        from lens.engine.worker import COUNTER_SENT

        if not self.outcome.t0_ns:
            return None
        W = len(self.workers)
        return missed_load(self.plan, self.plan.host_index * W + w.index, self.plan.hosts * W,
                           w.rows.counter(COUNTER_SENT),
                           (now_ns() - self.outcome.t0_ns) / 1e9)

    def counters(self) -> tuple[int, int, int]:
        """Return (sent, in flight, dropped) summed over workers, as they last published."""
        from lens.engine.worker import COUNTER_DROPPED, COUNTER_IN_FLIGHT, COUNTER_SENT

        sent = infl = dropped = 0
        for w in self.workers:
            sent += w.rows.counter(COUNTER_SENT)
            infl += w.rows.counter(COUNTER_IN_FLIGHT)
            dropped += w.rows.counter(COUNTER_DROPPED)
        return sent, infl, dropped

    def _on_message(self, w: WorkerState, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = msg[1]
        elif kind == "done":
            w.done = msg[1]
        elif kind == "error":
            w.died = msg[2]
            self._startup_error = msg

    # -------------------------------------------------------------- the run
    def run(self) -> RunOutcome:
        """Carry out the plan; return the outcome once every worker is done or gone."""
        from lens.engine import interrupts

        self._startup_error = None
        # only the main thread may take signals; elsewhere (a Ray host agent's run) the
        # caller stops the run itself (``stop()``)
        main = threading.current_thread() is threading.main_thread()
        old_int = signal.signal(signal.SIGINT, self._on_signal) if main else None
        old_term = signal.signal(signal.SIGTERM, self._on_signal) if main else None
        early = interrupts.pending()
        if early is not None:             # before the run: nothing to start
            self._signals = 1
            self.outcome.interrupted = early
        try:
            if early is None:
                self._spawn()
            if early is not None or not self._wait_ready():
                self._go(send=False)      # an epoch for the (empty) results
                self.outcome.t_end_ns = self.outcome.t0_ns
                self._stop_starting()
            else:
                self._go()
                self._loop()
        finally:
            if main:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
            self._shutdown()
        return self.outcome

    def _wait_ready(self) -> bool:
        """Wait until every worker is ready (True), or a signal came first (False)."""
        deadline = time.monotonic() + READY_TIMEOUT_S + self.plan.timeouts.connect_s
        while True:
            self._poll_messages(DRAIN_S)
            self._drain()
            if self._startup_error is not None:
                _, kind, message = self._startup_error
                raise EndpointError(message)
            dead = [w.died for w in self.workers if w.died]
            if dead:
                raise RunError(f"{dead[0]} while starting")
            if all(w.ready is not None for w in self.workers):
                return not self._signals
            if self._signals:
                return False
            if time.monotonic() > deadline:
                raise RunError(f"workers not ready within {READY_TIMEOUT_S:.0f} s "
                               "(probe request or connection pool did not complete)")

    def _go(self, send: bool = True) -> None:
        if self.t0_unix_ns is not None:
            # the agreed start: keep it even if it passed (arrivals then catch up, and the
            # scheduling lag shows it), so every host's schedule stays the one global schedule
            now = now_ns()
            t0 = now + (self.t0_unix_ns - time.time_ns())
            self.outcome.t0_ns = t0
            self.outcome.t0_unix_ns = self.t0_unix_ns
            self.outcome.start_late_ms = max(0.0, (now - t0) / 1e6)
        else:
            t0 = now_ns() + (LEAD_NS if send else 0)
            self.outcome.t0_ns = t0
            self.outcome.t0_unix_ns = time.time_ns() + (t0 - now_ns())
        for w in self.workers if send else ():
            w.pipe.send(("go", t0))

    def _stop_starting(self) -> None:
        """Interrupted before t0: stop the workers (they are still probing or waiting)."""
        for w in self.workers:
            try:
                w.pipe.send(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
        self._drain()

    def _loop(self) -> None:
        t0 = self.outcome.t0_ns
        forced = False
        while True:
            self._poll_messages(DRAIN_S)
            self._drain()
            if self.on_tick is not None:
                self.on_tick(max(0.0, (now_ns() - t0) / 1e9))
            if self._signals >= 2 and not forced:
                forced = True
                for w in self.workers:
                    if w.process.is_alive():
                        w.process.terminate()
            if all(w.done is not None or w.died is not None for w in self.workers):
                break
            if forced and all(not w.process.is_alive() for w in self.workers):
                for w in self.workers:
                    if w.done is None and w.died is None:
                        w.died = f"worker {w.index} terminated by a second interrupt"
                break
        self._drain()
        self.outcome.t_end_ns = now_ns()

    def stop(self) -> None:
        """Ask every worker to stop: no new requests; in-flight ones get a short grace, then
        are recorded as cancelled. Not an interruption (a sweep's drain limit uses it)."""
        for w in self.workers:
            try:
                w.pipe.send(("stop",))
            except (OSError, ValueError):
                pass

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self.outcome.interrupted is None:
            self.outcome.interrupted = signal.Signals(signum).name
        self.stop()

    def _shutdown(self) -> None:
        for w in self.workers:
            if w.process.pid is None:          # never started
                w.pipe.close()
                w.rows.close()
                w.tokens.close()
                continue
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            info = dict(w.done or {})
            info["index"] = w.index
            info["pid"] = w.process.pid
            if w.ready:
                info["ready"] = w.ready
            if w.died:
                info["died"] = w.died
            if w.missed:
                info["missed"] = {k: v for k, v in w.missed.items() if k != "text"}
            self.outcome.workers.append(info)
            w.pipe.close()
            w.rows.close()
            w.tokens.close()


def missed_load(plan: RunPlan, k: int, workers: int, sent: int, died_at_s: float) -> dict:
    """What worker ``k`` of ``workers`` would still have sent had it not died at ``died_at_s``.

    Open loop: its arrivals of the schedule (the ``i mod N`` split) not sent, counted exactly.
    Closed loop: its share of ``requests`` not sent, or of the duration, its users × the
    seconds left.
    """
    from lens.engine.worker import worker_share
    from lens.workload.arrivals import arrival_offsets_ns, split

    out: dict[str, Any] = {"died_at_s": round(died_at_s, 3), "sent": int(sent)}
    if plan.mode == "open":
        offsets = arrival_offsets_ns(plan.arrival, plan.rps, requests=plan.requests,
                                     duration_s=plan.duration_s, seed=plan.seed,
                                     burstiness=plan.burstiness)
        scheduled = len(split(offsets, k, workers)[0])
        out.update(scheduled=scheduled, missed_requests=max(0, scheduled - int(sent)))
        share = plan.rps / workers
        out["text"] = (f"it missed {out['missed_requests']} of its {scheduled} scheduled "
                       f"requests ({share:g} of the {plan.rps:g} req/s offered)")
    elif plan.requests is not None:
        share = worker_share(plan.requests, k, workers)
        out.update(scheduled=share, missed_requests=max(0, share - int(sent)))
        out["text"] = f"it missed {out['missed_requests']} of its {share} requests"
    else:
        users = worker_share(plan.concurrency, k, workers)
        left = max(0.0, (plan.duration_s or 0.0) - died_at_s)
        out.update(users=users, missed_user_s=round(users * left, 3))
        out["text"] = (f"it missed {left:.1f} s of load from {users} of the "
                       f"{plan.concurrency} users")
    return out


def default_cores() -> int:
    """cpu_count − 1 worker processes, at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (n or 1) - 1)
