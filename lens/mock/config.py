"""The settings of one mock endpoint, validated once at the boundary (no I/O here)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from lens.errors import ConfigError
from lens.mock.distributions import DistSpec
from lens.mock.faults import FAULT_KINDS

__all__ = ["API_NAMES", "MockConfig", "parse_cpus", "parse_faults"]

#: The dialects ``--api`` takes (``lens.mock.apis.APIS`` has one entry for each).
API_NAMES = ("openai", "anthropic", "gemini", "cohere", "tgi")


@dataclass(frozen=True)
class MockConfig:
    """Everything ``lens-fast mock`` takes; defaults match the command's."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    model: str = "lens-mock"
    ttft: DistSpec = field(default_factory=lambda: DistSpec("fixed", 20.0, 0.0))
    itl: DistSpec = field(default_factory=lambda: DistSpec("fixed", 2.0, 0.0))
    #: Tokens per response; None: the request's max_tokens (16 when absent).
    output_tokens: int | None = None
    #: Requests generating at once; 0: no limit.
    max_concurrency: int = 0
    batch_slowdown: float = 0.0
    seed: int = 0
    truth_file: str | None = None
    truth_limit: int = 100_000
    #: CPUs to pin to; worker k runs on cpus[k % len(cpus)]. None: no pinning.
    cpus: tuple[int, ...] | None = None
    #: The API (dialect) the mock speaks: one of API_NAMES.
    api: str = "openai"
    #: Requests each worker keeps for ``GET /lens/requests``; 0: none.
    capture: int = 1000
    #: The key the API's auth header must carry (401 otherwise); None: no check. Never shown.
    require_key: str | None = field(default=None, repr=False)
    #: Fault injection (lens.mock.faults): fraction of request ids failed on every attempt,
    #: attempts failed per request id, their status, and the Retry-After (s) of a 429/503.
    fail_rate: float = 0.0
    fail_first: int = 0
    fail_status: int = 500
    retry_after: float | None = None
    #: Rates per fault kind (``--fault KIND=RATE``), as (kind, rate) pairs in flag order.
    faults: tuple[tuple[str, float], ...] = ()
    #: How late a ``slow_first_token`` fault's first token is, in ms.
    fault_delay_ms: float = 1000.0

    def validate(self) -> MockConfig:
        """Raise ConfigError naming the first bad setting; return self."""
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535 (got {self.port}); 0 picks a free port")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1 (got {self.workers})")
        if not self.model:
            raise ConfigError("--model must not be empty")
        self.ttft.validate("ttft")
        self.itl.validate("itl")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise ConfigError(f"--output-tokens must be >= 1 (got {self.output_tokens}); "
                              "leave it out to follow each request's max_tokens")
        if self.max_concurrency < 0:
            raise ConfigError(f"--max-concurrency must be >= 0 (got {self.max_concurrency}); "
                              "0 means no limit")
        if not self.batch_slowdown >= 0:
            raise ConfigError(f"--batch-slowdown must be >= 0 (got {self.batch_slowdown})")
        if self.truth_limit < 0:
            raise ConfigError(f"--truth-limit must be >= 0 (got {self.truth_limit}); "
                              "0 records nothing")
        if self.api not in API_NAMES:
            raise ConfigError(f"--api must be one of {', '.join(API_NAMES)} (got {self.api!r})")
        if self.capture < 0:
            raise ConfigError(f"--capture must be >= 0 (got {self.capture}); 0 keeps no requests")
        if self.require_key is not None and (
                not self.require_key or not self.require_key.isascii()
                or not self.require_key.isprintable() or " " in self.require_key):
            # the key itself is never shown
            raise ConfigError("--require-key must be printable ASCII without spaces, and not "
                              "empty (the value is not shown)")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ConfigError(f"--fail-rate must be in 0..1 (got {self.fail_rate}); it is the "
                              "fraction of request ids failed")
        if self.fail_first < 0:
            raise ConfigError(f"--fail-first must be >= 0 (got {self.fail_first})")
        if not 400 <= self.fail_status <= 599:
            raise ConfigError(f"--fail-status must be an HTTP error status 400..599 "
                              f"(got {self.fail_status})")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ConfigError(f"--retry-after must be >= 0 seconds (got {self.retry_after})")
        self._validate_faults()
        if self.cpus is not None:
            allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
            bad = [c for c in self.cpus if allowed is not None and c not in allowed]
            if bad or not self.cpus:
                raise ConfigError(f"--cpu {','.join(map(str, self.cpus))} names CPUs this process "
                                  f"cannot use; allowed: {sorted(allowed or [])}")
        return self

    def _validate_faults(self) -> None:
        seen: set[str] = set()
        for kind, rate in self.faults:
            if kind not in FAULT_KINDS:
                raise ConfigError(f"--fault {kind}={rate:g}: unknown fault kind {kind!r}; use one "
                                  f"of {', '.join(FAULT_KINDS)}")
            if kind in seen:
                raise ConfigError(f"--fault {kind} is given twice; give each kind once")
            seen.add(kind)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"--fault {kind}={rate:g}: the rate must be in 0..1 (the "
                                  "fraction of request ids broken this way)")
        if self.fail_rate > 0 and "status" in seen:
            raise ConfigError("--fail-rate and --fault status=RATE are the same fault; give one")
        total = self.fail_rate + sum(rate for _, rate in self.faults)
        if total > 1.0 + 1e-9:
            raise ConfigError(f"the --fault rates (and --fail-rate) add up to {total:g}; each "
                              "request meets at most one fault, so they must add up to <= 1")
        if not self.fault_delay_ms >= 0:
            raise ConfigError(f"--fault-delay-ms must be >= 0 (got {self.fault_delay_ms})")

    def fault_rates(self) -> dict[str, float]:
        """Return the rate of every fault kind that has one (--fail-rate counts as status)."""
        rates = {kind: rate for kind, rate in self.faults if rate > 0}
        if self.fail_rate > 0:
            rates["status"] = self.fail_rate
        return rates

    def cpu_of(self, worker: int) -> int | None:
        """Return the CPU worker ``worker`` is pinned to, or None."""
        return None if not self.cpus else self.cpus[worker % len(self.cpus)]


def parse_cpus(text: str) -> tuple[int, ...]:
    """Parse a CPU list such as ``1``, ``2,3`` or ``0-3,6``; raise ConfigError when malformed."""
    cpus: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"--cpu must be a CPU list like 1, 2,3 or 0-3 (got {text!r})") from None
    if not cpus:
        raise ConfigError(f"--cpu must name at least one CPU (got {text!r})")
    return tuple(cpus)


def parse_faults(values: Iterable[str]) -> tuple[tuple[str, float], ...]:
    """Parse ``--fault KIND=RATE`` values (e.g. ``reset_mid_stream=0.1``); raise ConfigError
    when one is malformed. Kinds and rates are checked by ``MockConfig.validate``."""
    out: list[tuple[str, float]] = []
    for text in values:
        kind, eq, rate = text.partition("=")
        try:
            value = float(rate) if eq else None
        except ValueError:
            value = None
        if value is None or not kind.strip():
            raise ConfigError(f"--fault must be KIND=RATE, e.g. --fault reset_mid_stream=0.1 "
                              f"(got {text!r}); kinds: {', '.join(FAULT_KINDS)}")
        out.append((kind.strip(), value))
    return tuple(out)
