"""Byte-level JSON helpers of the stream decoder: find keys, skip values, bound containers.

All are ``cdef inline`` C functions over ``[p, end)`` byte ranges (no Python objects), shared
by ``cimport``. A key inside a JSON string cannot match: its quotes would be escaped.
"""
from libc.stdint cimport int64_t
from libc.string cimport memcmp, strlen

cdef extern from "string.h" nogil:
    void* memmem(const void* h, size_t hl, const void* n, size_t nl)
    void* memchr(const void* s, int c, size_t n)

cdef extern from "lens_json.h" nogil:
    # byte classes: 1 for the bytes that matter outside JSON strings, and inside them
    const unsigned char _STRUCT "LENS_JSON_STRUCT"[256]
    const unsigned char _INSTR "LENS_JSON_INSTR"[256]

cdef inline const char* _skip_ws(const char* p, const char* end) noexcept nogil:
    while p < end and (p[0] == c' ' or p[0] == c'\t' or p[0] == c'\n' or p[0] == c'\r'):
        p += 1
    return p


cdef inline const char* _value_of(const char* p, Py_ssize_t n, const char* key,
                           Py_ssize_t klen) noexcept nogil:
    """Return a pointer to the value after the first ``key`` followed by a colon, or NULL."""
    cdef const char* end = p + n
    cdef const char* k
    cdef const char* v
    while True:
        k = <const char*>memmem(p, end - p, key, klen)
        if k == NULL:
            return NULL
        v = _skip_ws(k + klen, end)
        if v < end and v[0] == c':':
            v = _skip_ws(v + 1, end)
            return v if v < end else NULL
        p = k + 1


cdef inline const char* _vof(const char* p, const char* end, const char* key) noexcept nogil:
    # strlen of a literal folds to a constant once this is inlined
    return _value_of(p, end - p, key, strlen(key))


cdef inline bint _is(const char* s, Py_ssize_t n, const char* lit) noexcept nogil:
    cdef Py_ssize_t k = strlen(lit)
    return n == k and memcmp(s, lit, k) == 0


cdef inline bint _nonempty_str(const char* v, const char* end) noexcept nogil:
    return v != NULL and v[0] == c'"' and v + 1 < end and v[1] != c'"'


cdef inline int64_t _int_at(const char* p, const char* end) noexcept nogil:
    cdef int64_t v = 0
    if p == NULL or p >= end or p[0] < c'0' or p[0] > c'9':
        return -1
    while p < end and c'0' <= p[0] <= c'9':
        v = v * 10 + (p[0] - c'0')
        p += 1
    return v


cdef inline const char* _string_end(const char* p, const char* end) noexcept nogil:
    """``p`` at an opening quote: return the pointer after the closing quote, or NULL."""
    cdef const char* q = p + 1
    cdef const char* b
    while q < end:
        q = <const char*>memchr(q, c'"', end - q)
        if q == NULL:
            return NULL
        b = q - 1
        while b > p and b[0] == c'\\':
            b -= 1
        if ((q - 1 - b) & 1) == 0:        # an even run of backslashes: the quote is real
            return q + 1
        q += 1
    return NULL




cdef inline const char* _container_end(const char* p, const char* end) noexcept nogil:
    """``p`` at ``{`` or ``[``: return the pointer after its matching close, or NULL."""
    cdef int depth = 0
    cdef char c
    while True:
        while p < end and not _STRUCT[<unsigned char>p[0]]:
            p += 1
        if p >= end:
            return NULL
        c = p[0]
        if c == c'"':
            p = _string_end(p, end)
            if p == NULL:
                return NULL
            continue
        if c == c'{' or c == c'[':
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return p + 1
        p += 1


cdef inline const char* _bound(const char* v, const char* end) noexcept nogil:
    """The end of the object or array at ``v`` (``end`` when it does not close in the data)."""
    cdef const char* e = _container_end(v, end)
    return e if e != NULL else end


cdef inline const char* _skip_value(const char* v, const char* end) noexcept nogil:
    if v[0] == c'"':
        return _string_end(v, end)
    if v[0] == c'{' or v[0] == c'[':
        return _container_end(v, end)
    while v < end and v[0] != c',' and v[0] != c'}' and v[0] != c']' and v[0] != c' ' \
            and v[0] != c'\n' and v[0] != c'\r' and v[0] != c'\t':
        v += 1
    return v


cdef inline const char* _member(const char** pp, const char* end, const char** key,
                         Py_ssize_t* klen) noexcept nogil:
    """Step to the next member of an object (``pp`` after ``{`` or after a value).

    Return its value (key in ``key``/``klen``), or NULL at the object's end (``pp`` then at
    the ``}``) or on malformed JSON.
    """
    cdef const char* p = _skip_ws(pp[0], end)
    cdef const char* q
    if p < end and p[0] == c',':
        p = _skip_ws(p + 1, end)
    pp[0] = p
    if p >= end or p[0] != c'"':
        return NULL
    q = _string_end(p, end)
    if q == NULL:
        return NULL
    key[0] = p + 1
    klen[0] = q - p - 2
    q = _skip_ws(q, end)
    if q >= end or q[0] != c':':
        return NULL
    q = _skip_ws(q + 1, end)
    return q if q < end else NULL


cdef inline const char* _text_member(const char** pp, const char* end, const char* flag,
                                     Py_ssize_t flen, bint* flagged) noexcept nogil:
    """Walk an object's members (``pp`` after its ``{``); return its ``"text"`` string value
    or NULL, and set ``flagged`` when member ``flag`` is ``true`` (Gemini's ``thought``,
    TGI's ``special``). ``pp`` ends at the object's ``}``, or NULL on malformed JSON."""
    cdef const char* key = NULL
    cdef Py_ssize_t klen = 0
    cdef const char* text = NULL
    cdef const char* v
    flagged[0] = False
    while True:
        v = _member(pp, end, &key, &klen)
        if v == NULL:
            return text
        if klen == 4 and memcmp(key, b"text", 4) == 0 and v[0] == c'"':
            text = v
        elif klen == flen and memcmp(key, flag, flen) == 0 and v[0] == c't':
            flagged[0] = True
        pp[0] = _skip_value(v, end)
        if pp[0] == NULL:
            return text


cdef inline bint _has_error(const char* d, Py_ssize_t n) noexcept nogil:
    """True if the data has an ``"error"`` key with an object or string value (OpenAI, vLLM,
    TGI, Gemini) or is a flat ``"object": "error"`` (SGLang, older vLLM)."""
    cdef const char* end = d + n
    cdef const char* p = d
    cdef const char* k
    cdef const char* v
    while True:
        k = <const char*>memmem(p, end - p, b'"error"', 7)
        if k == NULL:
            return False
        v = _skip_ws(k + 7, end)
        if v < end and v[0] == c':':
            v = _skip_ws(v + 1, end)
            if v < end and (v[0] == c'{' or v[0] == c'"'):
                return True
        else:
            v = k - 1
            while v >= d and (v[0] == c' ' or v[0] == c'\t' or v[0] == c'\n' or v[0] == c'\r'):
                v -= 1
            if v >= d and v[0] == c':':
                v -= 1
                while v >= d and (v[0] == c' ' or v[0] == c'\t' or v[0] == c'\n' or v[0] == c'\r'):
                    v -= 1
                if v - 7 >= d and memcmp(v - 7, b'"object"', 8) == 0:
                    return True
        p = k + 1
