"""Run the mock in a child process: the embedded target of ``lens-fast run`` and the tests' server.

    with MockProcess(ttft_ms=20, itl_ms=2, cpu=1) as mock:
        ...  # send requests to mock.url ("http://127.0.0.1:PORT/v1")
        sent = mock.requests()  # what the client really sent: path, headers, body
    truth = mock.truth()  # {request_id: {"t_received_ns", ..., "token_write_ns"}}
"""
from __future__ import annotations

import http.client
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any, Self

import orjson

import lens
from lens.errors import ConfigError, RunError
from lens.mock.config import MockConfig, parse_cpus
from lens.mock.distributions import DistSpec
from lens.mock.truth import load_faults, load_truth, truth_paths

__all__ = ["MockProcess", "load_truth"]

_LINE = re.compile(r"listening on (http://(\S+):(\d+)) \(")
#: The environment variable that carries --require-key to the child (not its command line).
KEY_ENV = "LENS_MOCK_REQUIRE_KEY"
#: Fresh connections tried to reach every worker of a multi-worker mock (the kernel picks one
#: per connection by a hash: 8 workers are all reached within 200 tries but for ~1e-11).
_MAX_TRIES = 200


class MockProcess:
    """Start ``lens-fast mock`` in a subprocess with --port 0 and stop it with SIGTERM.

    Keyword arguments mirror the flags (``api=``, ``ttft_ms=``, ``itl_dist=``,
    ``max_concurrency=``, ``capture=``, ``require_key=``, ...); ``cpu`` (an int, a list of ints
    or a CPU-list string) pins the workers. Unless ``truth_file`` is given, the truth record
    goes to a temporary directory that ``stop()`` reads into memory and removes. Bad settings
    raise ConfigError before anything starts. ``require_key`` reaches the child through its
    environment, never its command line. ``faults`` gives rates per fault kind, as the
    ``--fault KIND=RATE`` flags do (``faults={"reset_mid_stream": 0.2}``); ``faults()`` returns
    what was injected, after ``stop()``.
    """

    def __init__(self, *, api: str = "openai", host: str = "127.0.0.1", port: int = 0,
                 workers: int = 1, model: str = "lens-mock", ttft_ms: float = 20.0,
                 ttft_dist: str = "fixed",
                 ttft_spread_ms: float = 0.0, itl_ms: float = 2.0, itl_dist: str = "fixed",
                 itl_spread_ms: float = 0.0, output_tokens: int | None = None,
                 max_concurrency: int = 0, batch_slowdown: float = 0.0, seed: int = 0,
                 truth_file: str | os.PathLike[str] | None = None, truth_limit: int = 100_000,
                 cpu: int | str | Iterable[int] | None = None, capture: int = 1000,
                 require_key: str | None = None, fail_rate: float = 0.0, fail_first: int = 0,
                 fail_status: int = 500, retry_after: float | None = None,
                 faults: Mapping[str, float] | Iterable[tuple[str, float]] | None = None,
                 fault_delay_ms: float = 1000.0, start_timeout_s: float = 30.0) -> None:
        if isinstance(cpu, int):
            cpus: tuple[int, ...] | None = (cpu,)
        elif isinstance(cpu, str):
            cpus = parse_cpus(cpu)
        else:
            cpus = tuple(cpu) if cpu is not None else None
        self.config = MockConfig(
            host=host, port=port, workers=workers, model=model,
            ttft=DistSpec(ttft_dist, ttft_ms, ttft_spread_ms),
            itl=DistSpec(itl_dist, itl_ms, itl_spread_ms), output_tokens=output_tokens,
            max_concurrency=max_concurrency, batch_slowdown=batch_slowdown, seed=seed,
            truth_file=os.fspath(truth_file) if truth_file is not None else None,
            truth_limit=truth_limit, cpus=cpus, api=api, capture=capture,
            require_key=require_key, fail_rate=fail_rate, fail_first=fail_first,
            fail_status=fail_status, retry_after=retry_after,
            faults=tuple((str(k), float(r)) for k, r in (
                faults.items() if isinstance(faults, Mapping) else faults or ())),
            fault_delay_ms=fault_delay_ms,
        ).validate()
        self.start_timeout_s = start_timeout_s
        #: ``http://HOST:PORT`` once started.
        self.base_url = ""
        #: The base URL a client of ``api`` is given: ``base_url + "/v1"`` for openai (the
        #: client appends ``/chat/completions``), ``base_url`` for the others (their clients
        #: append ``/v1/messages``, ``/v1beta/models/...``, ``/v2/chat``, ``/generate_stream``).
        self.url = ""
        self.host = ""
        self.port = 0
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._tmpdir: str | None = None
        # absolute: the child runs in another directory (see start())
        self._truth_path = (os.path.abspath(self.config.truth_file)
                            if self.config.truth_file else None)
        self._truth_blobs: list[bytes] | None = None
        self._truth: dict[str, dict[str, Any]] | None = None

    def args(self) -> list[str]:
        """Return the ``lens-fast mock`` flags this process runs with."""
        c = self.config
        args = ["--host", c.host, "--port", str(c.port), "--workers", str(c.workers),
                "--model", c.model,
                "--ttft-ms", repr(c.ttft.mean_ms), "--ttft-dist", c.ttft.kind,
                "--ttft-spread-ms", repr(c.ttft.spread_ms),
                "--itl-ms", repr(c.itl.mean_ms), "--itl-dist", c.itl.kind,
                "--itl-spread-ms", repr(c.itl.spread_ms),
                "--max-concurrency", str(c.max_concurrency),
                "--batch-slowdown", repr(c.batch_slowdown), "--seed", str(c.seed),
                "--truth-limit", str(c.truth_limit), "--api", c.api,
                "--capture", str(c.capture)]
        if c.output_tokens is not None:
            args += ["--output-tokens", str(c.output_tokens)]
        if c.fail_rate or c.fail_first:
            args += ["--fail-rate", repr(c.fail_rate), "--fail-first", str(c.fail_first),
                     "--fail-status", str(c.fail_status)]
        if c.retry_after is not None:
            args += ["--retry-after", repr(c.retry_after)]
        for kind, rate in c.faults:
            args += ["--fault", f"{kind}={rate!r}"]
        if c.faults:
            args += ["--fault-delay-ms", repr(c.fault_delay_ms)]
        if self._truth_path:
            args += ["--truth-file", self._truth_path]
        if c.cpus:
            args += ["--cpu", ",".join(map(str, c.cpus))]
        return args

    @property
    def pid(self) -> int | None:
        """Return the pid of the mock's main process (None before start)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> MockProcess:
        """Start the mock and wait for its listening line; raise RunError if it fails."""
        if self._proc is not None:
            raise RuntimeError("MockProcess.start() called twice")
        if self._truth_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="lens-mock-")
            self._truth_path = os.path.join(self._tmpdir, "truth")
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(lens.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env.pop(KEY_ENV, None)
        if self.config.require_key is not None:
            env[KEY_ENV] = self.config.require_key
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lens.mock", *self.args()], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            # run where this lens package lives: from a source checkout's root, `-m` would
            # otherwise import the uncompiled lens/ there instead of the installed one
            cwd=root)
        try:
            line = self._read_line()
        except BaseException:
            self.stop()
            raise
        m = _LINE.search(line)
        if m is None:  # pragma: no cover - the line is ours
            self.stop()
            raise RunError(f"unexpected first line from the mock: {line!r}")
        self.base_url = m.group(1)
        self.url = self.base_url + "/v1" if self.config.api == "openai" else self.base_url
        self.host = m.group(2).strip("[]")
        self.port = int(m.group(3))
        return self

    def _read_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.start_timeout_s
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunError(f"the mock printed no listening line within "
                                   f"{self.start_timeout_s:.0f} s")
                if sel.select(min(left, 0.5)):
                    data = os.read(fd, 4096)
                    if not data:
                        self._proc.wait()
                        raise self._start_error()
                    buf += data
        return buf.decode(errors="replace").splitlines()[0]

    def _start_error(self) -> Exception:
        last = self._stderr_text().strip().splitlines()[-1:] or [""]
        kind, _, message = last[0].partition(": ")
        if kind == "ConfigError":
            return ConfigError(message)
        return RunError(f"the mock exited with status {self._proc.returncode} before "
                        f"listening: {last[0] or 'no message'}")

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the mock (SIGTERM, then SIGKILL after ``timeout_s``); return its exit status.

        The truth files are read into memory here; calling stop() again does nothing.
        """
        proc = self._proc
        if proc is None or self.returncode is not None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()
        try:
            paths = truth_paths(self._truth_path) if self._truth_path else []
        except FileNotFoundError:
            paths = []
        self._truth_blobs = []
        for p in paths:
            with open(p, "rb") as f:
                self._truth_blobs.append(f.read())
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return self.returncode

    def truth(self) -> dict[str, dict[str, Any]]:
        """Return the mock's truth record (see ``load_truth``); call after ``stop()``.

        Raise RuntimeError while the mock runs, and RunError when it wrote no truth file.
        """
        if self._truth_blobs is None:
            raise RuntimeError("MockProcess.truth() needs the mock stopped; call stop() first "
                               "(or GET <base_url>/lens/truth for one worker's record)")
        if not self._truth_blobs:
            raise RunError(f"the mock wrote no truth file (exit status {self.returncode})")
        if self._truth is None:
            self._truth = load_truth(self._truth_blobs)
        return self._truth

    def faults(self) -> list[dict[str, Any]]:
        """Return the faults the mock injected (see ``lens.mock.truth.load_faults``), oldest
        first; call after ``stop()``. Each: ``request_id``, ``kind``, ``t_ns``, ``worker``.

        Raise RuntimeError while the mock runs, and RunError when it wrote no truth file.
        """
        self.truth()  # the same checks
        return load_faults(self._truth_blobs or [])

    def requests(self) -> list[dict[str, Any]]:
        """Return the requests the mock kept (``--capture``), oldest first, from every worker.

        Each is a dict with ``method``, ``path`` (with the query), ``headers`` (lower-case
        names), ``raw_headers``, ``body`` (text), ``json`` (the body parsed, or None),
        ``request_id``, ``t_received_ns`` and ``worker`` (format in ``lens.mock.capture``).
        Only while the mock runs: RuntimeError otherwise. With several workers, fresh
        connections ask until every worker has answered for its own requests.
        """
        merged = [r for body in self._each_worker("GET").values() for r in orjson.loads(body)]
        return sorted(merged, key=lambda r: r["t_received_ns"])

    def clear_requests(self) -> None:
        """Forget the requests every worker kept so far (``DELETE /lens/requests``)."""
        self._each_worker("DELETE")

    def _each_worker(self, method: str) -> dict[int, bytes]:
        if self._proc is None or self.returncode is not None:
            raise RuntimeError("MockProcess.requests() needs the mock running; call it before "
                               "stop() (or inside the with block)")
        answers: dict[int, bytes] = {}
        for _ in range(_MAX_TRIES):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:  # a new connection each time: the kernel picks its worker
                conn.request(method, "/lens/requests", headers={"connection": "close"})
                r = conn.getresponse()
                body = r.read()
                worker = int(r.getheader("x-lens-mock-worker", "0"))
            finally:
                conn.close()
            if r.status != 200:
                raise RunError(f"{method} /lens/requests answered {r.status}: {body[:200]!r}")
            answers.setdefault(worker, body)
            if len(answers) == self.config.workers:
                return answers
        raise RunError(f"only workers {sorted(answers)} of {self.config.workers} answered "
                       f"{method} /lens/requests in {_MAX_TRIES} connections")

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self.returncode is None else "stopped"
        return f"<MockProcess {self.url or 'not started'} {state}>"
