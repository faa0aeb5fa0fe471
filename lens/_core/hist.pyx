"""HDR-style log-linear histogram of int64 nanosecond values, with int64 counts in a numpy array.

Layout (HdrHistogram's, reporting bucket midpoints)
---------------------------------------------------
``sub_bucket_count`` S is the smallest power of two >= 10**sigfigs; H = S / 2. Values are
grouped into buckets b = 0, 1, 2, ...; bucket b >= 1 covers ``[H << (b+m), S << (b+m))`` with
H sub-buckets of width ``1 << (b+m)``, and bucket 0 covers ``[0, S << m)`` with S sub-buckets
of width ``1 << m``. ``m`` is the unit magnitude: the largest m >= 0 with ``H << m <= lowest_ns``.
A value v lands at a flat counts index::

    bucket = bit_length(v | ((S - 1) << m)) - m - log2(S)
    sub    = v >> (bucket + m)                         # in [H, S) for bucket >= 1
    index  = ((bucket + 1) << log2(H)) + (sub - H)

A quantile reports the midpoint of the bucket that holds its rank, clamped to the exact
``[min, max]``. In a sub-bucket of width w every value is >= H·w, and the midpoint is at most
(w-1)/2 away from it, so the relative error is below (w-1)/(2·H·w) < 1/S <= 10**-sigfigs.
(HdrHistogram reports the bucket's upper edge instead, so it needs 2·S sub-buckets for the
same bound.) Values below ``H << m`` (only possible below ``lowest_ns``) are within
``(1 << m) / 2`` ns instead.

Worked example, the defaults: 1 µs to 1 h at 3 significant digits
------------------------------------------------------------------
S = 1024 (>= 1000), H = 512, m = 0 (512 <= 1000 < 1024), so bucket 0 holds 0..1023 ns exactly
and 1 µs already gets 3 digits. 1 h = 3.6e12 ns < 1024 << 32 = 4.4e12, so 33 buckets reach it:
``counts_len = (33 + 1) * 512 = 17,408`` int64 = 139,264 bytes. (HdrHistogram itself at 1 ns
resolution needs 2048 sub-buckets and 270 KB.) Recording 1,234,567 ns: bit_length = 21,
bucket = 21 - 0 - 10 = 11, width 2**11 = 2048, sub = 1,234,567 >> 11 = 602, index =
12·512 + 90 = 6,234; that sub-bucket holds 1,232,896..1,234,943, its midpoint 1,233,919.5 is
647.5 ns = 0.052 % away (bound: 1/1024 = 0.098 %).

Quantile rank
-------------
``quantile(q)`` returns the value of 1-based rank ``k = max(1, ceil(q · count))`` (numpy's
``method="inverted_cdf"``), i.e. the midpoint of the bucket where the running count first
reaches k, clamped to [min, max]. ``q · count`` is first lowered by 4 ulps so that a decimal q
such as 0.07 × 100 ranks 7, not 8. On large samples this agrees with numpy's default
``"linear"`` method, whose value lies between ranks k and k+1. q = 0 and q = 1 return the exact
min and max.

Out-of-range values are never clamped: values < 0 count as ``underflow``, values >
``highest_ns`` as ``overflow``, and neither enters count, mean, min, max or the quantiles.
Values in ``[0, lowest_ns)`` are recorded. The exact sum is kept in 128 bits, so the mean
stays exact however long a run lasts. Not thread-safe: one writer per histogram.

The byte encoding (``encode``/``decode``) is drawn in docs/histogram.md.
"""
from libc.float cimport DBL_EPSILON
from libc.math cimport NAN, ceil
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.string cimport memcpy, memset

import struct
import sys
import zlib

import numpy as np

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    MAX_SIGFIGS = 5

# encoding (see docs/histogram.md): envelope, then a zlib stream of header + varint counts
_ENVELOPE = struct.Struct(">4sI")
_HEADER = struct.Struct(">4sBBHqqqqqqqqQI")
_ENVELOPE_MAGIC = b"LNSZ"
_HEADER_MAGIC = b"LNSH"
_VERSION = 1


cdef inline int _bit_length(uint64_t v) noexcept nogil:
    return 0 if v == 0 else 64 - __builtin_clzll(v)


