"""Run the mock: one worker in this process, or N worker processes sharing a port.

With ``--workers N`` (N > 1) the parent binds a socket with SO_REUSEPORT without listening, to
pick the port (``--port 0``) and hold it (a non-listening socket gets no connections);
then it starts N processes (multiprocessing, spawn),
each binding and listening on that port with SO_REUSEPORT, so the kernel spreads connections
over them. Once every worker accepts connections the parent prints the listening line. On
SIGTERM/SIGINT it forwards SIGTERM to the workers, which close their connections and write
their truth files, and waits for them.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from lens.errors import ConfigError, RunError
from lens.mock.config import MockConfig
from lens.mock.server import bind_socket, serve

__all__ = ["listening_line", "run"]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0


def listening_line(host: str, port: int, workers: int) -> str:
    """Return the line printed once the mock accepts connections."""
    shown = f"[{host}]" if ":" in host else host
    return (f"lens-fast mock listening on http://{shown}:{port} "
            f"({workers} worker{'s' if workers != 1 else ''})")


def _announce(config: MockConfig, port: int) -> None:
    print(listening_line(config.host, port, config.workers), flush=True)


def _pin(config: MockConfig, worker: int) -> None:
    cpu = config.cpu_of(worker)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def run(config: MockConfig) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status. Raise ConfigError for bad settings."""
    config.validate()
    if config.workers == 1:
        _pin(config, 0)
        serve(config, 0, bind_socket(config.host, config.port), lambda port: _announce(config, port))
        return 0
    return _run_workers(config)


def _worker_main(config: MockConfig, worker: int, port: int, conn: Connection) -> None:
    # SIGINT from a terminal reaches the whole process group; until the loop installs its own
    # handler, the parent's SIGTERM is the way to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _pin(config, worker)
        sock = bind_socket(config.host, port, reuse_port=True)
    except (ConfigError, OSError) as e:
        conn.send(f"worker {worker}: {e}")
        conn.close()
        sys.exit(1)

    def ready(_port: int) -> None:
        conn.send(os.getpid())
        conn.close()

    serve(config, worker, sock, ready)


def _run_workers(config: MockConfig) -> int:
    probe = bind_socket(config.host, config.port, listen=False, reuse_port=True)
    port = probe.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with probe:
            readers = []
            for k in range(config.workers):
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_worker_main, args=(config, k, port, w),
                                name=f"lens-mock-{k}")
                p.start()
                w.close()
                procs.append(p)
                readers.append(r)
            _wait_ready(readers, procs, lambda: stopping)
        if not stopping:
            _announce(config, port)
        while not stopping and all(p.is_alive() for p in procs):
            wait([p.sentinel for p in procs], timeout=0.2)
        failed = not stopping
    finally:
        _stop_all(procs)
        for s, h in old.items():
            signal.signal(s, h)
    if failed:
        codes = {p.name: p.exitcode for p in procs}
        raise RunError(f"a mock worker exited on its own ({codes}); its error is above")
    return 0


def _wait_ready(readers: list[Connection], procs: list[BaseProcess],
                stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    waiting = dict(zip(readers, procs, strict=True))
    try:
        while waiting and not stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunError(f"{len(waiting)} mock worker(s) did not start within "
                               f"{_START_TIMEOUT_S:.0f} s")
            for r in wait(list(waiting), timeout=min(left, 0.2)):
                try:
                    msg = r.recv()
                except EOFError:
                    msg = f"{waiting[r].name} exited during start-up"
                if isinstance(msg, str):
                    raise RunError(f"mock {msg}")
                del waiting[r]
    finally:
        for r in readers:
            r.close()


def _stop_all(procs: list[BaseProcess]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: the worker writes its truth file and exits
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
        if p.is_alive():
            p.kill()
            p.join()
        p.close()
