"""Servers the integration tests start: the mock in a thread, and stopping a subprocess."""
from __future__ import annotations

import subprocess
import threading

from lens.mock import MockConfig
from lens.mock.server import MockServer, bind_socket


class ThreadedMock:
    """The mock in a thread of this process (wire tests); MockProcess for timing and workers.

    ``ThreadedMock(**kw)`` serves ``MockConfig(port=0, **kw)`` on a free loopback port;
    ``url`` is the OpenAI API's base (``base_url`` + ``/v1``), or ``base_url`` for the others.
    """

    def __init__(self, **kw):
        config = MockConfig(port=0, **kw)
        self.server = MockServer(config)
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = self.base_url + "/v1" if config.api == "openai" else self.base_url
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.server.run,
                                       args=(self.sock, lambda _: self.ready.set(), False))

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def stop_process(proc: subprocess.Popen | None) -> None:
    """Stop a server subprocess: SIGTERM, then SIGKILL after 10 s; nothing if it has ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
