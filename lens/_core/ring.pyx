"""Single-producer / single-consumer ring of fixed-size int64 records in shared memory.

Layout of the shared block (int64 words)::

    word 0        head: records ever published by the producer   (own cache line)
    word 1..7     magic, capacity, record_words, spilled, max_pending, closed, reserved
    word 8        tail: records ever consumed                      (own cache line)
    word 9..15    counters the producer publishes for the consumer (``set_counter``)
    word 16..     capacity * record_words words of records; record i lives at slot i & (capacity-1)

The producer writes a record, then publishes it by storing ``head + 1`` with release order.
The consumer loads ``head`` with acquire order, copies records out, then stores the new ``tail``
with release order. No locks, no syscalls.

Full ring policy: **spill, never lose, never block**. When the ring is full, ``push`` appends
the record to a process-local, growable spill buffer; later pushes (and ``flush()``) move
spilled records into the ring in their original order as soon as the consumer makes room.
The event loop of a worker never blocks on the parent, and no record is dropped. The header
counts how many records went through the spill (``spilled``) and the deepest it got
(``max_pending``), so a run can report that its parent drained too slowly. At the end the
producer calls ``flush()`` until ``pending == 0`` (the parent keeps draining meanwhile).
"""
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t
from libc.string cimport memcpy

import numpy as np
from multiprocessing import shared_memory

from lens._core.clock cimport lens_load_acquire, lens_store_release

DEF HEAD = 0
DEF MAGIC = 1
DEF CAPACITY = 2
DEF RECORD_WORDS = 3
DEF SPILLED = 4
DEF MAX_PENDING = 5
DEF CLOSED = 6
DEF TAIL = 8
DEF HEADER_WORDS = 16
DEF COUNTERS = 7                # words 9..15: producer counters (sent, in flight, …)
DEF RING_MAGIC = 0x4C454E5352494E47  # "LENSRING"


