"""One worker process: one uvloop event loop driving its share of the load.

Life of a worker (``worker_main``):

1. attach to its shared-memory rings, build its ``Recorder`` and request bytes;
2. resolve the host once, pre-open its keep-alive connections, send one probe request
   (stored as warm-up) and the ``--warmup`` requests; report ``ready`` to the parent;
3. on ``go`` (the common epoch t0), run its slice of the open-loop schedule (arrivals
   ``i % workers == k``) or its closed-loop users, until the schedule, the request budget or
   the duration is used up, or the parent says ``stop``;
4. let in-flight requests finish (bounded by the total timeout, or a short grace after
   ``stop``), record the rest as cancelled, flush its rings and report ``done``.

Nothing here writes files; everything measured leaves through the rings.
"""
from __future__ import annotations

import asyncio
import gc
import os
import resource
import signal
import socket
import ssl
import time
from collections import deque

from lens._core import (
    FLAG_CANCELLED,
    FLAG_CONN_REUSED,
    FLAG_DROPPED,
    FLAG_WARMUP,
    UNSET,
    Recorder,
    Ring,
    RowField,
    now_ns,
)
from lens.engine import errors as E
from lens.engine.http import DONE_OK, FAIL_RESET, Conn, protocol_detail
from lens.engine.plan import RunPlan
from lens.engine.policy import RetryPolicy, TokenBucket, rate_limit_rps, rate_limit_tpm
from lens.engine.requests import RequestFactory
from lens.providers import get_provider
from lens.workload.arrivals import arrival_offsets_ns, split

F_FLAGS = int(RowField.flags)
F_CONN_ID = int(RowField.conn_id)
F_INPUT = int(RowField.input_tokens)
F_SENT = int(RowField.t_sent_ns)
F_CONNECT = int(RowField.t_connect_ns)
F_DNS = int(RowField.t_dns_ns)
F_TLS = int(RowField.t_tls_ns)
F_FIRST_TOKEN = int(RowField.t_first_token_ns)
F_ATTEMPT = int(RowField.attempt)
F_TOKEN_EVENTS = int(RowField.token_events)
F_T_ATTEMPT = int(RowField.t_attempt_ns)
#: Phase stamps that belong to one attempt: cleared before a retry so the row keeps the last's.
ATTEMPT_FIELDS = tuple(int(RowField[f]) for f in (
    "t_dns_ns", "t_connect_ns", "t_tls_ns", "t_sent_ns", "t_first_byte_ns", "t_headers_ns",
    "t_first_token_ns", "t_last_token_ns"))

DISPATCH_AHEAD_NS = 500_000      # send arrivals due within 0.5 ms now: uvloop timers tick per ms
SWEEP_S = 0.02                   # timeout sweep period
LAG_PERIOD_S = 0.01              # event-loop lag probe period
STOP_GRACE_S = 2.0               # in-flight grace after a stop from the parent
IDLE_CLOSE_NS = 15_000_000_000   # close connections idle this long (aiohttp's keep-alive 15 s)
TRIM_PERIOD_NS = 1_000_000_000   # how often the idle pool is trimmed
MAX_ERROR_SAMPLES = 5
COUNTER_SENT, COUNTER_IN_FLIGHT, COUNTER_DROPPED = 0, 1, 2   # row-ring counters


def peak_rss_mb() -> float:
    """Return this process's own peak RSS in MB.

    Linux's ``ru_maxrss`` survives exec, so a spawned worker would report its parent's peak
    when the parent was bigger; ``VmHWM`` in /proc/self/status is the process's own.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_share(total: int, worker: int, workers: int) -> int:
    """Return worker ``worker``'s share of ``total`` items split as evenly as possible."""
    return total // workers + (1 if worker < total % workers else 0)


def ssl_context(plan: RunPlan) -> ssl.SSLContext | None:
    """Return the TLS context for https URLs (verification on unless --insecure)."""
    if plan.scheme != "https":
        return None
    ctx = ssl.create_default_context(cafile=plan.ca_cert)
    if plan.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def set_classifier(dec, fn) -> None:
    """Give a decoder the generic provider's classifier, before its first ``start()``.

    The decoder keeps it across ``start()`` calls; one built before the decoder learned
    DIALECT_GENERIC has no ``set_classifier`` and is left alone.
    """
    setter = getattr(dec, "set_classifier", None)
    if setter is not None:
        setter(fn)


