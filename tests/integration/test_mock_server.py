"""lens' mock endpoint over real sockets: wire format, timing, capacity, workers, truth."""
from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from servers import ThreadedMock

from lens.errors import ConfigError
from lens.mock import MockProcess, load_truth, saturation_rps
from lens.mock.distributions import DistSpec


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def chat(max_tokens=8, stream=True, usage=False, **extra):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 10}],
            "max_tokens": max_tokens, "stream": stream, **extra}
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def stream(client, url, body, request_id=None, path="/chat/completions"):
    """POST a streamed request; return (response, t_sent_ns, [(t_recv_ns, data)])."""
    headers = {"x-request-id": str(request_id)} if request_id is not None else {}
    out = []
    t0 = now_ns()
    with client.stream("POST", url + path, json=body, headers=headers) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append((now_ns(), line[6:]))
    return r, t0, out


def contents(events, chat_=True):
    """Return the (t_ns, text) of the token events."""
    out = []
    for t, data in events:
        if data == "[DONE]":
            continue
        for c in json.loads(data)["choices"]:
            text = c["delta"].get("content") if chat_ else c["text"]
            if text and c["finish_reason"] is None:
                out.append((t, text))
    return out


@pytest.fixture(scope="module")
def mock():
    with ThreadedMock(ttft=DistSpec("fixed", 10.0), itl=DistSpec("fixed", 1.0),
                      model="lens-test") as m:
        yield m


@pytest.fixture()
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


# wire format

