"""One mock worker: a streaming LLM endpoint on uvloop + httptools, in one API's dialect.

Routes: the API's (``lens.mock.apis``; ``--api openai``: ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /v1/models``), and for every API ``GET /lens/truth`` (this
worker's truth record as ``.npz`` bytes), ``GET``/``DELETE /lens/requests`` (the requests it
kept, ``lens.mock.capture``) and ``GET /health``.

Per token the worker does as little Python as it can: the bytes are precomputed
(``lens.mock.wire``), and tokens are paced by a timer wheel rather than one coroutine or
timer per token. A stream's token deadlines are absolute (``deadline += itl``), so timer
lateness never accumulates. Deadlines are rounded to 0.1 ms slots; one wake-up
(``lens.mock.wakeup``: a timerfd on Linux) is armed at the earliest slot, and every token of
that slot is written when it fires, each with its own ``write()`` (its own packet, as real
servers send them). Only a fixed ITL of 0 writes all tokens at once.

Timing model (see ``lens.mock.capacity``): a request is admitted when it gets a concurrency
slot; its first token is due ``ttft`` after admission; each later one an ITL (scaled by the
batch slowdown) after the previous one. For a streamed request the headers (and the dialect's
opening events: chat's role event, Anthropic's message_start...) are written as soon as the
request is read, before any queueing, as servers built on Starlette do; a non-streamed
response is written whole when its last token is due.
"""
from __future__ import annotations

import asyncio
import gc
import heapq
import os
import signal
import socket
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable

import httptools
import orjson

from lens.errors import ConfigError
from lens.mock import capture, wire
from lens.mock.apis import APIS, BadRequest, Endpoint
from lens.mock.capacity import itl_factor
from lens.mock.config import MockConfig
from lens.mock.distributions import Sampler
from lens.mock.faults import OVERSIZED_EVENT_BYTES, FaultPlan
from lens.mock.truth import TruthRecorder
from lens.mock.wakeup import make_wakeup

__all__ = ["MockServer", "bind_socket", "serve"]

_clock = time.clock_gettime_ns
_MONO = time.CLOCK_MONOTONIC  # the clock of lens._core.now_ns and of libuv's timers
#: Width of a slot of the timer wheel: tokens due within the same 0.1 ms go out in one wake-up.
_SLOT_NS = 100_000
_HALF_SLOT_NS = _SLOT_NS // 2
#: Least time between two wake-ups. Each costs far more than a token write (a timer interrupt,
#: tens of µs under virtualisation), so under load tokens due within 0.5 ms of the last wake-up
#: wait for the next one: at most 0.5 ms late, at most ~2,000 wake-ups/s.
_MIN_WAKE_GAP_NS = 500_000
_NEVER = 1 << 62
_BACKLOG = 4096
_MAX_BODY = 64 << 20
#: SO_LINGER on, 0 s: close() sends RST instead of FIN (the reset_* faults).
_LINGER_RST = struct.pack("ii", 1, 0)
#: What the mid-stream faults write between two tokens, each as one HTTP chunk.
_BAD_BYTES = {
    "malformed_sse": wire.frame(b"!!! lens mock: this line is not server-sent events\n\n"),
    "invalid_json": wire.frame(b'data: {"lens_mock_fault":"invalid_json","cut":[1,2\n\n'),
    # an event named `error` is a stream error in every SSE dialect; then the body ends
    "stream_error": wire.frame(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"injected fault (stream_error)"}}\n\n') + b"0\r\n\r\n",
}


