"""RunPlan: everything a run needs, validated, frozen and picklable (it travels to workers).

The plan holds the API key because workers must send it; ``public()`` is the plan as it may
appear in outputs, with the key removed.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lens.errors import ConfigError

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


@dataclass(frozen=True)
class Timeouts:
    """Per-request time limits in seconds."""

    connect_s: float = 10.0
    first_token_s: float = 60.0
    total_s: float = 600.0


@dataclass(frozen=True)
class RunPlan:
    """One run: target, load shape, limits. Built by the CLI, read by the supervisor and workers."""

    url: str                                  # base URL, e.g. http://127.0.0.1:8000/v1
    model: str = "lens-mock"
    endpoint: str = "chat"                    # chat | completions
    api_key: str | None = field(default=None, repr=False)
    cores: int = 1
    rps: float | None = None                  # open loop when set
    arrival: str = "constant"
    burstiness: float = 1.0
    concurrency: int | None = None            # closed loop when set
    duration_s: float | None = None
    requests: int | None = None
    max_inflight: int = 10000
    max_tokens: int = 128
    prompt: str | None = None
    input_tokens: int | None = None
    seed: int = 0
    timeouts: Timeouts = Timeouts()
    warmup: int = 0
    client: str = "fast"                      # fast | httpx
    http2: bool = False
    insecure: bool = False
    ca_cert: str | None = None
    include_usage: bool = True
    max_token_stamps: int = 1 << 20
    max_event_bytes: int = 1 << 20
    extra: dict = field(default_factory=dict)

    # ---- derived ----
    @property
    def mode(self) -> str:
        """``open`` (--rps) or ``closed`` (--concurrency)."""
        return "open" if self.rps is not None else "closed"

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        u = urlsplit(self.url)
        return u.port or (443 if u.scheme == "https" else 80)

    @property
    def path(self) -> str:
        """The request path: the URL's path plus the endpoint's."""
        return urlsplit(self.url).path.rstrip("/") + ENDPOINT_PATHS[self.endpoint]

    @property
    def request_url(self) -> str:
        """The full URL requests are sent to."""
        u = urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}{self.path}"

    def public(self) -> dict:
        """The plan as a dict safe to store in outputs (no API key)."""
        d = dataclasses.asdict(self)
        d.pop("api_key", None)
        d["api_key_set"] = self.api_key is not None
        return d


def check_url(url: str) -> str:
    """Validate a base URL; return it without a trailing slash."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"--url must be an http:// or https:// base URL such as http://localhost:8000/v1 "
            f"(got {url!r})")
    try:
        u.port
    except ValueError:
        raise ConfigError(f"--url has an invalid port (got {url!r})") from None
    if u.query or u.fragment:
        raise ConfigError(f"--url must be a base URL without ?query or #fragment (got {url!r})")
    return url.rstrip("/")


def api_key_from_env(var: str | None) -> str | None:
    """Read the API key from an environment variable; None when unset or empty."""
    if not var:
        return None
    return os.environ.get(var) or None
