"""lens._core: the C-speed parts of lens-fast (clock, rings, recorder, histogram, stream decoder).

Everything here is compiled with Cython; the types and docstrings are in ``__init__.pyi``.
"""
from lens._core.clock import now_ns
from lens._core.hist import LogLinearHistogram
from lens._core.recorder import (
    FLAG_CANCELLED,
    FLAG_CONN_REUSED,
    FLAG_DROPPED,
    FLAG_TRUNCATED,
    FLAG_USAGE_FROM_STREAM,
    FLAG_WARMUP,
    ROW_DTYPE,
    ROW_FIELDS,
    TOKEN_DTYPE,
    TOKEN_FIELDS,
    UNSET,
    Recorder,
    RowField,
)
from lens._core.ring import Ring

__all__ = [
    "FLAG_CANCELLED",
    "FLAG_CONN_REUSED",
    "FLAG_DROPPED",
    "FLAG_TRUNCATED",
    "FLAG_USAGE_FROM_STREAM",
    "FLAG_WARMUP",
    "ROW_DTYPE",
    "ROW_FIELDS",
    "TOKEN_DTYPE",
    "TOKEN_FIELDS",
    "UNSET",
    "LogLinearHistogram",
    "Recorder",
    "Ring",
    "RowField",
    "now_ns",
]