def bind_socket(host: str, port: int, listen: bool = True, reuse_port: bool = False,
                ) -> socket.socket:
    """Return a non-blocking TCP socket bound to host:port (listening when ``listen``).

    ``reuse_port`` sets SO_REUSEPORT, for workers sharing a port; a lone worker leaves it off,
    so that a port already taken is reported rather than silently shared. Raise ConfigError
    when the address cannot be bound.
    """
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host!r} does not resolve: {e.strerror}") from e
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        if listen:
            sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}; "
                          "choose another --port, or --port 0 for a free one") from e
    return sock


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "request_id", "t_received_ns", "url")

    def __init__(self, t_received_ns: int, method: bytes, url: bytes, request_id: str | None,
                 body: bytes, keep_alive: bool,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.t_received_ns = t_received_ns
        self.method = method
        self.url = url
        self.request_id = request_id
        self.body = body
        self.keep_alive = keep_alive
        self.headers = headers  # raw (name, value) pairs; None when the server keeps none


class _Stream:
    """One completion request from admission to its last write."""

    __slots__ = (
        "admitted",
        "closed",
        "conn",
        "deadline",
        "delay_ns",
        "end",
        "fault",
        "frames",
        "i",
        "keep_alive",
        "last",
        "mask",
        "real_last",
        "row",
        "stream",
        "tok_base",
        "write",
    )

    def __init__(self, conn: _Connection, stream: bool, frames: list[bytes], mask: int,
                 end: bytes, n_tokens: int, row: int, tok_base: int, keep_alive: bool) -> None:
        self.conn = conn
        self.write = conn.transport.write
        self.stream = stream
        self.frames = frames  # token i is frames[i & mask]
        self.mask = mask  # len(WORDS) - 1 for a cycle of the words, -1 for one frame per token
        self.end = end  # streamed: the frames after the last token; else the whole response
        self.i = 0
        self.last = n_tokens - 1
        self.deadline = 0
        self.row = row
        self.tok_base = tok_base
        self.keep_alive = keep_alive
        self.admitted = False
        self.closed = False
        self.fault: str | None = None  # a mid-stream fault due at token `last` (lens.mock.faults)
        self.real_last = self.last
        self.delay_ns = 0  # added to the TTFT (slow_first_token)


class _Connection(asyncio.Protocol):
    """One client connection: parse requests with httptools, serve them in order."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Request] = deque()
        self.active: _Stream | None = None
        self.closed = False
        self._url = b""
        self._request_id: str | None = None
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._body: list[bytes] = []
        self._body_len = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as e:
            self._fail(400, f"malformed HTTP request: {e}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.active is not None:
            self.server.abort(self.active)
            self.active = None
        self.pending.clear()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._request_id = None
        self._body = []
        self._body_len = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"x-request-id":
            self._request_id = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > _MAX_BODY:
            raise ValueError("request body over 64 MiB")
        self._body.append(body)

    def on_message_complete(self) -> None:
        t = _clock(_MONO)
        p = self.parser
        self.pending.append(_Request(t, p.get_method(), self._url, self._request_id,
                                     b"".join(self._body), p.should_keep_alive(), self._headers))
        if self.active is None:
            self.serve_pending()

    # helpers

    def serve_pending(self) -> None:
        """Serve queued requests until one starts a stream or the connection closes."""
        while self.pending and self.active is None and not self.closed:
            req = self.pending.popleft()
            self.server.handle(self, req)
            if not req.keep_alive and self.active is None:
                self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        # mid-stream (bad bytes pipelined behind a request), an error body would corrupt the
        # stream: just close
        if not self.closed and self.active is None:
            self.transport.write(self.server.json(status, self.server.api.error(status, message),
                                                  False))
        self.close()


class _HeaderConnection(_Connection):
    """A connection that keeps every request's headers (capture, key check, Anthropic)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))  # type: ignore[union-attr]
        if len(name) == 12 and name.lower() == b"x-request-id":
            self._request_id = value.decode("latin-1")


class MockServer:
    """The state of one worker: samplers, capacity, the timer wheel and the truth record."""

    def __init__(self, config: MockConfig, worker: int = 0) -> None:
        import numpy as np

        self.config = config
        self.worker = worker
        self.pid = os.getpid()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._stop: asyncio.Event | None = None
        self.connections: set[_Connection] = set()
        self.truth = TruthRecorder(config.truth_limit, worker, self.pid)
        self._ttft = Sampler(config.ttft, np.random.default_rng([config.seed, worker, 0]))
        self._itl = Sampler(config.itl, np.random.default_rng([config.seed, worker, 1]))
        self._burst = config.itl.is_constant and config.itl.mean_ms == 0
        self._limit = config.max_concurrency
        self._slowdown = config.batch_slowdown
        self.active = 0
        self.queue: deque[_Stream] = deque()
        self._slots: dict[int, list[_Stream]] = {}  # slot -> streams with a token due in it
        self._heap: list[int] = []  # the keys of _slots, as a heap
        self._armed_ns = _NEVER  # when the wake-up is armed for
        self._wake_floor_ns = 0  # no wake-up before this (the last one + _MIN_WAKE_GAP_NS)
        self._firing = False
        self._wakeup = None
        self._seq = 0
        self.api = APIS[config.api]
        self._key = config.require_key.encode() if config.require_key else None
        #: The last --capture requests (``GET /lens/requests``); None when capture is off.
        self.captured: deque[_Request] | None = (
            deque(maxlen=config.capture) if config.capture else None)
        #: Whether connections keep every request's headers (for capture, keys, or the parser).
        self.keep_headers = bool(config.capture or self._key or self.api.needs_headers)
        self._heads: dict[bytes, tuple[bytes, bytes]] = {}
        #: Fault injection (None: never fails), see lens.mock.faults.
        rates = config.fault_rates()
        self.faults = (FaultPlan(0.0, config.fail_first, config.fail_status,
                                 config.retry_after, config.seed, rates)
                       if rates or config.fail_first > 0 else None)
        self._fault_delay_ns = int(config.fault_delay_ms * 1e6)
        self._models_body = orjson.dumps({"object": "list", "data": [{
            "id": config.model, "object": "model", "created": int(time.time()),
            "owned_by": "lens-fast"}]})

    def json(self, status: int, body: bytes, keep_alive: bool,
             content_type: bytes = b"application/json") -> bytes:
        """Return a whole response carrying this worker's headers."""
        return wire.json_response(status, body, self.worker, self.pid, keep_alive, content_type)

    def stream_head(self, content_type: bytes, keep_alive: bool) -> bytes:
        """Return the head of a streamed response (cached per content type)."""
        heads = self._heads.get(content_type)
        if heads is None:
            heads = self._heads[content_type] = tuple(  # type: ignore[assignment]
                wire.stream_head(self.worker, self.pid, ka, content_type) for ka in (False, True))
        return heads[keep_alive]

    def protocol(self) -> _Connection:
        """Return a protocol for a new connection (the ``create_server`` factory)."""
        return _HeaderConnection(self) if self.keep_headers else _Connection(self)

    # routing

    def handle(self, conn: _Connection, req: _Request) -> None:
        """Answer one request, or start its stream (then ``conn.active`` is set)."""
        path, _, query = req.url.partition(b"?")
        if path.startswith(b"/lens/") or path == b"/health":
            return self._own_route(conn, req, path)
        if self.captured is not None:
            self.captured.append(req)
        api = self.api
        ep = api.routes.get(path)
        arg = None
        if ep is None:
            found = api.match(path)
            if found is None:
                return self._reply(conn, req, 404, f"no route for {req.method.decode('latin-1')} "
                                   f"{path.decode('latin-1')}; the mock (--api {api.name}) "
                                   f"serves {api.served}")
            ep, arg = found
        if req.method != ep.method:
            return self._reply(conn, req, 405, f"use {ep.method.decode()} for "
                               f"{path.decode('latin-1')}")
        if self._key is not None:
            refused = api.check_key(req.headers, query, self._key)
            if refused is not None:
                return self._reply(conn, req, 401, refused)
        if ep.parse is None:
            conn.transport.write(self.json(200, self._models_body, req.keep_alive))
            return None
        fault = None
        if self.faults is not None:
            fault = self.faults.pick(req.request_id)
            if fault == "status":
                self.truth.fault(req.request_id, fault, req.t_received_ns)  # type: ignore[arg-type]
                return self._fault(conn, req, query)
            if fault == "reset_before_headers":
                self.truth.fault(req.request_id, fault, req.t_received_ns)  # type: ignore[arg-type]
                return self._reset(conn)
        return self._completion(conn, req, ep, arg, query, fault)

    def _own_route(self, conn: _Connection, req: _Request, path: bytes) -> None:
        method = req.method
        if path == b"/lens/requests" and method == b"DELETE":
            if self.captured is not None:
                self.captured.clear()
            conn.transport.write(self.json(200, b"{}", req.keep_alive))
        elif path not in (b"/lens/truth", b"/lens/requests", b"/health"):
            self._reply(conn, req, 404, f"no route for {method.decode('latin-1')} "
                        f"{path.decode('latin-1')}; the mock's own routes are /lens/truth, "
                        "/lens/requests and /health")
        elif method != b"GET":
            self._reply(conn, req, 405, f"use GET for {path.decode()}")
        elif path == b"/lens/truth":
            conn.transport.write(self.json(200, self.truth.to_npz(), req.keep_alive,
                                           b"application/octet-stream"))
        elif path == b"/lens/requests":
            conn.transport.write(self.json(200, capture.to_json(self.captured or (), self.worker),
                                           req.keep_alive))
        else:
            conn.transport.write(self.json(200, b"{}", req.keep_alive))

    def _fault(self, conn: _Connection, req: _Request, query: bytes) -> None:
        f = self.faults
        message = f"injected fault (--fail-status {f.status})"
        key = self.api.key(req.headers, query) if req.headers is not None else None
        if key:  # echoed as some servers do (OpenAI's 401 names the key): lens must not keep it
            message += f"; the request's API key: {key.decode('latin-1')}"
        resp = self.json(f.status, self.api.error(f.status, message), req.keep_alive)
        extra = f.extra_header()
        if extra:
            i = resp.index(b"\r\n") + 2
            resp = resp[:i] + extra + resp[i:]
        conn.transport.write(resp)

    def _reset(self, conn: _Connection) -> None:
        """Reset the connection: RST, not FIN; what was not yet sent is dropped."""
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:  # pragma: no cover - already closed by the peer
                pass
        conn.closed = True
        conn.pending.clear()
        conn.transport.abort()

    def _reply(self, conn: _Connection, req: _Request, status: int, message: str,
               param: str | None = None) -> None:
        conn.transport.write(self.json(status, self.api.error(status, message, param),
                                       req.keep_alive))

    def _completion(self, conn: _Connection, req: _Request, ep: Endpoint, arg: str | None,
                    query: bytes, fault: str | None = None) -> None:
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError as e:
            return self._reply(conn, req, 400, f"We could not parse the JSON body of your "
                               f"request ({e}).")
        if not isinstance(body, dict):
            return self._reply(conn, req, 400, "The request body must be a JSON object.")
        try:
            plan = ep.parse(body, req, arg, query)  # type: ignore[misc]
        except BadRequest as e:
            return self._reply(conn, req, e.status, str(e), e.param)
        dialect = plan.dialect
        max_tokens = plan.max_tokens
        n_tokens = max_tokens or 16
        finish_reason = dialect.finish_capped
        override = self.config.output_tokens
        if override is not None and (max_tokens is None or override < max_tokens):
            n_tokens, finish_reason = override, dialect.finish_natural
        stream = plan.stream
        if plan.model is None:
            plan.model = self.config.model
        plan.model_json = orjson.dumps(plan.model)
        plan.n_tokens = n_tokens
        plan.finish = finish_reason
        plan.prompt_tokens = (plan.prompt_chars + 3) // 4

        self._seq += 1
        request_id = req.request_id or f"w{self.worker}-{self._seq}"
        req.request_id = request_id
        plan.response_id = f"{dialect.id_prefix}lens{self.worker}x{self._seq}"
        plan.created = int(time.time())  # a wall-clock field of the wire format, not a timing
        truth = self.truth
        row = truth.begin(request_id, req.t_received_ns, stream, n_tokens)
        tok_base = truth.token_offset[row] if row >= 0 and stream else -1
        if stream:
            first, frames, mask, end = dialect.stream_parts(plan)
            st = _Stream(conn, True, frames, mask, end, n_tokens, row, tok_base, req.keep_alive)
            if fault is not None:
                truth.fault(request_id, fault, req.t_received_ns)
                self._plan_fault(st, fault)
            head = self.stream_head(dialect.content_type, req.keep_alive) + first
            t = _clock(_MONO)
            conn.transport.write(head)
            if row >= 0:
                truth.t_headers_ns[row] = t
        else:  # the stream faults need a stream: a non-streamed request is served as it is
            st = _Stream(conn, False, [], 0, self.json(200, dialect.body_of(plan), req.keep_alive),
                         n_tokens, row, -1, req.keep_alive)
        conn.active = st
        if st.fault == "stall_after_headers":
            return None  # never admitted: nothing more is written until the client leaves
        if self._limit == 0 or self.active < self._limit:
            self._admit(st, _clock(_MONO))
        else:
            self.queue.append(st)
        return None

    # faults

    def _plan_fault(self, st: _Stream, fault: str) -> None:
        """Set up a streamed request for its fault (kinds in ``lens.mock.faults``)."""
        if fault == "stall_after_headers":
            st.fault = fault
        elif fault == "slow_first_token":
            st.delay_ns = self._fault_delay_ns
        elif fault == "never_end":
            # tokens cycle forever; their times are not recorded (no slots were reserved).
            # A request's frames cover its own tokens only (fewer than a cycle of the words
            # when it asked for fewer; one frame per token in TGI's and Gemini's array, whose
            # first opens the array): cycle the largest power of 2 of them.
            frames = st.frames if st.mask != -1 else (st.frames[1:] or st.frames)
            if st.mask == -1 or len(frames) <= st.mask:
                k = 1 << (len(frames).bit_length() - 1)
                st.frames, st.mask = frames[:k], k - 1
            st.tok_base = -1
            st.last = st.real_last = _NEVER
        else:  # due at the token in the middle: `_write_slot` hands it to `_mid_stream_fault`
            st.fault = fault
            st.last = (st.last + 1) // 2

    def _mid_stream_fault(self, st: _Stream, i: int) -> None:
        """Break stream ``st`` before its token ``i`` (its tokens 0 .. i-1 are written)."""
        fault = st.fault
        st.fault = None
        st.last = st.real_last
        if fault == "reset_mid_stream":
            st.closed = True
            if st.row >= 0 and st.tok_base >= 0:
                self.truth.token_count[st.row] = i
            conn = st.conn
            conn.active = None
            self._release(_clock(_MONO))
            self._reset(conn)
            return
        if fault == "stream_error":
            st.write(_BAD_BYTES[fault])
            st.last = i - 1  # the tokens written: 0 .. i-1
            self._finish(st, _clock(_MONO))
            return
        if fault == "oversized_event":
            bad = _BAD_BYTES.get(fault)
            if bad is None:
                bad = _BAD_BYTES[fault] = wire.frame(
                    b'data: {"lens_mock_fault":"oversized_event","pad":"'
                    + b"x" * OVERSIZED_EVENT_BYTES + b'"}\n\n')
        else:
            bad = _BAD_BYTES[fault]  # type: ignore[index]
        st.write(bad)

    # capacity and pacing

    def _admit(self, st: _Stream, now: int) -> None:
        self.active += 1
        st.admitted = True
        if st.row >= 0:
            self.truth.t_admitted_ns[st.row] = now
        st.deadline = now + self._ttft.next_ns() + st.delay_ns
        self._at(st, st.deadline)

    def _release(self, now: int) -> None:
        self.active -= 1
        queue = self.queue
        while queue:
            st = queue.popleft()
            if not st.closed:
                self._admit(st, now)
                return

    def _at(self, st: _Stream, deadline: int) -> None:
        key = (deadline + _HALF_SLOT_NS) // _SLOT_NS
        lst = self._slots.get(key)
        if lst is not None:
            lst.append(st)
            return
        self._slots[key] = [st]
        heapq.heappush(self._heap, key)
        if not self._firing:  # _fire arms when it is done
            self._arm(key)

    def _arm(self, key: int) -> None:
        t = max(key * _SLOT_NS, self._wake_floor_ns)
        if t < self._armed_ns:
            self._armed_ns = t
            self._wakeup.arm(t)

    def _fire(self) -> None:
        """Write the tokens of every slot that has come (the wake-up's callback)."""
        now = _clock(_MONO)
        self._armed_ns = _NEVER
        self._wake_floor_ns = now + _MIN_WAKE_GAP_NS
        self._firing = True
        heap = self._heap
        slots = self._slots
        # Slots added while this runs and already due (a stream behind its schedule) are
        # served in this same pass; `limit` bounds the pass so that reads are not starved.
        limit = now // _SLOT_NS
        try:
            while heap and heap[0] <= limit:
                self._write_slot(slots.pop(heapq.heappop(heap)))
        finally:
            self._firing = False
            if heap:
                self._arm(heap[0])
            else:
                self._wakeup.disarm()

    def _write_slot(self, lst: list[_Stream]) -> None:
        clock = _clock
        mono = _MONO
        tokens = self.truth.tokens
        slots = self._slots
        itl_const = self._itl.constant_ns
        slowdown = self._slowdown
        if self._burst:
            for st in lst:
                if not st.closed:
                    self._write_all(st, clock(mono))
            return
        for st in lst:
            if st.closed:
                continue
            i = st.i
            now = clock(mono)
            if i == st.last:
                if st.fault is not None:  # once per faulty stream, never per token
                    self._mid_stream_fault(st, i)
                    if st.closed:
                        continue
                if i == st.last:
                    st.write(st.frames[i & st.mask] + st.end if st.stream else st.end)
                    if st.tok_base >= 0:
                        tokens[st.tok_base + i] = now
                    self._finish(st, now)
                    continue
            if st.stream:
                st.write(st.frames[i & st.mask])
                if st.tok_base >= 0:
                    tokens[st.tok_base + i] = now
            st.i = i + 1
            itl = self._itl.next_ns() if itl_const is None else itl_const
            if slowdown and self.active > 1:
                itl = int(itl * itl_factor(self.active, slowdown))
            deadline = st.deadline + itl
            st.deadline = deadline
            nxt = slots.get((deadline + _HALF_SLOT_NS) // _SLOT_NS)
            if nxt is None:
                self._at(st, deadline)
            else:
                nxt.append(st)

    def _write_all(self, st: _Stream, now: int) -> None:
        """Write every token and the end in one write (fixed ITL of 0)."""
        if st.fault is not None or st.last == _NEVER:
            self._write_all_faulty(st, now)
            return
        n = st.last + 1
        if st.stream:
            k = len(st.frames)
            st.write(b"".join(st.frames) * (n // k) + b"".join(st.frames[:n % k]) + st.end)
            if st.tok_base >= 0:
                self.truth.tokens[st.tok_base:st.tok_base + n] = array("q", [now]) * n
        else:
            st.write(st.end)
        st.i = st.last
        self._finish(st, now)

    def _write_all_faulty(self, st: _Stream, now: int) -> None:
        """``_write_all`` for a stream with a fault: the tokens before it in one write, the
        fault, then the rest in one write. A never-ending stream writes one cycle of tokens,
        then nothing: it holds its slot until the client leaves."""
        if st.last == _NEVER:
            st.write(b"".join(st.frames))
            return
        k = st.last
        frames, mask = st.frames, st.mask
        if k:
            st.write(b"".join([frames[i & mask] for i in range(k)]))
            if st.tok_base >= 0:
                self.truth.tokens[st.tok_base:st.tok_base + k] = array("q", [now]) * k
        self._mid_stream_fault(st, k)
        if st.closed:
            return
        n = st.last + 1
        st.write(b"".join([frames[i & mask] for i in range(k, n)]) + st.end)
        if st.tok_base >= 0:
            self.truth.tokens[st.tok_base:st.tok_base + n] = array("q", [now]) * n
        st.i = st.last
        self._finish(st, now)

    def _finish(self, st: _Stream, now: int) -> None:
        st.closed = True
        row = st.row
        if row >= 0:
            truth = self.truth
            truth.t_done_ns[row] = now
            if st.stream:
                truth.token_count[row] = st.last + 1
            else:
                truth.t_headers_ns[row] = now
        self._release(now)
        conn = st.conn
        conn.active = None
        if not st.keep_alive:
            conn.close()
        elif conn.pending:
            conn.serve_pending()

    def abort(self, st: _Stream) -> None:
        """Forget a stream whose client went away (its truth row keeps the tokens written)."""
        if st.closed:
            return
        st.closed = True
        if st.tok_base >= 0:  # a recorded stream (never_end records no token times)
            self.truth.token_count[st.row] = st.i
        if st.admitted:
            self._release(_clock(_MONO))

    # running

    def run(self, sock: socket.socket | None = None,
            on_ready: Callable[[int], None] | None = None, standalone: bool = True) -> None:
        """Serve on a uvloop loop until SIGTERM/SIGINT or ``stop()``.

        ``sock`` is a listening socket (default: bind ``config.host:config.port``); ``on_ready``
        is called with the port once connections are accepted. On stop the worker closes its
        connections and writes ``<truth_file>.<worker>`` when ``config.truth_file`` is set.
        ``standalone`` (the process is the mock's own, main thread) installs the signal
        handlers and freezes the start-up objects out of GC; pass False to run in a thread.
        """
        import uvloop

        if sock is None:
            sock = bind_socket(self.config.host, self.config.port)
        with sock, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._run(sock, on_ready, standalone))

    def stop(self) -> None:
        """Ask a running server to stop; safe to call from any thread."""
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    async def _run(self, sock: socket.socket, on_ready: Callable[[int], None] | None,
                   standalone: bool) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.loop = loop
        self._wakeup = make_wakeup(loop, self._fire)
        if standalone:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
        srv = await loop.create_server(self.protocol, sock=sock, backlog=_BACKLOG)
        try:
            if standalone:
                gc.freeze()  # start-up objects live for the whole run; keep them out of GC
            if on_ready is not None:
                on_ready(sock.getsockname()[1])
            await self._stop.wait()
        finally:
            srv.close()
            for conn in list(self.connections):
                conn.close()
            await asyncio.sleep(0)  # let connection_lost run for the closed transports
            await srv.wait_closed()
            self._wakeup.close()
            if self.config.truth_file:
                self.truth.dump(f"{self.config.truth_file}.{self.worker}")


def serve(config: MockConfig, worker: int = 0, sock: socket.socket | None = None,
          on_ready: Callable[[int], None] | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (see ``MockServer.run``); bind config's address
    when ``sock`` is None."""
    MockServer(config, worker).run(sock, on_ready)
