"""Error kinds of single requests, as stored in the ``error`` field of a row.

A fault during a run is never an exception that escapes a worker: it becomes one of these
codes in the request's row and is counted.
"""

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
