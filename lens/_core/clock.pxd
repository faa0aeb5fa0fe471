from libc.stdint cimport int64_t

cdef extern from "lens_clock.h" nogil:
    int64_t lens_now_ns() noexcept
    int64_t lens_load_acquire(const int64_t *p) noexcept
    void lens_store_release(int64_t *p, int64_t v) noexcept
