from libc.stdint cimport int64_t

from lens._core.recorder cimport Recorder


cdef class StreamDecoder:
    cdef Recorder _rec
    cdef int _slot
    cdef int _framing          # FRAMING_*
    cdef int _dialect          # DIALECT_*
    cdef bint _collect         # keep a body excerpt instead of scanning SSE (error statuses)
    cdef bint _capture         # keep each token's raw JSON string (conformance tests only)
    cdef public bint scan_only # benchmarks: split events but do not classify them
    # HTTP body framing
    cdef int _cstate
    cdef int64_t _csize
    cdef int64_t _remaining    # content-length left, or chunk bytes left
    cdef int _trailer_len
    cdef bint _done
    # SSE scanning
    cdef char* _line
    cdef Py_ssize_t _line_len
    cdef Py_ssize_t _line_cap
    cdef char* _data           # SSE data buffer, or the JSON-array element being assembled
    cdef Py_ssize_t _data_len
    cdef Py_ssize_t _data_cap
    cdef bint _skip_lf
    cdef bint _at_start
    cdef char _event[32]
    cdef int _event_len        # 33 marks a name longer than 32 bytes (matches no known name)
    cdef Py_ssize_t _max_event
    # JSON-array scanning (DIALECT_GEMINI_ARRAY)
    cdef int _jdepth
    cdef bint _jstr
    cdef bint _jesc
    # what the stream said
    cdef int64_t _t_read
    cdef readonly int64_t bytes_in
    cdef readonly int64_t events
    cdef readonly int64_t token_events
    cdef readonly int64_t usage_output_tokens
    cdef readonly int64_t usage_input_tokens
    cdef readonly int finish
    cdef readonly bint done_seen
    cdef readonly bint error_seen
    cdef readonly int64_t bad_lines   # lines that are not SSE (a field name no writer uses)
    cdef readonly int64_t bad_events  # events whose data is not a JSON object or array
    cdef bytes _bad_excerpt
    cdef char _finish_raw[48]
    cdef int _finish_len
    cdef bytes _excerpt
    cdef bytes _error_data
    cdef list _spans
    cdef object _classifier
    cdef readonly object classifier_error

    cdef int _grow(self, char** buf, Py_ssize_t* cap, Py_ssize_t need) except -1
    cdef int _body(self, const char* p, Py_ssize_t n) except -1
    cdef int _sse(self, const char* p, Py_ssize_t n) except -1
    cdef int _line_done(self, const char* p, Py_ssize_t n) except -1
    cdef int _dispatch(self) except -1
    cdef int _array(self, const char* p, Py_ssize_t n) except -1
    cdef int _classify(self, const char* d, Py_ssize_t n, int ev_len) except -1
    cdef int _openai(self, const char* d, Py_ssize_t n) except -1
    cdef int _anthropic(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1
    cdef int _gemini(self, const char* d, Py_ssize_t n) except -1
    cdef int _cohere(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1
    cdef int _tgi(self, const char* d, Py_ssize_t n) except -1
    cdef int _llamacpp(self, const char* d, Py_ssize_t n) except -1
    cdef int _responses(self, const char* d, Py_ssize_t n, const char* name, int nlen) except -1
    cdef int _generic(self, const char* d, Py_ssize_t n) except -1
    cdef int _token(self, const char* s, const char* end) except -1
    cdef int _keep_span(self, const char* s, const char* end) except -1
    cdef int _error(self, const char* d, Py_ssize_t n) except -1
    cdef int _bad(self, const char* p, Py_ssize_t n, bint line) except -1
    cdef int feed_c(self, const char* p, Py_ssize_t n) except -100
    cdef void _chunk_start(self) noexcept
    cdef void _finish_str(self, const char* s, Py_ssize_t k) noexcept
    cdef void _finish_at(self, const char* v, const char* end) noexcept
    cdef void _usage(self, const char* v, const char* end) noexcept
