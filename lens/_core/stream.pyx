"""Response-body decoder: HTTP framing, SSE scanning and token classification in one C call.

A connection hands every read of a response body to ``feed()``; one call does the chunked
(or content-length, or until-close) framing, splits SSE lines across any read boundary (LF,
CRLF or CR, a CR at the end of one read followed by LF in the next counts once), assembles
events (multi-line ``data:``, comments, ``event:``/``id:``/``retry:``, a leading BOM), and
classifies each event with byte checks — no JSON parse, no Python object per token. Each
token-bearing event is recorded with the read's arrival time (one ``now_ns()`` per read: all
events of one read arrived together) straight into the worker's ``Recorder``.
``DIALECT_GEMINI_ARRAY`` bodies are not SSE but one streamed JSON array: its top-level
elements are split in C (string, escape and brace state kept across reads) and each is
classified like a Gemini SSE event.

Per dialect, the rules (what is a token event, where output tokens, the finish reason and
errors come from, with sources) are in ``docs/streams.md``. In every dialect: a ``[DONE]``
event ends the stream; an SSE event named ``error`` and llama.cpp's non-standard ``error:``
field are stream errors.

Byte checks: ``_value_of(data, '"key"')`` finds the first ``"key"`` followed by a colon. A
key inside a JSON string cannot match, because its quotes would be escaped there; a string
*value* equal to the key name is skipped because no colon follows it. Where the first match
is not enough (Gemini parts, TGI's token object) a small walker steps over the members of one
object, skipping strings by their unescaped closing quote.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy, strlen

import json

import orjson

from lens._core.clock cimport lens_now_ns
from lens._core.jsonbytes cimport (
    _INSTR, _STRUCT, _bound, _container_end, _has_error, _int_at, _is, _member, _nonempty_str,
    _skip_value, _skip_ws, _string_end, _text_member, _value_of, _vof, memchr, memmem,
)
from lens._core.recorder cimport (
    F_BYTES_IN, F_FINISH, F_FLAGS, F_INPUT_TOKENS, F_OUTPUT_TOKENS, Recorder,
)


cdef enum:
    # framing
    C_CHUNKED = 0
    C_LENGTH = 1
    C_UNTIL_CLOSE = 2
    C_DECODED = 3
    # dialects (numbers are API: providers and the engine use them)
    D_OPENAI_CHAT = 0
    D_OPENAI_COMPLETIONS = 1
    D_ANTHROPIC = 2
    D_GEMINI = 3
    D_GEMINI_ARRAY = 4
    D_COHERE = 5
    D_TGI = 6
    D_LLAMACPP = 7
    D_OPENAI_RESPONSES = 8
    D_GENERIC = 9
    # finish
    C_FINISH_NONE = 0
    C_FINISH_STOP = 1
    C_FINISH_LENGTH = 2
    C_FINISH_OTHER = 3
    # feed() results
    C_NEED_MORE = 0
    C_COMPLETE = 1
    C_ERR_FRAMING = -1
    C_ERR_EVENT_TOO_LARGE = -2
    C_ERR_CLASSIFIER = -3

# framing
FRAMING_CHUNKED = C_CHUNKED
FRAMING_LENGTH = C_LENGTH
FRAMING_UNTIL_CLOSE = C_UNTIL_CLOSE
FRAMING_DECODED = C_DECODED      # bytes already de-framed by another HTTP client (httpx)

DIALECT_OPENAI_CHAT = D_OPENAI_CHAT              # OpenAI chat and its flavours (azure, vllm, sglang, llamacpp, tgi /v1)
DIALECT_OPENAI_COMPLETIONS = D_OPENAI_COMPLETIONS  # legacy /v1/completions
DIALECT_ANTHROPIC = D_ANTHROPIC                  # Messages API (event: content_block_delta, message_delta, error)
DIALECT_GEMINI = D_GEMINI                        # streamGenerateContent?alt=sse
DIALECT_GEMINI_ARRAY = D_GEMINI_ARRAY            # streamGenerateContent without alt: a streamed JSON array
DIALECT_COHERE = D_COHERE                        # v2 chat stream (content-delta, message-end)
DIALECT_TGI = D_TGI                              # TGI native /generate_stream
DIALECT_LLAMACPP = D_LLAMACPP                    # llama.cpp native /completion
DIALECT_OPENAI_RESPONSES = D_OPENAI_RESPONSES    # OpenAI Responses API
DIALECT_GENERIC = D_GENERIC                      # generic provider: a Python classifier per event

#: The dialect that reads each ``api`` of the stream fixtures (``shared/fixtures/streams``).
API_DIALECTS = {
    "openai-chat": D_OPENAI_CHAT, "azure-chat": D_OPENAI_CHAT, "tgi-chat": D_OPENAI_CHAT,
    "vllm-chat": D_OPENAI_CHAT, "sglang-chat": D_OPENAI_CHAT, "llamacpp-chat": D_OPENAI_CHAT,
    "openai-completions": D_OPENAI_COMPLETIONS, "openai-responses": D_OPENAI_RESPONSES,
    "anthropic-messages": D_ANTHROPIC, "gemini-sse": D_GEMINI,
    "gemini-json-array": D_GEMINI_ARRAY, "cohere-chat-v2": D_COHERE,
    "tgi-generate-stream": D_TGI, "llamacpp-completion": D_LLAMACPP,
}

FINISH_NONE = C_FINISH_NONE
FINISH_STOP = C_FINISH_STOP
FINISH_LENGTH = C_FINISH_LENGTH
FINISH_OTHER = C_FINISH_OTHER
FINISH_NAMES = {0: None, 1: "stop", 2: "length", 3: "other"}

# feed() results
NEED_MORE = C_NEED_MORE
COMPLETE = C_COMPLETE
ERR_FRAMING = C_ERR_FRAMING
ERR_EVENT_TOO_LARGE = C_ERR_EVENT_TOO_LARGE
ERR_CLASSIFIER = C_ERR_CLASSIFIER   # the DIALECT_GENERIC classifier raised (see classifier_error)

DEF CS_SIZE = 0
DEF CS_EXT = 1
DEF CS_DATA = 2
DEF CS_DATA_END = 3
DEF CS_TRAILER = 4
DEF CS_DONE = 5
DEF EXCERPT_MAX = 2048
DEF BAD_EXCERPT_MAX = 256
DEF ERROR_DATA_MAX = 65536
DEF FLAG_USAGE_FROM_STREAM = 1


### Byte checks (lens/_core/jsonbytes.pxd) ###

cdef inline bint _field_name(const char* p, Py_ssize_t k) noexcept nogil:
    """Whether ``p[:k]`` can be an SSE field name an SSE writer uses: letters, digits, ``-_.``.

    The SSE grammar takes any name and ignores unknown fields; a name with a brace, a quote, a
    space or ``<`` is a body that is not SSE (raw JSON, an HTML error page, plain text).
    """
    cdef Py_ssize_t i
    cdef char c
    for i in range(k):
        c = p[i]
        if not (c'a' <= c <= c'z' or c'A' <= c <= c'Z' or c'0' <= c <= c'9'
                or c == c'-' or c == c'_' or c == c'.'):
            return False
    return True


cdef inline bint _json_shaped(const char* d, Py_ssize_t n) noexcept nogil:
    """Whether event data looks like one JSON object or array: ``{...}`` or ``[...]``.

    Two byte compares, not a parse: it catches a cut-off event and data that is not JSON, not
    JSON broken between its first and last byte.
    """
    cdef const char* end = d + n
    d = _skip_ws(d, end)
    while end > d and (end[-1] == c' ' or end[-1] == c'\t' or end[-1] == c'\n'
                       or end[-1] == c'\r'):
        end -= 1
    if end - d < 2:
        return False
    return (d[0] == c'{' and end[-1] == c'}') or (d[0] == c'[' and end[-1] == c']')


cdef int _finish_code(const char* s, Py_ssize_t k) noexcept nogil:
    """Map a raw finish reason to FINISH_STOP / FINISH_LENGTH / FINISH_OTHER."""
    if (_is(s, k, b"stop") or _is(s, k, b"STOP") or _is(s, k, b"end_turn")
            or _is(s, k, b"COMPLETE") or _is(s, k, b"eos_token") or _is(s, k, b"eos")
            or _is(s, k, b"stop_sequence") or _is(s, k, b"STOP_SEQUENCE")
            or _is(s, k, b"word") or _is(s, k, b"completed")):
        return C_FINISH_STOP
    if (_is(s, k, b"length") or _is(s, k, b"max_tokens") or _is(s, k, b"MAX_TOKENS")
            or _is(s, k, b"limit") or _is(s, k, b"max_output_tokens")):
        return C_FINISH_LENGTH
    return C_FINISH_OTHER


def _str_or_none(x):
    return None if x is None else str(x)


def error_fields(data):
    """Return ``(type, message)`` of an in-stream error's data, whatever the API's shape.

    Shapes: ``{"error": {"type"|"status"|"code", "message"}}`` (OpenAI, vLLM, Anthropic's
    inner object, Gemini), ``{"error": "msg", "error_type": t}`` (TGI), flat
    ``{"type"|"code", "message"}`` (SGLang, llama.cpp's ``error:`` field, Responses ``error``),
    ``response.error`` (Responses ``response.failed``), Cohere ``message-end`` with
    ``finish_reason: ERROR``. Data that is not JSON is the message.
    """
    if not data:
        return None, None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, data.decode("utf-8", "replace").strip() or None
    if not isinstance(doc, dict):
        return None, _str_or_none(doc)
    if doc.get("type") == "message-end":
        delta = doc.get("delta") if isinstance(doc.get("delta"), dict) else {}
        return _str_or_none(delta.get("finish_reason")), _str_or_none(delta.get("error"))
    err = doc.get("error")
    if err is None and isinstance(doc.get("response"), dict):
        err = doc["response"].get("error")
    if isinstance(err, str):
        return _str_or_none(doc.get("error_type")), err
    src = err if isinstance(err, dict) else doc
    kind = src.get("type")
    if kind is None or kind == "error":
        kind = src.get("status")
        if kind is None:
            kind = src.get("code")
    return _str_or_none(kind), _str_or_none(src.get("message"))


cdef class StreamDecoder:
    """Decode one connection's response bodies; ``start()`` before each response."""

    def __init__(self, Py_ssize_t max_event_bytes=1 << 20):
        self._max_event = max_event_bytes
        self._slot = -1
        self._done = True
        self._excerpt = b""

    def __dealloc__(self):
        PyMem_Free(self._line)
        PyMem_Free(self._data)

    ### Public API ###

    def start(self, Recorder rec, int slot, int framing, int64_t content_length=-1,
              int dialect=DIALECT_OPENAI_CHAT, bint collect=False, *,
              bint capture_text=False):
        """Prepare for a new response body recorded into ``rec``'s ``slot``.

        ``framing`` is one of the FRAMING_* constants; ``content_length`` is used with
        FRAMING_LENGTH; ``dialect`` is one of the DIALECT_* constants (DIALECT_GENERIC needs
        ``set_classifier()`` first). ``collect=True`` keeps the first 2 KiB of the body (for
        error statuses) instead of scanning events. ``capture_text=True`` keeps each token's
        raw JSON string for ``captured_text()`` (tests; costs a bytes object per token).
        """
        if dialect < D_OPENAI_CHAT or dialect > D_GENERIC:
            raise ValueError(f"dialect must be one of the DIALECT_* constants, 0..9 "
                             f"(got {dialect})")
        if dialect == D_GENERIC and self._classifier is None and not collect:
            raise ValueError("DIALECT_GENERIC needs a classifier: call "
                             "set_classifier(fn) before start()")
        self._rec = rec
        self._slot = slot
        self._framing = framing
        self._dialect = dialect
        self._collect = collect
        self._capture = capture_text
        self._cstate = CS_SIZE
        self._csize = 0
        self._remaining = content_length
        self._trailer_len = 0
        self._done = framing == C_LENGTH and content_length == 0
        self._line_len = 0
        self._data_len = 0
        self._skip_lf = False
        self._at_start = True
        self._event_len = 0
        self._jdepth = 0
        self._jstr = False
        self._jesc = False
        self.bytes_in = 0
        self.events = 0
        self.token_events = 0
        self.usage_output_tokens = -1
        self.usage_input_tokens = -1
        self.finish = C_FINISH_NONE
        self._finish_len = 0
        self.done_seen = False
        self.error_seen = False
        self.bad_lines = 0
        self.bad_events = 0
        self._bad_excerpt = None
        self._excerpt = b""
        self._error_data = None
        self._spans = [] if capture_text else None
        self.classifier_error = None

    def set_classifier(self, fn):
        """Set the per-event classifier of DIALECT_GENERIC (kept across ``start()`` calls).

        ``fn(data: bytes) -> (n_tokens, usage_output_tokens or -1, finish or None, error or
        None)`` is called once per event with its data. ``n_tokens > 0`` records one token
        event carrying that many tokens; ``finish`` and ``error`` are bytes. If ``fn`` raises,
        ``feed()`` returns ERR_CLASSIFIER and the exception is kept in ``classifier_error``.
        """
        if fn is not None and not callable(fn):
            raise TypeError(f"classifier must be callable (got {type(fn).__name__})")
        self._classifier = fn

    def feed(self, bytes data):
        """Feed one read of body bytes; return NEED_MORE, COMPLETE or a negative ERR_*."""
        return self.feed_c(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    def end_of_input(self):
        """Tell the decoder the peer closed; return COMPLETE if the body was whole."""
        if self._framing == C_UNTIL_CLOSE or self._framing == C_DECODED:
            self._done = True
        return C_COMPLETE if self._done else C_NEED_MORE

    def commit(self):
        """Write what the stream reported (usage, finish, bytes) into the request's row."""
        if self._rec is None or self._slot < 0:
            return
        cdef int64_t* r = self._rec.slot_ptr(self._slot)
        if self.usage_output_tokens >= 0:
            r[F_OUTPUT_TOKENS] = self.usage_output_tokens
            r[F_FLAGS] |= FLAG_USAGE_FROM_STREAM
        if self.usage_input_tokens >= 0:
            r[F_INPUT_TOKENS] = self.usage_input_tokens
        r[F_FINISH] = self.finish
        r[F_BYTES_IN] = self.bytes_in

    @property
    def complete(self):
        """True once the whole body (by its framing) has been read."""
        return self._done

    @property
    def dialect(self):
        """The DIALECT_* of the current response."""
        return self._dialect

    @property
    def excerpt(self):
        """The collected body start (collect mode) or the first 2 KiB of the first error's data."""
        return self._excerpt

    @property
    def bad_excerpt(self):
        """The first 256 bytes of the first line that is not SSE or event data that is not
        JSON (see ``bad_lines``, ``bad_events``), or None."""
        return self._bad_excerpt

    @property
    def finish_reason(self):
        """The API's own last non-null finish reason (``"end_turn"``, ``"STOP"``, ...), or None.

        For the Responses API it is the terminal ``response.status``.
        """
        if self._finish_len == 0:
            return None
        return PyBytes_FromStringAndSize(self._finish_raw, self._finish_len).decode(
            "utf-8", "replace")

    @property
    def error_data(self):
        """The data of the first in-stream error (up to 64 KiB), or None."""
        return self._error_data

    @property
    def error_type(self):
        """The first in-stream error's type (``"overloaded_error"``, ...), or None."""
        return error_fields(self._error_data)[0]

    @property
    def error_message(self):
        """The first in-stream error's message, or None."""
        return error_fields(self._error_data)[1]

    def captured_text(self):
        """Return the visible text of the token events (``start(..., capture_text=True)``)."""
        if self._spans is None:
            raise ValueError("no text was captured: start(..., capture_text=True) keeps it")
        out = []
        for span in self._spans:
            quoted = b'"' + span + b'"'
            try:
                out.append(orjson.loads(quoted))
            except orjson.JSONDecodeError:   # lone surrogate escapes: the stdlib keeps them
                out.append(json.loads(quoted.decode("utf-8", "surrogateescape")))
        return "".join(out)

    ### C internals ###

    cdef int feed_c(self, const char* p, Py_ssize_t n) except -100:
        cdef Py_ssize_t take
        cdef char c
        cdef Py_ssize_t i = 0
        cdef int rc
        self._t_read = lens_now_ns()
        self.bytes_in += n
        if self._done:
            return C_COMPLETE
        if self._framing != C_CHUNKED:
            if self._framing == C_LENGTH:
                take = n if n < self._remaining else self._remaining
                self._remaining -= take
                rc = self._body(p, take)
                if self._remaining == 0:
                    self._done = True
            else:
                rc = self._body(p, n)
            if rc < 0:
                return rc
            return C_COMPLETE if self._done else C_NEED_MORE
        while i < n:
            if self._cstate == CS_DATA:
                take = n - i
                if take > self._remaining:
                    take = self._remaining
                rc = self._body(p + i, take)
                if rc < 0:
                    return rc
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._cstate = CS_DATA_END
                continue
            c = p[i]
            i += 1
            if self._cstate == CS_SIZE:
                if c'0' <= c <= c'9':
                    self._csize = self._csize * 16 + (c - c'0')
                elif c'a' <= c <= c'f':
                    self._csize = self._csize * 16 + (c - c'a' + 10)
                elif c'A' <= c <= c'F':
                    self._csize = self._csize * 16 + (c - c'A' + 10)
                elif c == c';' or c == c' ' or c == c'\t':
                    self._cstate = CS_EXT
                elif c == c'\r':
                    pass
                elif c == c'\n':
                    self._chunk_start()
                else:
                    return C_ERR_FRAMING
                if self._csize > (<int64_t>1 << 40):
                    return C_ERR_FRAMING
            elif self._cstate == CS_EXT:
                if c == c'\n':
                    self._chunk_start()
            elif self._cstate == CS_DATA_END:
                if c == c'\n':
                    self._cstate = CS_SIZE
                elif c != c'\r':
                    return C_ERR_FRAMING
            elif self._cstate == CS_TRAILER:
                if c == c'\n':
                    if self._trailer_len == 0:
                        self._cstate = CS_DONE
                        self._done = True
                        return C_COMPLETE
                    self._trailer_len = 0
                elif c != c'\r':
                    self._trailer_len += 1
            else:
                return C_COMPLETE
        return C_COMPLETE if self._done else C_NEED_MORE

    cdef inline void _chunk_start(self) noexcept:
        if self._csize == 0:
            self._cstate = CS_TRAILER
            self._trailer_len = 0
        else:
            self._cstate = CS_DATA
            self._remaining = self._csize
            self._csize = 0

    cdef int _grow(self, char** buf, Py_ssize_t* cap, Py_ssize_t need) except -1:
        cdef Py_ssize_t newcap
        cdef char* q
        if need > self._max_event + 16:
            return C_ERR_EVENT_TOO_LARGE
        if need <= cap[0]:
            return 0
        newcap = cap[0] * 2 if cap[0] else 1024
        while newcap < need:
            newcap *= 2
        q = <char*>PyMem_Realloc(buf[0], newcap)
        if q == NULL:
            raise MemoryError()
        buf[0] = q
        cap[0] = newcap
        return 0

    cdef int _body(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t keep
        if n <= 0:
            return 0
        if self._collect:
            keep = EXCERPT_MAX - PyBytes_GET_SIZE(self._excerpt)
            if keep > 0:
                self._excerpt += PyBytes_FromStringAndSize(p, n if n < keep else keep)
            return 0
        if self._dialect == D_GEMINI_ARRAY:
            return self._array(p, n)
        return self._sse(p, n)

    cdef int _sse(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t j
        cdef Py_ssize_t lf = -1          # next LF at or after i (n: none), found by memchr
        cdef Py_ssize_t cr = -1          # next CR likewise: one memchr per line end, not per byte
        cdef const char* q
        cdef int rc
        if self._skip_lf:
            self._skip_lf = False
            if p[0] == c'\n':
                i = 1
        while i < n:
            if lf < i:
                q = <const char*>memchr(p + i, c'\n', n - i)
                lf = q - p if q != NULL else n
            if cr < i:
                q = <const char*>memchr(p + i, c'\r', n - i)
                cr = q - p if q != NULL else n
            j = lf if lf < cr else cr
            if j == n:
                # partial line: keep it for the next read
                rc = self._grow(&self._line, &self._line_cap, self._line_len + (n - i))
                if rc < 0:
                    return rc
                memcpy(self._line + self._line_len, p + i, n - i)
                self._line_len += n - i
                return 0
            if self._line_len:
                rc = self._grow(&self._line, &self._line_cap, self._line_len + (j - i))
                if rc < 0:
                    return rc
                memcpy(self._line + self._line_len, p + i, j - i)
                self._line_len += j - i
                rc = self._line_done(self._line, self._line_len)
                self._line_len = 0
            else:
                rc = self._line_done(p + i, j - i)
            if rc < 0:
                return rc
            if p[j] == c'\r':
                if j + 1 < n:
                    if p[j + 1] == c'\n':
                        j += 1
                else:
                    self._skip_lf = True
            i = j + 1
        return 0

    cdef int _line_done(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t colon
        cdef const char* v
        cdef Py_ssize_t vlen
        cdef int rc
        if self._at_start:
            self._at_start = False
            if n >= 3 and memcmp(p, b"\xef\xbb\xbf", 3) == 0:
                p += 3
                n -= 3
        if n == 0:
            return self._dispatch()
        if p[0] == c':':
            return 0                          # comment / keep-alive
        if p[0] == c'{' and self._dialect == D_COHERE and self._data_len == 0:
            # Cohere streams seen as bare NDJSON: a JSON line is a whole event
            return self._classify(p, n, 0)
        v = <const char*>memchr(p, c':', n)
        if v == NULL:
            colon = n
            vlen = 0
            v = p + n
        else:
            colon = v - p
            v += 1
            vlen = n - colon - 1
            if vlen > 0 and v[0] == c' ':
                v += 1
                vlen -= 1
        if colon == 4 and memcmp(p, b"data", 4) == 0:
            rc = self._grow(&self._data, &self._data_cap, self._data_len + vlen + 1)
            if rc < 0:
                return rc
            memcpy(self._data + self._data_len, v, vlen)
            self._data_len += vlen
            self._data[self._data_len] = c'\n'
            self._data_len += 1
        elif colon == 5 and memcmp(p, b"event", 5) == 0:
            if vlen <= 32:
                memcpy(self._event, v, vlen)
                self._event_len = <int>vlen
            else:
                memcpy(self._event, v, 32)
                self._event_len = 33          # longer than any name we compare with
        elif colon == 5 and memcmp(p, b"error", 5) == 0:
            # llama.cpp's server writes mid-stream errors as a non-standard `error:` field,
            # which a strict SSE parser drops: the stream would look like an empty success
            return self._error(v, vlen)
        elif not _field_name(p, colon):
            # SSE would ignore the line; counted, because it means the body is not SSE
            return self._bad(p, n, True)
        # id, retry and unknown fields do not matter for timing
        return 0

    cdef int _dispatch(self) except -1:
        cdef Py_ssize_t n = self._data_len
        cdef int ev_len = self._event_len
        self._event_len = 0
        if n == 0:
            return 0
        self._data_len = 0
        return self._classify(self._data, n - 1, ev_len)   # minus the last data line's LF

    cdef int _array(self, const char* p, Py_ssize_t n) except -1:
        """Split a streamed JSON array into its top-level elements (Gemini without alt=sse)."""
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t start = 0
        cdef int depth = self._jdepth
        cdef bint instr = self._jstr
        cdef bint esc = self._jesc
        cdef char c
        cdef int rc
        while i < n:
            if depth == 0:
                c = p[i]
                if c == c'{':
                    depth = 1
                    start = i
                elif c == c']':
                    self.done_seen = True
                i += 1                        # `[`, `,`, whitespace between elements
                continue
            if instr:
                if esc:
                    esc = False
                    i += 1
                    continue
                while i < n and not _INSTR[<unsigned char>p[i]]:
                    i += 1
                if i == n:
                    break
                if p[i] == c'\\':
                    esc = True
                else:
                    instr = False
                i += 1
                continue
            while i < n and not _STRUCT[<unsigned char>p[i]]:
                i += 1
            if i == n:
                break
            c = p[i]
            if c == c'"':
                instr = True
            elif c == c'{' or c == c'[':
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    if self._data_len:        # the element began in an earlier read
                        rc = self._grow(&self._data, &self._data_cap,
                                        self._data_len + (i + 1 - start))
                        if rc < 0:
                            return rc
                        memcpy(self._data + self._data_len, p + start, i + 1 - start)
                        rc = self._classify(self._data, self._data_len + (i + 1 - start), 0)
                        self._data_len = 0
                    else:
                        rc = self._classify(p + start, i + 1 - start, 0)
                    if rc < 0:
                        return rc
            i += 1
        self._jdepth = depth
        self._jstr = instr
        self._jesc = esc
        if depth > 0:                         # keep the unfinished element
            rc = self._grow(&self._data, &self._data_cap, self._data_len + (n - start))
            if rc < 0:
                return rc
            memcpy(self._data + self._data_len, p + start, n - start)
            self._data_len += n - start
        return 0

    cdef int _classify(self, const char* d, Py_ssize_t n, int ev_len) except -1:
        """Classify one event's data (``ev_len``: length of its ``event:`` name)."""
        cdef const char* name = self._event
        cdef const char* v
        cdef const char* e
        cdef int dialect = self._dialect
        self.events += 1
        if self.scan_only:
            return 0
        if n == 6 and memcmp(d, b"[DONE]", 6) == 0:
            self.done_seen = True
            return 0
        if n and dialect != D_GENERIC and not _json_shaped(d, n):
            self._bad(d, n, False)            # counted, then classified as it is
        if dialect == D_ANTHROPIC or dialect == D_COHERE or dialect == D_OPENAI_RESPONSES:
            if ev_len == 0:                   # no `event:` line: the JSON "type" names it
                v = _vof(d, d + n, b'"type"')
                if v != NULL and v[0] == c'"':
                    e = <const char*>memchr(v + 1, c'"', d + n - v - 1)
                    if e != NULL:
                        name = v + 1
                        ev_len = <int>(e - name if e - name <= 32 else 33)
        if ev_len == 5 and memcmp(name, b"error", 5) == 0:
            return self._error(d, n)
        if dialect <= D_OPENAI_COMPLETIONS:
            return self._openai(d, n)
        if dialect == D_ANTHROPIC:
            return self._anthropic(d, n, name, ev_len)
        if dialect == D_GEMINI or dialect == D_GEMINI_ARRAY:
            return self._gemini(d, n)
        if dialect == D_COHERE:
            return self._cohere(d, n, name, ev_len)
        if dialect == D_TGI:
            return self._tgi(d, n)
        if dialect == D_LLAMACPP:
            return self._llamacpp(d, n)
        if dialect == D_OPENAI_RESPONSES:
            return self._responses(d, n, name, ev_len)
        return self._generic(d, n)

    cdef int _token(self, const char* s, const char* end) except -1:
        """Record one token event; ``s`` is its text's opening quote (kept in capture mode)."""
        self.token_events += 1
        self._rec.token_event(self._slot, self._t_read, 1)
        if self._capture:
            self._keep_span(s, end)
        return 0

    cdef int _keep_span(self, const char* s, const char* end) except -1:
        cdef const char* e
        if self._capture and s != NULL:
            e = _string_end(s, end)
            if e != NULL:
                self._spans.append(PyBytes_FromStringAndSize(s + 1, e - s - 2))
        return 0

    cdef int _error(self, const char* d, Py_ssize_t n) except -1:
        """Note an in-stream error (the first one is kept: later ones are its aftermath)."""
        if self.error_seen:
            return 0
        self.error_seen = True
        self._error_data = PyBytes_FromStringAndSize(d, n if n < ERROR_DATA_MAX else ERROR_DATA_MAX)
        self._excerpt = PyBytes_FromStringAndSize(d, n if n < EXCERPT_MAX else EXCERPT_MAX)
        return 0

    cdef int _bad(self, const char* p, Py_ssize_t n, bint line) except -1:
        """Count a line that is not SSE (``line``) or event data that is not JSON; keep the
        first one's start for the error sample."""
        if line:
            self.bad_lines += 1
        else:
            self.bad_events += 1
        if self._bad_excerpt is None:
            self._bad_excerpt = PyBytes_FromStringAndSize(
                p, n if n < BAD_EXCERPT_MAX else BAD_EXCERPT_MAX)
        return 0

    cdef void _finish_str(self, const char* s, Py_ssize_t k) noexcept:
        if k <= 0:
            return
        if k > 48:
            k = 48
        memcpy(self._finish_raw, s, k)
        self._finish_len = <int>k
        self.finish = _finish_code(s, k)

    cdef void _finish_at(self, const char* v, const char* end) noexcept:
        """Take the finish reason from the string at ``v`` (null and other values are no-ops)."""
        cdef const char* e
        if v == NULL or v[0] != c'"':
            return
        e = <const char*>memchr(v + 1, c'"', end - v - 1)
        if e != NULL:
            self._finish_str(v + 1, e - v - 1)

    cdef inline void _usage(self, const char* v, const char* end) noexcept:
        cdef int64_t x = _int_at(_vof(v, end, b'"completion_tokens"'), end)
        if x >= 0:
            self.usage_output_tokens = x
        x = _int_at(_vof(v, end, b'"prompt_tokens"'), end)
        if x >= 0:
            self.usage_input_tokens = x

    ### Dialects ###

    cdef int _openai(self, const char* d, Py_ssize_t n) except -1:
        # chat: first "content" (choices[0].delta.content); completions: first "text"
        cdef const char* end = d + n
        cdef const char* v
        if self._dialect == D_OPENAI_CHAT:
            v = _value_of(d, n, b'"content"', 9)
        else:
            v = _value_of(d, n, b'"text"', 6)
        if _nonempty_str(v, end):
            self._token(v, end)
        v = _value_of(d, n, b'"finish_reason"', 15)
        if v != NULL and v[0] == c'"':
            self._finish_at(v, end)
        v = _value_of(d, n, b'"usage"', 7)
        if v != NULL and v[0] == c'{':
            self._usage(v, end)
        if _has_error(d, n):
            self._error(d, n)
        return 0

    cdef int _anthropic(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1:
        cdef const char* end = d + n
        cdef const char* v
        cdef const char* t
        cdef int64_t x
        if _is(name, nlen, b"content_block_delta"):
            v = _vof(d, end, b'"delta"')
            if v != NULL and v[0] == c'{':
                end = _bound(v, end)
                t = _vof(v, end, b'"type"')
                if t != NULL and end - t >= 12 and memcmp(t, b'"text_delta"', 12) == 0:
                    t = _vof(v, end, b'"text"')
                    if _nonempty_str(t, end):
                        self._token(t, end)
        elif _is(name, nlen, b"message_delta"):
            self._finish_at(_vof(d, end, b'"stop_reason"'), end)
            v = _vof(d, end, b'"usage"')
            if v != NULL and v[0] == c'{':
                end = _bound(v, end)
                x = _int_at(_vof(v, end, b'"output_tokens"'), end)
                if x >= 0:
                    self.usage_output_tokens = x
                x = _int_at(_vof(v, end, b'"input_tokens"'), end)
                if x >= 0:
                    self.usage_input_tokens = x
        elif _is(name, nlen, b"message_start"):
            # its usage.output_tokens is a placeholder (1): only the input count is taken
            v = _vof(d, end, b'"usage"')
            if v != NULL and v[0] == c'{':
                end = _bound(v, end)
                x = _int_at(_vof(v, end, b'"input_tokens"'), end)
                if x >= 0:
                    self.usage_input_tokens = x
        elif _is(name, nlen, b"message_stop"):
            self.done_seen = True
        return 0

    cdef int _gemini(self, const char* d, Py_ssize_t n) except -1:
        # candidates[0].content.parts[*].text, non-empty, not in a "thought": true part
        cdef const char* end = d + n
        cdef const char* v = _vof(d, end, b'"parts"')
        cdef const char* p
        cdef const char* q
        cdef const char* text
        cdef bint thought
        cdef int found = 0
        cdef int64_t cand, thoughts, x
        if v != NULL and v[0] == c'[':
            p = v + 1
            while True:
                p = _skip_ws(p, end)
                if p < end and p[0] == c',':
                    p = _skip_ws(p + 1, end)
                if p >= end or p[0] != c'{':
                    break
                q = p + 1
                text = _text_member(&q, end, b"thought", 7, &thought)
                if q == NULL or q >= end or q[0] != c'}':
                    break                     # malformed part: stop here
                if _nonempty_str(text, end) and not thought:
                    self._keep_span(text, end)
                    found += 1
                p = q + 1
            if found:                         # one event however many parts it carries
                self.token_events += 1
                self._rec.token_event(self._slot, self._t_read, 1)
        v = _vof(d, end, b'"finishReason"')
        if v != NULL and v[0] == c'"':
            self._finish_at(v, end)
            self.done_seen = True
        v = _vof(d, end, b'"usageMetadata"')
        if v != NULL and v[0] == c'{':
            q = _bound(v, end)
            cand = _int_at(_vof(v, q, b'"candidatesTokenCount"'), q)
            thoughts = _int_at(_vof(v, q, b'"thoughtsTokenCount"'), q)
            if cand >= 0 or thoughts >= 0:
                self.usage_output_tokens = (cand if cand > 0 else 0) + (thoughts if thoughts > 0 else 0)
            x = _int_at(_vof(v, q, b'"promptTokenCount"'), q)
            if x >= 0:
                self.usage_input_tokens = x
        if not found:                         # an error object comes instead of a chunk
            v = _vof(d, end, b'"error"')
            if v != NULL and v[0] == c'{':
                self._error(d, n)
        return 0

    cdef int _cohere(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1:
        cdef const char* end = d + n
        cdef const char* v
        cdef const char* u
        cdef const char* ue
        cdef const char* t
        cdef const char* te
        cdef int64_t x
        if _is(name, nlen, b"content-delta"):
            v = _vof(d, end, b'"text"')       # delta.message.content.text
            if _nonempty_str(v, end):
                self._token(v, end)
        elif _is(name, nlen, b"message-end"):
            self.done_seen = True
            v = _vof(d, end, b'"finish_reason"')
            self._finish_at(v, end)
            if v != NULL and end - v >= 7 and memcmp(v, b'"ERROR"', 7) == 0:
                self._error(d, n)
            u = _vof(d, end, b'"usage"')
            if u != NULL and u[0] == c'{':
                ue = _bound(u, end)
                x = -1
                # tokens.output_tokens (generated), else billed_units.output_tokens
                t = _vof(u, ue, b'"tokens"')
                if t != NULL and t[0] == c'{':
                    te = _bound(t, ue)
                    x = _int_at(_vof(t, te, b'"output_tokens"'), te)
                    if x >= 0:
                        self.usage_output_tokens = x
                    x = _int_at(_vof(t, te, b'"input_tokens"'), te)
                    if x >= 0:
                        self.usage_input_tokens = x
                    x = self.usage_output_tokens
                if x < 0:
                    t = _vof(u, ue, b'"billed_units"')
                    if t != NULL and t[0] == c'{':
                        te = _bound(t, ue)
                        x = _int_at(_vof(t, te, b'"output_tokens"'), te)
                        if x >= 0:
                            self.usage_output_tokens = x
                        x = _int_at(_vof(t, te, b'"input_tokens"'), te)
                        if x >= 0 and self.usage_input_tokens < 0:
                            self.usage_input_tokens = x
        return 0

    cdef int _tgi(self, const char* d, Py_ssize_t n) except -1:
        # token.text where token.special is false; details on the final event
        cdef const char* end = d + n
        cdef const char* v = _vof(d, end, b'"token"')
        cdef const char* q
        cdef const char* text = NULL
        cdef bint special = False
        cdef int64_t x
        if v != NULL and v[0] == c'{':
            q = v + 1
            text = _text_member(&q, end, b"special", 7, &special)
            if _nonempty_str(text, end) and not special:
                self._token(text, end)
        v = _vof(d, end, b'"details"')
        if v != NULL and v[0] == c'{':
            self.done_seen = True
            q = _bound(v, end)
            self._finish_at(_vof(v, q, b'"finish_reason"'), q)
            x = _int_at(_vof(v, q, b'"generated_tokens"'), q)
            if x >= 0:
                self.usage_output_tokens = x
            x = _int_at(_vof(v, q, b'"input_length"'), q)
            if x >= 0:
                self.usage_input_tokens = x
        if _has_error(d, n):
            self._error(d, n)
        return 0

    cdef int _llamacpp(self, const char* d, Py_ssize_t n) except -1:
        cdef const char* end = d + n
        cdef const char* v = _vof(d, end, b'"content"')
        cdef int64_t x
        if _nonempty_str(v, end):
            self._token(v, end)
        x = _int_at(_vof(d, end, b'"tokens_predicted"'), end)   # cumulative: last one wins
        if x >= 0:
            self.usage_output_tokens = x
        x = _int_at(_vof(d, end, b'"tokens_evaluated"'), end)
        if x >= 0:
            self.usage_input_tokens = x
        v = _vof(d, end, b'"stop_type"')     # only on the final (stop: true) object
        if v != NULL and v[0] == c'"':
            self._finish_at(v, end)
            self.done_seen = True
        if _has_error(d, n):
            self._error(d, n)
        return 0

    cdef int _responses(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1:
        cdef const char* end = d + n
        cdef const char* v
        cdef const char* s
        cdef Py_ssize_t k
        cdef int code
        cdef int64_t x
        if _is(name, nlen, b"response.output_text.delta"):
            v = _vof(d, end, b'"delta"')
            if _nonempty_str(v, end):
                self._token(v, end)
            return 0
        if nlen <= 9 or memcmp(name, b"response.", 9) != 0:
            return 0
        s = name + 9
        k = nlen - 9
        if _is(s, k, b"completed"):
            code = C_FINISH_STOP
        elif _is(s, k, b"incomplete"):
            code = C_FINISH_OTHER
            v = _vof(d, end, b'"incomplete_details"')
            if v != NULL and v[0] == c'{':
                v = _vof(v, end, b'"reason"')
                if v != NULL and end - v >= 19 and memcmp(v, b'"max_output_tokens"', 19) == 0:
                    code = C_FINISH_LENGTH
        elif _is(s, k, b"failed"):
            code = C_FINISH_OTHER
            self._error(d, n)
        else:
            return 0
        # terminal event: the finish reason is the response's status, i.e. the event's suffix
        self.done_seen = True
        self._finish_str(s, k)
        self.finish = code
        v = _vof(d, end, b'"usage"')
        if v != NULL and v[0] == c'{':
            end = _bound(v, end)
            x = _int_at(_vof(v, end, b'"output_tokens"'), end)
            if x >= 0:
                self.usage_output_tokens = x
            x = _int_at(_vof(v, end, b'"input_tokens"'), end)
            if x >= 0:
                self.usage_input_tokens = x
        return 0

    cdef int _generic(self, const char* d, Py_ssize_t n) except -1:
        cdef int64_t n_tokens, usage
        try:
            n_tokens, usage, finish, error = self._classifier(PyBytes_FromStringAndSize(d, n))
            if finish is not None and not isinstance(finish, bytes):
                finish = str(finish).encode()
            if error is not None and not isinstance(error, bytes):
                error = str(error).encode()
        except Exception as exc:
            self.classifier_error = exc
            return C_ERR_CLASSIFIER
        if n_tokens > 0:
            self.token_events += 1
            self._rec.token_event(self._slot, self._t_read, n_tokens)
        if usage >= 0:
            self.usage_output_tokens = usage
        if finish is not None:
            self._finish_str(PyBytes_AS_STRING(finish), PyBytes_GET_SIZE(finish))
        if error is not None:
            self._error(PyBytes_AS_STRING(error), PyBytes_GET_SIZE(error))
        return 0
