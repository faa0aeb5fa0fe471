"""What the mock writes for each ``--fault`` kind, read off raw sockets (no lens client)."""
from __future__ import annotations

import json
import socket
import time

import pytest
from servers import ThreadedMock

from lens.mock.distributions import DistSpec
from lens.mock.faults import FAULT_KINDS, OVERSIZED_EVENT_BYTES, fault_of
from lens.mock.truth import load_faults

SEED = 3
RATES = dict.fromkeys(FAULT_KINDS, 1 / len(FAULT_KINDS))
KEY = "sk-mock-echo-0123456789"


def ids_for(kind: str, n: int = 1) -> list[str]:
    """Return n request ids the mock breaks with ``kind``."""
    out = [str(i) for i in range(10_000) if fault_of(SEED, str(i), RATES) == kind]
    return out[:n]


def faulty(**kw) -> ThreadedMock:
    """The mock with every fault kind at an equal rate (seeded), in a thread."""
    return ThreadedMock(seed=SEED, faults=tuple(RATES.items()), fault_delay_ms=200.0,
                        output_tokens=8, **kw)


@pytest.fixture(scope="module", params=[1.0, 0.0], ids=["itl1ms", "itl0"])
def mock(request):
    with faulty(ttft=DistSpec("fixed", 5.0), itl=DistSpec("fixed", request.param)) as m:
        yield m


def exchange(port: int, rid: str, wait_s: float = 0.4, stream: bool = True):
    """Send one chat request; return (bytes read, how the read ended, seconds to first token)."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 8, "stream": stream}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-request-id: {rid}\r\n"
            f"authorization: Bearer {KEY}\r\ncontent-length: {len(body)}\r\n"
            + ("" if stream else "connection: close\r\n") + "\r\n").encode()
    data, first = b"", None
    with socket.create_connection(("127.0.0.1", port)) as s:
        t0 = time.monotonic()
        s.sendall(head + body)
        try:
            while (left := t0 + wait_s - time.monotonic()) > 0:
                s.settimeout(left)
                chunk = s.recv(1 << 20)
                if not chunk:
                    return data, "closed", first
                data += chunk
                if first is None and b'"content":" the"' in data:
                    first = time.monotonic() - t0
                if data.endswith(b"0\r\n\r\n"):
                    return data, "complete", first
        except ConnectionResetError:
            return data, "reset", first
        except TimeoutError:
            pass
        return data, "timeout", first


def tokens(data: bytes) -> int:
    return data.count(b'"delta":{"content":" ')


def test_status_echoes_the_key_and_keeps_the_connection(mock):
    data, end, _ = exchange(mock.port, ids_for("status")[0])
    assert data.startswith(b"HTTP/1.1 500 ") and end == "timeout"   # keep-alive: still open
    assert f"injected fault (--fail-status 500); the request's API key: {KEY}".encode() in data


def test_reset_before_headers_sends_nothing(mock):
    assert exchange(mock.port, ids_for("reset_before_headers")[0])[:2] == (b"", "reset")


def test_reset_mid_stream_after_half_the_tokens(mock):
    data, end, _ = exchange(mock.port, ids_for("reset_mid_stream")[0])
    assert data.startswith(b"HTTP/1.1 200 OK") and end == "reset" and tokens(data) == 4


@pytest.mark.parametrize(("kind", "bad"), [
    ("malformed_sse", b"\r\n!!! lens mock: this line is not server-sent events\n\n\r\n"),
    ("invalid_json", b'\r\ndata: {"lens_mock_fault":"invalid_json","cut":[1,2\n\n\r\n'),
    ("oversized_event", b'\r\ndata: {"lens_mock_fault":"oversized_event","pad":"xxxx'),
])
def test_bad_bytes_come_between_two_halves_of_a_whole_stream(mock, kind, bad):
    data, end, _ = exchange(mock.port, ids_for(kind)[0])
    assert end == "complete" and tokens(data) == 8 and data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    at = data.index(bad)
    assert tokens(data[:at]) == 4
    if kind == "oversized_event":
        assert b"x" * OVERSIZED_EVENT_BYTES + b'"}\n\n\r\n' in data


def test_stream_error_ends_the_body_after_half_the_tokens(mock):
    data, end, _ = exchange(mock.port, ids_for("stream_error")[0])
    assert end == "complete" and tokens(data) == 4 and b"[DONE]" not in data
    assert data.endswith(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                         b'"message":"injected fault (stream_error)"}}\n\n\r\n0\r\n\r\n')


def test_stall_after_headers_writes_the_head_then_nothing(mock):
    data, end, _ = exchange(mock.port, ids_for("stall_after_headers")[0], wait_s=0.3)
    assert end == "timeout" and data.startswith(b"HTTP/1.1 200 OK")
    assert b'"role":"assistant"' in data and tokens(data) == 0


def test_slow_first_token_comes_late_then_the_rest(mock):
    data, end, first = exchange(mock.port, ids_for("slow_first_token")[0], wait_s=1.0)
    assert end == "complete" and tokens(data) == 8
    assert 0.2 <= first < 0.2 + 0.1          # --fault-delay-ms 200 on top of the 5 ms TTFT


def test_never_end_keeps_writing_tokens_and_never_ends(mock):
    data, end, _ = exchange(mock.port, ids_for("never_end")[0], wait_s=0.3)
    assert end == "timeout" and b"[DONE]" not in data and b"finish_reason\":\"" not in data
    burst = mock.server.config.itl.mean_ms == 0
    assert tokens(data) == 8 if burst else tokens(data) > 100   # ITL 0: one cycle, then nothing


def test_stream_faults_spare_non_streamed_requests_and_probes(mock):
    data, end, _ = exchange(mock.port, ids_for("never_end", 2)[1], stream=False)
    assert end == "closed" and data.startswith(b"HTTP/1.1 200 OK")
    assert b'"finish_reason":"length"' in data
    data, end, _ = exchange(mock.port, "-7")
    assert end == "complete" and tokens(data) == 8


def test_the_truth_record_names_every_injected_fault():
    picked = {kind: ids_for(kind)[0] for kind in
              ("status", "reset_before_headers", "invalid_json", "reset_mid_stream")}
    with faulty(ttft=DistSpec("fixed", 1.0), itl=DistSpec("fixed", 0.5)) as m:
        for rid in picked.values():
            exchange(m.port, rid, wait_s=0.3)
        exchange(m.port, ids_for("never_end")[0], stream=False)   # not a stream: no fault
        exchange(m.port, "-1")                                     # a probe: none
        faults = load_faults(m.server.truth.to_npz())
    assert [(f["request_id"], f["kind"]) for f in faults] == [
        (rid, kind) for kind, rid in picked.items()]
    truth = m.server.truth
    row = truth.request_id.index(picked["reset_mid_stream"])
    assert truth.token_count[row] == 4 and truth.t_done_ns[row] == 0
