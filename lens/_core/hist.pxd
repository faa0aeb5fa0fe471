from libc.stdint cimport int64_t, uint64_t


cdef class LogLinearHistogram:
    # layout (fixed at construction; see the module docstring of hist.pyx for the math)
    cdef readonly int64_t lowest_ns
    cdef readonly int64_t highest_ns
    cdef readonly int sigfigs
    cdef readonly int unit_magnitude      # log2 of the bucket-0 width (1 = exact ns)
    cdef readonly int64_t sub_bucket_count
    cdef readonly Py_ssize_t counts_len
    cdef int _half_mag                    # log2(sub_bucket_count / 2)
    cdef int64_t _half                    # sub_bucket_count / 2
    cdef int64_t _sub_mask                # (sub_bucket_count - 1) << unit_magnitude
    # state
    cdef object _arr                      # the numpy int64 array that owns the counts
    cdef int64_t* _counts
    cdef int64_t _count                   # in-range values
    cdef int64_t _min                     # INT64_MAX when empty
    cdef int64_t _max                     # -1 when empty
    cdef uint64_t _sum_lo                 # exact 128-bit sum of in-range values, low word
    cdef int64_t _sum_hi                  # ... and high word
    cdef int64_t _underflow               # values < 0
    cdef int64_t _overflow                # values > highest_ns

    cdef Py_ssize_t index_of(self, int64_t value_ns) noexcept nogil
    cdef int64_t lowest_of(self, Py_ssize_t index) noexcept nogil
    cdef int64_t highest_of(self, Py_ssize_t index) noexcept nogil
    cdef bint record_c(self, int64_t value_ns) noexcept nogil
    cdef int64_t record_array_c(self, const int64_t* values_ns, Py_ssize_t n) noexcept nogil
    cdef double quantile_c(self, double q) noexcept nogil
