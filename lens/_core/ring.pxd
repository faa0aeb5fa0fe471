from libc.stdint cimport int64_t


cdef class Ring:
    cdef object _shm
    cdef object _words          # numpy view over the shared block; keeps the buffer exported
    cdef int64_t* _hdr
    cdef int64_t* _data
    cdef int64_t _capacity
    cdef int64_t _mask
    cdef int _record_words
    cdef bint _owner
    cdef int64_t _tail_seen      # producer's last read of the consumer's tail
    # producer-local spill: records that found the ring full wait here, in order
    cdef int64_t* _spill
    cdef int64_t _spill_start   # the oldest waiting record is _spill[_spill_start]
    cdef int64_t _spill_len
    cdef int64_t _spill_cap

    cdef int push(self, const int64_t* rec) except -1
    cdef int64_t _flush_spill(self) except -1
    cdef _release(self)
