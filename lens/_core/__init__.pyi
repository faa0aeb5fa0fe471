"""Types of lens._core (compiled with Cython)."""
import enum
from typing import Final

import numpy as np
import numpy.typing as npt

UNSET: Final[int]
ROW_FIELDS: Final[tuple[str, ...]]
TOKEN_FIELDS: Final[tuple[str, ...]]
ROW_DTYPE: Final[np.dtype]
TOKEN_DTYPE: Final[np.dtype]
FLAG_USAGE_FROM_STREAM: Final[int]
FLAG_WARMUP: Final[int]
FLAG_CANCELLED: Final[int]
FLAG_CONN_REUSED: Final[int]
FLAG_TRUNCATED: Final[int]
FLAG_DROPPED: Final[int]

class RowField(enum.IntEnum): ...

def now_ns() -> int:
    """Return CLOCK_MONOTONIC in integer nanoseconds (one clock_gettime call)."""

class Ring:
    """Single-producer/single-consumer ring of int64 records in shared memory.

    A full ring spills to a process-local buffer (order kept, counted), never drops or blocks.
    """
    def __init__(self, name: str | None = None, capacity: int = 65536, record_words: int = 1,
                 create: bool = True) -> None: ...
    @classmethod
    def attach(cls, name: str) -> Ring: ...
    def push_records(self, records: npt.ArrayLike) -> None: ...
    def flush(self) -> int: ...
    def close_producer(self) -> None: ...
    def set_counter(self, i: int, value: int) -> None: ...
    def counter(self, i: int) -> int: ...
    def drain(self, max_records: int = -1) -> npt.NDArray[np.int64]: ...
    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def record_words(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def consumed(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def spilled(self) -> int: ...
    @property
    def max_pending(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ring: ...
    def __exit__(self, *exc: object) -> None: ...

class Recorder:
    """Per-worker table of in-flight request rows, published into a row ring and a token ring."""
    rows: Ring
    tokens: Ring
    worker: int
    max_token_stamps: int
    def __init__(self, rows: Ring, tokens: Ring, max_slots: int, worker: int = 0,
                 max_token_stamps: int = ...) -> None: ...
    def begin(self, request_id: int, t_sched_ns: int) -> int: ...
    def stamp(self, slot: int, field: int) -> int: ...
    def set(self, slot: int, field: int, value: int) -> int: ...
    def get(self, slot: int, field: int) -> int: ...
    def token(self, slot: int, n_tokens: int = 1) -> None: ...
    def finish(self, slot: int, status: int, error: int) -> int: ...
    def row(self, slot: int) -> np.void: ...
    def flush(self) -> int: ...
    @property
    def in_flight(self) -> int: ...

class LogLinearHistogram:
    """HDR-style log-linear histogram of int64 nanosecond values (relative error < 10**-sigfigs).

    Values < 0 count as ``underflow`` and values > ``highest_ns`` as ``overflow``: counted, never
    clamped, and kept out of count/mean/min/max/quantiles. Not thread-safe (one writer).
    """
    lowest_ns: int
    highest_ns: int
    sigfigs: int
    unit_magnitude: int
    sub_bucket_count: int
    counts_len: int
    def __init__(self, lowest_ns: int = 1000, highest_ns: int = 3_600_000_000_000,
                 sigfigs: int = 3) -> None:
        """Create an empty histogram of values (ns) with 10**-sigfigs relative error.

        ValueError unless 1 <= lowest_ns, 2 * lowest_ns <= highest_ns and sigfigs in 1..5.
        """
    def record(self, value_ns: int) -> bool:
        """Count one value (ns); return False when it is < 0 or > highest_ns (still counted)."""
    def record_many(self, values: npt.ArrayLike) -> int:
        """Count an int64 array of values (ns) in one C loop; return how many were out of range."""
    def merge(self, other: LogLinearHistogram) -> None:
        """Add the counts of another histogram of the same layout (ValueError otherwise)."""
    def quantile(self, q: float) -> float:
        """Return the value (ns) at quantile q in [0, 1] within 10**-sigfigs; NaN when empty."""
    def quantiles(self, qs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Return the values (ns, float64 array shaped like qs) at each quantile in [0, 1]."""
    @property
    def count(self) -> int:
        """Values recorded in range."""
    @property
    def underflow(self) -> int:
        """Values < 0 seen (not recorded)."""
    @property
    def overflow(self) -> int:
        """Values > highest_ns seen (not recorded)."""
    @property
    def total_count(self) -> int:
        """All values seen: count + underflow + overflow."""
    @property
    def min(self) -> int:
        """Exact smallest in-range value (ns); 0 when empty."""
    @property
    def max(self) -> int:
        """Exact largest in-range value (ns); 0 when empty."""
    @property
    def sum(self) -> int:
        """Exact sum of the in-range values (ns, 128-bit accumulator)."""
    @property
    def mean(self) -> float:
        """Exact mean of the in-range values (ns, sum / count); NaN when empty."""
    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """Return a read-only int64 numpy view of the bucket counts (length counts_len)."""
    @property
    def nbytes(self) -> int:
        """Memory of this object in bytes, counts included."""
    def bucket_bounds(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                     npt.NDArray[np.int64]]:
        """Return ``(lowest_ns, highest_ns, counts)`` of the non-empty buckets, bounds inclusive."""
    def reset(self) -> None:
        """Forget every value (counts, stats, underflow and overflow)."""
    def copy(self) -> LogLinearHistogram:
        """Return an independent copy."""
    def encode(self) -> bytes:
        """Return the histogram as compact bytes (zlib; exact round trip via ``decode``)."""
    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> LogLinearHistogram:
        """Rebuild a histogram from ``encode()`` bytes; ValueError on anything else."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: None  # type: ignore[assignment]
