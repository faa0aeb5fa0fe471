"""``--client httpx``: the same requests, decoder and recorder over httpx.

For setups the fast client does not cover (HTTP/2 with ``--http2``, proxies from the
environment). It costs more CPU per request: httpx runs Python code per chunk and a
coroutine per request. Its bytes still go through the C ``StreamDecoder`` (in
``FRAMING_DECODED`` mode: httpx has already undone the chunked framing), so token detection
and timestamps are the same code as the fast client's. The tests use it as an independent
reference for the fast client's HTTP layer.
"""
from __future__ import annotations

import asyncio

import httpx

from lens._core.recorder import RowField
from lens._core.stream import FRAMING_DECODED, StreamDecoder
from lens.engine import errors as E
from lens.engine.http import protocol_detail
from lens.engine.policy import retry_after_seconds
from lens.engine.requests import headers_for, path_for
from lens.engine.worker import ATTEMPT_FIELDS, F_ATTEMPT, F_T_ATTEMPT, set_classifier

T_FIRST_BYTE = int(RowField.t_first_byte_ns)
T_HEADERS = int(RowField.t_headers_ns)
T_SENT = int(RowField.t_sent_ns)
T_FIRST_TOKEN = int(RowField.t_first_token_ns)
T_START = int(RowField.t_start_ns)
T_CONNECT = int(RowField.t_connect_ns)
T_TLS = int(RowField.t_tls_ns)
T_TOKEN_EVENTS = int(RowField.token_events)
STATUS = int(RowField.status)


def _tracer(rec, slot: int, first: bool):
    """Return an httpcore trace hook stamping the phases of one request as they happen.

    ``t_start`` becomes the moment httpx starts on the network (connecting or writing the
    request), so httpx's own request preparation counts as client lateness (it shows in
    the scheduling lag), not as endpoint latency. A retry (``first`` False) stamps only
    ``t_attempt``, so ``t_start`` stays the first attempt's.
    """
    started = False

    async def trace(name: str, info: dict) -> None:
        nonlocal started
        if not started and name.endswith(("connect_tcp.started", "send_request_headers.started")):
            started = True
            t = rec.stamp(slot, F_T_ATTEMPT)
            if first:
                rec.set(slot, T_START, t)
        elif name.endswith("connect_tcp.complete"):
            rec.stamp(slot, T_CONNECT)
        elif name.endswith("start_tls.complete"):
            rec.stamp(slot, T_TLS)
        elif name.endswith("send_request_body.complete"):
            rec.stamp(slot, T_SENT)
        elif name.endswith("receive_response_headers.complete"):
            rec.stamp(slot, T_FIRST_BYTE)
            rec.stamp(slot, T_HEADERS)

    return trace


