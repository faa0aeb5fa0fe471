"""Response-body decoder: HTTP framing, SSE scanning and token classification in one C call.

A connection hands every read of a response body to ``feed()``; one call does the chunked
(or content-length, or until-close) framing, splits SSE lines across any read boundary (LF,
CRLF or CR, a CR at the end of one read followed by LF in the next counts once), assembles
events (multi-line ``data:``, comments, ``event:``/``id:``/``retry:``, a leading BOM), and
classifies each event with byte checks — no JSON parse, no Python object per token. Each
token-bearing event is recorded with the read's arrival time (one ``now_ns()`` per read: all
events of one read arrived together) straight into the worker's ``Recorder``.

Dialects (classification of one event's data):

* ``DIALECT_OPENAI_CHAT``: ``[DONE]`` ends the stream; a token event has a non-empty string
  ``"content"``; ``"usage": {...}`` gives ``completion_tokens``/``prompt_tokens``;
  ``"finish_reason": "..."``; a top-level ``"error"`` is a stream error.
* ``DIALECT_OPENAI_COMPLETIONS``: as chat, with ``"text"`` carrying the token.

The first match of a key is the one that counts; a key inside a JSON string cannot match
because its quotes would be escaped.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t
from libc.string cimport memcmp, memcpy

from lens._core.clock cimport lens_now_ns
from lens._core.recorder cimport (
    F_BYTES_IN, F_FINISH, F_FLAGS, F_INPUT_TOKENS, F_OUTPUT_TOKENS, Recorder,
)

cdef extern from "string.h" nogil:
    void* memmem(const void* h, size_t hl, const void* n, size_t nl)
    void* memchr(const void* s, int c, size_t n)

# framing
FRAMING_CHUNKED = 0
FRAMING_LENGTH = 1
FRAMING_UNTIL_CLOSE = 2
FRAMING_DECODED = 3      # bytes already de-framed by another HTTP client (httpx)

DIALECT_OPENAI_CHAT = 0          # OpenAI chat and its flavours (azure, vllm, sglang, llamacpp, tgi /v1)
DIALECT_OPENAI_COMPLETIONS = 1   # legacy /v1/completions
DIALECT_ANTHROPIC = 2            # Messages API (event: content_block_delta, message_delta, error)
DIALECT_GEMINI = 3               # streamGenerateContent?alt=sse
DIALECT_GEMINI_ARRAY = 4         # streamGenerateContent without alt: a streamed JSON array
DIALECT_COHERE = 5               # v2 chat stream (content-delta, message-end)
DIALECT_TGI = 6                  # TGI native /generate_stream
DIALECT_LLAMACPP = 7             # llama.cpp native /completion
DIALECT_OPENAI_RESPONSES = 8     # OpenAI Responses API
DIALECT_GENERIC = 9              # generic provider: a Python classifier per event

FINISH_NONE = 0
FINISH_STOP = 1
FINISH_LENGTH = 2
FINISH_OTHER = 3
FINISH_NAMES = {0: None, 1: "stop", 2: "length", 3: "other"}

# feed() results
NEED_MORE = 0
COMPLETE = 1
ERR_FRAMING = -1
ERR_EVENT_TOO_LARGE = -2

DEF CS_SIZE = 0
DEF CS_EXT = 1
DEF CS_DATA = 2
DEF CS_DATA_END = 3
DEF CS_TRAILER = 4
DEF CS_DONE = 5
DEF EXCERPT_MAX = 2048
DEF FLAG_USAGE_FROM_STREAM = 1


cdef inline const char* _skip_ws(const char* p, const char* end) noexcept nogil:
    while p < end and (p[0] == c' ' or p[0] == c'\t' or p[0] == c'\n' or p[0] == c'\r'):
        p += 1
    return p


cdef inline const char* _value_of(const char* p, Py_ssize_t n, const char* key,
                                  Py_ssize_t klen) noexcept nogil:
    """Return a pointer to the value after ``key`` and its colon, or NULL."""
    cdef const char* end = p + n
    cdef const char* k = <const char*>memmem(p, n, key, klen)
    if k == NULL:
        return NULL
    k = _skip_ws(k + klen, end)
    if k >= end or k[0] != c':':
        return NULL
    k = _skip_ws(k + 1, end)
    if k >= end:
        return NULL
    return k


cdef inline int64_t _int_at(const char* p, const char* end) noexcept nogil:
    cdef int64_t v = 0
    if p >= end or p[0] < c'0' or p[0] > c'9':
        return -1
    while p < end and c'0' <= p[0] <= c'9':
        v = v * 10 + (p[0] - c'0')
        p += 1
    return v


cdef class StreamDecoder:
    """Decode one connection's response bodies; ``start()`` before each response."""

    def __init__(self, Py_ssize_t max_event_bytes=1 << 20):
        self._max_event = max_event_bytes
        self._slot = -1
        self._done = True

    def __dealloc__(self):
        PyMem_Free(self._line)
        PyMem_Free(self._data)

    ### Public API ###

    def start(self, Recorder rec, int slot, int framing, int64_t content_length=-1,
              int dialect=DIALECT_OPENAI_CHAT, bint collect=False):
        """Prepare for a new response body recorded into ``rec``'s ``slot``.

        ``framing`` is one of the FRAMING_* constants; ``content_length`` is used with
        FRAMING_LENGTH. ``collect=True`` keeps the first 2 KiB of the body (for error
        statuses) instead of scanning events.
        """
        self._rec = rec
        self._slot = slot
        self._framing = framing
        self._dialect = dialect
        self._collect = collect
        self._cstate = CS_SIZE
        self._csize = 0
        self._remaining = content_length
        self._trailer_len = 0
        self._done = framing == FRAMING_LENGTH and content_length == 0
        self._line_len = 0
        self._data_len = 0
        self._skip_lf = False
        self._at_start = True
        self._event_len = 0
        self.bytes_in = 0
        self.events = 0
        self.token_events = 0
        self.usage_output_tokens = -1
        self.usage_input_tokens = -1
        self.finish = FINISH_NONE
        self.done_seen = False
        self.error_seen = False
        self._excerpt = b""

    def feed(self, bytes data):
        """Feed one read of body bytes; return NEED_MORE, COMPLETE or a negative ERR_*."""
        return self.feed_c(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))

    def end_of_input(self):
        """Tell the decoder the peer closed; return COMPLETE if the body was whole."""
        if self._framing == FRAMING_UNTIL_CLOSE or self._framing == FRAMING_DECODED:
            self._done = True
        return COMPLETE if self._done else NEED_MORE

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
    def excerpt(self):
        """The collected body start (collect mode) or the data of the last error event."""
        return self._excerpt

    ### C internals ###

    cdef int feed_c(self, const char* p, Py_ssize_t n) except -100:
        cdef Py_ssize_t take
        cdef char c
        cdef Py_ssize_t i = 0
        cdef int rc
        self._t_read = lens_now_ns()
        self.bytes_in += n
        if self._done:
            return COMPLETE
        if self._framing != FRAMING_CHUNKED:
            if self._framing == FRAMING_LENGTH:
                take = n if n < self._remaining else self._remaining
                self._remaining -= take
                rc = self._body(p, take)
                if self._remaining == 0:
                    self._done = True
            else:
                rc = self._body(p, n)
            if rc < 0:
                return rc
            return COMPLETE if self._done else NEED_MORE
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
                    return ERR_FRAMING
                if self._csize > (<int64_t>1 << 40):
                    return ERR_FRAMING
            elif self._cstate == CS_EXT:
                if c == c'\n':
                    self._chunk_start()
            elif self._cstate == CS_DATA_END:
                if c == c'\n':
                    self._cstate = CS_SIZE
                elif c != c'\r':
                    return ERR_FRAMING
            elif self._cstate == CS_TRAILER:
                if c == c'\n':
                    if self._trailer_len == 0:
                        self._cstate = CS_DONE
                        self._done = True
                        return COMPLETE
                    self._trailer_len = 0
                elif c != c'\r':
                    self._trailer_len += 1
            else:
                return COMPLETE
        return COMPLETE if self._done else NEED_MORE

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
        if need <= cap[0]:
            return 0
        if need > self._max_event + 16:
            return ERR_EVENT_TOO_LARGE
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
        return self._sse(p, n)

    cdef int _sse(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t j
        cdef int rc
        if self._skip_lf:
            self._skip_lf = False
            if p[0] == c'\n':
                i = 1
        while i < n:
            j = i
            while j < n and p[j] != c'\n' and p[j] != c'\r':
                j += 1
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
            self._event_len = <int>(vlen if vlen < 32 else 32)
            memcpy(self._event, v, self._event_len)
        # id, retry and unknown fields do not matter for timing
        return 0

    cdef int _dispatch(self) except -1:
        cdef Py_ssize_t n = self._data_len
        cdef const char* d = self._data
        cdef const char* end
        cdef const char* v
        self._event_len = 0
        if n == 0:
            return 0
        n -= 1                                # the trailing LF of the last data line
        self._data_len = 0
        end = d + n
        self.events += 1
        if n == 6 and memcmp(d, b"[DONE]", 6) == 0:
            self.done_seen = True
            return 0
        if self._dialect == DIALECT_OPENAI_CHAT:
            v = _value_of(d, n, b'"content"', 9)
        else:
            v = _value_of(d, n, b'"text"', 6)
        if v != NULL and v + 1 < end and v[0] == c'"' and v[1] != c'"':
            self.token_events += 1
            self._rec.token_event(self._slot, self._t_read, 1)
        v = _value_of(d, n, b'"finish_reason"', 15)
        if v != NULL and v[0] == c'"':
            if end - v >= 6 and memcmp(v, b'"stop"', 6) == 0:
                self.finish = FINISH_STOP
            elif end - v >= 8 and memcmp(v, b'"length"', 8) == 0:
                self.finish = FINISH_LENGTH
            else:
                self.finish = FINISH_OTHER
        v = _value_of(d, n, b'"usage"', 7)
        if v != NULL and v[0] == c'{':
            self._usage(v, end)
        v = _value_of(d, n, b'"error"', 7)
        if v != NULL and (v[0] == c'{' or v[0] == c'"'):
            self.error_seen = True
            self._excerpt = PyBytes_FromStringAndSize(d, n if n < EXCERPT_MAX else EXCERPT_MAX)
        return 0

    cdef inline void _usage(self, const char* v, const char* end) noexcept:
        cdef const char* t = _value_of(v, end - v, b'"completion_tokens"', 19)
        cdef int64_t x
        if t != NULL:
            x = _int_at(t, end)
            if x >= 0:
                self.usage_output_tokens = x
        t = _value_of(v, end - v, b'"prompt_tokens"', 15)
        if t != NULL:
            x = _int_at(t, end)
            if x >= 0:
                self.usage_input_tokens = x