def test_chat_stream(mock, client):
    r, _, events = stream(client, mock.url, chat(8))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-lens-mock-worker"] == "0"
    assert events[-1][1] == "[DONE]"
    objs = [json.loads(d) for _, d in events[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(contents(events)) == 8
    assert objs[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in o for o in objs)
    assert {o["model"] for o in objs} == {"gpt-test"}
    assert len({o["id"] for o in objs}) == 1 and objs[0]["id"].startswith("chatcmpl-")


def test_completions_stream_with_usage(mock, client):
    body = {"model": "m", "prompt": "hello world!", "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    _, _, events = stream(client, mock.url, body, path="/completions")
    objs = [json.loads(d) for _, d in events[:-1]]
    assert [o["object"] for o in objs] == ["text_completion"] * 7
    assert len(contents(events, chat_=False)) == 5
    assert objs[-2]["choices"][0]["finish_reason"] == "length"
    # prompt tokens = ceil(12 characters / 4)
    assert objs[-1] == {**objs[-1], "choices": [],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}


def test_non_streamed(mock, client):
    r = client.post(mock.url + "/chat/completions", json=chat(4, stream=False))
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == " the quick brown fox"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    r = client.post(mock.url + "/completions", json={"prompt": ["ab", "cd"], "max_tokens": 2})
    assert r.json()["choices"][0]["text"] == " the quick"
    assert r.json()["model"] == "lens-test"  # no model in the request: --model


def test_max_tokens_defaults_to_16(mock, client):
    body = chat()
    del body["max_tokens"]
    _, _, events = stream(client, mock.url, body)
    assert len(contents(events)) == 16


def test_models(mock, client):
    r = client.get(mock.url + "/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["lens-test"]


@pytest.mark.parametrize(("method", "path", "content", "status", "words"), [
    ("GET", "/v1/nothing", None, 404, "no route for GET /v1/nothing"),
    ("POST", "/v1/chat/completions", b"{not json", 400, "could not parse the JSON"),
    ("POST", "/v1/chat/completions", b"[1]", 400, "must be a JSON object"),
    ("POST", "/v1/chat/completions", b'{"messages":[],"max_tokens":0}', 400, "'max_tokens'"),
    ("POST", "/v1/chat/completions", b'{"max_tokens":3}', 400, "'messages' is a required"),
    ("POST", "/v1/completions", b'{"prompt":"a","model":5}', 400, "'model' must be"),
    ("GET", "/v1/chat/completions", None, 405, "use POST"),
])
def test_errors_are_openai_shaped(mock, client, method, path, content, status, words):
    r = client.request(method, mock.base_url + path, content=content)
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert words in err["message"]
    # and the connection still serves
    assert client.get(mock.url + "/models").status_code == 200


def test_keep_alive_reuses_one_connection(mock, client):
    addrs = set()
    for i in range(3):
        r, _, events = stream(client, mock.url, chat(3), request_id=f"ka{i}")
        addrs.add(r.extensions["network_stream"].get_extra_info("client_addr"))
        assert len(contents(events)) == 3
    assert len(addrs) == 1


def raw_request(port, body, extra=b""):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n%b\r\n%b" % (len(body), extra, body))


def read_until_closed(sock):
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_connection_close_is_honoured(mock):
    body = json.dumps(chat(2)).encode()
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as s:
        s.sendall(raw_request(mock.port, body, b"connection: close\r\n"))
        data = read_until_closed(s)  # returns only because the mock closed
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head
    assert rest.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")


def test_pipelined_requests_are_answered_in_order(mock):
    body = json.dumps(chat(2)).encode()
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as s:
        s.sendall(raw_request(mock.port, body) + raw_request(mock.port, body)
                  + b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = read_until_closed(s)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.count(b"data: [DONE]") == 2
    assert data.rindex(b"data: [DONE]") < data.index(b'"object":"list"')


def test_malformed_http_gets_400_and_close(mock):
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")


# timing and capacity

def test_ttft_and_itl_are_the_configured_ones(client):
    with MockProcess(ttft_ms=30.0, itl_ms=5.0) as m:
        ttfts, itls = [], []
        for _ in range(3):
            _, t0, events = stream(client, m.url, chat(12))
            ts = np.array([t for t, _ in contents(events)])
            ttfts.append((ts[0] - t0) / 1e6)
            itls.extend(np.diff(ts) / 1e6)
    assert abs(np.median(ttfts) - 30.0) < 5.0
    assert abs(np.median(itls) - 5.0) < 1.0
    assert abs(np.mean(itls) - 5.0) < 1.0


def concurrently(fn, n):
    """Run fn(client, k) for k < n on n threads started 5 ms apart; return the results."""
    results = [None] * n
    clients = [httpx.Client(timeout=10.0) for _ in range(n)]  # made up front: that takes ms

    def run(k):
        with clients[k] as c:
            results[k] = fn(c, k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.005)  # a known order of arrival
    for t in threads:
        t.join()
    return results


def test_max_concurrency_queues_fifo():
    # one slot; a request holds it 10 + 9 * 4 = 46 ms
    with MockProcess(ttft_ms=10.0, itl_ms=4.0, max_concurrency=1) as m:
        res = concurrently(lambda c, k: stream(c, m.url, chat(10), request_id=k), 2)
    truth = m.truth()
    a, b = sorted(("0", "1"), key=lambda k: truth[k]["t_received_ns"])  # order of arrival
    first, second = truth[a], truth[b]
    # the second got the slot when the first wrote its last token, then waited its own TTFT
    assert first["t_done_ns"] <= second["t_admitted_ns"] < first["t_done_ns"] + 2e6
    assert (second["token_write_ns"][0] - second["t_admitted_ns"]) / 1e6 == pytest.approx(10, abs=2)
    # as the client saw it: TTFT of the second = the time until the first ended + its own 10 ms
    _, t0, events = res[int(b)]
    expected_ms = (first["t_done_ns"] - t0) / 1e6 + 10
    assert expected_ms > 20  # it did wait for the first
    assert (contents(events)[0][0] - t0) / 1e6 == pytest.approx(expected_ms, abs=5)


def test_batch_slowdown_stretches_itl():
    # two active streams: each ITL is 4 * (1 + 1.0 * (2 - 1)) = 8 ms
    with MockProcess(ttft_ms=5.0, itl_ms=4.0, batch_slowdown=1.0) as m:
        concurrently(lambda c, k: stream(c, m.url, chat(10), request_id=k), 2)
    tokens = [m.truth()[k]["token_write_ns"] for k in ("0", "1")]
    both = min(t[-1] for t in tokens)
    overlap = np.concatenate([np.diff(t[t <= both]) for t in tokens]) / 1e6
    assert len(overlap) >= 6
    assert np.median(overlap) == pytest.approx(8.0, abs=1.0)


def test_saturation_rate_is_the_computed_one():
    # C = 4, S = 0.5: D = 5 + 9 * 2 * (1 + 0.5 * 3) = 50 ms -> 80 req/s; offered 8 streams
    kw = {"ttft_ms": 5.0, "itl_ms": 2.0, "max_concurrency": 4, "batch_slowdown": 0.5}
    expected = saturation_rps(output_tokens=10, **kw)
    assert expected == pytest.approx(80.0)
    with MockProcess(**kw) as m:
        end = time.monotonic() + 1.5  # from when the mock listens: a slow start takes no window

        def loop(c, k):
            while time.monotonic() < end:
                stream(c, m.url, chat(10))
        concurrently(loop, 8)
    done = np.sort([r["t_done_ns"] for r in m.truth().values() if r["t_done_ns"]])
    window = done[(done >= done[0] + 0.3e9) & (done < done[-1] - 0.1e9)]
    rate = (len(window) - 1) / ((window[-1] - window[0]) / 1e9)
    assert rate == pytest.approx(expected, rel=0.1)


def test_a_client_that_leaves_frees_its_slot(client):
    with MockProcess(ttft_ms=5.0, itl_ms=20.0, max_concurrency=1) as m:
        with client.stream("POST", m.url + "/chat/completions", json=chat(100),
                           headers={"x-request-id": "gone"}) as r:
            for line in r.iter_lines():
                if '"content":" the"' in line:
                    break
        r.close()
        with httpx.Client(timeout=10.0) as c2:  # a new connection
            _, t0, events = stream(c2, m.url, chat(2), request_id="next")
        ttft_ms = (contents(events)[0][0] - t0) / 1e6
    assert ttft_ms < 5.0 + 25.0  # not the 2 s the first would have held the slot
    gone = m.truth()["gone"]
    assert 1 <= len(gone["token_write_ns"]) < 100 and gone["t_done_ns"] == 0


def test_output_tokens_caps_and_stops(client):
    with MockProcess(ttft_ms=1.0, itl_ms=0.5, output_tokens=4) as m:
        _, _, events = stream(client, m.url, chat(10))
        assert len(contents(events)) == 4
        assert json.loads(events[-2][1])["choices"][0]["finish_reason"] == "stop"
        _, _, events = stream(client, m.url, chat(2))
        assert len(contents(events)) == 2
        assert json.loads(events[-2][1])["choices"][0]["finish_reason"] == "length"


def test_itl_zero_writes_all_tokens_at_once(client):
    with MockProcess(ttft_ms=2.0, itl_ms=0.0) as m:
        _, _, events = stream(client, m.url, chat(50), request_id="burst")
        assert len(contents(events)) == 50
    tokens = m.truth()["burst"]["token_write_ns"]
    assert len(tokens) == 50 and len(set(tokens.tolist())) == 1


# truth and workers

def test_truth_matches_what_the_client_saw(client):
    with MockProcess(ttft_ms=5.0, itl_ms=2.0, itl_dist="normal", itl_spread_ms=0.5) as m:
        seen = {}
        for i in range(5):
            _, t0, events = stream(client, m.url, chat(6 + i), request_id=i)
            seen[str(i)] = (t0, np.array([t for t, _ in contents(events)]))
        client.post(m.url + "/completions", json={"prompt": "x", "stream": False},
                    headers={"x-request-id": "plain"})
        live = load_truth(client.get(m.base_url + "/lens/truth").content)
    truth = m.truth()
    assert set(truth) == set(seen) | {"plain"} == set(live)
    for rid, (t0, recv) in seen.items():
        rec = truth[rid]
        wrote = rec["token_write_ns"]
        assert len(wrote) == len(recv) == 6 + int(rid)
        assert (wrote < recv).all()  # written before received
        assert (recv - wrote).max() < 50e6
        assert t0 < rec["t_received_ns"] <= rec["t_admitted_ns"] < wrote[0]
        assert rec["t_headers_ns"] < wrote[0] and rec["t_done_ns"] == wrote[-1]
        assert rec["stream"] is True
    assert truth["plain"]["stream"] is False and truth["plain"]["token_write_ns"].size == 0


def test_two_workers_share_the_port(tmp_path):
    with MockProcess(workers=2, ttft_ms=1.0, itl_ms=0.5, truth_file=tmp_path / "t") as m:
        pids, workers = set(), set()
        for i in range(24):
            with httpx.Client() as c:  # a new connection each time
                r, _, events = stream(c, m.url, chat(2), request_id=i)
            pids.add(r.headers["x-lens-mock-pid"])
            workers.add(r.headers["x-lens-mock-worker"])
            assert len(contents(events)) == 2
    assert len(pids) == 2 and workers == {"0", "1"}
    assert m.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.0", "t.1"]
    truth = m.truth()
    assert set(truth) == {str(i) for i in range(24)}
    assert {r["worker"] for r in truth.values()} == {0, 1}


def test_a_taken_port_is_a_config_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            MockProcess(port=s.getsockname()[1]).start()


def test_a_threaded_server_writes_its_truth_file_on_stop(tmp_path):
    with ThreadedMock(ttft=DistSpec("fixed", 1.0), itl=DistSpec("normal", 0.5, 0.1),
                      truth_file=str(tmp_path / "t")) as m, httpx.Client() as c:
        _, _, events = stream(c, m.url, chat(3), request_id="t")
        assert len(contents(events)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.0"]
    assert len(load_truth(tmp_path / "t")["t"]["token_write_ns"]) == 3


def test_own_routes_and_request_capture(mock, client):
    client.delete(mock.base_url + "/lens/requests")
    stream(client, mock.url, chat(2), request_id="cap")
    client.get(mock.url + "/models")
    got = client.get(mock.base_url + "/lens/requests").json()
    assert [(g["method"], g["path"], g["request_id"]) for g in got] == [
        ("POST", "/v1/chat/completions", "cap"), ("GET", "/v1/models", None)]
    assert got[0]["json"] == chat(2) and got[0]["headers"]["x-request-id"] == "cap"
    assert client.delete(mock.base_url + "/lens/requests").status_code == 200
    assert client.get(mock.base_url + "/lens/requests").json() == []
    r = client.get(mock.base_url + "/lens/nothing")
    assert r.status_code == 404 and "/lens/requests" in r.json()["error"]["message"]
    assert client.post(mock.base_url + "/lens/truth").status_code == 405