# The hot helpers are module-level inline functions, not methods: a cdef method call goes
# through the vtable, which the C compiler cannot inline into record_array_c's loop.

cdef inline Py_ssize_t _index(LogLinearHistogram h, int64_t v) noexcept nogil:
    cdef int bucket = (_bit_length(<uint64_t>(v | h._sub_mask))
                       - h.unit_magnitude - h._half_mag - 1)
    cdef int64_t sub = v >> (bucket + h.unit_magnitude)
    return ((<Py_ssize_t>(bucket + 1)) << h._half_mag) + <Py_ssize_t>(sub - h._half)


cdef inline int64_t _lowest(LogLinearHistogram h, Py_ssize_t index) noexcept nogil:
    cdef int bucket = <int>(index >> h._half_mag) - 1
    cdef int64_t sub = (index & (h._half - 1)) + h._half
    if bucket < 0:
        sub -= h._half
        bucket = 0
    return sub << (bucket + h.unit_magnitude)


cdef inline int64_t _highest(LogLinearHistogram h, Py_ssize_t index) noexcept nogil:
    cdef int bucket = <int>(index >> h._half_mag) - 1
    if bucket < 0:
        bucket = 0
    return _lowest(h, index) + ((<int64_t>1 << (bucket + h.unit_magnitude)) - 1)


cdef inline bint _record(LogLinearHistogram h, int64_t v) noexcept nogil:
    if <uint64_t>v > <uint64_t>h.highest_ns:
        if v < 0:
            h._underflow += 1
        else:
            h._overflow += 1
        return False
    h._counts[_index(h, v)] += 1
    h._count += 1
    if v < h._min:
        h._min = v
    if v > h._max:
        h._max = v
    cdef uint64_t s = h._sum_lo + <uint64_t>v
    if s < h._sum_lo:
        h._sum_hi += 1
    h._sum_lo = s
    return True


cdef void _clear_stats(LogLinearHistogram h) noexcept:
    h._count = 0
    h._min = INT64_MAX
    h._max = -1
    h._sum_lo = 0
    h._sum_hi = 0
    h._underflow = 0
    h._overflow = 0


cdef void _quantiles(LogLinearHistogram h, const double* qs, double* out,
                     Py_ssize_t n) noexcept nogil:
    # qs must be ascending: one pass over the counts serves them all
    cdef Py_ssize_t j, i = -1
    cdef int64_t cum = 0, k
    cdef double x, v
    for j in range(n):
        if h._count == 0:
            out[j] = NAN
        elif qs[j] <= 0.0:
            out[j] = <double>h._min
        elif qs[j] >= 1.0:
            out[j] = <double>h._max
        else:
            x = qs[j] * <double>h._count
            k = <int64_t>ceil(x * (1.0 - 4.0 * DBL_EPSILON))
            if k < 1:
                k = 1
            if k > h._count:
                k = h._count
            while cum < k:
                i += 1
                cum += h._counts[i]
            v = 0.5 * (<double>_lowest(h, i) + <double>_highest(h, i))
            if v < <double>h._min:
                v = <double>h._min
            if v > <double>h._max:
                v = <double>h._max
            out[j] = v


cdef _decode_counts(LogLinearHistogram h, bytes payload):
    cdef const unsigned char[::1] b = payload
    cdef Py_ssize_t pos = 0, n = len(payload), i = 0
    cdef uint64_t z
    cdef int shift
    cdef int64_t v
    while pos < n:
        z = 0
        shift = 0
        while True:
            if pos >= n:
                raise ValueError("histogram encoding truncated inside a varint")
            if shift > 63 or (shift == 63 and b[pos] > 1):
                raise ValueError("histogram encoding is corrupt: varint past 64 bits")
            z |= (<uint64_t>(b[pos] & 0x7F)) << shift
            shift += 7
            pos += 1
            if not (b[pos - 1] & 0x80):
                break
        v = <int64_t>(z >> 1) ^ -<int64_t>(z & 1)
        if v < 0:
            if -v > h.counts_len - i:
                raise ValueError("histogram encoding is corrupt: zero run past the last bucket")
            i += -v
        else:
            if i >= h.counts_len:
                raise ValueError(f"histogram encoding is corrupt: more than "
                                 f"{h.counts_len} buckets")
            h._counts[i] = v
            i += 1


