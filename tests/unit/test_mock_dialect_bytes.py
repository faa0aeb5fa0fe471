"""lens.mock.dialects: each dialect's bytes, read back by a reference parser checked on fixtures.

The reference parser follows wire-formats.md §0 (WHATWG SSE, the fixture conventions of §0.3)
and is first run on the hand-written fixtures, so that the mock's streams are judged by a
parser known to read the real formats right.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest
from chunked import dechunk

from lens.mock import dialects, wire
from lens.mock.wire import Plan, text_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "streams"
K = len(wire.WORDS)


def one_chunk(raw: bytes) -> bytes:
    """Return the payload of exactly one HTTP chunk."""
    eol = raw.index(b"\r\n")
    size = int(raw[:eol], 16)
    assert len(raw) == eol + 2 + size + 2 and raw.endswith(b"\r\n")
    return raw[eol + 2:eol + 2 + size]


def sse_events(body: bytes) -> list[tuple[str, str]]:
    """Return the (event, data) of every dispatched event (WHATWG rules, bytes split first)."""
    lines = re.split(rb"\r\n|\n|\r", body)
    if lines and lines[-1] == b"":
        lines.pop()  # after the last line end
    out, name, data = [], "", []
    for line in lines:
        if not line:
            if data:
                out.append((name or "message", "\n".join(data)))
            name, data = "", []
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.decode().partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return out


def classify(api: str, body: bytes) -> dict:
    """Return the fixture-convention summary of a stream body (wire-formats.md §0.3)."""
    res = {"content_events": 0, "text": "", "output_tokens": None, "finish_reason": None}

    def content(text):
        if text:
            res["content_events"] += 1
            res["text"] += text

    def finish(reason):
        if reason is not None:
            res["finish_reason"] = reason

    if api == "gemini-json-array":
        objs = json.loads(body)
    else:
        objs = []
        for name, data in sse_events(body):
            if data == "[DONE]":
                continue
            obj = json.loads(data)  # every event is JSON
            if api in ("anthropic-messages", "cohere-chat-v2"):
                assert obj["type"] == name, "event name = JSON type"
            objs.append(obj)
    for o in objs:
        if api == "anthropic-messages":
            if o["type"] == "content_block_delta" and o["delta"]["type"] == "text_delta":
                content(o["delta"]["text"])
            elif o["type"] == "message_delta":
                finish(o["delta"]["stop_reason"])
                res["output_tokens"] = o["usage"]["output_tokens"]
        elif api.startswith("gemini"):
            cand = o["candidates"][0]
            content("".join(p.get("text", "") for p in cand["content"]["parts"]
                            if not p.get("thought")))
            finish(cand.get("finishReason"))
            usage = o.get("usageMetadata", {})
            if "candidatesTokenCount" in usage:
                res["output_tokens"] = (usage["candidatesTokenCount"]
                                        + usage.get("thoughtsTokenCount", 0))
        elif api == "cohere-chat-v2":
            if o["type"] == "content-delta":
                content(o["delta"]["message"]["content"]["text"])
            elif o["type"] == "message-end":
                finish(o["delta"]["finish_reason"])
                usage = o["delta"]["usage"]
                res["output_tokens"] = (usage.get("tokens", {}).get("output_tokens")
                                        or usage["billed_units"]["output_tokens"])
        elif api == "tgi-generate-stream":
            if not o["token"]["special"]:
                content(o["token"]["text"])
            if o["details"] is not None:
                finish(o["details"]["finish_reason"])
                res["output_tokens"] = o["details"]["generated_tokens"]
        else:  # OpenAI chat flavours
            for c in o["choices"]:
                content(c["delta"].get("content"))
                finish(c["finish_reason"])
            if o.get("usage"):
                res["output_tokens"] = o["usage"]["completion_tokens"]
    return res


@pytest.mark.parametrize("name", ["anthropic_messages_basic", "gemini_sse_basic",
                                  "cohere_chat_v2_basic", "tgi_generate_stream_basic",
                                  "tgi_chat_basic", "openai_chat_include_usage"])
def test_the_reference_parser_reads_the_fixtures(name):
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    got = classify(expected["api"], (FIXTURES / f"{name}.sse").read_bytes())
    assert got == {k: expected[k] for k in got}


def plan(dialect, n, capped=True, prompt_tokens=7, model="m-1", details=True,
         include_usage=True):
    p = Plan(dialect, True, model, n, prompt_tokens * 4, include_usage, details)
    p.model_json = orjson.dumps(model)
    p.n_tokens = n
    p.finish = dialect.finish_capped if capped else dialect.finish_natural
    p.prompt_tokens = prompt_tokens
    p.response_id = dialect.id_prefix + "lens0x1"
    p.created = 1700000000
    return p


def stream(dialect, n, **kw):
    """Return (first, [token frame i], end) as the server writes them."""
    first, frames, mask, end = dialect.stream_parts(plan(dialect, n, **kw))
    return first, [frames[i & mask] for i in range(n)], end


DIALECTS = {
    "anthropic-messages": (dialects.ANTHROPIC, ("max_tokens", "end_turn")),
    "gemini-sse": (dialects.GEMINI_SSE, ("MAX_TOKENS", "STOP")),
    "gemini-json-array": (dialects.GEMINI_ARRAY, ("MAX_TOKENS", "STOP")),
    "cohere-chat-v2": (dialects.COHERE, ("MAX_TOKENS", "COMPLETE")),
    "tgi-generate-stream": (dialects.TGI, ("length", "eos_token")),
    "tgi-chat": (dialects.TGI_CHAT, ("length", "stop")),
    "openai-chat": (wire.CHAT, ("length", "stop")),
}


@pytest.mark.parametrize("api", DIALECTS)
@pytest.mark.parametrize("n", [1, 5, K, 3 * K + 5])
@pytest.mark.parametrize("capped", [True, False])
def test_every_dialect_streams_n_tokens_exactly(api, n, capped):
    dialect, reasons = DIALECTS[api]
    first, frames, end = stream(dialect, n, capped=capped)
    body = dechunk(first + b"".join(frames) + end)
    got = classify(api, body)
    assert got == {"content_events": n, "text": text_of(n), "output_tokens": n,
                   "finish_reason": reasons[0] if capped else reasons[1]}
    # each token is one chunk of its own, and the body ends with the terminating chunk
    for f in frames[:-1]:
        one_chunk(f)
    assert end.endswith(b"\r\n0\r\n\r\n")


def test_anthropic_event_sequence():
    first, frames, end = stream(dialects.ANTHROPIC, 3, prompt_tokens=9)
    events = sse_events(dechunk(first + b"".join(frames) + end))
    assert [e for e, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"]
    start = json.loads(events[0][1])["message"]
    assert start["id"] == "msg_lens0x1" and start["model"] == "m-1"
    assert start["usage"] == {"input_tokens": 9, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1}
    assert json.loads(events[7][1]) == {
        "type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 3}}
    # the content events are the precomputed, request-independent ones
    assert frames[0] == dialects.ANTHROPIC.frames[0]


def test_gemini_sse_uses_crlf_and_usage_metadata():
    first, frames, end = stream(dialects.GEMINI_SSE, 2, prompt_tokens=4)
    assert first == b""
    body = dechunk(b"".join(frames) + end)
    assert body.count(b"\r\n\r\n") == 3 and body.replace(b"\r\n", b"").count(b"\n") == 0
    objs = [json.loads(d) for _, d in sse_events(body)]
    assert [o["usageMetadata"] for o in objs] == [
        {"promptTokenCount": 4, "totalTokenCount": 4}] * 2 + [
        {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}]
    assert {o["modelVersion"] for o in objs} == {"m-1"}
    assert {o["responseId"] for o in objs} == {"lens0x1"}
    assert objs[-1]["candidates"][0] == {"content": {"parts": [{"text": ""}], "role": "model"},
                                         "index": 0, "finishReason": "MAX_TOKENS"}


def scan_json_array(body: bytes) -> list[bytes]:
    """Return the top-level elements of a JSON array, tracking depth and strings byte by byte."""
    out, depth, start, in_str, esc = [], 0, 0, False, False
    for i, c in enumerate(body):
        ch = chr(c)
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
            start = i if depth == 1 else start
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(body[start:i + 1])
    return out


def test_gemini_array_is_written_element_by_element():
    n = K + 2
    first, frames, end = stream(dialects.GEMINI_ARRAY, n)
    assert first == b""
    payloads = [one_chunk(f) for f in frames]
    assert payloads[0].startswith(b'[{\n  "candidates": [')
    assert all(p.startswith(b'\n,\r\n{\n  "candidates"') for p in payloads[1:])
    assert all(p.endswith(b"}") for p in payloads)
    last = dechunk(end)
    assert last.startswith(b"\n,\r\n{") and last.endswith(b"}\n]")
    # each write completes exactly one element, so an incremental parser emits it on arrival
    assert [len(scan_json_array(p)) for p in payloads] == [1] * n
    body = b"".join(payloads) + last
    assert [json.loads(e) for e in scan_json_array(body)] == json.loads(body)
    # token K's frame is not token 0's (no "[" again): one frame per token
    assert payloads[K] != payloads[0] and payloads[K] == payloads[1].replace(
        b'" quick"', b'" the"')


def test_cohere_events():
    first, frames, end = stream(dialects.COHERE, 2, prompt_tokens=5)
    events = sse_events(dechunk(first + b"".join(frames) + end))
    assert [e for e, _ in events] == ["message-start", "content-start", "content-delta",
                                      "content-delta", "content-end", "message-end"]
    assert json.loads(events[0][1])["delta"]["message"] == {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    assert json.loads(events[-1][1])["delta"]["usage"] == {
        "billed_units": {"input_tokens": 5, "output_tokens": 2},
        "tokens": {"input_tokens": 5, "output_tokens": 2}}


@pytest.mark.parametrize("details", [True, False])
def test_tgi_native_events(details):
    n = K + 3
    first, frames, end = stream(dialects.TGI, n, prompt_tokens=6, details=details)
    body = dechunk(b"".join(frames) + end)
    assert first == b"" and body.startswith(b'data:{"index":1,')  # no space, as TGI writes
    assert b"data: " not in body
    objs = [json.loads(d) for _, d in sse_events(body)]
    assert [o["index"] for o in objs] == list(range(1, n + 1))
    assert [o["token"]["text"] for o in objs] == [wire.WORDS[i % K] for i in range(n)]
    assert all(o["token"]["special"] is False and o["token"]["logprob"] < 0 for o in objs)
    assert all(o["generated_text"] is None and o["details"] is None for o in objs[:-1])
    assert objs[-1]["generated_text"] == text_of(n)
    # as TGI, details only when parameters.details asked for them
    assert objs[-1]["details"] == ({"finish_reason": "length", "generated_tokens": n,
                                    "seed": None, "input_length": 6} if details else None)
    assert "top_tokens" not in objs[0]


def test_tgi_frames_beyond_the_cache_are_built_per_request(monkeypatch):
    monkeypatch.setattr(dialects, "_TGI_CACHE_MAX", 4)
    tgi = dialects.Tgi()
    _, frames, _, end = tgi.stream_parts(plan(tgi, 10))
    assert len(frames) == 10 and len(tgi._cache) == 4
    objs = [json.loads(d) for _, d in sse_events(dechunk(b"".join(frames) + end))]
    assert [o["index"] for o in objs] == list(range(1, 11))


def test_tgi_chat_chunks():
    first, frames, end = stream(dialects.TGI_CHAT, 2, prompt_tokens=3)
    body = dechunk(first + b"".join(frames) + end)
    assert first == b"" and b"data: " not in body and body.endswith(b"data:[DONE]\n\n")
    objs = [json.loads(d) for _, d in sse_events(body) if d != "[DONE]"]
    assert {o["id"] for o in objs} == {""}
    assert {o["system_fingerprint"] for o in objs} == {"lens-mock-tgi"}
    assert [o["choices"][0]["delta"] for o in objs[:3]] == [
        {"role": "assistant", "content": " the"}, {"role": "assistant", "content": " quick"},
        {"role": "assistant", "content": ""}]
    assert [o["usage"] for o in objs[:3]] == [None] * 3
    assert objs[3] == {**objs[3], "choices": [],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    _, _, end = stream(dialects.TGI_CHAT, 2, include_usage=False)
    assert b'"usage":{' not in end


def test_write_all_form_matches_token_by_token():
    # the server's ITL-0 path joins frames K at a time; one-frame-per-token lists must agree
    for dialect in (dialects.TGI, dialects.GEMINI_ARRAY, dialects.ANTHROPIC):
        n = K + 7
        _, frames, mask, end = dialect.stream_parts(plan(dialect, n))
        k = len(frames)
        burst = b"".join(frames) * (n // k) + b"".join(frames[:n % k]) + end
        assert burst == b"".join(frames[i & mask] for i in range(n)) + end


def test_non_streamed_bodies():
    n = 3
    text = text_of(n)
    a = json.loads(dialects.ANTHROPIC.body_of(plan(dialects.ANTHROPIC, n, capped=False)))
    assert a == {"id": "msg_lens0x1", "type": "message", "role": "assistant", "model": "m-1",
                 "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                 "stop_sequence": None,
                 "usage": {"input_tokens": 7, "cache_creation_input_tokens": 0,
                           "cache_read_input_tokens": 0, "output_tokens": n}}
    g = json.loads(dialects.GEMINI_SSE.body_of(plan(dialects.GEMINI_SSE, n)))
    assert g["candidates"][0]["content"]["parts"] == [{"text": text}]
    assert g["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert g["usageMetadata"]["candidatesTokenCount"] == n
    c = json.loads(dialects.COHERE.body_of(plan(dialects.COHERE, n)))
    assert c["message"]["content"] == [{"type": "text", "text": text}]
    assert c["finish_reason"] == "MAX_TOKENS" and c["usage"]["tokens"]["output_tokens"] == n
    t = json.loads(dialects.TGI.body_of(plan(dialects.TGI, n)))
    assert t["generated_text"] == text and t["details"]["generated_tokens"] == n
    assert [x["text"] for x in t["details"]["tokens"]] == list(wire.WORDS[:n])
    assert "details" not in json.loads(dialects.TGI.body_of(plan(dialects.TGI, n, details=False)))
    tc = json.loads(dialects.TGI_CHAT.body_of(plan(dialects.TGI_CHAT, n)))
    assert tc["object"] == "chat.completion" and tc["id"] == ""
    assert tc["choices"][0]["message"] == {"role": "assistant", "content": text}


def test_openai_stream_parts_match_the_pieces():
    p = plan(wire.CHAT, 3)
    first, frames, mask, end = wire.CHAT.stream_parts(p)
    prefix = wire.CHAT.prefix(p.response_id, p.created, p.model_json)
    assert mask == wire.WORD_MASK and first == wire.CHAT.first_frame(prefix)
    assert frames == wire.CHAT.token_frames(prefix, 3)
    assert end == wire.CHAT.end_frames(prefix, "length", 7, 3, True)
