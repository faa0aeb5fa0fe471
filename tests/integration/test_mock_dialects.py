"""Every --api of the mock over real sockets: streams, keys, captured requests, errors.

Each API gets one mock (MockProcess, --require-key) and is driven the way its client would
drive it; the streams are read incrementally with a stamp per event, and compared with the
truth record and with what the mock says it received.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from servers import ThreadedMock

from lens.mock import MockProcess, load_truth
from lens.mock.distributions import DistSpec
from lens.mock.wire import WORDS, text_of

KEY = "sk-lens-test-4711"
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def sse_objects(reads: list[tuple[int, bytes]]) -> list[tuple[int, str, Any]]:
    """Split SSE reads into (t_ns of the read that completed it, event name, data)."""
    out, buf = [], b""
    for t, data in reads:
        buf += data
        while m := _EVENT_END.search(buf):
            event, buf = buf[:m.start()], buf[m.end():]
            name, lines = "message", []
            for line in re.split(rb"\r?\n", event):
                field, _, value = line.decode().partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    lines.append(value)
            data_s = "\n".join(lines)
            out.append((t, name, data_s if data_s == "[DONE]" else json.loads(data_s)))
    assert buf == b"", f"bytes after the last event: {buf!r}"
    return out


def array_objects(reads: list[tuple[int, bytes]]) -> list[tuple[int, str, Any]]:
    """Split a streamed JSON array into (t_ns, "element", object) as each element completes."""
    out, elem, depth, in_str, esc, seen = [], bytearray(), 0, False, False, bytearray()
    for t, data in reads:
        seen += data
        for c in data:
            ch = chr(c)
            if depth:
                elem.append(c)
            if in_str:
                esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
            elif ch == '"':
                in_str = True
            elif ch == "{":
                if depth == 0:
                    elem = bytearray(b"{")
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    out.append((t, "element", json.loads(elem)))
    assert [o for _, _, o in out] == json.loads(bytes(seen)), "the body is one JSON array"
    return out


@dataclass
class Case:
    """How a client of one API asks for n tokens and reads the answer."""

    api: str
    path: str  # appended to MockProcess.url
    auth: tuple[str, str]  # the header that carries KEY, and its value
    headers: dict[str, str]
    finish: tuple[str, str]  # capped, natural

    def body(self, n: int, stream: bool = True) -> dict[str, Any]:
        msgs = [{"role": "user", "content": "say something"}]  # 13 characters: 4 tokens
        if self.api == "openai":
            return {"model": "gpt-x", "messages": msgs, "max_tokens": n, "stream": stream,
                    "stream_options": {"include_usage": True}}
        if self.api == "anthropic":
            return {"model": "claude-x", "messages": msgs, "max_tokens": n, "stream": stream}
        if self.api == "gemini":
            return {"contents": [{"role": "user", "parts": [{"text": "say something"}]}],
                    "generationConfig": {"maxOutputTokens": n}}
        if self.api == "cohere":
            return {"model": "command-x", "messages": msgs, "max_tokens": n, "stream": stream}
        return {"inputs": "say something", "parameters": {"max_new_tokens": n, "details": True}}

    def url(self, mock: Any, stream: bool = True) -> str:
        path = self.path
        if not stream:
            path = path.replace(":streamGenerateContent?alt=sse", ":generateContent").replace(
                "/generate_stream", "/generate")
        return mock.url + path

    def request_headers(self, key: str | None = KEY) -> dict[str, str]:
        h = dict(self.headers)
        if key is not None:
            h[self.auth[0]] = self.auth[1].replace(KEY, key)
        return h

    def summary(self, events: list[tuple[int, str, Any]]) -> dict[str, Any]:
        """Return token stamps, text, finish reason and reported output tokens."""
        stamps, text, finish, out = [], "", None, None
        for t, name, o in events:
            piece, f = "", None
            if o == "[DONE]":
                continue
            if self.api == "openai":
                for c in o["choices"]:
                    piece, f = c["delta"].get("content") or "", c["finish_reason"]
                out = (o.get("usage") or {}).get("completion_tokens", out)
            elif self.api == "anthropic":
                if name == "content_block_delta":
                    piece = o["delta"]["text"]
                if name == "message_delta":
                    f, out = o["delta"]["stop_reason"], o["usage"]["output_tokens"]
            elif self.api == "gemini":
                cand = o["candidates"][0]
                piece, f = cand["content"]["parts"][0]["text"], cand.get("finishReason")
                out = o["usageMetadata"].get("candidatesTokenCount", out)
            elif self.api == "cohere":
                if name == "content-delta":
                    piece = o["delta"]["message"]["content"]["text"]
                if name == "message-end":
                    f = o["delta"]["finish_reason"]
                    out = o["delta"]["usage"]["tokens"]["output_tokens"]
            else:
                piece = o["token"]["text"]
                if o["details"]:
                    f, out = o["details"]["finish_reason"], o["details"]["generated_tokens"]
            if piece:
                stamps.append(t)
                text += piece
            finish = f or finish
        return {"stamps": stamps, "text": text, "finish": finish, "output_tokens": out}


CASES = {c.api: c for c in [
    Case("openai", "/chat/completions", ("Authorization", f"Bearer {KEY}"), {},
         ("length", "stop")),
    Case("anthropic", "/v1/messages", ("x-api-key", KEY), {"anthropic-version": "2023-06-01"},
         ("max_tokens", "end_turn")),
    Case("gemini", "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
         ("x-goog-api-key", KEY), {}, ("MAX_TOKENS", "STOP")),
    Case("cohere", "/v2/chat", ("Authorization", f"bearer {KEY}"), {}, ("MAX_TOKENS", "COMPLETE")),
    Case("tgi", "/generate_stream", ("Authorization", f"Bearer {KEY}"), {},
         ("length", "eos_token")),
]}


def stream(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str],
           array: bool = False) -> tuple[httpx.Response, int, list[tuple[int, str, Any]]]:
    """POST and read the answer; return (response, t_sent_ns, events stamped on arrival)."""
    reads = []
    t0 = now_ns()
    with client.stream("POST", url, json=body, headers=headers) as r:
        for data in r.iter_bytes():
            reads.append((now_ns(), data))
    if r.status_code != 200:
        return r, t0, []
    return r, t0, (array_objects if array else sse_objects)(reads)


@pytest.fixture(scope="module", params=list(CASES))
def mock(request):
    with MockProcess(api=request.param, ttft_ms=5.0, itl_ms=1.0, require_key=KEY,
                     model="served-model") as m:
        yield CASES[request.param], m


@pytest.fixture()
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


def test_base_url(mock):
    case, m = mock
    assert m.url == (m.base_url + "/v1" if case.api == "openai" else m.base_url)


def test_stream_counts_timings_and_truth(mock, client):
    case, m = mock
    rid = f"{case.api}-stream"
    headers = {**case.request_headers(), "x-request-id": rid}
    r, t0, events = stream(client, case.url(m), case.body(12), headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    got = case.summary(events)
    assert len(got["stamps"]) == 12
    assert got["text"] == text_of(12)
    assert got["finish"] == case.finish[0]
    assert got["output_tokens"] == 12
    truth = load_truth(client.get(m.base_url + "/lens/truth").content)[rid]
    wrote = truth["token_write_ns"].tolist()
    assert len(wrote) == 12
    assert all(w < s for w, s in zip(wrote, got["stamps"], strict=True))  # written, then read
    assert t0 < truth["t_received_ns"] <= truth["t_admitted_ns"] < wrote[0]
    # TTFT 5 ms from admission (a deadline rounded to a 0.1 ms slot; late only under load)
    assert 4.9 <= (wrote[0] - truth["t_admitted_ns"]) / 1e6 < 100
    assert truth["t_done_ns"] == wrote[-1]


def test_requests_are_captured_as_sent(mock, client):
    case, m = mock
    m.clear_requests()
    assert m.requests() == []
    body = case.body(2)
    headers = {**case.request_headers(), "x-request-id": f"{case.api}-cap"}
    r, _, _ = stream(client, case.url(m), body, headers)
    assert r.status_code == 200
    [got] = m.requests()
    assert got["method"] == "POST"
    assert got["path"] == case.url(m)[len(m.base_url):]  # the query too
    name, value = case.auth
    assert got["headers"][name.lower()] == value
    assert [name.lower(), value] in [[n.lower(), v] for n, v in got["raw_headers"]]
    for k, v in case.headers.items():
        assert got["headers"][k] == v
    assert got["headers"]["content-type"] == "application/json"
    assert got["json"] == body and json.loads(got["body"]) == body
    assert got["request_id"] == f"{case.api}-cap" and got["worker"] == 0
    assert isinstance(got["t_received_ns"], int)


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_a_missing_or_wrong_key_is_401_in_the_api_shape(mock, client, key):
    case, m = mock
    r = client.post(case.url(m), json=case.body(2), headers=case.request_headers(key))
    assert r.status_code == 401
    assert KEY not in r.text
    assert_error_shape(case.api, r, 401)


def assert_error_shape(api: str, r: httpx.Response, status: int) -> None:
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    if api == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    elif api == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    elif api == "gemini":
        assert body["error"]["code"] == status and set(body["error"]) == {
            "code", "message", "status"}
    elif api == "cohere":
        assert set(body) == {"message"}
    else:
        assert set(body) == {"error", "error_type"}


def test_unknown_path_and_bad_body(mock, client):
    case, m = mock
    r = client.post(m.base_url + "/v9/nothing", json={}, headers=case.request_headers())
    assert r.status_code == 404
    assert_error_shape(case.api, r, 404)
    assert "no route for POST /v9/nothing" in r.text
    r = client.post(case.url(m), content=b"{not json", headers=case.request_headers())
    assert r.status_code == 400
    assert_error_shape(case.api, r, 400)
    # and the connection still serves
    assert client.get(m.base_url + "/health").status_code == 200


def test_non_streamed(mock, client):
    case, m = mock
    r = client.post(case.url(m, stream=False), json=case.body(3, stream=False),
                    headers=case.request_headers())
    assert r.status_code == 200
    body = r.json()
    text = {"openai": lambda: body["choices"][0]["message"]["content"],
            "anthropic": lambda: body["content"][0]["text"],
            "gemini": lambda: body["candidates"][0]["content"]["parts"][0]["text"],
            "cohere": lambda: body["message"]["content"][0]["text"],
            "tgi": lambda: body["generated_text"]}[case.api]()
    assert text == text_of(3)


# API-specific


def threaded(api: str, **kw: Any) -> ThreadedMock:
    """Run a MockServer in a thread of this process (cheap; no truth file, no key)."""
    return ThreadedMock(api=api, ttft=DistSpec("fixed", 1.0), itl=DistSpec("fixed", 0.5), **kw)


@pytest.mark.parametrize("api", list(CASES))
def test_output_tokens_ends_with_the_natural_finish(api, client):
    case = CASES[api]
    with threaded(api, output_tokens=3) as m:
        _, _, events = stream(client, case.url(m), case.body(10), case.request_headers())
        got = case.summary(events)
        assert (len(got["stamps"]), got["finish"], got["output_tokens"]) == (3, case.finish[1], 3)
        _, _, events = stream(client, case.url(m), case.body(2), case.request_headers())
        got = case.summary(events)
        assert (len(got["stamps"]), got["finish"], got["output_tokens"]) == (2, case.finish[0], 2)


def test_gemini_without_alt_sse_streams_a_json_array(client):
    case = CASES["gemini"]
    n = len(WORDS) + 3
    with threaded("gemini") as m:
        url = m.url + "/v1beta/models/gemini-x:streamGenerateContent"
        r, _, events = stream(client, url, case.body(n), {}, array=True)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=UTF-8"
    got = case.summary(events)
    assert len(events) == n + 1 and len(got["stamps"]) == n
    assert got["text"] == text_of(n) and got["finish"] == "MAX_TOKENS"
    assert got["output_tokens"] == n
    assert {o["modelVersion"] for _, _, o in events} == {"gemini-x"}


def test_tgi_serves_openai_chat_too(client):
    with threaded("tgi", model="tgi-model") as m:
        body = {"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                "stream": True, "stream_options": {"include_usage": True}}
        r, _, events = stream(client, m.url + "/v1/chat/completions", body, {})
        raw = client.post(m.url + "/v1/chat/completions", json=body).content
        models = client.get(m.url + "/v1/models").json()
    assert r.status_code == 200 and events[-1][2] == "[DONE]"
    got = CASES["openai"].summary(events)
    assert (len(got["stamps"]), got["text"], got["finish"], got["output_tokens"]) == (
        4, text_of(4), "length", 4)
    assert {o["model"] for _, _, o in events[:-1]} == {"tgi-model"}
    assert raw.startswith(b"data:{") and raw.endswith(b"data:[DONE]\n\n")
    assert [x["id"] for x in models["data"]] == ["tgi-model"]


def test_tgi_details_only_when_asked(client):
    with threaded("tgi") as m:
        _, _, events = stream(client, m.url + "/generate_stream",
                              {"inputs": "x", "parameters": {"max_new_tokens": 2}}, {})
    last = events[-1][2]
    assert last["generated_text"] == text_of(2) and last["details"] is None


def test_tgi_validation_is_422(client):
    with threaded("tgi") as m:
        r = client.post(m.url + "/generate_stream",
                        json={"inputs": "x", "parameters": {"max_new_tokens": 0}})
    assert r.status_code == 422
    assert r.json() == {"error": "'max_new_tokens' must be an integer >= 1 (got 0).",
                        "error_type": "validation"}


def test_anthropic_needs_its_version_header(client):
    case = CASES["anthropic"]
    with threaded("anthropic") as m:
        r = client.post(m.url + "/v1/messages", json=case.body(2))
        wrong = client.get(m.url + "/v1/messages")
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "anthropic-version: header is required"}}
    assert wrong.status_code == 405 and wrong.json()["type"] == "error"


def test_gemini_key_in_the_query(client):
    case = CASES["gemini"]
    with MockProcess(api="gemini", ttft_ms=1.0, itl_ms=0.5, require_key=KEY) as m:
        url = m.url + "/v1beta/models/g:streamGenerateContent?alt=sse&key=" + KEY
        r, _, events = stream(client, url, case.body(2), {})
        assert r.status_code == 200 and len(case.summary(events)["stamps"]) == 2
        # the key reaches the child by its environment, never its command line
        with open(f"/proc/{m.pid}/cmdline", "rb") as f:
            assert KEY.encode() not in f.read()


def test_azure_deployment_route(client):
    with threaded("openai") as m:
        url = m.base_url + "/openai/deployments/my-gpt/chat/completions"
        body = CASES["openai"].body(3)
        r, _, events = stream(client, url + "?api-version=2024-10-21", body,
                              {"api-key": "anything"})
        missing = client.post(url, json=body)
    got = CASES["openai"].summary(events)
    assert r.status_code == 200 and len(got["stamps"]) == 3
    assert {o["model"] for _, _, o in events[:-1]} == {"my-gpt"}
    assert missing.status_code == 400 and "api-version" in missing.json()["error"]["message"]


def test_capture_off_and_capture_limit(client):
    with threaded("cohere", capture=0) as m:
        client.post(m.url + "/v2/chat", json=CASES["cohere"].body(1))
        assert client.get(m.url + "/lens/requests").json() == []
    with threaded("cohere", capture=2) as m:
        for i in range(3):
            client.post(m.url + "/v2/chat", json=CASES["cohere"].body(1),
                        headers={"x-request-id": str(i)})
        client.get(m.url + "/health")  # the mock's own routes are not kept
        got = client.get(m.url + "/lens/requests").json()
    assert [g["request_id"] for g in got] == ["1", "2"]


def test_requests_from_several_workers(client):
    case = CASES["anthropic"]
    with MockProcess(api="anthropic", workers=2, ttft_ms=1.0, itl_ms=0.5) as m:
        workers = set()
        for i in range(16):
            with httpx.Client() as c:  # a new connection each time
                r = c.post(m.url + "/v1/messages", json=case.body(1),
                           headers={**case.headers, "x-request-id": str(i)})
            workers.add(r.headers["x-lens-mock-worker"])
        got = m.requests()
    assert workers == {"0", "1"}
    assert sorted(g["request_id"] for g in got) == sorted(str(i) for i in range(16))
    assert {g["worker"] for g in got} == {0, 1}
    assert [g["t_received_ns"] for g in got] == sorted(g["t_received_ns"] for g in got)
    with pytest.raises(RuntimeError, match="needs the mock running"):
        m.requests()
