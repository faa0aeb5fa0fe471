"""Build the bytes the mock writes: HTTP heads, OpenAI chat/completions SSE chunks, JSON bodies.

The mock writes each dialect itself (not through ``lens.providers``), so a codec mistake
cannot hide on both sides of a test. The other dialects (Anthropic, Gemini, Cohere, TGI) are in
``lens.mock.dialects``, built from the same pieces.

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
    "SSE",
    "WORDS",
    "WORD_MASK",
    "Dialect",
    "Plan",
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

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            403: b"Forbidden", 405: b"Method Not Allowed", 413: b"Payload Too Large",
            422: b"Unprocessable Entity", 429: b"Too Many Requests",
            500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
            504: b"Gateway Timeout"}
SSE = b"text/event-stream"


def frame(event: bytes) -> bytes:
    """Return ``event`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(event), event)


def text_of(n_tokens: int) -> str:
    """Return the text of the first ``n_tokens`` tokens."""
    full, rest = divmod(n_tokens, len(WORDS))
    return "".join(WORDS) * full + "".join(WORDS[:rest])


def _extra_headers(worker: int, pid: int) -> bytes:
    return b"x-lens-mock-worker: %d\r\nx-lens-mock-pid: %d\r\n" % (worker, pid)


def stream_head(worker: int, pid: int, keep_alive: bool, content_type: bytes = SSE) -> bytes:
    """Return the status line and headers of a streamed (chunked) 200 response."""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\n" % content_type
            + b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n"
            + (b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
            + _extra_headers(worker, pid) + b"\r\n")


def json_response(status: int, body: bytes, worker: int, pid: int, keep_alive: bool,
                  content_type: bytes = b"application/json") -> bytes:
    """Return a whole response with a ``content-length`` body."""
    return (b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n"
            % (status, _REASONS.get(status, b"Error"), content_type, len(body))
            + (b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n")
            + _extra_headers(worker, pid) + b"\r\n" + body)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:
    """Return an OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class Plan:
    """One completion request as the server resolved it: which dialect, what to write, how much.

    An endpoint's parser (``lens.mock.apis``) fills the request's fields; the server then sets
    ``n_tokens``, ``finish``, ``prompt_tokens``, ``response_id`` and ``created``. Every dialect
    answers ``stream_parts(plan)`` and ``body_of(plan)`` from it.
    """

    __slots__ = ("created", "details", "dialect", "finish", "include_usage", "max_tokens",
                 "model", "model_json", "n_tokens", "prompt_chars", "prompt_tokens",
                 "response_id", "stream")

    def __init__(self, dialect: Dialect, stream: bool, model: str | None, max_tokens: int | None,
                 prompt_chars: int, include_usage: bool = False, details: bool = False) -> None:
        self.dialect = dialect
        self.stream = stream
        self.model = model  # None: the server's --model
        self.model_json = b""
        self.max_tokens = max_tokens  # None: 16
        self.prompt_chars = prompt_chars
        self.include_usage = include_usage  # OpenAI stream_options.include_usage
        self.details = details  # TGI parameters.details
        self.n_tokens = 0
        self.finish = ""
        self.prompt_tokens = 0
        self.response_id = ""
        self.created = 0


class Dialect:
    """The byte pieces of one OpenAI endpoint (chat or completions).

    Every dialect (these and ``lens.mock.dialects``) has ``content_type``, ``id_prefix``,
    ``finish_capped`` / ``finish_natural`` (its finish reason when the length cap was hit / when
    ``--output-tokens`` ended the text first), ``stream_parts(plan)`` and ``body_of(plan)``.
    """

    content_type = SSE
    finish_capped = "length"
    finish_natural = "stop"

    def __init__(self, name: str, object_: str, id_prefix: str) -> None:
        self.name = name
        self.object = object_
        self.id_prefix = id_prefix
        self.is_chat = name == "chat"
        self.tails = [self._choices(orjson.dumps(w)) + b"}\n\n\r\n" for w in WORDS]
        self._pieces_of: dict[int, list[tuple[bytes, bytes]]] = {}

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
        return [h for h, _ in self._pieces(prefix_len)]

    def _pieces(self, prefix_len: int) -> list[tuple[bytes, bytes]]:
        # (size line, tail) of each word: a token chunk is prefix.join(pieces[j]), one copy
        pieces = self._pieces_of.get(prefix_len)
        if pieces is None:
            # The tail holds the chunk's closing CRLF, which the size does not count.
            pieces = [(b"%x\r\n" % (prefix_len + len(t) - 2), t) for t in self.tails]
            if len(self._pieces_of) < 256:  # model names vary per request; keep it bounded
                self._pieces_of[prefix_len] = pieces
        return pieces

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
        pieces = self._pieces(len(prefix))
        if n_tokens < len(pieces):
            pieces = pieces[:n_tokens]
        return list(map(prefix.join, pieces))

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        """Return (first, frames, mask, end) of a stream: ``first`` goes with the headers, token
        i is ``frames[i & mask]``, ``end`` follows the last token (terminator included)."""
        prefix = self.prefix(plan.response_id, plan.created, plan.model_json)
        return (self.first_frame(prefix), self.token_frames(prefix, plan.n_tokens), WORD_MASK,
                self.end_frames(prefix, plan.finish, plan.prompt_tokens, plan.n_tokens,
                                plan.include_usage))

    def body_of(self, plan: Plan) -> bytes:
        """Return the JSON body of the non-streamed response to ``plan``."""
        return self.body(plan.response_id, plan.created, plan.model or "", plan.finish,
                         plan.prompt_tokens, plan.n_tokens)

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