def classify_connect_error(exc: BaseException) -> int:
    """Map an exception from opening a connection to an error kind."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return E.TIMEOUT_CONNECT
    if isinstance(exc, socket.gaierror):
        return E.DNS
    if isinstance(exc, ssl.SSLError):
        return E.TLS
    return E.CONNECT


class Worker:
    """The per-process load driver (see the module docstring)."""

    FLAG_CANCELLED = FLAG_CANCELLED
    UNSET = UNSET

    def __init__(self, plan: RunPlan, index: int, workers: int, row_ring: str,
                 token_ring: str, pipe):
        self.plan = plan
        self.k = index
        self.W = workers
        self.pipe = pipe
        self.loop = asyncio.get_running_loop()
        self.rows = Ring.attach(row_ring)
        self.tokens = Ring.attach(token_ring)
        self.limit = max(1, -(-plan.max_inflight // workers))
        self.recorder = Recorder(self.rows, self.tokens, self.limit + 8, index,
                                 plan.max_token_stamps)
        provider = get_provider(plan.provider)
        self.dialect = provider.dialect(plan)
        #: Per-event classifier of the generic provider (None for every other one).
        self.classifier = provider.classifier(plan)
        self.factory = RequestFactory(plan)
        self.ssl = ssl_context(plan)
        self.addr: tuple | None = None
        self.idle: list[Conn] = []
        self.busy: set[Conn] = set()
        self.connecting: dict[int, asyncio.Task] = {}
        self.slot_j: dict[int, int] = {}     # slot -> prompt index of the request it carries
        self.next_conn_id = index << 32
        self.in_flight = 0
        self.sent = 0
        self.dropped = 0
        self.new_conns_in_run = 0
        self.idle_closed = 0             # connections closed for staying idle
        self._next_trim_ns = 0
        self.errors_seen: dict[str, list[str]] = {}
        #: What error samples must never show (``lens.engine.errors.redact``).
        self.secrets = (plan.api_key,) if plan.api_key else ()
        self.stopping = False
        self.load_done = False
        self.finished = asyncio.Event()
        self.waiters: dict[int, asyncio.Future] = {}
        self.lags_ns: list[int] = []
        self.t0 = 0
        self.t_end_ns = 0
        self.closed_next = 0
        self.closed_budget = -1
        self._j = 0
        self._warm_seq = 0
        #: Retry policy (None: every attempt is final) and the requests waiting for a resend:
        #: slot -> (status, error kind, timer) of their last failed attempt.
        self.retry = RetryPolicy.of(plan.retry)
        self.retry_wait: dict[int, tuple] = {}
        #: Rate limit: this worker's share of --rate-limit (requests/s; 0: none). The bucket
        #: exists from t0 on; arrivals that find it empty wait in rl_queue, in order.
        rate = rate_limit_rps(plan.rate_limit)
        self.rl_rate = rate / workers if rate > 0 else 0.0
        self.bucket: TokenBucket | None = None
        #: tokens_per_minute: this worker's share, per second; a request costs its prompt's
        #: tokens plus its max_tokens (tpm_bucket exists from t0 on, like bucket)
        tpm = rate_limit_tpm(plan.rate_limit)
        self.tpm_rate = tpm / 60.0 / workers if tpm > 0 else 0.0
        self.tpm_bucket: TokenBucket | None = None
        self.rl_queue: deque = deque()
        self.rl_armed = False
        self.httpx = None
        if plan.client == "httpx":
            from lens.engine.httpx_client import HttpxClient

            self.httpx = HttpxClient(self)

    # ------------------------------------------------------------------ setup
    async def resolve(self) -> None:
        """Resolve the host once (the run reuses the address)."""
        infos = await self.loop.getaddrinfo(self.plan.host, self.plan.port,
                                            type=socket.SOCK_STREAM)
        self.addr = infos[0][4]

    async def open_conn(self, slot: int = -1) -> Conn:
        """Open one connection (TLS included), stamping connect/TLS times into ``slot``."""
        conn = Conn(self, self.next_conn_id, self.plan.max_event_bytes)
        self.next_conn_id += 1
        if self.classifier is not None:
            set_classifier(conn.dec, self.classifier)
        rec = self.recorder
        transport, _ = await asyncio.wait_for(
            self.loop.create_connection(lambda: conn, self.addr[0], self.addr[1]),
            self.plan.timeouts.connect_s)
        if slot >= 0:
            rec.stamp(slot, F_CONNECT)
        if self.ssl is not None:
            transport = await asyncio.wait_for(
                self.loop.start_tls(transport, conn, self.ssl, server_hostname=self.plan.host),
                self.plan.timeouts.connect_s)
            conn.transport = transport
            if slot >= 0:
                rec.stamp(slot, F_TLS)
        return conn

    async def open_pool(self, n: int) -> None:
        """Pre-open ``n`` idle connections (before t0, so handshakes stay out of the run)."""
        for start in range(0, n, 64):
            conns = await asyncio.gather(*(self.open_conn() for _ in range(min(64, n - start))))
            self.idle.extend(conns)

    async def request_and_wait(self, rid: int, flags: int) -> tuple[float, int]:
        """Send one request now and wait for it; return (seconds, error kind)."""
        fut = self.loop.create_future()
        self.waiters[rid] = fut
        t = now_ns()
        self.dispatch(rid, t, flags)
        err = await fut
        return (now_ns() - t) / 1e9, err

    def _warm_id(self) -> int:
        """Return the next warm-up request id: negative, unique across workers."""
        self._warm_seq += 1
        return -(self.k + self.W * self._warm_seq)

    # --------------------------------------------------------------- dispatch
    def dispatch(self, rid: int, t_sched: int, flags: int = 0, admitted: bool = False) -> None:
        """Start request ``rid`` (intended start ``t_sched``) on an idle or new connection.

        Under a rate limit, a request that finds no token (or others already waiting) waits
        in ``rl_queue``; ``admitted`` marks one taken from that queue.
        """
        if (self.bucket is not None or self.tpm_bucket is not None) and not admitted and (
                self.rl_queue or not self._rl_take(False)):
            self.rl_queue.append((rid, t_sched, flags))
            self._rl_arm()
            return
        rec = self.recorder
        j = self._j
        self._j += 1
        if self.in_flight >= self.limit:
            slot = rec.begin(rid, t_sched)
            rec.set(slot, F_FLAGS, flags | FLAG_DROPPED)
            rec.finish(slot, 0, E.DROPPED)
            self.dropped += 1
            return
        slot = rec.begin(rid, t_sched)
        rec.set(slot, F_INPUT, self.factory.input_tokens[j % self.factory.n])
        self.in_flight += 1
        self.sent += 1
        if self.httpx is not None:
            if flags:
                rec.set(slot, F_FLAGS, flags)
            self.httpx.start(slot, rid, j)
        elif self.idle:
            conn = self.idle.pop()
            rec.set(slot, F_FLAGS, flags | FLAG_CONN_REUSED)
            self._send(conn, slot, rid, j)
        else:
            if flags:
                rec.set(slot, F_FLAGS, flags)
            if self.t0:
                self.new_conns_in_run += 1
            self.connecting[slot] = self.loop.create_task(self._connect_send(slot, rid, j))

    def _send(self, conn: Conn, slot: int, rid: int, j: int) -> None:
        rec = self.recorder
        rec.set(slot, F_CONN_ID, conn.conn_id)
        t = now_ns()
        tm = self.plan.timeouts
        conn.deadline_first_ns = t + int(tm.first_token_s * 1e9)
        conn.deadline_total_ns = t + int(tm.total_s * 1e9)
        self.busy.add(conn)
        self.slot_j[slot] = j
        conn.send(slot, self.factory.build(rid, j))
        rec.stamp(slot, F_SENT)

    async def _connect_send(self, slot: int, rid: int, j: int) -> None:
        try:
            conn = await self.open_conn(slot)
        except asyncio.CancelledError:
            self.connecting.pop(slot, None)
            self._end(slot, 0, E.CANCELLED, FLAG_CANCELLED)
            return
        except Exception as exc:   # every connect failure is a row, never a crash
            self.connecting.pop(slot, None)
            kind = classify_connect_error(exc)
            self._note_error(E.ERROR_NAMES[kind], self._connect_detail(kind, exc))
            if self.retry is not None and self._retry(slot, 0, kind, j, -1.0):
                return
            self._end(slot, 0, kind)
            return
        self.connecting.pop(slot, None)
        self._send(conn, slot, rid, j)

    # --------------------------------------------------------------- responses
    def on_response(self, conn: Conn, code: int) -> None:
        """Called by a connection once per request with how its response ended."""
        slot = conn.slot
        conn.slot = -1
        self.busy.discard(conn)
        j = self.slot_j.pop(slot, 0)
        dec = conn.dec
        status = conn.status
        if (code == FAIL_RESET and status == 0 and conn._first and conn.requests > 1
                and not self.stopping):
            # A kept-alive connection the server had closed before it read this request (it
            # sent no byte back): send the request again on a new connection, once per
            # closed connection. llama.cpp's server closes after every streamed response
            # while it advertises keep-alive.
            conn.close()
            rec = self.recorder
            rec.set(slot, F_ATTEMPT, rec.get(slot, F_ATTEMPT) + 1)
            rid = rec.get(slot, 0)
            self.connecting[slot] = self.loop.create_task(self._connect_send(slot, rid, j))
            return
        if status:      # a response began: its decoder holds this request's figures
            dec.commit()
        if code == DONE_OK:
            err = self.judge_complete(status, dec)
        elif code == FAIL_RESET:
            err = E.RESET
            self._note_error("reset", "the connection closed before the response head"
                             if not status else "the connection closed in the middle of the "
                             f"body, after {dec.token_events} token event(s)")
        else:
            err = E.PROTOCOL
            self._note_error("protocol", protocol_detail(code, dec, self.plan.max_event_bytes))
        if conn.keepalive and not conn.lost and not self.stopping:
            conn.t_idle_ns = now_ns()
            self.idle.append(conn)
        else:
            conn.close()
        if err and self.retry is not None and self._retry(
                slot, status, err, j, conn.retry_after_s if status in (429, 503) else -1.0):
            return
        self._end(slot, status, err)

    # ------------------------------------------------------------ retry, rate limit
    def _retry(self, slot: int, status: int, err: int, j: int, retry_after_s: float) -> bool:
        """Schedule another attempt of a failed one if the policy allows; return whether it did.

        Never after a token arrived (the stream was partly read: the failure is final), nor
        while the run stops.
        """
        rec = self.recorder
        attempt = rec.get(slot, F_ATTEMPT)
        pol = self.retry
        if (self.stopping or attempt >= pol.max_attempts or rec.get(slot, F_TOKEN_EVENTS)
                or not pol.retryable(status, err)):
            return False
        delay_s = pol.backoff_ns(attempt, retry_after_s) / 1e9
        self.retry_wait[slot] = (status, err, self.loop.call_later(delay_s, self._resend, slot, j))
        return True

    def _resend(self, slot: int, j: int) -> None:
        """Send the next attempt of a request in the same row (t_sched, t_start kept)."""
        status, err, _ = self.retry_wait.pop(slot)
        if self.stopping:
            self._end(slot, status, err)
            return
        rec = self.recorder
        rec.set(slot, F_ATTEMPT, rec.get(slot, F_ATTEMPT) + 1)
        for f in ATTEMPT_FIELDS:
            rec.set(slot, f, UNSET)
        rec.set(slot, F_CONN_ID, -1)
        rec.stamp(slot, F_T_ATTEMPT)
        rid = rec.get(slot, 0)
        flags = rec.get(slot, F_FLAGS) & ~FLAG_CONN_REUSED
        if self.idle:
            rec.set(slot, F_FLAGS, flags | FLAG_CONN_REUSED)
            self._send(self.idle.pop(), slot, rid, j)
        else:
            rec.set(slot, F_FLAGS, flags)
            self.connecting[slot] = self.loop.create_task(self._connect_send(slot, rid, j))

    def _rl_cost(self) -> float:
        """Tokens the next request costs against tokens_per_minute (prompt + max_tokens)."""
        f = self.factory
        return float(f.input_tokens[self._j % f.n] + f.max_tokens[self._j % f.n])

    def _rl_take(self, backlog: bool) -> bool:
        """Take what the next request needs from both buckets, or nothing."""
        t = now_ns()
        if self.bucket is not None and not self.bucket.take(t, backlog):
            return False
        if self.tpm_bucket is not None and not self.tpm_bucket.take(t, backlog, self._rl_cost()):
            if self.bucket is not None:
                self.bucket.give_back(1.0)
            return False
        return True

    def _rl_arm(self) -> None:
        if not self.rl_armed:
            self.rl_armed = True
            wait = 0
            if self.bucket is not None:
                wait = self.bucket.wait_ns()
            if self.tpm_bucket is not None:
                wait = max(wait, self.tpm_bucket.wait_ns(self._rl_cost()))
            self.loop.call_later(wait / 1e9, self._rl_drain)

    def _rl_drain(self) -> None:
        """Send the waiting requests the buckets have tokens for, in arrival order."""
        self.rl_armed = False
        q = self.rl_queue
        while q and not self.stopping and self._rl_take(True):
            rid, t_sched, flags = q.popleft()
            self.dispatch(rid, t_sched, flags, True)
        if q and not self.stopping:
            self._rl_arm()

    def _flush_waiting(self) -> None:
        """On stop: end requests waiting for a resend (with their last error) or for a token
        (as cancelled: never sent)."""
        for slot in list(self.retry_wait):
            status, err, timer = self.retry_wait.pop(slot)
            timer.cancel()
            self._end(slot, status, err)
        rec = self.recorder
        while self.rl_queue:
            rid, t_sched, flags = self.rl_queue.popleft()
            slot = rec.begin(rid, t_sched)
            rec.set(slot, F_FLAGS, flags | FLAG_CANCELLED)
            rec.finish(slot, 0, E.CANCELLED)
        self._check_done()

    def on_conn_lost(self, conn: Conn) -> None:
        """Forget a closed connection."""
        self.busy.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def _end(self, slot: int, status: int, err: int, flags: int = 0) -> None:
        rec = self.recorder
        if flags:
            rec.set(slot, F_FLAGS, rec.get(slot, F_FLAGS) | flags)
        rid = rec.get(slot, 0)
        rec.finish(slot, status, err)
        self.in_flight -= 1
        fut = self.waiters.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result(err)
        if self.t0 and not self.load_done and self.plan.mode == "closed":
            self._closed_next()
        self._check_done()

    def judge_complete(self, status: int, dec) -> int:
        """Return the error kind of a response read to its end (OK, HTTP_STATUS,
        STREAM_ERROR or PROTOCOL), keeping a sample of a failure. Both clients call it."""
        if status < 200 or status >= 300:
            self._note_error(f"http_{status}", dec.excerpt)
            return E.HTTP_STATUS
        if dec.error_seen:
            self._note_error("stream_error", dec.excerpt)
            return E.STREAM_ERROR
        if dec.bad_lines or dec.bad_events:
            self._note_error("protocol", protocol_detail(0, dec, self.plan.max_event_bytes))
            return E.PROTOCOL
        return E.OK

    def _note_error(self, key: str, text: str | bytes) -> None:
        """Keep ``text`` (bytes: a body excerpt) as one of the first MAX_ERROR_SAMPLES samples
        of error ``key``, redacted and capped (``lens.engine.errors.redact``)."""
        samples = self.errors_seen.setdefault(key, [])
        if len(samples) < MAX_ERROR_SAMPLES:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            samples.append(E.redact(text, self.secrets))

    def _connect_detail(self, kind: int, exc: BaseException) -> str:
        """Say why a connection failed, with the fix where there is one."""
        if kind == E.TIMEOUT_CONNECT:
            return f"no connection within the connect timeout ({self.plan.timeouts.connect_s:g} s)"
        text = str(exc) or type(exc).__name__
        if kind == E.TLS:
            text += " (for a self-signed endpoint pass --ca-cert FILE, or --insecure)"
        return text

    # ---------------------------------------------------------------- the run
    def _tick(self) -> None:
        """Send every arrival due within DISPATCH_AHEAD_NS, then sleep until the next."""
        if self.stopping:
            return
        horizon = now_ns() + DISPATCH_AHEAD_NS
        t0 = self.t0
        ids, offs = self.ids, self.offsets
        i = self.i
        n = len(offs)
        while i < n and t0 + offs[i] <= horizon:
            self.i = i + 1
            self.dispatch(ids[i], t0 + offs[i])
            i += 1
        if i < n:
            self.loop.call_later(max(0.0, (t0 + offs[i] - now_ns()) / 1e9), self._tick)
        else:
            self._load_finished()

    def _closed_next(self) -> None:
        if now_ns() >= self.t_end_ns and self.t_end_ns:
            self._load_finished()
            return
        if self.closed_budget == 0:
            self._load_finished()
            return
        if self.closed_budget > 0:
            self.closed_budget -= 1
        rid = self.k + self.W * self.closed_next
        self.closed_next += 1
        self.dispatch(rid, now_ns())

    def _load_finished(self) -> None:
        if not self.load_done:
            self.load_done = True
            self._check_done()

    def _check_done(self) -> None:
        if (self.load_done and self.in_flight == 0 and not self.rl_queue
                and not self.finished.is_set()):
            self.finished.set()

    def publish_counters(self) -> None:
        """Publish sent / in flight / dropped for the parent's progress line."""
        self.rows.set_counter(COUNTER_SENT, self.sent)
        self.rows.set_counter(COUNTER_IN_FLIGHT, self.in_flight)
        self.rows.set_counter(COUNTER_DROPPED, self.dropped)

    def _sweep(self) -> None:
        """Fail requests past their first-token or total deadline; publish counters."""
        if self.finished.is_set():
            return
        self.publish_counters()
        now = now_ns()
        rec = self.recorder
        for conn in list(self.busy):
            slot = conn.slot
            if slot < 0:
                continue
            if now > conn.deadline_total_ns:
                kind = E.TIMEOUT_TOTAL
            elif now > conn.deadline_first_ns and rec.get(slot, F_FIRST_TOKEN) == UNSET:
                kind = E.TIMEOUT_FIRST_TOKEN
            else:
                continue
            self._abort(conn, kind, 0)
        if now >= self._next_trim_ns:
            self._next_trim_ns = now + TRIM_PERIOD_NS
            self._trim_idle(now)
        self.loop.call_later(SWEEP_S, self._sweep)

    def _trim_idle(self, now: int) -> None:
        """Close the connections idle for IDLE_CLOSE_NS: the pool follows the last 15 s of
        demand instead of keeping every connection a burst opened. The idle list is LIFO
        (the most recently used connection is reused first), so the oldest are in front."""
        idle = self.idle
        cutoff = now - IDLE_CLOSE_NS
        n = 0
        while n < len(idle) and idle[n].t_idle_ns < cutoff:
            n += 1
        if n:
            for conn in idle[:n]:
                conn.close()
            del idle[:n]
            self.idle_closed += n

    def _abort(self, conn: Conn, kind: int, flags: int) -> None:
        slot = conn.slot
        conn.slot = -1
        self.busy.discard(conn)
        status = conn.status
        if status:      # a response began: its decoder holds this request's figures
            conn.dec.commit()
        conn.close()
        tm = self.plan.timeouts
        if kind == E.TIMEOUT_FIRST_TOKEN:
            self._note_error("timeout_first_token", f"no token within {tm.first_token_s:g} s "
                             + (f"(status {status}: the head came, then no token)" if status
                                else "(no response head)"))
        elif kind == E.TIMEOUT_TOTAL:
            self._note_error("timeout_total", f"still running at the total timeout "
                             f"({tm.total_s:g} s), after {conn.dec.token_events if status else 0}"
                             " token event(s)")
        if kind == E.TIMEOUT_FIRST_TOKEN and self.retry is not None and self._retry(
                slot, status, kind, self.slot_j.pop(slot, 0), -1.0):
            return
        self._end(slot, status, kind, flags)

    def _lag_probe(self, expected: int) -> None:
        now = now_ns()
        self.lags_ns.append(now - expected)
        if not self.finished.is_set():
            self.loop.call_later(LAG_PERIOD_S, self._lag_probe, now + int(LAG_PERIOD_S * 1e9))

    def on_pipe(self) -> None:
        """Handle a message from the parent (``stop``)."""
        try:
            msg = self.pipe.recv()
        except (EOFError, OSError):
            msg = ("stop",)
            self.loop.remove_reader(self.pipe.fileno())
        if msg[0] == "stop" and not self.stopping:
            self.stopping = True
            self.load_done = True
            self._flush_waiting()
            self._check_done()
            self.loop.call_later(STOP_GRACE_S, self.cancel_all)

    def cancel_all(self) -> None:
        """Record every request still in flight as cancelled and close its connection."""
        for conn in list(self.busy):
            if conn.slot >= 0:
                self._abort(conn, E.CANCELLED, FLAG_CANCELLED)
        for task in list(self.connecting.values()):
            task.cancel()
        self._flush_waiting()
        if self.httpx is not None:
            self.httpx.cancel_all()

    async def run(self) -> None:
        plan = self.plan
        try:
            await self.resolve()
        except OSError as exc:
            self.pipe.send(("error", "dns", f"cannot resolve {plan.host!r}: {exc}"))
            return
        try:
            first = await self.open_conn() if self.httpx is None else None
        except Exception as exc:
            code = classify_connect_error(exc)
            self.pipe.send(("error", E.ERROR_NAMES[code], f"cannot connect to {plan.url}: "
                            f"{self._connect_detail(code, exc)}"))
            return
        if first is not None:
            self.idle.append(first)
        # probe: one request, stored as warm-up; proves the endpoint works before t0
        probe_s, probe_err = await self.request_and_wait(self._warm_id(), FLAG_WARMUP)
        if probe_err != E.OK:
            if self.errors_seen:
                key, texts = next(iter(self.errors_seen.items()))
                what, detail = key.replace("_", " "), texts[0][:300]
            else:
                what, detail = E.ERROR_NAMES[probe_err], "no response"
            self.pipe.send(("error", what, f"the probe request POST {plan.request_url} "
                            f"failed before the run: {what}: {detail}"))
            return
        # connections for the load, then --warmup requests
        if plan.mode == "closed":
            users = worker_share(plan.concurrency, self.k, self.W)
            want = users
        else:
            users = 0
            rate_w = plan.rps / self.W
            want = min(self.limit, int(rate_w * probe_s * 1.5) + 4)
        try:
            if self.httpx is None:
                await self.open_pool(max(0, want - len(self.idle)))
            else:       # httpx opens connections on demand: concurrent warm-up requests do it
                await asyncio.gather(*(self.request_and_wait(self._warm_id(), FLAG_WARMUP)
                                       for _ in range(max(0, want - 1))))
        except Exception as exc:
            self.pipe.send(("error", "connect", f"cannot open {want} connections to "
                            f"{plan.url}: {exc}"))
            return
        nwarm = worker_share(plan.warmup, self.k, self.W)
        while nwarm > 0:
            batch = min(nwarm, max(1, len(self.idle), want))
            await asyncio.gather(*(self.request_and_wait(self._warm_id(), FLAG_WARMUP)
                                   for _ in range(batch)))
            nwarm -= batch
        self.errors_seen.clear()
        if plan.mode == "open":
            offsets = arrival_offsets_ns(plan.arrival, plan.rps, requests=plan.requests,
                                         duration_s=plan.duration_s, seed=plan.seed,
                                         burstiness=plan.burstiness)
            ids, offs = split(offsets, self.k, self.W)
            self.ids, self.offsets = ids.tolist(), offs.tolist()
            self.i = 0
        else:
            if plan.requests is not None:
                self.closed_budget = worker_share(plan.requests, self.k, self.W)
        gc.collect()
        gc.freeze()
        self.pipe.send(("ready", {"pid": os.getpid(), "connections": len(self.idle),
                                  "probe_ms": probe_s * 1e3}))
        msg = await self.loop.run_in_executor(None, self.pipe.recv)
        if msg[0] != "go":
            return
        self.t0 = msg[1]
        self.t_end_ns = self.t0 + int(plan.duration_s * 1e9) if plan.duration_s else 0
        self.loop.add_reader(self.pipe.fileno(), self.on_pipe)
        delay = max(0.0, (self.t0 - now_ns()) / 1e9)
        if self.rl_rate > 0:
            self.bucket = TokenBucket(self.rl_rate, self.t0)
        if self.tpm_rate > 0:
            # room for one second of tokens, or the dearest request if that is more
            burst = max(self.tpm_rate,
                        max(a + b for a, b in zip(self.factory.input_tokens,
                                                  self.factory.max_tokens, strict=True)))
            self.tpm_bucket = TokenBucket(self.tpm_rate, self.t0, burst)
        cpu0 = time.process_time()
        wall0 = time.monotonic()
        if plan.mode == "open":
            if self.ids:
                self.loop.call_later(delay, self._tick)
            else:
                self._load_finished()
        else:
            self.loop.call_later(delay, self._start_users, users)
        self.loop.call_later(delay, self._lag_probe, self.t0)
        self.loop.call_later(delay + SWEEP_S, self._sweep)
        if plan.duration_s:
            self.loop.call_later(delay + plan.duration_s, self._duration_over)
        await self.finished.wait()
        cpu1 = time.process_time()
        wall1 = time.monotonic()
        self.publish_counters()
        for conn in self.idle:
            conn.close()
        if self.httpx is not None:
            await self.httpx.close()
        while self.recorder.flush():
            await asyncio.sleep(0.005)
        self.rows.close_producer()
        self.tokens.close_producer()
        lags = sorted(self.lags_ns)
        self.pipe.send(("done", {
            "pid": os.getpid(),
            "sent": self.sent,
            "dropped": self.dropped,
            "cpu_s": cpu1 - cpu0,
            "wall_s": wall1 - wall0,
            "loop_lag_ms": {
                "p50": lags[len(lags) // 2] / 1e6 if lags else 0.0,
                "p99": lags[int(len(lags) * 0.99)] / 1e6 if lags else 0.0,
                "max": lags[-1] / 1e6 if lags else 0.0,
            },
            "new_connections_in_run": self.new_conns_in_run,
            "idle_connections_closed": self.idle_closed,
            "max_rss_mb": peak_rss_mb(),
            "rows_spilled": self.rows.spilled,
            "tokens_spilled": self.tokens.spilled,
            "errors": self.errors_seen,
        }))

    def _start_users(self, users: int) -> None:
        for _ in range(users):
            if self.closed_budget == 0:
                break
            self._closed_next()
        if users == 0 or self.closed_budget == 0 and self.in_flight == 0:
            self._load_finished()

    def _duration_over(self) -> None:
        self._load_finished()
        # in-flight requests may finish; those still running at the total timeout are cut
        # by the sweep


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None) -> bool:
    """Linux: have the kernel send this process SIGTERM when its parent dies; exit now if
    the parent (``parent_pid``) already died before that was set. Elsewhere a no-op.

    A worker whose supervisor is killed (SIGKILL, a Ray agent killed) would otherwise keep
    running as an orphan. Returns whether the death signal is armed.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)           # the parent died before the death signal was armed
    return True


def worker_main(plan: RunPlan, index: int, workers: int, row_ring: str, token_ring: str,
                pipe, cpu: int | None = None) -> None:
    """Process entry point of worker ``index`` (spawned by the supervisor)."""
    import multiprocessing as mp

    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent coordinates shutdown
    # SIGTERM ends a worker at once (the supervisor's terminate(), the parent's death)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = mp.parent_process()
    die_with_parent(parent.pid if parent is not None else None)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    import uvloop

    async def main() -> None:
        worker = Worker(plan, index, workers, row_ring, token_ring, pipe)
        try:
            await worker.run()
        finally:
            worker.rows.close()
            worker.tokens.close()

    try:
        uvloop.run(main())
    except Exception as exc:   # report, never hang the parent
        try:
            pipe.send(("error", "internal", f"worker {index} failed: {exc!r}"))
        except OSError:
            pass
        raise
