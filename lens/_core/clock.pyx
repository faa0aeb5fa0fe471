"""CLOCK_MONOTONIC nanoseconds, read in C.

The clock is system-wide, so stamps taken by different worker processes compare directly.
"""
from lens._core.clock cimport lens_now_ns


### Public API ###

def now_ns():
    """Return CLOCK_MONOTONIC in integer nanoseconds (one ``clock_gettime`` call)."""
    return lens_now_ns()
