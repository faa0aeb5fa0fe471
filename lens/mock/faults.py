"""Fault injection of the mock: which completion requests it breaks, and how.

Each fault kind (``--fault KIND=RATE``, ``FAULT_KINDS``) breaks a request in one way:

    status               answer --fail-status (default 500) with the API's error body, before
                         any generation (the message echoes the request's API key, as some
                         servers do, so that a test can check the client never stores it)
    reset_before_headers read the request, then reset the connection (RST) without a byte
    reset_mid_stream     headers and the first half of the tokens, then reset the connection
    malformed_sse        the first half of the tokens, then a line that is not SSE, then the rest
    invalid_json         the first half of the tokens, then an event whose JSON is cut off
    oversized_event      the first half of the tokens, then one 2 MiB event (OVERSIZED_EVENT_BYTES,
                         twice lens-fast's default limit, RunPlan.max_event_bytes), then the rest
    stream_error         the first half of the tokens, then an SSE ``event: error`` (Anthropic's
                         overloaded_error shape), then the end of the body
    stall_after_headers  headers (and the dialect's opening events), then nothing, ever
    slow_first_token     the first token --fault-delay-ms (default 1000) later than its TTFT
    never_end            tokens at the ITL, forever: no last token, no end of the body

``status`` and ``reset_before_headers`` break any completion request; the others only a
streamed one (a non-streamed request picked for them is served normally and not recorded).

Which request gets which fault is a pure function of (``--seed``, its ``x-request-id``):
``fault_of`` maps a 32-bit hash of ``"<seed>:<id>"``, h in [0, 2³²), to the kinds in the order
of FAULT_KINDS, each taking a slice of the hash range as wide as its rate. Worked example, with
``--fault status=0.1 --fault never_end=0.2``: ids with h/2³² < 0.1 get ``status``, those in
[0.1, 0.3) ``never_end``, the rest none. So a test can predict every injected fault, and every
attempt of an id (a retry included) meets the same fault. ``--fail-rate P`` is ``--fault
status=P`` (``fails(seed, id, P)`` predicts it), and ``--fail-first N`` fails the first N
attempts of each id with ``status`` (counted per mock worker) before the rates are looked at.

Requests whose id is negative (lens-fast's probe and warm-up requests) or absent are never
broken: a failed probe would stop the run before any load. Every injected fault is recorded
in the worker's truth record (``lens.mock.truth``; ``load_faults`` reads it back).
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping

__all__ = ["FAULT_KINDS", "OVERSIZED_EVENT_BYTES", "STREAM_FAULTS", "FaultPlan", "fails",
           "fault_of"]

#: Every fault kind, in the order they take their slices of the hash range.
FAULT_KINDS = ("status", "reset_before_headers", "reset_mid_stream", "malformed_sse",
               "invalid_json", "oversized_event", "stream_error", "stall_after_headers",
               "slow_first_token", "never_end")
#: The kinds that need a streamed response (the others break any completion request).
STREAM_FAULTS = frozenset(FAULT_KINDS[2:])
#: Size of the data of an ``oversized_event`` event: twice lens-fast's default limit.
OVERSIZED_EVENT_BYTES = 2 << 20

_SPAN = 4294967296.0  # 2**32: the range of crc32


def _hash(seed: int, request_id: str) -> int:
    """Return a 32-bit hash of (seed, id): CRC32, then MurmurHash3's fmix32 finaliser.

    CRC32 alone is affine in its input bits, so sequential ids ("1", "2", ...) land unevenly
    in the slices; the finaliser spreads every input bit over every output bit.
    """
    h = zlib.crc32(f"{seed}:{request_id}".encode())
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def fails(seed: int, request_id: str, fail_rate: float) -> bool:
    """Return whether ``--fail-rate`` fails every attempt of ``request_id`` under ``seed``."""
    if fail_rate <= 0:
        return False
    return _hash(seed, request_id) < fail_rate * _SPAN


def fault_of(seed: int, request_id: str, rates: Mapping[str, float]) -> str | None:
    """Return the fault kind every attempt of ``request_id`` meets under ``seed``, or None.

    ``rates`` maps kinds of FAULT_KINDS to fractions (their sum at most 1); ids that start
    with ``-`` are never broken. --fail-first is per attempt and not predicted here.
    """
    if request_id.startswith("-"):
        return None
    h = _hash(seed, request_id)
    acc = 0.0
    for kind in FAULT_KINDS:
        rate = rates.get(kind, 0.0)
        if rate > 0:
            acc += rate
            if h < acc * _SPAN:
                return kind
    return None


class FaultPlan:
    """One mock worker's fault settings and its per-id attempt counts (for --fail-first)."""

    __slots__ = ("bounds", "fail_first", "fail_rate", "rates", "retry_after", "seed", "seen",
                 "status")

    def __init__(self, fail_rate: float, fail_first: int, status: int,
                 retry_after: float | None, seed: int,
                 rates: Mapping[str, float] | None = None):
        self.fail_rate = fail_rate
        self.fail_first = fail_first
        self.status = status
        self.retry_after = retry_after
        self.seed = seed
        self.seen: dict[str, int] = {}
        rates = dict(rates or {})
        if fail_rate > 0:
            rates["status"] = rates.get("status", 0.0) + fail_rate
        self.rates = rates
        # (upper bound of the kind's hash slice, kind), in FAULT_KINDS order
        acc = 0.0
        bounds = []
        for kind in FAULT_KINDS:
            if rates.get(kind, 0.0) > 0:
                acc += rates[kind]
                bounds.append((acc * _SPAN, kind))
        self.bounds = tuple(bounds)

    def pick(self, request_id: str | None) -> str | None:
        """Return the fault this attempt of ``request_id`` meets (a FAULT_KINDS name), or None."""
        if request_id is None or request_id.startswith("-"):
            return None
        if self.fail_first:
            n = self.seen.get(request_id, 0)
            self.seen[request_id] = n + 1
            if n < self.fail_first:
                return "status"
        if self.bounds:
            h = _hash(self.seed, request_id)
            for bound, kind in self.bounds:
                if h < bound:
                    return kind
        return None

    def should_fail(self, request_id: str | None) -> bool:
        """Return whether this attempt of ``request_id`` is answered with an error status."""
        return self.pick(request_id) == "status"

    def extra_header(self) -> bytes:
        """Return the header line the error response carries (Retry-After), or b""."""
        if self.retry_after is not None and self.status in (429, 503):
            return b"retry-after: %s\r\n" % _num(self.retry_after)
        return b""


def _num(x: float) -> bytes:
    return (b"%d" % x) if float(x).is_integer() else repr(float(x)).encode()
