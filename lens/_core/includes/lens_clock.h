/* CLOCK_MONOTONIC in nanoseconds and the few atomics the rings need.
 * Header-only so that every extension inlines them (no cross-module call per stamp). */
#ifndef LENS_CLOCK_H
#define LENS_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline int64_t lens_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
}

/* Single-producer/single-consumer publication: the producer writes a record, then
 * stores the new head with release order; the consumer loads the head with acquire
 * order before reading records (and the mirror image for the tail). */
static inline int64_t lens_load_acquire(const int64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void lens_store_release(int64_t *p, int64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
#endif