cdef class Ring:
    """A shared-memory SPSC ring; create in the consumer, attach by name in the producer."""

    def __init__(self, name=None, int64_t capacity=65536, int record_words=1, bint create=True):
        cdef int64_t cap = 1
        if create:
            if capacity < 1:
                raise ValueError(f"capacity must be >= 1 (got {capacity})")
            if record_words < 1:
                raise ValueError(f"record_words must be >= 1 (got {record_words})")
            while cap < capacity:
                cap <<= 1
            size = (HEADER_WORDS + cap * record_words) * 8
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=size)
            self._owner = True
        else:
            if name is None:
                raise ValueError("attaching to a ring needs its name")
            self._shm = shared_memory.SharedMemory(name=name, create=False)
            self._owner = False
        nbytes = self._shm.size
        if not create and (nbytes < HEADER_WORDS * 8 or nbytes % 8):
            self._shm.close()
            raise ValueError(f"shared memory block {name!r} is not a lens ring "
                             f"({nbytes} bytes)")
        words = np.frombuffer(self._shm.buf, dtype=np.int64)
        self._words = words
        cdef int64_t[::1] view = words
        self._hdr = &view[0]
        self._data = self._hdr + HEADER_WORDS
        if create:
            view[:HEADER_WORDS] = 0
            self._hdr[CAPACITY] = cap
            self._hdr[RECORD_WORDS] = record_words
            lens_store_release(&self._hdr[MAGIC], RING_MAGIC)
        elif (lens_load_acquire(&self._hdr[MAGIC]) != RING_MAGIC
              or nbytes < (HEADER_WORDS + self._hdr[CAPACITY] * self._hdr[RECORD_WORDS]) * 8):
            view = None  # drop the exports first, or closing the block raises BufferError
            words = None
            self._release()
            raise ValueError(f"shared memory block {name!r} is not a lens ring")
        self._capacity = self._hdr[CAPACITY]
        self._mask = self._capacity - 1
        self._record_words = <int>self._hdr[RECORD_WORDS]

    @classmethod
    def attach(cls, name):
        """Attach to an existing ring by its shared-memory name (producer side)."""
        return cls(name, create=False)

    def __dealloc__(self):
        if self._spill != NULL:
            PyMem_Free(self._spill)
            self._spill = NULL
        # a ring dropped without close(): release the view before the block (else
        # SharedMemory.__del__ fails on the exported buffer), and the owner unlinks it
        self._hdr = NULL
        self._data = NULL
        self._words = None
        if self._shm is not None:
            shm, self._shm = self._shm, None
            try:
                shm.close()
                if self._owner:
                    shm.unlink()
            except Exception:
                pass

    ### Producer ###

    cdef int push(self, const int64_t* rec) except -1:
        """Publish one record, or spill it when the ring is full (order is kept)."""
        cdef int64_t head
        cdef int64_t* dst
        cdef int i
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        if self._spill_len:
            self._flush_spill()
        if self._spill_len == 0:
            head = self._hdr[HEAD]
            # read the consumer's tail (its cache line) only when the last known one says full
            if head - self._tail_seen >= self._capacity:
                self._tail_seen = lens_load_acquire(&self._hdr[TAIL])
            if head - self._tail_seen < self._capacity:
                dst = self._data + (head & self._mask) * self._record_words
                for i in range(self._record_words):     # records are a few words: no memcpy call
                    dst[i] = rec[i]
                lens_store_release(&self._hdr[HEAD], head + 1)
                return 0
        # full (or older records still waiting): append to the spill
        cdef int64_t end = self._spill_start + self._spill_len
        cdef int64_t newcap
        cdef int64_t* p
        if end == self._spill_cap:
            if self._spill_start and self._spill_start >= self._spill_len:
                # the front is free: slide the waiting records down. The move is no longer
                # than the records already flushed since the last one, so pushes stay O(1)
                # amortised, with no stall proportional to the whole spill.
                memcpy(self._spill, self._spill + self._spill_start * self._record_words,
                       self._spill_len * self._record_words * 8)
                self._spill_start = 0
            else:
                newcap = self._spill_cap * 2 if self._spill_cap else 1024
                p = <int64_t*>PyMem_Realloc(self._spill, newcap * self._record_words * 8)
                if p == NULL:
                    raise MemoryError("ring spill buffer")
                self._spill = p
                self._spill_cap = newcap
            end = self._spill_start + self._spill_len
        memcpy(self._spill + end * self._record_words, rec, self._record_words * 8)
        self._spill_len += 1
        self._hdr[SPILLED] += 1
        if self._spill_len > self._hdr[MAX_PENDING]:
            self._hdr[MAX_PENDING] = self._spill_len
        return 0

    cdef int64_t _flush_spill(self) except -1:
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        cdef int64_t head = self._hdr[HEAD]
        cdef int64_t tail = lens_load_acquire(&self._hdr[TAIL])
        cdef int64_t room = self._capacity - (head - tail)
        cdef int64_t n = self._spill_len if self._spill_len < room else room
        self._tail_seen = tail
        cdef int64_t i
        if n <= 0:
            return self._spill_len
        cdef const int64_t* src = self._spill + self._spill_start * self._record_words
        for i in range(n):
            memcpy(self._data + ((head + i) & self._mask) * self._record_words,
                   src + i * self._record_words, self._record_words * 8)
        lens_store_release(&self._hdr[HEAD], head + n)
        self._spill_len -= n
        self._spill_start = self._spill_start + n if self._spill_len else 0
        return self._spill_len

    def push_records(self, records):
        """Publish records (an int64 array of shape ``(n, record_words)`` or one record)."""
        cdef const int64_t[:, ::1] arr = np.ascontiguousarray(records, dtype=np.int64).reshape(
            -1, self._record_words)
        cdef Py_ssize_t i
        for i in range(arr.shape[0]):
            self.push(&arr[i, 0])

    def flush(self):
        """Move spilled records into the ring as room allows; return how many still wait."""
        return self._flush_spill()

    def close_producer(self):
        """Mark the stream finished (call after ``flush()`` returned 0)."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        lens_store_release(&self._hdr[CLOSED], 1)

    ### Consumer ###

    def drain(self, Py_ssize_t max_records=-1):
        """Copy out and consume every published record (at most ``max_records``).

        Returns an int64 array of shape ``(n, record_words)``, oldest first.
        """
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        cdef int64_t tail = self._hdr[TAIL]
        cdef int64_t head = lens_load_acquire(&self._hdr[HEAD])
        cdef int64_t n = head - tail
        if max_records >= 0 and n > max_records:
            n = max_records
        out = np.empty((n, self._record_words), dtype=np.int64)
        if n == 0:
            return out
        cdef int64_t[:, ::1] o = out
        cdef int64_t first = tail & self._mask
        cdef int64_t part = self._capacity - first
        if part > n:
            part = n
        memcpy(&o[0, 0], self._data + first * self._record_words, part * self._record_words * 8)
        if n > part:
            memcpy(&o[part, 0], self._data, (n - part) * self._record_words * 8)
        lens_store_release(&self._hdr[TAIL], tail + n)
        return out

    ### State ###

    @property
    def name(self):
        """The shared-memory name to pass to ``Ring.attach`` in the other process."""
        if self._shm is None:
            raise ValueError("ring is closed")
        return self._shm.name

    @property
    def capacity(self):
        """Records the ring holds (a power of two)."""
        return self._capacity

    @property
    def record_words(self):
        """int64 words per record."""
        return self._record_words

    @property
    def written(self):
        """Records published so far."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        return lens_load_acquire(&self._hdr[HEAD])

    @property
    def consumed(self):
        """Records drained so far."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        return lens_load_acquire(&self._hdr[TAIL])

    @property
    def pending(self):
        """Records waiting in this producer's spill buffer (not yet in the ring)."""
        return self._spill_len

    @property
    def spilled(self):
        """Records that ever had to wait in the spill because the ring was full."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        return self._hdr[SPILLED]

    @property
    def max_pending(self):
        """Deepest the producer's spill ever got."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        return self._hdr[MAX_PENDING]

    @property
    def closed(self):
        """True once the producer called ``close_producer()``."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        return lens_load_acquire(&self._hdr[CLOSED]) != 0

    ### Counters ###

    def set_counter(self, int i, int64_t value):
        """Publish a producer-side counter ``i`` (0..6) for the consumer (live progress)."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        if i < 0 or i >= COUNTERS:
            raise IndexError(f"counter {i} out of range 0..{COUNTERS - 1}")
        lens_store_release(&self._hdr[TAIL + 1 + i], value)

    def counter(self, int i):
        """Read counter ``i`` (0..6) as last published by the producer."""
        if self._hdr == NULL:
            raise ValueError("ring is closed")
        if i < 0 or i >= COUNTERS:
            raise IndexError(f"counter {i} out of range 0..{COUNTERS - 1}")
        return lens_load_acquire(&self._hdr[TAIL + 1 + i])

    cdef _release(self):
        self._hdr = NULL
        self._data = NULL
        self._words = None
        if self._shm is not None:
            self._shm.close()

    def close(self):
        """Detach from the shared block (the owner also unlinks it)."""
        if self._shm is None:
            return
        owner = self._owner
        shm = self._shm
        self._release()
        self._shm = None
        if owner:
            try:
                shm.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