class HttpxClient:
    """Sends one worker's requests with an ``httpx.AsyncClient``."""

    def __init__(self, worker):
        self.w = worker
        plan = worker.plan
        tm = plan.timeouts
        self.url = plan.request_url.removesuffix(plan.path) + path_for(plan)
        self.headers = headers_for(plan)
        verify = worker.ssl if worker.ssl is not None else True
        self.client = httpx.AsyncClient(
            http2=plan.http2, verify=verify, trust_env=True,
            timeout=httpx.Timeout(tm.total_s, connect=tm.connect_s, read=tm.first_token_s),
            limits=httpx.Limits(max_connections=worker.limit,
                                max_keepalive_connections=worker.limit))
        self.tasks: dict[int, asyncio.Task] = {}

    def start(self, slot: int, rid: int, j: int) -> None:
        """Start request ``rid`` in its own task."""
        self.tasks[slot] = asyncio.get_running_loop().create_task(self._request(slot, rid, j))

    async def _request(self, slot: int, rid: int, j: int) -> None:
        w = self.w
        rec = w.recorder
        pol = w.retry
        try:
            while True:
                status, err, retry_after_s = await self._attempt(slot, rid, j)
                if (err == E.OK or pol is None or w.stopping
                        or rec.get(slot, F_ATTEMPT) >= pol.max_attempts
                        or rec.get(slot, T_TOKEN_EVENTS) or not pol.retryable(status, err)):
                    break
                await asyncio.sleep(pol.backoff_ns(rec.get(slot, F_ATTEMPT), retry_after_s) / 1e9)
                if w.stopping:
                    break
                rec.set(slot, F_ATTEMPT, rec.get(slot, F_ATTEMPT) + 1)
                for f in ATTEMPT_FIELDS:
                    rec.set(slot, f, w.UNSET)
                rec.stamp(slot, F_T_ATTEMPT)
        except asyncio.CancelledError:
            self.tasks.pop(slot, None)
            w._end(slot, rec.get(slot, STATUS), E.CANCELLED, w.FLAG_CANCELLED)
            return
        self.tasks.pop(slot, None)
        w._end(slot, status, err)

    async def _attempt(self, slot: int, rid: int, j: int) -> tuple[int, int, float]:
        """Send one attempt; return (status, error kind, Retry-After in s or -1.0)."""
        w = self.w
        rec = w.recorder
        fac = w.factory
        dec = StreamDecoder(w.plan.max_event_bytes)
        if w.classifier is not None:        # before start(): DIALECT_GENERIC needs it there
            set_classifier(dec, w.classifier)
        headers = dict(self.headers)
        headers["x-request-id"] = str(rid)
        status, err, retry_after_s = 0, E.OK, -1.0
        trace = _tracer(rec, slot, rec.get(slot, F_ATTEMPT) == 1)
        try:
            async with asyncio.timeout(w.plan.timeouts.total_s):
                async with self.client.stream("POST", self.url, content=fac.bodies[j % fac.n],
                                              headers=headers,
                                              extensions={"trace": trace}) as resp:
                    status = resp.status_code
                    if status == 429 or status == 503:
                        retry_after_s = retry_after_seconds(resp.headers.get("retry-after"))
                    dec.start(rec, slot, FRAMING_DECODED, -1, w.dialect,
                              status < 200 or status >= 300)
                    async for chunk in resp.aiter_raw():
                        rc = dec.feed(chunk)
                        if rc < 0:
                            err = E.PROTOCOL
                            w._note_error("protocol", protocol_detail(rc, dec,
                                                                      w.plan.max_event_bytes))
                            break
            dec.commit()
            if err == E.OK:
                err = w.judge_complete(status, dec)
        except asyncio.CancelledError:
            rec.set(slot, STATUS, status)
            raise
        except TimeoutError:
            err = E.TIMEOUT_TOTAL
        except httpx.ConnectTimeout:
            err = E.TIMEOUT_CONNECT
        except httpx.ReadTimeout:
            err = (E.TIMEOUT_FIRST_TOKEN if rec.get(slot, T_FIRST_TOKEN) == w.UNSET
                   else E.TIMEOUT_TOTAL)
        except httpx.ConnectError as exc:
            err = E.TLS if "SSL" in str(exc) or "certificate" in str(exc) else E.CONNECT
            w._note_error(E.ERROR_NAMES[err], str(exc))
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # h11 reports a peer that went away as RemoteProtocolError too: "Server
            # disconnected without sending a response", "peer closed connection without ..."
            text = str(exc).lower()
            err = E.RESET if "closed" in text or "disconnected" in text or isinstance(
                exc, (httpx.ReadError, httpx.WriteError)) else E.PROTOCOL
            w._note_error(E.ERROR_NAMES[err], str(exc) or type(exc).__name__)
        except httpx.HTTPError as exc:
            err = E.PROTOCOL
            w._note_error("protocol", str(exc))
        return status, err, retry_after_s

    def cancel_all(self) -> None:
        """Cancel every request in flight (they are recorded as cancelled)."""
        for task in list(self.tasks.values()):
            task.cancel()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
