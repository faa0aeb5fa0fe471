"""Request rows and token stamps, recorded in C into shared-memory rings.

A worker owns one ``Recorder``: a table of in-flight request slots (one row of ``ROW_WORDS``
int64 each, in process-local C memory) and two rings shared with the parent:

* ``rows``: one record per finished request, the slot's row copied at ``finish()``;
* ``tokens``: one record ``(request_id, index, t_ns)`` per token-bearing event, written the
  moment the event is recognised (``token_event``, called from C by the stream decoder).

All timestamps are absolute CLOCK_MONOTONIC nanoseconds (``now_ns()``); the parent makes them
relative to the run's epoch t0 when it writes outputs. A time never taken is ``UNSET``
(INT64_MIN). Per request, at most ``max_token_stamps`` token records are written; later
events are still counted in the row (``token_events``) and the row gets ``FLAG_TRUNCATED``.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport INT64_MIN, int64_t
from libc.string cimport memset

import enum

import numpy as np

from lens._core.clock cimport lens_now_ns
from lens._core.ring cimport Ring

UNSET = INT64_MIN

ROW_FIELDS = (
    "request_id", "worker", "target", "status", "error", "flags", "attempt",
    "t_sched_ns", "t_start_ns", "t_dns_ns", "t_connect_ns", "t_tls_ns", "t_sent_ns",
    "t_first_byte_ns", "t_headers_ns", "t_first_token_ns", "t_last_token_ns", "t_end_ns",
    "output_tokens", "input_tokens", "token_events", "bytes_in", "conn_id", "finish",
    "t_attempt_ns",
)
TOKEN_FIELDS = ("request_id", "index", "t_ns")
ROW_DTYPE = np.dtype([(f, np.int64) for f in ROW_FIELDS])
TOKEN_DTYPE = np.dtype([(f, np.int64) for f in TOKEN_FIELDS])

# Row flags (F_FLAGS)
FLAG_USAGE_FROM_STREAM = 1   # output_tokens came from the stream's own usage report
FLAG_WARMUP = 2              # warm-up request: excluded from results
FLAG_CANCELLED = 4           # stopped by the run ending (duration over, Ctrl-C)
FLAG_CONN_REUSED = 8         # sent on an already open keep-alive connection
FLAG_TRUNCATED = 16          # more token events than max_token_stamps: later stamps not stored
FLAG_DROPPED = 32            # never sent: --max-inflight was reached at its arrival time

assert len(ROW_FIELDS) == ROW_WORDS

#: Word offset of each row field, for ``Recorder.stamp/set/get`` (e.g. ``RowField.t_sent_ns``).
RowField = enum.IntEnum("RowField", {name: i for i, name in enumerate(ROW_FIELDS)})


cdef class Recorder:
    """Per-worker request recorder over a row ring and a token ring.

    ``max_slots`` bounds the requests in flight at once; ``begin`` raises when all are taken.
    """

    def __init__(self, Ring rows not None, Ring tokens not None, int max_slots, int worker=0,
                 int64_t max_token_stamps=1 << 20):
        if rows.record_words != ROW_WORDS:
            raise ValueError(f"row ring has {rows.record_words} words per record, need {ROW_WORDS}")
        if tokens.record_words != TOKEN_WORDS:
            raise ValueError(
                f"token ring has {tokens.record_words} words per record, need {TOKEN_WORDS}")
        if max_slots < 1:
            raise ValueError(f"max_slots must be >= 1 (got {max_slots})")
        self.rows = rows
        self.tokens = tokens
        self.worker = worker
        self.max_token_stamps = max_token_stamps
        self._max_slots = max_slots
        self._slots = <int64_t*>PyMem_Malloc(max_slots * ROW_WORDS * sizeof(int64_t))
        self._free = <int*>PyMem_Malloc(max_slots * sizeof(int))
        self._busy = <char*>PyMem_Malloc(max_slots)
        if self._slots == NULL or self._free == NULL or self._busy == NULL:
            raise MemoryError()
        memset(self._busy, 0, max_slots)
        cdef int i
        for i in range(max_slots):
            self._free[i] = max_slots - 1 - i
        self._n_free = max_slots

    def __dealloc__(self):
        PyMem_Free(self._slots)
        PyMem_Free(self._free)
        PyMem_Free(self._busy)

    cdef inline int64_t* slot_ptr(self, int slot) noexcept:
        return self._slots + slot * ROW_WORDS

    cdef int _check(self, int slot) except -1:
        if slot < 0 or slot >= self._max_slots:
            raise IndexError(f"slot {slot} out of range 0..{self._max_slots - 1}")
        return 0

    ### Public API ###

    cpdef int begin(self, int64_t request_id, int64_t t_sched_ns) except -1:
        """Open a row for a request and stamp its actual start; return the slot."""
        if self._n_free == 0:
            raise RuntimeError(f"all {self._max_slots} recorder slots are in flight")
        self._n_free -= 1
        cdef int slot = self._free[self._n_free]
        self._busy[slot] = 1
        cdef int64_t* r = self.slot_ptr(slot)
        cdef int i
        for i in range(ROW_WORDS):
            r[i] = INT64_MIN
        r[F_REQUEST_ID] = request_id
        r[F_WORKER] = self.worker
        r[F_TARGET] = 0
        r[F_STATUS] = 0
        r[F_ERROR] = 0
        r[F_FLAGS] = 0
        r[F_ATTEMPT] = 1
        r[F_OUTPUT_TOKENS] = 0
        r[F_INPUT_TOKENS] = 0
        r[F_TOKEN_EVENTS] = 0
        r[F_BYTES_IN] = 0
        r[F_CONN_ID] = -1
        r[F_FINISH] = 0
        r[F_T_SCHED] = t_sched_ns
        r[F_T_START] = lens_now_ns()
        r[F_T_ATTEMPT] = r[F_T_START]     # a retry moves it to the last attempt's start
        return slot

    cpdef int64_t stamp(self, int slot, int field) except? -1:
        """Store now_ns() in a field of the slot's row; return it."""
        self._check(slot)
        if field < 0 or field >= ROW_WORDS:
            raise IndexError(f"field {field} out of range")
        cdef int64_t t = lens_now_ns()
        self._slots[slot * ROW_WORDS + field] = t
        return t

    cpdef int set(self, int slot, int field, int64_t value) except -1:
        """Store an integer in a field of the slot's row."""
        self._check(slot)
        if field < 0 or field >= ROW_WORDS:
            raise IndexError(f"field {field} out of range")
        self._slots[slot * ROW_WORDS + field] = value
        return 0

    cpdef int64_t get(self, int slot, int field) except? -1:
        """Read a field of the slot's row."""
        self._check(slot)
        if field < 0 or field >= ROW_WORDS:
            raise IndexError(f"field {field} out of range")
        return self._slots[slot * ROW_WORDS + field]

    cdef int token_event(self, int slot, int64_t t_ns, int64_t n_tokens) except -1:
        """Record one token-bearing event that arrived at ``t_ns`` (C callers only)."""
        cdef int64_t* r = self.slot_ptr(slot)
        cdef int64_t idx = r[F_TOKEN_EVENTS]
        if idx == 0:
            r[F_T_FIRST_TOKEN] = t_ns
        r[F_T_LAST_TOKEN] = t_ns
        r[F_TOKEN_EVENTS] = idx + 1
        r[F_OUTPUT_TOKENS] += n_tokens
        if idx < self.max_token_stamps:
            self._tok[0] = r[F_REQUEST_ID]
            self._tok[1] = idx
            self._tok[2] = t_ns
            self.tokens.push(self._tok)
        else:
            r[F_FLAGS] |= FLAG_TRUNCATED
        return 0

    def token(self, int slot, int64_t n_tokens=1):
        """Record a token-bearing event now (Python callers: httpx client, tests)."""
        self._check(slot)
        if not self._busy[slot]:
            raise ValueError(f"slot {slot} is not in flight")
        self.token_event(slot, lens_now_ns(), n_tokens)

    cpdef int finish(self, int slot, int64_t status, int64_t error) except -1:
        """Stamp the end, publish the row and free the slot."""
        self._check(slot)
        if not self._busy[slot]:
            raise ValueError(f"slot {slot} is not in flight (finished twice?)")
        cdef int64_t* r = self.slot_ptr(slot)
        r[F_STATUS] = status
        r[F_ERROR] = error
        r[F_T_END] = lens_now_ns()
        self.rows.push(r)
        self._busy[slot] = 0
        self._free[self._n_free] = slot
        self._n_free += 1
        return 0

    def row(self, int slot):
        """Return a copy of the slot's row as a structured numpy record (for debugging)."""
        self._check(slot)
        out = np.empty(1, dtype=ROW_DTYPE)
        cdef int64_t[::1] o = out.view(np.int64)
        cdef int i
        for i in range(ROW_WORDS):
            o[i] = self._slots[slot * ROW_WORDS + i]
        return out[0]

    def flush(self):
        """Move spilled records into both rings; return how many still wait."""
        return self.rows.flush() + self.tokens.flush()

    @property
    def in_flight(self):
        """Slots currently open."""
        return self._max_slots - self._n_free
