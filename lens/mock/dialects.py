"""Build the bytes of the non-OpenAI dialects: Anthropic, Gemini (SSE and JSON array), Cohere, TGI.

Each dialect has the interface of ``lens.mock.wire.Dialect`` (``stream_parts(plan)``,
``body_of(plan)``, ``content_type``, ``finish_capped``/``finish_natural``), and, as there,
token i of a stream is ``frames[i & mask]``: one precomputed HTTP chunk per token, no
formatting or JSON encoding per token. The token frames are built

- once per process when a token event holds nothing of the request (Anthropic, Cohere);
- once per request, K = len(WORDS) of them, when it holds the request's id, model or prompt
  size (Gemini SSE; its per-word part once per process);
- once per request for every token when no cycle of K repeats: Gemini's JSON array (the first
  element has no leading comma) and TGI (a running ``index``; those frames come from one
  process-wide cache, sliced). Then ``mask`` is -1.

The wire formats are those of ``shared/reference/wire-formats.md`` §4-7; ``\n\n`` ends
each event (Gemini SSE: ``\r\n\r\n``)::

    Anthropic   event: message_start, content_block_start, ping (with the headers);
                event: content_block_delta {..,"delta":{"type":"text_delta","text":" the"}}
                per token; content_block_stop, message_delta {stop_reason,
                usage.output_tokens}, message_stop
    Gemini SSE  data: {"candidates":[{"content":{"parts":[{"text":" the"}],..}}],
                "usageMetadata":..} per token, then one with "text":"", finishReason and
                candidatesTokenCount
    Gemini []   [{..}  then  \n,\r\n{..}  per token (pretty-printed, as Google sends it), \n]
    Cohere      event: message-start, content-start; content-delta per token; content-end,
                message-end {finish_reason, usage}
    TGI         data:{"index":1,"token":{"id":..,"text":" the","logprob":..,"special":false},
                "generated_text":null,"details":null} per token (no space after "data:"); the
                last token's event carries generated_text and details
    TGI chat    OpenAI chat chunks framed "data:{..}", role in every delta, "usage":null,
                data:[DONE]
"""
from __future__ import annotations

import orjson

from lens.mock.wire import SSE, WORD_MASK, WORDS, Dialect, Plan, frame, text_of

__all__ = ["ANTHROPIC", "COHERE", "GEMINI_ARRAY", "GEMINI_SSE", "TGI", "TGI_CHAT"]

_WORD_JSON = [orjson.dumps(w) for w in WORDS]
_END = b"0\r\n\r\n"


def _sse(event: str, data: bytes) -> bytes:
    """Return one named SSE event (``event:`` + ``data:``) as one HTTP chunk."""
    return frame(b"event: %b\ndata: %b\n\n" % (event.encode(), data))


class _PerWord:
    """Token chunks of a cyclic dialect whose events end with a per-request part.

    Token j's chunk is ``size line + static[j] + part + CRLF``; the size lines are cached per
    length of ``part`` (as ``wire.Dialect`` does), joined to the statics.
    """

    def __init__(self, statics: list[bytes]) -> None:
        self.statics = statics
        self._pieces_of: dict[int, list[tuple[bytes, bytes]]] = {}

    def frames(self, part: bytes) -> list[bytes]:
        pieces = self._pieces_of.get(len(part))
        if pieces is None:
            pieces = [(b"%x\r\n%b" % (len(s) + len(part), s), b"\r\n") for s in self.statics]
            if len(self._pieces_of) < 256:
                self._pieces_of[len(part)] = pieces
        return list(map(part.join, pieces))


