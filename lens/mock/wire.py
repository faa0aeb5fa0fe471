"""Build the bytes the mock writes: HTTP heads, OpenAI chat/completions SSE chunks, JSON bodies.

The mock writes each dialect itself (not through ``lens.providers``), so a codec mistake
cannot hide on both sides of a test.

A streamed token is one HTTP chunk holding one SSE event::

    <hex len>\\r\\n  data: {"id":"<id>","object":..,"created":..,"model":<model>,"choices":  [{..."content":" the"}...]}\\n\\n  \\r\\n
    \\_______ head _/\\________________________ prefix (per request) __________/\\________ tail (per token word) __/

The tails (one per word of ``WORDS``) are built once per endpoint, the heads once per
(endpoint, prefix length), and the prefix and the K = len(WORDS) token chunks once per request:
writing token i is then ``frames[i % K]``, with no formatting or JSON encoding per token.
"""
from __future__ import annotations

import orjson

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "DONE_FRAMES",
    "WORDS",
    "Dialect",
    "error_body",
    "frame",
    "json_response",
    "stream_head",
    "text_of",
]

#: The token texts, cycled: token i is WORDS[i % len(WORDS)]. The length is a power of 2.
WORDS = (
    " the", " quick", " brown", " fox", " jumps", " over", " a", " lazy",
    " dog", " and", " runs", " far", " into", " green", " hills", " where",
    " small", " birds", " sing", " each", " bright", " morning", " while", " old",
    " trees", " sway", " in", " cool", " wind", " near", " blue", " lakes",
)
WORD_MASK = len(WORDS) - 1
assert len(WORDS) & WORD_MASK == 0

#: ``data: [DONE]`` event and the chunked-encoding terminator.
DONE_FRAMES = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Payload Too Large"}


def frame(event: bytes) -> bytes:
    """Return ``event`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(event), event)


def text_of(n_tokens: int) -> str:
    """Return the text of the first ``n_tokens`` tokens."""
    full, rest = divmod(n_tokens, len(WORDS))
    return "".join(WORDS) * full + "".join(WORDS[:rest])


def _extra_headers(worker: int, pid: int) -> bytes:
    return b"x-lens-mock-worker: %d\r\nx-lens-mock-pid: %d\r\n" % (worker, pid)


def stream_head(worker: int, pid: int, keep_alive: bool) -> bytes:
    """Return the status line and headers of a streamed (SSE, chunked) 200 response."""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
            + (b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
            + _extra_headers(worker, pid) + b"\r\n")


def json_response(status: int, body: bytes, worker: int, pid: int, keep_alive: bool,
                  content_type: bytes = b"application/json") -> bytes:
    """Return a whole response with a ``content-length`` body."""
    return (b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n"
            % (status, _REASONS[status], content_type, len(body))
            + (b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
            + _extra_headers(worker, pid) + b"\r\n" + body)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:
    """Return an OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class Dialect:
    """The byte pieces of one OpenAI endpoint (chat or completions)."""

    def __init__(self, name: str, object_: str, id_prefix: str) -> None:
        self.name = name
        self.object = object_
        self.id_prefix = id_prefix
        self.is_chat = name == "chat"
        self.tails = [self._choices(orjson.dumps(w)) + b"}\n\n\r\n" for w in WORDS]
        self._heads: dict[int, list[bytes]] = {}

    def _choices(self, text_json: bytes, finish: bytes = b"null") -> bytes:
        if self.is_chat:
            return b'[{"index":0,"delta":{"content":%b},"finish_reason":%b}]' % (text_json, finish)
        return b'[{"text":%b,"index":0,"logprobs":null,"finish_reason":%b}]' % (text_json, finish)

    def prefix(self, request_id: str, created: int, model_json: bytes) -> bytes:
        """Return the per-request start of every event: ``data: {"id":..,"model":..,"choices":``."""
        return b'data: {"id":"%b","object":"%b","created":%d,"model":%b,"choices":' % (
            request_id.encode(), self.object.encode(), created, model_json)

    def heads(self, prefix_len: int) -> list[bytes]:
        """Return the chunk-size lines of the token events for a prefix of ``prefix_len`` bytes."""
        heads = self._heads.get(prefix_len)
        if heads is None:
            # The tail holds the chunk's closing CRLF, which the size does not count.
            heads = [b"%x\r\n" % (prefix_len + len(t) - 2) for t in self.tails]
            if len(self._heads) < 256:  # model names vary per request; keep the cache bounded
                self._heads[prefix_len] = heads
        return heads

    def first_frame(self, prefix: bytes) -> bytes:
        """Return the role event of a chat stream (empty for completions)."""
        if not self.is_chat:
            return b""
        return frame(prefix + b'[{"index":0,"delta":{"role":"assistant","content":""},'
                     b'"finish_reason":null}]}\n\n')

    def end_frames(self, prefix: bytes, finish_reason: str, prompt_tokens: int,
                   completion_tokens: int, include_usage: bool) -> bytes:
        """Return the finish event, the usage event when asked for, ``[DONE]`` and the terminator."""
        reason = b'"%b"' % finish_reason.encode()
        if self.is_chat:
            out = frame(prefix + b'[{"index":0,"delta":{},"finish_reason":%b}]}\n\n' % reason)
        else:
            out = frame(prefix + self._choices(b'""', reason) + b"}\n\n")
        if include_usage:
            out += frame(prefix + b"[],\"usage\":%b}\n\n" % _usage(prompt_tokens, completion_tokens))
        return out + DONE_FRAMES

    def token_frames(self, prefix: bytes, n_tokens: int) -> list[bytes]:
        """Return the chunks of tokens 0 .. min(n_tokens, K) - 1; token i is ``[i % K]``."""
        heads = self.heads(len(prefix))
        tails = self.tails
        return [heads[j] + prefix + tails[j] for j in range(min(n_tokens, len(WORDS)))]

    def body(self, request_id: str, created: int, model: str, finish_reason: str,
             prompt_tokens: int, completion_tokens: int) -> bytes:
        """Return the JSON body of a non-streamed response."""
        text = text_of(completion_tokens)
        if self.is_chat:
            obj = "chat.completion"
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish_reason}
        else:
            obj = "text_completion"
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return orjson.dumps({
            "id": request_id, "object": obj, "created": created, "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


def _usage(prompt_tokens: int, completion_tokens: int) -> bytes:
    return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
        prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


CHAT = Dialect("chat", "chat.completion.chunk", "chatcmpl-")
COMPLETIONS = Dialect("completions", "text_completion", "cmpl-")