cdef str _layout(LogLinearHistogram h):
    return f"(lowest_ns={h.lowest_ns}, highest_ns={h.highest_ns}, sigfigs={h.sigfigs})"


cdef class LogLinearHistogram:
    """Log-linear histogram of nanosecond values with bounded relative error.

    ``lowest_ns``: smallest value that must get full precision (smaller non-negative values are
    still recorded); ``highest_ns``: largest value recorded (larger ones count as overflow);
    ``sigfigs``: significant decimal digits, 1..5 (3 = relative error < 0.1 %).
    """

    def __init__(self, int64_t lowest_ns=1000, int64_t highest_ns=3_600_000_000_000,
                 int sigfigs=3):
        if lowest_ns < 1:
            raise ValueError(f"lowest_ns must be >= 1 (got {lowest_ns})")
        if highest_ns // 2 < lowest_ns:
            raise ValueError(
                f"highest_ns must be >= 2 * lowest_ns (got highest_ns={highest_ns}, "
                f"lowest_ns={lowest_ns}); raise highest_ns or lower lowest_ns")
        if not 1 <= sigfigs <= MAX_SIGFIGS:
            raise ValueError(f"sigfigs must be in 1..{MAX_SIGFIGS} (got {sigfigs})")
        cdef int64_t count = 1
        while count < 10 ** sigfigs:
            count <<= 1
        cdef int half_mag = _bit_length(<uint64_t>count) - 2
        cdef int um = _bit_length(<uint64_t>lowest_ns) - 1 - half_mag
        if um < 0:
            um = 0
        # buckets needed to reach highest_ns (HdrHistogram's getBucketsNeededToCoverValue)
        untrackable = count << um
        buckets = 1
        while untrackable <= highest_ns:
            untrackable <<= 1
            buckets += 1
        self.lowest_ns = lowest_ns
        self.highest_ns = highest_ns
        self.sigfigs = sigfigs
        self.unit_magnitude = um
        self.sub_bucket_count = count
        self._half = count >> 1
        self._half_mag = half_mag
        self._sub_mask = (count - 1) << um
        self.counts_len = (buckets + 1) * self._half
        self._arr = np.zeros(self.counts_len, dtype=np.int64)
        cdef int64_t[::1] view = self._arr
        self._counts = &view[0]
        _clear_stats(self)

    ### C API (cimport lens._core.hist) ###

    cdef Py_ssize_t index_of(self, int64_t value_ns) noexcept nogil:
        """Return the counts index of a value in [0, highest_ns]."""
        return _index(self, value_ns)

    cdef int64_t lowest_of(self, Py_ssize_t index) noexcept nogil:
        """Return the smallest value (ns) that lands at a counts index."""
        return _lowest(self, index)

    cdef int64_t highest_of(self, Py_ssize_t index) noexcept nogil:
        """Return the largest value (ns) that lands at a counts index."""
        return _highest(self, index)

    cdef bint record_c(self, int64_t value_ns) noexcept nogil:
        """Count one value (ns); return False (and count it) when out of range."""
        return _record(self, value_ns)

    cdef int64_t record_array_c(self, const int64_t* values_ns, Py_ssize_t n) noexcept nogil:
        """Count n values (ns) in one loop; return how many were out of range."""
        cdef Py_ssize_t i
        cdef int64_t v, lo = self._min, hi = self._max, under = 0, over = 0
        cdef uint64_t highest = <uint64_t>self.highest_ns, s = self._sum_lo, s_old
        cdef int64_t carry = 0
        cdef int64_t* counts = self._counts
        for i in range(n):
            v = values_ns[i]
            if <uint64_t>v > highest:
                if v < 0:
                    under += 1
                else:
                    over += 1
                continue
            counts[_index(self, v)] += 1
            if v < lo:
                lo = v
            if v > hi:
                hi = v
            s_old = s
            s += <uint64_t>v
            carry += s < s_old
        self._count += n - under - over
        self._min = lo
        self._max = hi
        self._sum_lo = s
        self._sum_hi += carry
        self._underflow += under
        self._overflow += over
        return under + over

    cdef double quantile_c(self, double q) noexcept nogil:
        """Return the value (ns) at quantile q in [0, 1]; NaN when empty."""
        cdef double out
        _quantiles(self, &q, &out, 1)
        return out

    ### Public API ###

    def record(self, int64_t value_ns):
        """Count one value (ns); return False when it is < 0 or > highest_ns (still counted)."""
        return self.record_c(value_ns)

    def record_many(self, values):
        """Count an int64 array of values (ns) in one C loop; return how many were out of range."""
        arr = np.asarray(values)
        if arr.dtype != np.int64:
            if arr.dtype.kind not in "iu" or not np.can_cast(arr.dtype, np.int64):
                raise TypeError(
                    f"record_many needs integer nanoseconds as an int64 array (got dtype "
                    f"{arr.dtype}); convert with np.asarray(values, dtype=np.int64)")
            arr = arr.astype(np.int64)
        cdef const int64_t[::1] v = np.ascontiguousarray(arr).reshape(-1)
        if v.shape[0] == 0:
            return 0
        return self.record_array_c(&v[0], v.shape[0])

    def merge(self, LogLinearHistogram other not None):
        """Add the counts of another histogram of the same layout (ValueError otherwise)."""
        if (other.lowest_ns != self.lowest_ns or other.highest_ns != self.highest_ns
                or other.sigfigs != self.sigfigs):
            raise ValueError(
                f"cannot merge histograms of different layouts: {_layout(self)} vs "
                f"{_layout(other)}; create both with the same lowest_ns, highest_ns, sigfigs")
        cdef Py_ssize_t i
        cdef int64_t* a = self._counts
        cdef const int64_t* b = other._counts
        for i in range(self.counts_len):
            a[i] += b[i]
        self._count += other._count
        if other._min < self._min:
            self._min = other._min
        if other._max > self._max:
            self._max = other._max
        cdef uint64_t lo = self._sum_lo + other._sum_lo
        self._sum_hi += other._sum_hi + (lo < self._sum_lo)
        self._sum_lo = lo
        self._underflow += other._underflow
        self._overflow += other._overflow

    def quantile(self, double q):
        """Return the value (ns) at quantile q in [0, 1] within 10**-sigfigs; NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be in [0, 1] (got {q}); for p99 pass 0.99")
        return self.quantile_c(q)

    def quantiles(self, qs):
        """Return the values (ns, float64 array shaped like qs) at each quantile in [0, 1]."""
        q = np.asarray(qs, dtype=np.float64)
        flat = q.reshape(-1)
        if not np.all((flat >= 0.0) & (flat <= 1.0)):
            raise ValueError(
                f"quantiles must be in [0, 1] (got {flat[~((flat >= 0.0) & (flat <= 1.0))]}); "
                f"for p99 pass 0.99")
        order = np.argsort(flat, kind="stable")
        cdef const double[::1] sq = np.ascontiguousarray(flat[order])
        res = np.empty(flat.shape[0], dtype=np.float64)
        cdef double[::1] r = res
        if flat.shape[0]:
            _quantiles(self, &sq[0], &r[0], flat.shape[0])
        out = np.empty_like(res)
        out[order] = res
        return out.reshape(q.shape)

    @property
    def count(self):
        """Values recorded in range."""
        return self._count

    @property
    def underflow(self):
        """Values < 0 seen (not recorded)."""
        return self._underflow

    @property
    def overflow(self):
        """Values > highest_ns seen (not recorded)."""
        return self._overflow

    @property
    def total_count(self):
        """All values seen: count + underflow + overflow."""
        return self._count + self._underflow + self._overflow

    @property
    def min(self):
        """Exact smallest in-range value (ns); 0 when empty."""
        return self._min if self._count else 0

    @property
    def max(self):
        """Exact largest in-range value (ns); 0 when empty."""
        return self._max if self._count else 0

    @property
    def sum(self):
        """Exact sum of the in-range values (ns, Python int, 128-bit accumulator)."""
        return (<object>self._sum_hi << 64) | <object>self._sum_lo

    @property
    def mean(self):
        """Exact mean of the in-range values (ns, sum / count); NaN when empty."""
        if self._count == 0:
            return float("nan")
        return self.sum / self._count

    @property
    def counts(self):
        """Return a read-only int64 numpy view of the bucket counts (length counts_len)."""
        view = self._arr.view()
        view.flags.writeable = False
        return view

    @property
    def nbytes(self):
        """Memory of this object in bytes, counts included."""
        return sys.getsizeof(self) + sys.getsizeof(self._arr)

    def bucket_bounds(self):
        """Return ``(lowest_ns, highest_ns, counts)`` int64 arrays of the non-empty buckets.

        Bucket i holds ``counts[i]`` values v with ``lowest_ns[i] <= v <= highest_ns[i]``
        (both inclusive), in ascending order.
        """
        idx = np.flatnonzero(self._arr)
        lo = np.empty(idx.shape[0], dtype=np.int64)
        hi = np.empty(idx.shape[0], dtype=np.int64)
        cdef const int64_t[::1] ix = idx.astype(np.int64)
        cdef int64_t[::1] l = lo, h = hi
        cdef Py_ssize_t j
        for j in range(ix.shape[0]):
            l[j] = _lowest(self, ix[j])
            h[j] = _highest(self, ix[j])
        return lo, hi, self._arr[idx]

    def reset(self):
        """Forget every value (counts, stats, underflow and overflow)."""
        memset(self._counts, 0, self.counts_len * sizeof(int64_t))
        _clear_stats(self)

    def copy(self):
        """Return an independent copy."""
        cdef LogLinearHistogram h = LogLinearHistogram(self.lowest_ns, self.highest_ns,
                                                       self.sigfigs)
        memcpy(h._counts, self._counts, self.counts_len * sizeof(int64_t))
        h._count = self._count
        h._min = self._min
        h._max = self._max
        h._sum_lo = self._sum_lo
        h._sum_hi = self._sum_hi
        h._underflow = self._underflow
        h._overflow = self._overflow
        return h

    def encode(self):
        """Return the histogram as compact bytes (zlib; exact round trip via ``decode``)."""
        cdef Py_ssize_t i, j, last = self.counts_len - 1
        while last >= 0 and self._counts[last] == 0:
            last -= 1
        buf = bytearray(10 * (last + 1))
        cdef unsigned char[::1] out = buf
        cdef Py_ssize_t pos = 0
        cdef int64_t c
        cdef uint64_t z
        i = 0
        while i <= last:
            c = self._counts[i]
            if c == 0:
                j = i
                while self._counts[j] == 0:   # stops: counts[last] != 0
                    j += 1
                z = <uint64_t>(2 * (j - i) - 1)     # ZigZag of the run length, negated
                i = j
            else:
                z = <uint64_t>c << 1                # ZigZag of a count >= 0
                i += 1
            while z >= 0x80:
                out[pos] = <unsigned char>(z & 0x7F) | 0x80
                z >>= 7
                pos += 1
            out[pos] = <unsigned char>z
            pos += 1
        empty = self._count == 0
        header = _HEADER.pack(
            _HEADER_MAGIC, _VERSION, self.sigfigs, 0, self.lowest_ns, self.highest_ns,
            self._count, self._underflow, self._overflow,
            0 if empty else self._min, 0 if empty else self._max,
            self._sum_hi, self._sum_lo, pos)
        body = zlib.compress(header + bytes(buf[:pos]))
        return _ENVELOPE.pack(_ENVELOPE_MAGIC, len(body)) + body

    @classmethod
    def decode(cls, data):
        """Rebuild a histogram from ``encode()`` bytes; ValueError on anything else."""
        data = bytes(data)
        if len(data) < _ENVELOPE.size:
            raise ValueError(
                f"histogram encoding too short: {len(data)} bytes, need >= {_ENVELOPE.size}")
        magic, length = _ENVELOPE.unpack_from(data)
        if magic != _ENVELOPE_MAGIC:
            raise ValueError(
                f"not a lens histogram encoding: starts with {magic!r}, "
                f"expected {_ENVELOPE_MAGIC!r}")
        if length != len(data) - _ENVELOPE.size:
            raise ValueError(
                f"histogram encoding truncated or padded: envelope says {length} bytes "
                f"of body, got {len(data) - _ENVELOPE.size}")
        d = zlib.decompressobj()
        try:
            head = d.decompress(data[_ENVELOPE.size:], _HEADER.size)
        except zlib.error as e:
            raise ValueError(f"histogram encoding is corrupt: {e}") from None
        if len(head) < _HEADER.size:
            raise ValueError(f"histogram encoding truncated: header has {len(head)} bytes, "
                             f"need {_HEADER.size}")
        (magic, version, sigfigs, _, lowest, highest, count, under, over, vmin, vmax,
         sum_hi, sum_lo, n_bytes) = _HEADER.unpack(head)
        if magic != _HEADER_MAGIC:
            raise ValueError(f"histogram encoding is corrupt: header magic {magic!r}, "
                             f"expected {_HEADER_MAGIC!r}")
        if version != _VERSION:
            raise ValueError(f"histogram encoding version {version} is not supported "
                             f"(this lens reads version {_VERSION}); upgrade lens-fast")
        try:
            h = cls(lowest, highest, sigfigs)
        except ValueError as e:
            raise ValueError(f"histogram encoding has an invalid layout: {e}") from None
        cdef LogLinearHistogram hist = h
        if n_bytes > 10 * hist.counts_len:
            raise ValueError(f"histogram encoding is corrupt: {n_bytes} bytes of counts for "
                             f"{hist.counts_len} buckets")
        try:
            rest = d.decompress(d.unconsumed_tail, n_bytes) if n_bytes else b""
            tail = d.decompress(d.unconsumed_tail, 1) + d.flush()
        except zlib.error as e:
            raise ValueError(f"histogram encoding is corrupt: {e}") from None
        if len(rest) != n_bytes or tail or d.unused_data or not d.eof:
            raise ValueError(f"histogram encoding truncated or padded: header says {n_bytes} "
                             f"bytes of counts, stream has {len(rest) + len(tail)}")
        _decode_counts(hist, rest)
        total = int(hist._arr.sum(dtype=np.uint64)) if hist.counts_len else 0
        if total != count or count < 0 or under < 0 or over < 0:
            raise ValueError(f"histogram encoding is corrupt: header count {count} but "
                             f"buckets hold {total}")
        sum_ = (sum_hi << 64) | sum_lo
        if count:
            nz = np.flatnonzero(hist._arr)
            if not (0 <= vmin <= vmax <= highest and _index(hist, vmin) == nz[0]
                    and _index(hist, vmax) == nz[len(nz) - 1]
                    and vmin * count <= sum_ <= vmax * count):
                raise ValueError(f"histogram encoding is corrupt: min {vmin}, max {vmax}, "
                                 f"sum {sum_} disagree with the buckets")
            hist._min = vmin
            hist._max = vmax
        elif vmin or vmax or sum_:
            raise ValueError("histogram encoding is corrupt: empty but min/max/sum not 0")
        hist._count = count
        hist._sum_hi = sum_hi
        hist._sum_lo = sum_lo
        hist._underflow = under
        hist._overflow = over
        return hist

    def __reduce__(self):
        return (_decode, (self.encode(),))

    def __eq__(self, other):
        if not isinstance(other, LogLinearHistogram):
            return NotImplemented
        cdef LogLinearHistogram o = other
        return (self.lowest_ns == o.lowest_ns and self.highest_ns == o.highest_ns
                and self.sigfigs == o.sigfigs and self._count == o._count
                and self.min == o.min and self.max == o.max and self.sum == o.sum
                and self._underflow == o._underflow and self._overflow == o._overflow
                and np.array_equal(self._arr, o._arr))

    def __repr__(self):
        return (f"LogLinearHistogram(lowest_ns={self.lowest_ns}, highest_ns={self.highest_ns}, "
                f"sigfigs={self.sigfigs}) with count={self._count}, "
                f"underflow={self._underflow}, overflow={self._overflow}")


def _decode(data):
    return LogLinearHistogram.decode(data)
