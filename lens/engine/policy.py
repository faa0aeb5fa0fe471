"""Request policy: which failed attempts are retried and when, and the per-worker rate limit.

Retry (``execution.retry`` / ``--max-attempts``):

* retried: HTTP 429 and 5xx, connection failures (connect refused, connect timeout), a reset
  before the first byte of a response, and a first-token timeout;
* final at once (fail fast): every other 4xx (400, 401, 403, 404, 422, ...), TLS and DNS
  failures, protocol and stream errors, and any failure after a token arrived (real clients
  do not replay a half-read stream either, and the row's token stamps stay those of one
  attempt);
* backoff before attempt n+1 = ``initial_backoff_ms * multiplier**(n-1)``, capped at
  ``max_backoff_ms``; a Retry-After from the server (429 or 503 only) wins when longer.
  Example: initial 100 ms, multiplier 2 → attempt 2 at +100 ms, attempt 3 at +200 ms more.

Rate limit (``execution.rate_limit`` / ``--rate-limit RPS``): each of W workers owns a token
bucket of RPS/W requests per second (capacity one request), so the sum over workers can never
exceed RPS. A request that finds the bucket empty waits in a FIFO queue; its ``t_sched`` stays
the arrival time, so the wait shows in ``sched_lag`` and in the ``*_sched`` latencies.
"""
from __future__ import annotations

import email.utils
import re
import time

from lens.engine import errors as E

__all__ = ["RetryPolicy", "TokenBucket", "parse_retry_after", "rate_limit_rps",
           "rate_limit_tpm"]

# kinds retried when nothing of a response had arrived yet
_RETRY_KINDS = {
    "connect": (E.CONNECT, E.TIMEOUT_CONNECT),
    "timeout": (E.TIMEOUT_CONNECT, E.TIMEOUT_FIRST_TOKEN),
    "reset": (E.RESET,),
}
DEFAULT_RETRY_ON = (429, "5xx", "connect", "timeout", "reset")
_RETRY_AFTER = re.compile(rb"\r\nretry-after:[ \t]*([^\r\n]*)", re.IGNORECASE)


class RetryPolicy:
    """The retry settings of one run (``plan.retry``), with the decision per failed attempt."""

    __slots__ = ("any_5xx", "initial_ns", "kinds", "max_attempts", "max_ns", "multiplier",
                 "statuses")

    def __init__(self, cfg: dict):
        self.max_attempts = int(cfg.get("max_attempts", 1))
        self.initial_ns = int(float(cfg.get("initial_backoff_ms", 1000)) * 1e6)
        self.max_ns = int(float(cfg.get("max_backoff_ms", 30_000)) * 1e6)
        self.multiplier = float(cfg.get("multiplier", 2.0))
        statuses: set[int] = set()
        kinds: set[int] = set()
        self.any_5xx = False
        for x in cfg.get("retry_on") or DEFAULT_RETRY_ON:
            if x == "5xx":
                self.any_5xx = True
            elif x == "429":
                statuses.add(429)
            elif isinstance(x, int):
                statuses.add(x)
            else:
                kinds.update(_RETRY_KINDS[x])
        self.statuses = frozenset(statuses)
        self.kinds = frozenset(kinds)

    @classmethod
    def of(cls, cfg: dict | None) -> RetryPolicy | None:
        """Return the policy, or None when it never retries (no config, max_attempts 1)."""
        if not cfg or int(cfg.get("max_attempts", 1)) <= 1:
            return None
        return cls(cfg)

    def retryable(self, status: int, err: int) -> bool:
        """Return whether an attempt that ended with (status, error kind) may be retried."""
        if err == E.HTTP_STATUS:
            return status in self.statuses or (self.any_5xx and 500 <= status <= 599)
        return err in self.kinds

    def backoff_ns(self, attempt: int, retry_after_s: float = -1.0) -> int:
        """Return the wait after failed attempt ``attempt`` (1-based), in ns."""
        d = min(self.max_ns, int(self.initial_ns * self.multiplier ** (attempt - 1)))
        if retry_after_s > 0:
            d = max(d, int(retry_after_s * 1e9))
        return d


def parse_retry_after(head: bytes) -> float:
    """Return the Retry-After of a response head in seconds, or -1.0 when absent or malformed.

    Takes delta-seconds ("2", "0.5") or an HTTP-date; a date is compared with the wall clock,
    the one place lens reads it, because the header is wall-clock time.
    """
    m = _RETRY_AFTER.search(head)
    if m is None:
        return -1.0
    return retry_after_seconds(m.group(1).decode("latin-1"))


def retry_after_seconds(value: str | None) -> float:
    """Return a Retry-After header value in seconds (-1.0 when absent or malformed)."""
    if not value:
        return -1.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return -1.0
    return max(0.0, when.timestamp() - time.time())


def rate_limit_rps(cfg: dict | None) -> float:
    """Return the request rate a ``rate_limit`` config allows in requests/s (0: no limit).

    ``requests_per_minute`` counts as /60; with both, the stricter wins
    (``tokens_per_minute`` is ``rate_limit_tpm``'s).
    """
    if not cfg:
        return 0.0
    rates = [float(cfg["requests_per_s"])] if "requests_per_s" in cfg else []
    if "requests_per_minute" in cfg:
        rates.append(float(cfg["requests_per_minute"]) / 60.0)
    return min(rates) if rates else 0.0


def rate_limit_tpm(cfg: dict | None) -> float:
    """Return the ``tokens_per_minute`` a ``rate_limit`` config allows (0: no limit).

    A request costs its prompt's tokens plus its ``max_tokens``, counted when it is sent, as
    hosted APIs count against their TPM limits.
    """
    if not cfg or "tokens_per_minute" not in cfg:
        return 0.0
    return float(cfg["tokens_per_minute"])


class TokenBucket:
    """A token bucket of ``rate_per_s`` with room for ``burst`` requests, full at the start."""

    __slots__ = ("burst", "last_ns", "per_ns", "tokens")

    def __init__(self, rate_per_s: float, now_ns: int, burst: float = 1.0):
        self.per_ns = rate_per_s / 1e9
        self.burst = burst
        self.tokens = burst
        self.last_ns = now_ns

    def take(self, now_ns: int, backlog: bool = False, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are; return whether they were taken.

        ``backlog``: requests have waited since the last take, so the time since is not idle
        time but the lateness of this call (a timer fires up to a tick late); nothing is cut
        at the capacity then, or every late tick would lower the rate.
        """
        b = self.tokens + (now_ns - self.last_ns) * self.per_ns
        if not backlog and b > self.burst:
            b = self.burst
        self.last_ns = now_ns
        if b >= n:
            self.tokens = b - n
            return True
        self.tokens = b
        return False

    def give_back(self, n: float) -> None:
        """Return ``n`` tokens taken by a ``take`` whose request could not go after all."""
        self.tokens += n

    def wait_ns(self, n: float = 1.0) -> int:
        """Return how long until ``n`` tokens are there (after a failed ``take``)."""
        return max(0, int((n - self.tokens) / self.per_ns) + 1)
