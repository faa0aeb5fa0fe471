"""lens.mock.wire: the exact bytes of the mock's responses, read back by a reference parser."""
from __future__ import annotations

import json

import pytest
from chunked import dechunk

from lens.mock import wire


def events(body: bytes) -> list[str]:
    """Split an SSE body into its data lines (the mock writes one data line per event)."""
    assert body.endswith(b"\n\n")
    out = []
    for ev in body[:-2].split(b"\n\n"):
        assert ev.startswith(b"data: ") and b"\n" not in ev
        out.append(ev[6:].decode())
    return out


def stream_body(dialect, n, finish="length", usage=False, prompt_tokens=3):
    prefix = dialect.prefix("ID", 1700000000, b'"m"')
    frames = dialect.token_frames(prefix, n)
    raw = dialect.first_frame(prefix)
    raw += b"".join(frames[i % len(frames)] for i in range(n))
    raw += dialect.end_frames(prefix, finish, prompt_tokens, n, usage)
    return raw


def test_chat_stream_events_are_exact():
    got = events(dechunk(stream_body(wire.CHAT, 3, usage=True)))
    head = '{"id":"ID","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":'
    assert got == [
        head + '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        head + '[{"index":0,"delta":{"content":" the"},"finish_reason":null}]}',
        head + '[{"index":0,"delta":{"content":" quick"},"finish_reason":null}]}',
        head + '[{"index":0,"delta":{"content":" brown"},"finish_reason":null}]}',
        head + '[{"index":0,"delta":{},"finish_reason":"length"}]}',
        head + '[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}',
        "[DONE]",
    ]


def test_completions_stream_events_are_exact():
    got = events(dechunk(stream_body(wire.COMPLETIONS, 2, finish="stop")))
    head = '{"id":"ID","object":"text_completion","created":1700000000,"model":"m","choices":'
    assert got == [
        head + '[{"text":" the","index":0,"logprobs":null,"finish_reason":null}]}',
        head + '[{"text":" quick","index":0,"logprobs":null,"finish_reason":null}]}',
        head + '[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]}',
        "[DONE]",
    ]


@pytest.mark.parametrize("dialect", [wire.CHAT, wire.COMPLETIONS])
def test_long_streams_cycle_the_words_and_every_event_is_json(dialect):
    n = 3 * len(wire.WORDS) + 5
    got = events(dechunk(stream_body(dialect, n, usage=True)))
    assert got[-1] == "[DONE]"
    objs = [json.loads(e) for e in got[:-1]]
    texts = [(c["delta"].get("content") if dialect.is_chat else c["text"])
             for o in objs for c in o["choices"]]
    if dialect.is_chat:
        texts = texts[1:]  # the role event
    assert texts[:-1] == [wire.WORDS[i % len(wire.WORDS)] for i in range(n)]
    assert "".join(texts[:-1]) == wire.text_of(n)
    assert objs[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}


def test_model_names_are_json_escaped_and_sized_right():
    model = 'we"ird/模型'
    from orjson import dumps
    prefix = wire.CHAT.prefix("ID", 1, dumps(model))
    body = dechunk(b"".join(wire.CHAT.token_frames(prefix, 2)) + wire.DONE_FRAMES)
    assert [json.loads(e)["model"] for e in events(body)[:-1]] == [model, model]


def test_stream_head():
    head = wire.stream_head(3, 42, keep_alive=True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:-2]
    assert lines == ["content-type: text/event-stream", "transfer-encoding: chunked",
                     "cache-control: no-cache", "connection: keep-alive",
                     "x-lens-mock-worker: 3", "x-lens-mock-pid: 42"]
    assert b"connection: close\r\n" in wire.stream_head(0, 1, keep_alive=False)
    assert wire.stream_head(0, 1, True, b"application/json").startswith(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n")


def test_json_response_and_error_body():
    body = wire.error_body("nope", code="not_found")
    raw = wire.json_response(404, body, 0, 1, keep_alive=False)
    head, _, got = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert f"content-length: {len(body)}".encode() in head
    assert json.loads(got) == {"error": {"message": "nope", "type": "invalid_request_error",
                                         "param": None, "code": "not_found"}}


def test_non_streamed_bodies():
    chat = json.loads(wire.CHAT.body("ID", 5, "m", "length", 2, 3))
    assert chat == {"id": "ID", "object": "chat.completion", "created": 5, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant",
                                                         "content": " the quick brown"},
                                 "logprobs": None, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}
    comp = json.loads(wire.COMPLETIONS.body("ID", 5, "m", "stop", 2, 1))
    assert comp["object"] == "text_completion"
    assert comp["choices"] == [{"text": " the", "index": 0, "logprobs": None,
                                "finish_reason": "stop"}]
