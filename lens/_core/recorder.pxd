from libc.stdint cimport int64_t

from lens._core.ring cimport Ring

# Row fields: word offsets inside one request row (all int64). Keep in step with ROW_FIELDS.
cdef enum:
    F_REQUEST_ID = 0
    F_WORKER = 1
    F_TARGET = 2
    F_STATUS = 3
    F_ERROR = 4
    F_FLAGS = 5
    F_ATTEMPT = 6
    F_T_SCHED = 7
    F_T_START = 8
    F_T_DNS = 9
    F_T_CONNECT = 10
    F_T_TLS = 11
    F_T_SENT = 12
    F_T_FIRST_BYTE = 13
    F_T_HEADERS = 14
    F_T_FIRST_TOKEN = 15
    F_T_LAST_TOKEN = 16
    F_T_END = 17
    F_OUTPUT_TOKENS = 18
    F_INPUT_TOKENS = 19
    F_TOKEN_EVENTS = 20
    F_BYTES_IN = 21
    F_CONN_ID = 22
    F_FINISH = 23
    F_T_ATTEMPT = 24
    ROW_WORDS = 25

cdef enum:
    TOKEN_WORDS = 3          # request_id, index, t_ns


cdef class Recorder:
    cdef readonly Ring rows
    cdef readonly Ring tokens
    cdef int64_t* _slots
    cdef int* _free
    cdef char* _busy            # 1 while a slot is in flight: finish() twice must not free it twice
    cdef int _n_free
    cdef int _max_slots
    cdef readonly int worker
    cdef public int64_t max_token_stamps
    cdef int64_t _tok[3]

    cdef int64_t* slot_ptr(self, int slot) noexcept
    cdef int _check(self, int slot) except -1
    cdef int token_event(self, int slot, int64_t t_ns, int64_t n_tokens) except -1
    cpdef int begin(self, int64_t request_id, int64_t t_sched_ns) except -1
    cpdef int64_t stamp(self, int slot, int field) except? -1
    cpdef int set(self, int slot, int field, int64_t value) except -1
    cpdef int64_t get(self, int slot, int field) except? -1
    cpdef int finish(self, int slot, int64_t status, int64_t error) except -1
