"""A real llama.cpp ``llama-server`` (Gemma 3 270M) for the real-engine tests.

``.ci/llama-server.sh`` builds the server and assembles the model once, cached outside the clone,
and ``.ci/run`` exports what it found:

    LENS_LLAMA_SERVER, LENS_LLAMA_MODEL   the binary and the .gguf
    LENS_LLAMA_SKIP_REASON                the build is impossible here (the tests skip, saying why)
    LENS_LLAMA_ERROR                      the build should have worked and did not (they fail)

Without these variables (pytest run by hand) the default cache of the script is looked at.
``LENS_LLAMA_NICE=19`` starts the server niced (for a machine shared with other work).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import stop_process

#: llama-cpp-python sdist whose vendored llama.cpp .ci/llama-server.sh builds (keep in step).
LLAMA_CPP_PYTHON_VERSION = os.environ.get("LENS_LLAMA_CPP_PYTHON_VERSION", "0.3.36")
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
#: What the tests ask of the server: 4 slots (real continuous batching), 1 thread each for
#: generation and prompt batches (the CI machine has 2 cores), Prometheus /metrics, and Gemma's
#: chat template (the base model has none: chat and /v1/messages need one). ``--no-jinja`` must
#: come first: with Jinja on (the default) ``--chat-template gemma`` is taken as a template
#: whose text is "gemma", and every chat prompt becomes that one word.
SERVER_ARGS = ("-c", "4096", "-np", "4", "-t", "1", "-tb", "1", "--metrics",
               "--no-jinja", "--chat-template", "gemma")


def _cache_dir() -> Path:
    base = os.environ.get("LENS_CACHE_DIR") or Path.home() / ".cache" / "lens-fast"
    return Path(base) / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}"


def locate() -> tuple[Path, Path]:
    """The server binary and the model, or pytest.skip / pytest.fail saying why not."""
    error = os.environ.get("LENS_LLAMA_ERROR")
    if error:
        pytest.fail(f"llama-server: .ci/llama-server.sh failed: {error}")
    reason = os.environ.get("LENS_LLAMA_SKIP_REASON")
    if reason:
        pytest.skip(f"llama-server: {reason}")
    cache = _cache_dir()
    server = os.environ.get("LENS_LLAMA_SERVER") or cache / "llama-server"
    model = os.environ.get("LENS_LLAMA_MODEL") or cache / MODEL_FILE
    server, model = Path(server), Path(model)
    if server.is_file() and model.is_file():
        return server, model
    skipfile = cache / "cannot-build.txt"
    if skipfile.is_file():
        pytest.skip(f"llama-server: {skipfile.read_text().strip()}")
    if "LENS_LLAMA_SERVER" in os.environ:   # .ci/run said it was ready: it must be there
        pytest.fail(f"llama-server: {server} or {model} is missing")
    pytest.skip(f"llama-server: not built (no {server} or {model}); run .ci/llama-server.sh "
                f"(about 8 minutes on 2 cores), or .ci/run, which does")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PROMPT = re.compile(r"task (\d+) \| prompt eval time = +([\d.]+) ms / +(\d+) tokens")
_EVAL = re.compile(r"task (\d+) \| +eval time = +([\d.]+) ms / +(\d+) tokens")


@dataclass
class Timing:
    """One finished request as the server's log reports it (``print_timings``)."""

    task: int
    prompt_ms: float          # slot start → prompt done (the first token is sampled there)
    prompt_n: int
    predicted_ms: float       # first token → last token
    predicted_n: int          # output tokens (== usage.completion_tokens / output_tokens)

    @property
    def per_token_ms(self) -> float:
        """The server's ``predicted_per_token_ms``: predicted_ms / (predicted_n − 1)."""
        return self.predicted_ms / (self.predicted_n - 1) if self.predicted_n > 1 else float("nan")


class LlamaServer:
    """``llama-server`` on a free loopback port; its log is kept to read its own timings."""

    def __init__(self, binary: Path, model: Path, log: Path):
        self.binary, self.model, self.log = binary, model, log
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.startup_s = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        nice = int(os.environ.get("LENS_LLAMA_NICE", "0") or 0)
        for _attempt in range(3):   # the free port can be taken before the server binds it
            self.port = _free_port()
            cmd = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1",
                   "--port", str(self.port), *SERVER_ARGS]
            if nice:
                cmd = ["nice", "-n", str(nice), *cmd]
            with open(self.log, "ab") as logf:
                logf.write(f"\n$ {' '.join(cmd)}\n".encode())
                logf.flush()
                t = time.monotonic()
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
            if self._wait_healthy(timeout_s):
                self.startup_s = time.monotonic() - t
                return
            self.stop()
        raise RuntimeError(f"llama-server did not become healthy; its log:\n{self.tail()}")

    def _wait_healthy(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.base + "/health", timeout=2.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        stop_process(self.proc)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    # ---- what the server itself says ----
    def metrics(self) -> dict[str, float]:
        """``/metrics`` (Prometheus) as {name without the ``llamacpp:`` prefix: value}."""
        r = httpx.get(self.base + "/metrics", timeout=10.0)
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if line.startswith("llamacpp:"):
                name, value = line.split()[:2]
                out[name.removeprefix("llamacpp:")] = float(value)
        return out

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def timings(self, offset: int, expect: int, timeout_s: float = 10.0) -> list[Timing]:
        """The ``print_timings`` of the requests finished after ``offset`` in the log.

        Waits until ``expect`` of them are there (the server logs a request when it frees the
        slot, which can be a moment after the client has its last byte).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            prompt = {int(m[1]): (float(m[2]), int(m[3])) for m in _PROMPT.finditer(text)}
            evals = {int(m[1]): (float(m[2]), int(m[3])) for m in _EVAL.finditer(text)}
            done = [Timing(t, *prompt[t], *evals[t]) for t in sorted(evals) if t in prompt]
            if len(done) >= expect or time.monotonic() > deadline:
                return done
            time.sleep(0.05)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """One llama-server for the session: ``-np 4 -c 4096 -t 1 -tb 1`` on 127.0.0.1."""
    binary, model = locate()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = LlamaServer(binary, model, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()
