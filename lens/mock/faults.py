"""Fault injection of the mock: which completion requests it answers with an error.

A completion request fails (``--fail-status``, default 500, with a JSON error body) when

* it is one of the first ``--fail-first N`` attempts of its ``x-request-id`` (counted per
  mock worker: run one worker, or pin the id to a worker, for exact counts), or
* ``fails(seed, request_id, fail_rate)``: a hash of (``--seed``, the request id) below
  ``--fail-rate`` — deterministic, so a test can predict which ids fail, and every attempt of
  a failing id fails again (a retry does not help: its requests end with max_attempts).

Requests whose id is negative are never failed: lens-fast gives its probe and warm-up
requests negative ids, and a failed probe would stop the run before any load. A 429 or 503
carries ``retry-after: S`` when ``--retry-after S`` is given.
"""
from __future__ import annotations

import zlib

__all__ = ["FaultPlan", "fails"]


def fails(seed: int, request_id: str, fail_rate: float) -> bool:
    """Return whether ``--fail-rate`` fails every attempt of ``request_id`` under ``seed``."""
    if fail_rate <= 0:
        return False
    h = zlib.crc32(f"{seed}:{request_id}".encode())
    return h < fail_rate * 4294967296.0


class FaultPlan:
    """One mock worker's fault settings and its per-id attempt counts (for --fail-first)."""

    __slots__ = ("fail_first", "fail_rate", "retry_after", "seed", "seen", "status")

    def __init__(self, fail_rate: float, fail_first: int, status: int,
                 retry_after: float | None, seed: int):
        self.fail_rate = fail_rate
        self.fail_first = fail_first
        self.status = status
        self.retry_after = retry_after
        self.seed = seed
        self.seen: dict[str, int] = {}

    def should_fail(self, request_id: str | None) -> bool:
        """Return whether this attempt of ``request_id`` is answered with an error."""
        if request_id is None or request_id.startswith("-"):
            return False
        if self.fail_first:
            n = self.seen.get(request_id, 0)
            self.seen[request_id] = n + 1
            if n < self.fail_first:
                return True
        return fails(self.seed, request_id, self.fail_rate)

    def extra_header(self) -> bytes:
        """Return the header line the error response carries (Retry-After), or b""."""
        if self.retry_after is not None and self.status in (429, 503):
            return b"retry-after: %s\r\n" % _num(self.retry_after)
        return b""


def _num(x: float) -> bytes:
    return (b"%d" % x) if float(x).is_integer() else repr(float(x)).encode()