def _cycled(frames: list[bytes], n: int) -> list[bytes]:
    """Return the n frames of tokens 0 .. n-1 from K cyclic ones (a list of references)."""
    k = len(frames)
    return frames * (n // k) + frames[:n % k]


# Anthropic Messages


class Anthropic:
    """``POST /v1/messages`` (``"stream": true``: SSE with named events)."""

    content_type = SSE
    id_prefix = "msg_"
    finish_capped = "max_tokens"
    finish_natural = "end_turn"

    def __init__(self) -> None:
        self.frames = [_sse("content_block_delta",
                            b'{"type":"content_block_delta","index":0,'
                            b'"delta":{"type":"text_delta","text":%b}}' % w) for w in _WORD_JSON]
        self.start_tail = (
            _sse("content_block_start", b'{"type":"content_block_start","index":0,'
                 b'"content_block":{"type":"text","text":""}}')
            + _sse("ping", b'{"type":"ping"}'))

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        first = _sse("message_start", b'{"type":"message_start","message":{"id":"%b",'
                     b'"type":"message","role":"assistant","content":[],"model":%b,'
                     b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,'
                     b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
                     b'"output_tokens":1}}}'
                     % (plan.response_id.encode(), plan.model_json, plan.prompt_tokens))
        end = (_sse("content_block_stop", b'{"type":"content_block_stop","index":0}')
               + _sse("message_delta", b'{"type":"message_delta","delta":{"stop_reason":"%b",'
                      b'"stop_sequence":null},"usage":{"output_tokens":%d}}'
                      % (plan.finish.encode(), plan.n_tokens))
               + _sse("message_stop", b'{"type":"message_stop"}') + _END)
        return first + self.start_tail, self.frames, WORD_MASK, end

    def body_of(self, plan: Plan) -> bytes:
        return orjson.dumps({
            "id": plan.response_id, "type": "message", "role": "assistant", "model": plan.model,
            "content": [{"type": "text", "text": text_of(plan.n_tokens)}],
            "stop_reason": plan.finish, "stop_sequence": None,
            "usage": {"input_tokens": plan.prompt_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": plan.n_tokens},
        })


# Gemini


def _gemini_usage(plan: Plan, final: bool) -> dict[str, int]:
    p = plan.prompt_tokens
    if not final:  # intermediate chunks carry only the prompt's count, as Gemini's do
        return {"promptTokenCount": p, "totalTokenCount": p}
    n = plan.n_tokens
    return {"promptTokenCount": p, "candidatesTokenCount": n, "totalTokenCount": p + n}


def _gemini_chunk(plan: Plan, text: str, finish: bool) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"},
                                    "index": 0}
    if finish:
        candidate["finishReason"] = plan.finish
    return {"candidates": [candidate], "usageMetadata": _gemini_usage(plan, finish),
            "modelVersion": plan.model, "responseId": plan.response_id}


class GeminiSse:
    """``:streamGenerateContent?alt=sse``: ``data:`` events ended by CRLF CRLF, no ``[DONE]``."""

    content_type = SSE
    id_prefix = ""
    finish_capped = "MAX_TOKENS"
    finish_natural = "STOP"

    def __init__(self) -> None:
        self._words = _PerWord([b'data: {"candidates":[{"content":{"parts":[{"text":%b}],'
                                b'"role":"model"},"index":0}],' % w for w in _WORD_JSON])

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        part = (b'"usageMetadata":{"promptTokenCount":%d,"totalTokenCount":%d},'
                b'"modelVersion":%b,"responseId":"%b"}\r\n\r\n'
                % (plan.prompt_tokens, plan.prompt_tokens, plan.model_json,
                   plan.response_id.encode()))
        last = orjson.dumps(_gemini_chunk(plan, "", True))
        return b"", self._words.frames(part), WORD_MASK, frame(b"data: %b\r\n\r\n" % last) + _END

    def body_of(self, plan: Plan) -> bytes:
        return orjson.dumps(_gemini_chunk(plan, text_of(plan.n_tokens), True),
                            option=orjson.OPT_INDENT_2)


_MARK = "\x01"
_MARK_JSON = orjson.dumps(_MARK)


class GeminiArray:
    """``:streamGenerateContent`` without ``alt``: one JSON array of pretty-printed chunks,
    written element by element (``[{...}``, then ``\\n,\\r\\n{...}``, ..., ``\\n]``)."""

    content_type = b"application/json; charset=UTF-8"
    id_prefix = ""
    finish_capped = "MAX_TOKENS"
    finish_natural = "STOP"

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        pretty = orjson.dumps(_gemini_chunk(plan, _MARK, False), option=orjson.OPT_INDENT_2)
        before, after = pretty.split(_MARK_JSON)  # the text is the first string in the chunk
        words = _PerWord([b"\n,\r\n" + before + w for w in _WORD_JSON]).frames(after)
        n = plan.n_tokens
        frames = _cycled(words, n)
        frames[0] = frame(b"[" + before + _WORD_JSON[0] + after)
        last = orjson.dumps(_gemini_chunk(plan, "", True), option=orjson.OPT_INDENT_2)
        return b"", frames, -1, frame(b"\n,\r\n" + last + b"\n]") + _END

    def body_of(self, plan: Plan) -> bytes:
        return GEMINI_SSE.body_of(plan)


# Cohere v2 chat


def _cohere_usage(plan: Plan) -> dict[str, object]:
    counts = {"input_tokens": plan.prompt_tokens, "output_tokens": plan.n_tokens}
    return {"billed_units": counts, "tokens": dict(counts)}


class Cohere:
    """``POST /v2/chat`` (``"stream": true``: SSE with ``event:`` = the JSON ``type``)."""

    content_type = SSE
    id_prefix = ""
    finish_capped = "MAX_TOKENS"
    finish_natural = "COMPLETE"

    def __init__(self) -> None:
        self.frames = [_sse("content-delta", b'{"type":"content-delta","index":0,'
                            b'"delta":{"message":{"content":{"text":%b}}}}' % w)
                       for w in _WORD_JSON]
        self.start_tail = _sse("content-start", b'{"type":"content-start","index":0,'
                               b'"delta":{"message":{"content":{"type":"text","text":""}}}}')

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        first = _sse("message-start", b'{"id":"%b","type":"message-start","delta":{"message":'
                     b'{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],'
                     b'"citations":[]}}}' % plan.response_id.encode())
        end = (_sse("content-end", b'{"type":"content-end","index":0}')
               + _sse("message-end", orjson.dumps({"type": "message-end", "delta": {
                   "finish_reason": plan.finish, "usage": _cohere_usage(plan)}})) + _END)
        return first + self.start_tail, self.frames, WORD_MASK, end

    def body_of(self, plan: Plan) -> bytes:
        return orjson.dumps({
            "id": plan.response_id, "finish_reason": plan.finish,
            "message": {"role": "assistant",
                        "content": [{"type": "text", "text": text_of(plan.n_tokens)}]},
            "usage": _cohere_usage(plan),
        })


# TGI

#: Token ids and logprobs of the words (made up, fixed).
_TGI_IDS = [1000 + 37 * j for j in range(len(WORDS))]
_TGI_LOGPROBS = [-0.125 * (1 + j % 8) for j in range(len(WORDS))]
_TGI_TOKENS = [b'"token":{"id":%d,"text":%b,"logprob":%s,"special":false}'
               % (i, w, repr(lp).encode())
               for i, w, lp in zip(_TGI_IDS, _WORD_JSON, _TGI_LOGPROBS, strict=True)]
#: Streams longer than this build their later frames per request instead of caching them.
_TGI_CACHE_MAX = 1 << 16


def _tgi_frame(i: int) -> bytes:
    return frame(b'data:{"index":%d,%b,"generated_text":null,"details":null}\n\n'
                 % (i + 1, _TGI_TOKENS[i & WORD_MASK]))


class Tgi:
    """TGI's native ``POST /generate_stream`` (and ``/generate``)."""

    content_type = SSE
    id_prefix = ""
    finish_capped = "length"
    finish_natural = "eos_token"

    def __init__(self) -> None:
        self._cache: list[bytes] = []  # the frame of token i, for every i seen so far

    def _frames(self, n: int) -> list[bytes]:
        cache = self._cache
        while len(cache) < min(n, _TGI_CACHE_MAX):
            cache.append(_tgi_frame(len(cache)))
        frames = cache[:n]
        frames.extend(_tgi_frame(i) for i in range(len(frames), n))
        return frames

    def _details(self, plan: Plan) -> dict[str, object]:
        return {"finish_reason": plan.finish, "generated_tokens": plan.n_tokens, "seed": None,
                "input_length": plan.prompt_tokens}

    def stream_parts(self, plan: Plan) -> tuple[bytes, list[bytes], int, bytes]:
        n = plan.n_tokens
        frames = self._frames(n)
        frames[-1] = b""  # the last token's event is the final one, in ``end``
        # TGI sends details only when the request asked for them (parameters.details)
        details = orjson.dumps(self._details(plan) if plan.details else None)
        last = (b'data:{"index":%d,%b,"generated_text":%b,"details":%b}\n\n'
                % (n, _TGI_TOKENS[(n - 1) & WORD_MASK], orjson.dumps(text_of(n)), details))
        return b"", frames, -1, frame(last) + _END

    def body_of(self, plan: Plan) -> bytes:
        out: dict[str, object] = {"generated_text": text_of(plan.n_tokens)}
        if plan.details:
            details = self._details(plan)
            del details["input_length"]
            details["prefill"] = []
            details["tokens"] = [
                {"id": _TGI_IDS[j], "text": WORDS[j], "logprob": _TGI_LOGPROBS[j], "special": False}
                for j in (i & WORD_MASK for i in range(plan.n_tokens))]
            out["details"] = details
        return orjson.dumps(out)


#: TGI's system_fingerprint is its version; the mock's says what it is.
TGI_FINGERPRINT = b"lens-mock-tgi"


class TgiChat(Dialect):
    """TGI's ``/v1/chat/completions``: OpenAI chunks written TGI's way (see the module doc)."""

    def __init__(self) -> None:
        super().__init__("chat", "chat.completion.chunk", "")
        self.tails = [self._choices(w) + b',"usage":null}\n\n\r\n' for w in _WORD_JSON]

    def _choices(self, text_json: bytes, finish: bytes = b"null") -> bytes:
        return (b'[{"index":0,"delta":{"role":"assistant","content":%b},"logprobs":null,'
                b'"finish_reason":%b}]' % (text_json, finish))

    def prefix(self, request_id: str, created: int, model_json: bytes) -> bytes:
        """Return the start of every event; TGI's ``id`` is empty."""
        return (b'data:{"object":"chat.completion.chunk","id":"","created":%d,"model":%b,'
                b'"system_fingerprint":"%b","choices":' % (created, model_json, TGI_FINGERPRINT))

    def first_frame(self, prefix: bytes) -> bytes:
        """Return nothing: TGI sends the role with every content delta, not in an event."""
        return b""

    def end_frames(self, prefix: bytes, finish_reason: str, prompt_tokens: int,
                   completion_tokens: int, include_usage: bool) -> bytes:
        out = frame(prefix + self._choices(b'""', b'"%b"' % finish_reason.encode())
                    + b',"usage":null}\n\n')
        if include_usage:
            out += frame(prefix + b'[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,'
                         b'"total_tokens":%d}}\n\n' % (prompt_tokens, completion_tokens,
                                                       prompt_tokens + completion_tokens))
        return out + frame(b"data:[DONE]\n\n") + _END

    def body_of(self, plan: Plan) -> bytes:
        n, p = plan.n_tokens, plan.prompt_tokens
        return orjson.dumps({
            "object": "chat.completion", "id": "", "created": plan.created, "model": plan.model,
            "system_fingerprint": TGI_FINGERPRINT.decode(),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text_of(n)},
                         "logprobs": None, "finish_reason": plan.finish}],
            "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n},
        })


ANTHROPIC = Anthropic()
GEMINI_SSE = GeminiSse()
GEMINI_ARRAY = GeminiArray()
COHERE = Cohere()
TGI = Tgi()
TGI_CHAT = TgiChat()
