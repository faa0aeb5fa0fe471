"""Error kinds of single requests, as stored in the ``error`` field of a row.

A fault during a run is never an exception that escapes a worker: it becomes one of these
codes in the request's row and is counted. ``redact`` makes a response excerpt safe to keep
as the error's sample (docs/faults.md lists every fault and its code).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

OK = 0
CONNECT = 1             # connection refused / unreachable
DNS = 2                 # name did not resolve
TLS = 3                 # handshake or certificate verification failed
TIMEOUT_CONNECT = 4     # no connection within the connect timeout
TIMEOUT_FIRST_TOKEN = 5  # connected, but no token within the first-token timeout
TIMEOUT_TOTAL = 6       # the whole request took longer than the total timeout
HTTP_STATUS = 7         # a non-2xx status (the row's status field has it)
RESET = 8               # the peer closed or reset the connection before the body ended
PROTOCOL = 9            # malformed HTTP or SSE (unparsable framing, oversized event)
STREAM_ERROR = 10       # an error reported inside a 200 stream (error event/object)
CANCELLED = 11          # stopped by the run ending (duration over, Ctrl-C)
DROPPED = 12            # never sent: --max-inflight was reached at its arrival time

ERROR_NAMES = {
    OK: "ok",
    CONNECT: "connect",
    DNS: "dns",
    TLS: "tls",
    TIMEOUT_CONNECT: "timeout_connect",
    TIMEOUT_FIRST_TOKEN: "timeout_first_token",
    TIMEOUT_TOTAL: "timeout_total",
    HTTP_STATUS: "http_status",
    RESET: "reset",
    PROTOCOL: "protocol",
    STREAM_ERROR: "stream_error",
    CANCELLED: "cancelled",
    DROPPED: "dropped",
}

#: Longest error sample kept, in characters (after redaction).
SAMPLE_MAX = 512
#: What looks like a credential whatever the key is: a bearer token, an ``sk-`` key, the
#: value of an ``api_key``/``api-key``/``key`` parameter or field.
_CREDENTIAL = re.compile(
    r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(sk-)[A-Za-z0-9_-]{8,}"
    r"""|(\b(?:api[-_]?)?key["']?\s*[:=]\s*["']?)[^\s"'&,;}]{8,}""")
REDACTED = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return an error sample safe to keep: secrets and credential-like strings replaced by
    ``***``, at most SAMPLE_MAX characters.

    ``secrets`` are the run's own (its API key): every occurrence goes, and so does a prefix
    of one (4+ characters) at the very end, where an excerpt cut at its byte limit may have
    split it. Anything shaped like a credential goes too (``Bearer …``, ``sk-…``,
    ``api_key=…``), since an endpoint may echo another key than the one sent.
    """
    for s in secrets:
        if s:
            text = text.replace(s, REDACTED)
            for k in range(min(len(s), len(text)) - 1, 3, -1):
                if text.endswith(s[:k]):
                    text = text[:-k] + REDACTED
                    break
    text = _CREDENTIAL.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + REDACTED, text)
    return text[:SAMPLE_MAX]
