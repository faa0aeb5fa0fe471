"""RunPlan: everything a run needs, validated, frozen and picklable (it travels to workers).

The plan holds the API key because workers must send it; ``public()`` is the plan as it may
appear in outputs, with the key removed. What a request looks like (path, headers, body,
stream dialect) is the provider's business (``lens.providers``), chosen by ``provider``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lens.errors import ConfigError
from lens.providers import get_provider
from lens.providers.openai import ENDPOINT_PATHS

__all__ = ["ENDPOINT_PATHS", "RunPlan", "Timeouts", "api_key_from_env", "check_url"]


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
    provider: str = "openai"                  # a name of lens.providers.PROVIDERS
    endpoint: str = "chat"                    # chat | completions (OpenAI-style providers)
    api_key: str | None = field(default=None, repr=False)
    cores: int = 1
    # ---- one host of a distributed run (lens.distributed): worker k of host h takes the
    # share of global worker h*cores + k of hosts*cores (arrivals, users, budgets, limits)
    host_index: int = 0
    hosts: int = 1
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
    extra: dict = field(default_factory=dict)  # merged into JSON bodies (they win)
    # ---- provider options (None: the provider's default) ----
    api_version: str | None = None            # azure: ?api-version=
    deployment: str | None = None             # azure: deployment name (default: model)
    anthropic_version: str | None = None      # anthropic: anthropic-version header
    body_template: str | None = None          # generic: request body with {{prompt}} …
    token_pointer: str | None = None          # generic: JSON pointer to each event's token
    ignore_eos: bool = False                  # vllm/sglang/llamacpp: exactly max_tokens out
    # {"input_per_mtok", "output_per_mtok", "source"}; None: looked up from the bundled table
    price: dict | None = None
    # ---- from a config file (lens.config); the defaults are a flag-only run's ----
    scenario: str = "default"                 # the scenario's name in rows and the summary
    prompts: tuple[str, ...] | None = None    # the prompt pool (requests go round-robin)
    prompt_tokens: tuple[int, ...] | None = None      # input tokens of each pooled prompt
    prompt_max_tokens: tuple[int, ...] | None = None  # max_tokens of each (None: max_tokens)
    tokenizer: str | None = None              # how prompt_tokens were counted (summary)
    temperature: float | None = None          # None: the API's default
    # auth style when a config names one: {"type": bearer|header|query, "header", "param"}
    # (the token itself is api_key); None: the provider's own style
    auth: dict | None = None
    retry: dict | None = None                 # execution.retry (lens.engine.policy)
    rate_limit: dict | None = None            # execution.rate_limit (lens.engine.policy)

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
        """The request target (path and query), as the provider builds it from the URL."""
        return get_provider(self.provider).path(self)

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
        # the pool can hold thousands of prompts: outputs keep its size and first prompt
        for k in ("prompts", "prompt_tokens", "prompt_max_tokens"):
            v = d.pop(k)
            if v is not None:
                d[f"{k}_count"] = len(v)
        if self.prompts:
            d["prompts_first"] = self.prompts[0][:200]
        return d


def check_url(url: str) -> str:
    """Validate a base URL; return it without a trailing slash."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(
            f"--url must be an http:// or https:// base URL such as http://localhost:8000/v1 "
            f"(got {url!r})")
    try:
        _ = u.port          # raises for a port out of range or not a number
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
