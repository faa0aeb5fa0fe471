"""The fast HTTP/1.1 client: one ``asyncio.Protocol`` per keep-alive connection.

Per response: ``httptools`` parses the status line and headers (fed only the head bytes, so
it makes no callback per body chunk); from then on every read goes to the C
``StreamDecoder``, which does the chunked framing, SSE scanning, token classification and
timestamps in one call. Python runs a few lines per read and a few calls per request.
"""
from __future__ import annotations

import asyncio

import httptools

from lens._core.clock import now_ns
from lens._core.recorder import RowField
from lens._core.stream import (
    COMPLETE,
    ERR_CLASSIFIER,
    ERR_EVENT_TOO_LARGE,
    ERR_FRAMING,
    FRAMING_CHUNKED,
    FRAMING_LENGTH,
    FRAMING_UNTIL_CLOSE,
    StreamDecoder,
)
from lens.engine.policy import parse_retry_after

T_FIRST_BYTE = int(RowField.t_first_byte_ns)
T_HEADERS = int(RowField.t_headers_ns)
MAX_HEAD = 64 * 1024

# connection states
IDLE = 0
HEAD = 1
BODY = 2
CLOSED = 3

# completion codes passed to the owner (besides the decoder's)
DONE_OK = 1
FAIL_RESET = -10
FAIL_PROTOCOL = -11


def protocol_detail(code: int, dec, max_event_bytes: int) -> str:
    """Say what broke the protocol, for the error sample of a PROTOCOL row.

    ``code`` is a negative ``feed()`` result or FAIL_PROTOCOL; 0 (a body read whole) means the
    decoder counted lines that are not SSE or events whose data is not JSON.
    """
    if code == ERR_EVENT_TOO_LARGE:
        return (f"an SSE event (or a line) over the limit of {max_event_bytes} bytes "
                "(max_event_bytes)")
    if code == ERR_FRAMING:
        return "malformed chunked transfer-encoding in the response body"
    if code == ERR_CLASSIFIER:
        return f"the generic provider's classifier raised {dec.classifier_error!r}"
    if code == FAIL_PROTOCOL:
        return "malformed HTTP response head (status line, headers or content-length)"
    bad = (dec.bad_excerpt or b"").decode("utf-8", "replace")
    if dec.bad_lines:
        return f"{dec.bad_lines} line(s) that are not server-sent events, the first: {bad}"
    return (f"{dec.bad_events} event(s) whose data is not a JSON object or array, the "
            f"first: {bad}")


class _Head:
    """httptools callbacks for one response head."""

    __slots__ = ("chunked", "length", "close")

    def __init__(self) -> None:
        self.chunked = False
        self.length = -1
        self.close = False

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif n == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                self.length = -2
        elif n == b"connection":
            self.close = b"close" in value.lower()


class Conn(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time.

    The owner (a worker) provides ``recorder``, ``dialect`` and ``on_response(conn, code)``,
    called once per request with DONE_OK, a negative decoder ERR_* code, FAIL_RESET or
    FAIL_PROTOCOL.
    """

    __slots__ = ("owner", "conn_id", "transport", "state", "slot", "dec", "status",
                 "keepalive", "_head", "_first", "requests", "deadline_first_ns",
                 "deadline_total_ns", "lost", "retry_after_s", "t_idle_ns")

    def __init__(self, owner, conn_id: int, max_event_bytes: int):
        self.owner = owner
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.state = IDLE
        self.slot = -1
        self.dec = StreamDecoder(max_event_bytes)
        self.status = 0
        self.keepalive = True
        self._head = b""
        self._first = True
        self.requests = 0
        self.deadline_first_ns = 0
        self.deadline_total_ns = 0
        self.lost = False
        #: Retry-After of the last 429/503 response in s (-1.0: none); unset for other statuses.
        self.retry_after_s = -1.0
        #: When it last went idle (CLOCK_MONOTONIC ns): the worker closes connections that
        #: stayed idle for IDLE_CLOSE_S, so a pool grown by a burst does not stay grown.
        self.t_idle_ns = now_ns()

    # ---- asyncio.Protocol ----
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.state == BODY:
            rc = self.dec.feed(data)
            if rc:
                self._finish(DONE_OK if rc == COMPLETE else rc)
            return
        if self.state == HEAD:
            self._on_head(data)
            return
        # bytes while idle: the server broke the protocol; this connection is unusable
        self.keepalive = False
        self.close()

    def connection_lost(self, exc) -> None:
        self.lost = True
        state = self.state
        self.state = CLOSED
        if state == BODY:
            self._finish(DONE_OK if self.dec.end_of_input() == COMPLETE else FAIL_RESET)
        elif state == HEAD:
            self._finish(FAIL_RESET)
        self.owner.on_conn_lost(self)

    # ---- requests ----
    def send(self, slot: int, data: bytes) -> None:
        """Write one request; the response is reported through ``owner.on_response``."""
        self.slot = slot
        self.state = HEAD
        self._head = b""
        self._first = True
        self.status = 0
        self.requests += 1
        self.transport.write(data)

    def _on_head(self, data: bytes) -> None:
        rec = self.owner.recorder
        if self._first:
            self._first = False
            rec.stamp(self.slot, T_FIRST_BYTE)
        buf = self._head + data if self._head else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._fail_protocol()
            else:
                self._head = buf
            return
        self._head = b""
        head = _Head()
        parser = httptools.HttpResponseParser(head)
        try:
            parser.feed_data(buf[:end + 4])
            status = parser.get_status_code()
            keep = parser.should_keep_alive()
        except httptools.HttpParserError:
            self._fail_protocol()
            return
        rec.stamp(self.slot, T_HEADERS)
        self.status = status
        if status == 429 or status == 503:   # only these carry a Retry-After worth reading
            self.retry_after_s = parse_retry_after(buf[:end + 2])
        self.keepalive = keep and not head.close
        if head.chunked:
            framing, length = FRAMING_CHUNKED, -1
        elif head.length >= 0:
            framing, length = FRAMING_LENGTH, head.length
        elif head.length == -2:
            self._fail_protocol()
            return
        else:
            framing, length = FRAMING_UNTIL_CLOSE, -1
            self.keepalive = False
        self.dec.start(rec, self.slot, framing, length, self.owner.dialect,
                       status < 200 or status >= 300)
        self.state = BODY
        rest = buf[end + 4:]
        if rest:
            rc = self.dec.feed(rest)
        else:
            rc = COMPLETE if self.dec.complete else 0
        if rc:
            self._finish(DONE_OK if rc == COMPLETE else rc)

    def _fail_protocol(self) -> None:
        self.keepalive = False
        self._finish(FAIL_PROTOCOL)
        self.close()

    def _finish(self, code: int) -> None:
        if self.slot < 0:
            return
        if self.state != CLOSED:
            self.state = IDLE
        if code != DONE_OK:
            self.keepalive = False
        self.owner.on_response(self, code)

    def close(self) -> None:
        """Abort the connection (no graceful close: the peer may be mid-stream)."""
        if self.transport is not None and not self.lost:
            self.transport.abort()
